//! How LLaVA-NeXT lays one image's crops out in the prompt (`pack_image_features` in
//! transformers): the base image's tokens first, in their own order; then the tiles' tokens
//! as one big feature grid read row by row across the tiles, with the rows and columns that
//! only show padding removed (`unpad_image`) and a learned newline token after every kept
//! row.
//!
//! The crops may have been reduced in the vision tower already (a merged window stands for
//! several patches), so a tile token is placed by its first patch: unreduced, that is exactly
//! transformers' order; merged, a window sits where its top-left patch would. A tile token
//! whose first patch lies in the padding is dropped with it. Every kept row still ends in
//! its newline, so the language model sees the image's rows whatever was merged.
//!
//! Patches are numbered across the crops: crop `c` (0 = base, then the tiles row by row)
//! owns `c·side² .. (c+1)·side²`, each crop's patches in raster order.

use super::anyres::AnyresLayout;
use crate::reduce::VisionToken;

/// One crop's tokens out of the vision tower: patch lists in the crop's own raster
/// numbering, and its key tokens (indices into `tokens`, ascending).
pub struct CropTokens {
    pub tokens: Vec<VisionToken>,
    pub keys: Vec<u32>,
}

/// Where one row of the packed image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedSource {
    /// Token `token` of crop `crop`.
    Crop { crop: usize, token: usize },
    /// The learned end-of-row embedding.
    Newline,
}

/// A packed image: its rows' sources and, per row, the token it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    pub sources: Vec<PackedSource>,
    /// Newline rows hold a token with no patches.
    pub tokens: Vec<VisionToken>,
    /// Each row's position within the image's unreduced slot of the prompt.
    pub offsets: Vec<u32>,
    /// Key tokens of every crop, as packed row indices, ascending.
    pub keys: Vec<u32>,
    /// Tokens the image takes in the unreduced prompt.
    pub slot_len: usize,
}

