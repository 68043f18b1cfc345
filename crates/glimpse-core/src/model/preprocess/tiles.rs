//! LLaVA-NeXT's tiled preprocessing (`LlavaNextImageProcessor.get_image_patches`): the whole
//! image resized to one tile, then the image resized to fit the grid its layout picked,
//! centred on black and cut into tiles, row by row. Each of those then goes through the
//! processor's usual steps, as transformers runs them on every tile.

use super::{canvas, resample, validate, ImageProcessorConfig, ResizeTarget, RgbImage, Size};
use crate::error::{Error, Result};
use crate::model::anyres::{self, AnyresLayout};

impl ImageProcessorConfig {
    /// The tile grids of `image_grid_pinpoints`, for a config read with tiling accepted.
    pub fn pinpoints(&self) -> Option<&[anyres::Size]> {
        self.pinpoints.as_deref()
    }

    /// The side of a tile in pixels: the crop's height, else the resize size (the
    /// `patch_size` transformers cuts the padded image with).
    pub fn tile_side(&self) -> usize {
        match (self.center_crop, self.resize.map(|r| r.target)) {
            (Some(crop), _) => crop.height,
            (None, Some(ResizeTarget::Exact(size))) => size.height,
            (None, Some(ResizeTarget::ShortestEdge(edge))) => edge,
            (None, None) => self.output.height,
        }
    }

    /// How `image` is tiled, for a vision tower with patches of `patch` pixels; `None`
    /// without pinpoints.
    pub fn tile_layout(&self, image: &RgbImage, patch: usize) -> Option<AnyresLayout> {
        let size = anyres::Size::new(image.height as usize, image.width as usize);
        AnyresLayout::new(size, self.pinpoints()?, self.tile_side(), patch)
    }

    /// Pixel values of the base image, then of each tile of `layout` row by row, each
    /// `3 × tile × tile` in CHW order.
    pub fn preprocess_tiles(&self, image: &RgbImage, layout: &AnyresLayout) -> Result<Vec<Vec<f32>>> {
        validate(image)?;
        let Some(resize) = self.resize else {
            return Err(Error::model(
                "a tiling image processor must resize (do_resize), but this one does not",
            ));
        };
        let tile = self.tile_side();
        // The base image: the whole image at the resize size, its aspect ratio ignored.
        let base_size = match resize.target {
            ResizeTarget::Exact(size) => size,
            ResizeTarget::ShortestEdge(edge) => Size {
                height: edge,
                width: edge,
            },
        };
        let base = resample::resize_region(
            image,
            base_size.width,
            base_size.height,
            resize.filter,
            0..base_size.width,
            0..base_size.height,
        );
        let fitted = resample::resize_region(
            image,
            layout.resized.width,
            layout.resized.height,
            resize.filter,
            0..layout.resized.width,
            0..layout.resized.height,
        );
        let best = Size {
            height: layout.best.height,
            width: layout.best.width,
        };
        let padded = canvas::place(&fitted, best, layout.padding.height, layout.padding.width);
        let mut out = Vec::with_capacity(1 + layout.tiles.height * layout.tiles.width);
        out.push(self.preprocess(&base)?);
        for row in 0..layout.tiles.height {
            for col in 0..layout.tiles.width {
                let part = resample::copy_region(
                    &padded.data,
                    best.width,
                    col * tile..(col + 1) * tile,
                    row * tile..(row + 1) * tile,
                );
                out.push(self.preprocess(&part)?);
            }
        }
        Ok(out)
    }
}
