//! LLaVA-NeXT's "anyres" geometry, computed as transformers computes it: which grid of
//! tiles an image is cut into (`select_best_resolution` over the checkpoint's
//! `image_grid_pinpoints`), the size it is resized to inside that grid and the padding that
//! centres it (`get_patch_output_size`, `_get_padding_size`), which rows and columns of the
//! tiles' feature grid survive `unpad_image`, and so how many image tokens the prompt holds.
//!
//! Pure arithmetic on sizes, kept bit-for-bit with the Python (the same f64 operations in
//! the same order, Python's `round(x, 7)` included), since a token count one off breaks the
//! prompt. Goldens: `test/fixtures/anyres/geometry.json` (`tools/make_anyres_cases.py`).

use std::ops::Range;

/// A size in pixels, or in feature rows and columns; height first, as in the checkpoints'
/// `image_grid_pinpoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub height: usize,
    pub width: usize,
}

impl Size {
    pub fn new(height: usize, width: usize) -> Self {
        Size { height, width }
    }
}

/// The pinpoint that keeps most of the image's pixels once the image is scaled to fit in
/// it, and of those the one with the least padding; the earlier pinpoint on a tie.
pub fn best_resolution(image: Size, pinpoints: &[Size]) -> Option<Size> {
    let (h, w) = (image.height as f64, image.width as f64);
    let mut best = None;
    let mut most_kept = 0usize;
    let mut least_wasted = usize::MAX;
    for &candidate in pinpoints {
        let scale = (candidate.width as f64 / w).min(candidate.height as f64 / h);
        let scaled = (w * scale) as usize * (h * scale) as usize;
        let kept = scaled.min(image.width * image.height);
        let wasted = candidate.width * candidate.height - kept;
        if kept > most_kept || (kept == most_kept && wasted < least_wasted) {
            most_kept = kept;
            least_wasted = wasted;
            best = Some(candidate);
        }
    }
    best
}

/// The image's size scaled to fit in `target` with its aspect ratio kept: the limiting side
/// takes the target's length, the other is rounded up (and capped at the target's).
pub fn fit_within(image: Size, target: Size) -> Size {
    let scale_w = target.width as f64 / image.width as f64;
    let scale_h = target.height as f64 / image.height as f64;
    if scale_w < scale_h {
        let height = ((image.height as f64 * scale_w).ceil() as usize).min(target.height);
        Size::new(height, target.width)
    } else {
        let width = ((image.width as f64 * scale_h).ceil() as usize).min(target.width);
        Size::new(target.height, width)
    }
}

/// The top and left padding that centres `inner` in `outer` (an odd remainder goes to the
/// bottom and right).
pub fn centring_padding(inner: Size, outer: Size) -> Size {
    Size::new((outer.height - inner.height) / 2, (outer.width - inner.width) / 2)
}

/// Python's `int(round(x, 7))` for a non-negative `x`: snaps values a hair off an integer
/// (such as 335.99999999) onto it before truncating.
fn snapped_floor(x: f64) -> i64 {
    ((x * 1e7).round() / 1e7) as i64
}

/// How one image goes through LLaVA-NeXT: the base image (resized to one tile) and the grid
/// of tiles cut from the image resized into `best` and padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnyresLayout {
    /// The pinpoint picked: the size the image is resized and padded to.
    pub best: Size,
    /// The image's size inside `best`.
    pub resized: Size,
    /// Padding above and left of the resized image.
    pub padding: Size,
    /// Tiles down and across.
    pub tiles: Size,
    /// Feature rows and columns of the whole tile grid (`tiles × patches per tile side`)
    /// that show the image rather than padding: what `unpad_image` keeps.
    pub kept_rows: Range<usize>,
    pub kept_cols: Range<usize>,
    /// Patches along a tile's side (336 / 14 = 24 for LLaVA-NeXT).
    pub tile_side: usize,
}

impl AnyresLayout {
    /// `tile`: the vision tower's input side in pixels; `patch`: its patch size. `None`
    /// when `pinpoints` is empty.
    pub fn new(image: Size, pinpoints: &[Size], tile: usize, patch: usize) -> Option<Self> {
        let best = best_resolution(image, pinpoints)?;
        let resized = fit_within(image, best);
        let tiles = Size::new(best.height / tile, best.width / tile);
        let tile_side = tile / patch;
        let (rows, cols) = (tiles.height * tile_side, tiles.width * tile_side);
        let (kept_rows, kept_cols) = unpadded(image, rows, cols);
        Some(AnyresLayout {
            best,
            resized,
            padding: centring_padding(resized, best),
            tiles,
            kept_rows,
            kept_cols,
            tile_side,
        })
    }

    /// Like [`AnyresLayout::new`], among only the grids that give the image at most
    /// `max_tokens` tokens (`--max-image-tokens`): the same choice transformers makes, from a
    /// shorter list. `None` when no grid is small enough.
    pub fn within(image: Size, pinpoints: &[Size], tile: usize, patch: usize, max_tokens: usize) -> Option<Self> {
        let fitting: Vec<Size> = pinpoints
            .iter()
            .copied()
            .filter(|&grid| {
                AnyresLayout::new(image, &[grid], tile, patch).is_some_and(|l| l.image_tokens() <= max_tokens)
            })
            .collect();
        AnyresLayout::new(image, &fitting, tile, patch)
    }