/// Packs the crops of `layout` (the base first, then the tiles row by row).
pub fn pack(layout: &AnyresLayout, crops: &[CropTokens]) -> Packing {
    let side = layout.tile_side;
    let per_crop = (side * side) as u32;
    let kept_cols = layout.kept_cols.len();
    let mut packing = Packing {
        sources: Vec::new(),
        tokens: Vec::new(),
        offsets: Vec::new(),
        keys: Vec::new(),
        slot_len: layout.image_tokens(),
    };
    let push = |packing: &mut Packing, source: PackedSource, token: VisionToken, offset: usize, key: bool| {
        if key {
            packing.keys.push(packing.tokens.len() as u32);
        }
        packing.sources.push(source);
        packing.tokens.push(token);
        packing.offsets.push(offset as u32);
    };

    let Some((base, tiles)) = crops.split_first() else {
        return packing;
    };
    for (token, t) in base.tokens.iter().enumerate() {
        let offset = t.patches.iter().copied().min().unwrap_or(0) as usize;
        let key = base.keys.contains(&(token as u32));
        push(
            &mut packing,
            PackedSource::Crop { crop: 0, token },
            t.clone(),
            offset,
            key,
        );
    }

    // Every tile token's place in the whole feature grid, by its first patch.
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // (row, col, crop, token)
    for (t, tile) in tiles.iter().enumerate() {
        let (tile_row, tile_col) = (t / layout.tiles.width, t % layout.tiles.width);
        for (token, vt) in tile.tokens.iter().enumerate() {
            let Some(first) = vt.patches.iter().copied().min() else {
                continue;
            };
            let (row, col) = (
                tile_row * side + first as usize / side,
                tile_col * side + first as usize % side,
            );
            if layout.kept_rows.contains(&row) && layout.kept_cols.contains(&col) {
                placed.push((row, col, t + 1, token));
            }
        }
    }
    placed.sort_unstable();

    let base_len = side * side;
    let mut next = placed.iter().peekable();
    for (r, row) in layout.kept_rows.clone().enumerate() {
        let row_start = base_len + r * (kept_cols + 1);
        while let Some(&(_, col, crop, token)) = next.next_if(|p| p.0 == row) {
            let offset = row_start + (col - layout.kept_cols.start);
            let source = &crops[crop];
            let patches = source.tokens[token]
                .patches
                .iter()
                .map(|&p| crop as u32 * per_crop + p)
                .collect();
            let key = source.keys.contains(&(token as u32));
            push(
                &mut packing,
                PackedSource::Crop { crop, token },
                VisionToken { patches },
                offset,
                key,
            );
        }
        push(
            &mut packing,
            PackedSource::Newline,
            VisionToken { patches: Vec::new() },
            row_start + kept_cols,
            false,
        );
    }
    packing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::anyres::Size;

    fn unreduced(side: usize) -> CropTokens {
        CropTokens {
            tokens: (0..(side * side) as u32)
                .map(|p| VisionToken { patches: vec![p] })
                .collect(),
            keys: Vec::new(),
        }
    }

    /// A 1×2 grid of 4×4-patch tiles (16-pixel tiles of 4-pixel patches) for a wide image
    /// whose padding leaves feature rows 1 and 2 of 4.
    fn wide_layout() -> AnyresLayout {
        let layout = AnyresLayout::new(Size::new(9, 40), &[Size::new(16, 32)], 16, 4).unwrap();
        assert_eq!(
            (layout.tiles, layout.kept_rows.clone(), layout.kept_cols.clone()),
            (Size::new(1, 2), 1..3, 0..8)
        );
        layout
    }

    /// Transformers' order written out directly: view the tiles as
    /// (tile rows, tile cols, side, side), permute to (tile row, patch row, tile col, patch
    /// col), keep the unpadded rows and columns, a newline after each row.
    fn transformers_order(layout: &AnyresLayout) -> Vec<PackedSource> {
        let side = layout.tile_side;
        let mut order: Vec<PackedSource> = (0..side * side)
            .map(|token| PackedSource::Crop { crop: 0, token })
            .collect();
        for row in layout.kept_rows.clone() {
            for col in layout.kept_cols.clone() {
                let tile = (row / side) * layout.tiles.width + col / side;
                let token = (row % side) * side + col % side;
                order.push(PackedSource::Crop { crop: tile + 1, token });
            }
            order.push(PackedSource::Newline);
        }
        order
    }

    #[test]
    fn unreduced_crops_pack_in_transformers_order() {
        for layout in [
            wide_layout(),
            AnyresLayout::new(Size::new(50, 20), &[Size::new(32, 16), Size::new(32, 32)], 16, 4).unwrap(),
            AnyresLayout::new(Size::new(30, 30), &[Size::new(32, 32)], 16, 4).unwrap(),
        ] {
            let crops: Vec<CropTokens> = (0..1 + layout.tiles.height * layout.tiles.width)
                .map(|_| unreduced(4))
                .collect();
            let packing = pack(&layout, &crops);
            assert_eq!(packing.sources, transformers_order(&layout), "{layout:?}");
            assert_eq!(packing.tokens.len(), layout.image_tokens());
            assert_eq!(packing.slot_len, layout.image_tokens());
            // Unreduced, every row sits at its own slot position.
            assert_eq!(packing.offsets, (0..layout.image_tokens() as u32).collect::<Vec<_>>());
        }
    }

    #[test]
    fn patches_are_numbered_across_crops() {
        let layout = wide_layout();
        let packing = pack(&layout, &[unreduced(4), unreduced(4), unreduced(4)]);
        // Base patches as they are; the first kept tile row is patch row 1 of both tiles.
        assert_eq!(packing.tokens[15].patches, vec![15]);
        let first_row: Vec<u32> = packing.tokens[16..25].iter().flat_map(|t| t.patches.clone()).collect();
        assert_eq!(
            first_row,
            vec![16 + 4, 16 + 5, 16 + 6, 16 + 7, 32 + 4, 32 + 5, 32 + 6, 32 + 7]
        );
        assert!(packing.tokens[24].patches.is_empty(), "the row ends in a newline");
    }

    #[test]
    fn merged_tokens_sit_at_their_first_patch_and_padding_goes() {
        let layout = wide_layout();
        // Tile 1: one token merging patches 5, 6, 9, 10 (rows 1-2), one in the padding row 0,
        // and patch 8 (row 2, col 0), listed out of order as a merge leaves them.
        let tile = CropTokens {
            tokens: vec![
                VisionToken { patches: vec![8] },
                VisionToken {
                    patches: vec![5, 6, 9, 10],
                },
                VisionToken { patches: vec![0] },
            ],
            keys: vec![0, 2],
        };
        let empty = CropTokens {
            tokens: Vec::new(),
            keys: Vec::new(),
        };
        let base = CropTokens {
            tokens: vec![VisionToken { patches: vec![3] }],
            keys: vec![0],
        };
        let packing = pack(&layout, &[base, tile, empty]);
        assert_eq!(
            packing.sources,
            vec![
                PackedSource::Crop { crop: 0, token: 0 },
                PackedSource::Crop { crop: 1, token: 1 },
                PackedSource::Newline,
                PackedSource::Crop { crop: 1, token: 0 },
                PackedSource::Newline,
            ]
        );
        // Slot positions: base 16, then rows of 8 columns + newline.
        assert_eq!(packing.offsets, vec![3, 16 + 1, 16 + 8, 25, 25 + 8]);
        assert_eq!(packing.tokens[1].patches, vec![21, 22, 25, 26]);
        // Keys follow their tokens; the one in the padding is gone with it.
        assert_eq!(packing.keys, vec![0, 3]);
    }
}
