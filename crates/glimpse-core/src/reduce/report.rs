//! What a reduction did to each visual token, for `--show-kept`, `--json` and tests.

use serde::Serialize;

use crate::model::anyres::AnyresLayout;
use crate::model::preprocess::ImageGeometry;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReductionReport {
    /// The `--reduce` string.
    pub spec: String,
    pub images: Vec<ImageReport>,
    /// Per filter layer, the tokens (indices into each image's `tokens`) that left it.
    pub filters: Vec<FilterReport>,
    /// For each generated token fed back into the model, whether its keys/values stayed
    /// in the cache (empty when no policy decides admission).
    pub decode_admitted: Vec<bool>,
    pub decode_evicted: Vec<Eviction>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImageReport {
    /// Patches per side.
    pub grid: usize,
    pub tokens: Vec<TokenReport>,
    pub keys: Vec<u32>,
    /// Stage-1 merge similarity of every window (empty when no merge ran).
    pub window_similarity: Vec<f32>,
    /// Where the model's canvas, and so each patch, lies on the source image (for a tiled
    /// image: the whole image's crop).
    pub geometry: Option<ImageGeometry>,
    /// For an image cut into tiles (LLaVA-NeXT): how its patches are numbered and where the
    /// tiles lie.
    pub tiles: Option<TileReport>,
}

/// A tiled image's crops. Patches are numbered across them: crop 0 is the whole image, crop
/// `1 + r·cols + c` the tile at row `r`, column `c`; crop `k` owns patches `k·grid²` to
/// `(k+1)·grid² − 1`, each in raster order. Tokens without patches are the end-of-row
/// (newline) tokens.
#[derive(Debug, Clone, Serialize)]
pub struct TileReport {
    /// Tiles down and across.
    pub rows: usize,
    pub cols: usize,
    /// `[start, end)` of the feature rows and columns of the whole tile grid the model
    /// keeps (the rest only shows padding).
    pub kept_rows: [usize; 2],
    pub kept_cols: [usize; 2],
    /// Where the tile grid's canvas (the tiles side by side) lies on the source image.
    pub geometry: ImageGeometry,
}

impl TileReport {
    pub fn new(layout: &AnyresLayout, geometry: ImageGeometry) -> Self {
        TileReport {
            rows: layout.tiles.height,
            cols: layout.tiles.width,
            kept_rows: [layout.kept_rows.start, layout.kept_rows.end],
            kept_cols: [layout.kept_cols.start, layout.kept_cols.end],
            geometry,
        }
    }
}

/// One crop's share of an image's visual tokens (`--stats` for a tiled image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CropCount {
    /// "base", "tile R,C" (from 1) or "newlines".
    pub crop: String,
    /// Its tokens in the unreduced prompt.
    pub tokens_in: usize,
    /// Left after merging in the vision tower.
    pub after_encoder: usize,
    /// Left at the end: neither dropped at prefill nor evicted while decoding (recycled
    /// tokens count with the crop of their first patch).
    pub kept: usize,
}

impl ImageReport {
    /// Tokens per crop of a tiled image; empty for an image taken whole.
    pub fn crop_counts(&self) -> Vec<CropCount> {
        let Some(tiles) = &self.tiles else {
            return Vec::new();
        };
        let side = self.grid;
        let per_crop = (side * side) as u32;
        let crops = 1 + tiles.rows * tiles.cols;
        let overlap =
            |[start, end]: [usize; 2], tile: usize| end.min((tile + 1) * side).saturating_sub(start.max(tile * side));
        let mut counts: Vec<CropCount> = (0..=crops)
            .map(|k| {
                let (crop, tokens_in) = match k {
                    0 => ("base".to_string(), side * side),
                    k if k == crops => ("newlines".to_string(), tiles.kept_rows[1] - tiles.kept_rows[0]),
                    k => {
                        let (r, c) = ((k - 1) / tiles.cols, (k - 1) % tiles.cols);
                        let kept = overlap(tiles.kept_rows, r) * overlap(tiles.kept_cols, c);
                        (format!("tile {},{}", r + 1, c + 1), kept)
                    }
                };
                CropCount {
                    crop,
                    tokens_in,
                    after_encoder: 0,
                    kept: 0,
                }
            })
            .collect();
        for token in &self.tokens {
            let k = token.patches.first().map_or(crops, |&p| (p / per_crop) as usize);
            let Some(count) = counts.get_mut(k) else {
                continue;
            };
            count.after_encoder += usize::from(!token.recycled);
            count.kept += usize::from(token.dropped_after_layer.is_none() && token.evicted_at_step.is_none());
        }
        counts
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenReport {
    /// Raster indices of the patches the token stands for.
    pub patches: Vec<u32>,
    pub key: bool,
    /// Made by a filter from dropped tokens (SparseVLM recycling).
    pub recycled: bool,
    /// The layer after which a prefill filter removed it.
    pub dropped_after_layer: Option<usize>,
    /// The decode step at which the cache policy evicted it.
    pub evicted_at_step: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilterReport {
    pub layer: usize,
    pub kept: Vec<Vec<u32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Eviction {
    pub step: usize,
    pub image: u32,
    pub token: u32,
}