    /// Image tokens in the prompt (CLS dropped, the "default" feature strategy): the base
    /// image's patches, then every kept feature row followed by its newline token.
    pub fn image_tokens(&self) -> usize {
        self.tile_side * self.tile_side + self.kept_rows.len() * (self.kept_cols.len() + 1)
    }
}

/// The rows and columns of a `rows × cols` feature grid that `unpad_image` keeps for an
/// image of size `image`: padding was added along the side where the grid's aspect ratio
/// exceeds the image's, equally before and after.
fn unpadded(image: Size, rows: usize, cols: usize) -> (Range<usize>, Range<usize>) {
    let (h, w) = (image.height as f64, image.width as f64);
    let (current_h, current_w) = (rows as i64, cols as i64);
    if w / h > cols as f64 / rows as f64 {
        let new_height = snapped_floor(h * (cols as f64 / w));
        let padding = ((current_h - new_height) / 2) as usize;
        (padding..rows - padding, 0..cols)
    } else {
        let new_width = snapped_floor(w * (rows as f64 / h));
        let padding = ((current_w - new_width) / 2) as usize;
        (0..rows, padding..cols - padding)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::Value;

    use super::*;

    fn size(value: &Value) -> Size {
        let pair: Vec<usize> = value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        Size::new(pair[0], pair[1])
    }

    /// Every case of both grid lists: the same pinpoint, resize, padding, tile grid, kept
    /// feature rows and columns, and prompt token count as transformers.
    #[test]
    fn matches_transformers_on_every_golden_case() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test/fixtures/anyres/geometry.json");
        let goldens: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut checked = 0;
        for grid in goldens["grids"].as_array().unwrap() {
            let pinpoints: Vec<Size> = grid["pinpoints"].as_array().unwrap().iter().map(size).collect();
            let tile = grid["tile"].as_u64().unwrap() as usize;
            let patch = grid["patch"].as_u64().unwrap() as usize;
            for case in grid["cases"].as_array().unwrap() {
                let image = size(&case["size"]);
                let layout = AnyresLayout::new(image, &pinpoints, tile, patch).unwrap();
                let what = format!("{} {image:?}", grid["name"]);
                assert_eq!(layout.best, size(&case["best"]), "{what}: best");
                assert_eq!(layout.resized, size(&case["resized"]), "{what}: resized");
                assert_eq!(layout.padding, size(&case["padding"]), "{what}: padding");
                assert_eq!(layout.tiles, size(&case["grid"]), "{what}: grid");
                let (kept, from) = (size(&case["kept"]), size(&case["kept_from"]));
                assert_eq!(
                    (layout.kept_rows.clone(), layout.kept_cols.clone()),
                    (
                        from.height..from.height + kept.height,
                        from.width..from.width + kept.width
                    ),
                    "{what}: kept"
                );
                assert_eq!(
                    layout.image_tokens() as u64,
                    case["tokens"].as_u64().unwrap(),
                    "{what}: tokens"
                );
                checked += 1;
            }
        }
        assert!(checked >= 100, "only {checked} cases");
    }

    /// LLaVA-NeXT-7B on a large square image: four tiles and the base, 2,880 patch
    /// features, 48 newlines on top: 2,928 tokens.
    #[test]
    fn a_large_square_image_fills_the_two_by_two_grid() {
        let pinpoints = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)].map(|(h, w)| Size::new(h, w));
        let layout = AnyresLayout::new(Size::new(1200, 1200), &pinpoints, 336, 14).unwrap();
        assert_eq!(layout.tiles, Size::new(2, 2));
        assert_eq!((layout.kept_rows.len(), layout.kept_cols.len()), (48, 48));
        assert_eq!(layout.image_tokens(), 576 + 48 * 49);
    }

    /// A token budget picks the grid transformers would pick from the grids within it.
    #[test]
    fn a_token_budget_picks_among_the_grids_within_it() {
        let pinpoints = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)].map(|(h, w)| Size::new(h, w));
        let image = Size::new(1200, 1200);
        let unlimited = AnyresLayout::within(image, &pinpoints, 336, 14, usize::MAX).unwrap();
        assert_eq!(unlimited, AnyresLayout::new(image, &pinpoints, 336, 14).unwrap());
        // 2,928 tokens do not fit 2,000. Every other grid unpads the square image to 24 × 24
        // features (576 + 24 × 25 = 1,176 tokens), and of those transformers' rule takes the
        // first listed with the least padding: 1×2.
        let limited = AnyresLayout::within(image, &pinpoints, 336, 14, 2000).unwrap();
        assert_eq!(limited.tiles, Size::new(1, 2));
        assert_eq!(limited.image_tokens(), 576 + 24 * 25);
        assert_eq!(limited, AnyresLayout::new(image, &pinpoints[..2], 336, 14).unwrap());
        // Exactly the count fits; one less fits no grid.
        assert_eq!(
            AnyresLayout::within(image, &pinpoints, 336, 14, 1176),
            Some(limited.clone())
        );
        assert_eq!(AnyresLayout::within(image, &pinpoints, 336, 14, 1175), None);
    }

    #[test]
    fn no_pinpoints_no_layout() {
        assert_eq!(AnyresLayout::new(Size::new(10, 10), &[], 336, 14), None);
    }
}
