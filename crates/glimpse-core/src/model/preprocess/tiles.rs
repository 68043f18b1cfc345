//! LLaVA-NeXT's tiled preprocessing (`LlavaNextImageProcessor.get_image_patches`): the whole
//! image resized to one tile, then the image resized to fit the grid its layout picked,
//! centred on black and cut into tiles, row by row. Each of those then goes through the
//! processor's usual steps, as transformers runs them on every tile.

use super::{canvas, resample, validate, ImageGeometry, ImageProcessorConfig, ResizeTarget, RgbImage, Size};
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

    /// Where the two canvases of a tiled image lie on it: the base crop (the whole image
    /// stretched onto one tile) and the tile grid (the image resized into `layout.best` and
    /// centred).
    pub fn tiled_geometry(&self, image: &RgbImage, layout: &AnyresLayout) -> (ImageGeometry, ImageGeometry) {
        let tile = self.tile_side();
        let (width, height) = (image.width as f64, image.height as f64);
        let base = ImageGeometry {
            canvas_width: tile,
            canvas_height: tile,
            scale_x: width / tile as f64,
            scale_y: height / tile as f64,
            offset_x: 0.0,
            offset_y: 0.0,
            content: [0, 0, tile, tile],
        };
        let (scale_x, scale_y) = (
            width / layout.resized.width as f64,
            height / layout.resized.height as f64,
        );
        let (left, top) = (layout.padding.width, layout.padding.height);
        let tiles = ImageGeometry {
            canvas_width: layout.best.width,
            canvas_height: layout.best.height,
            scale_x,
            scale_y,
            offset_x: -(left as f64) * scale_x,
            offset_y: -(top as f64) * scale_y,
            content: [left, top, left + layout.resized.width, top + layout.resized.height],
        };
        (base, tiles)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::anyres::Size as GridSize;

    /// The tile canvas's content box maps onto the whole source image, its padding outside
    /// it; the base canvas stretches the image over one tile.
    #[test]
    fn tiled_geometry_maps_the_canvases_onto_the_image() {
        let processor = ImageProcessorConfig::from_json_str(
            r#"{"image_processor_type": "LlavaNextImageProcessor", "size": {"shortest_edge": 48},
                "crop_size": {"height": 48, "width": 48}}"#,
            "test",
        )
        .unwrap();
        let image = RgbImage {
            width: 64,
            height: 40,
            data: vec![0; 64 * 40 * 3],
        };
        let layout = AnyresLayout::new(GridSize::new(40, 64), &[GridSize::new(48, 96)], 48, 4).unwrap();
        let (base, tiles) = processor.tiled_geometry(&image, &layout);
        assert_eq!((base.canvas_width, base.canvas_height), (48, 48));
        assert_eq!((48.0 * base.scale_x, 48.0 * base.scale_y), (64.0, 40.0));
        assert_eq!((tiles.canvas_width, tiles.canvas_height), (96, 48));
        let [left, top, right, bottom] = tiles.content;
        let to_source = |x: usize, y: usize| {
            (
                x as f64 * tiles.scale_x + tiles.offset_x,
                y as f64 * tiles.scale_y + tiles.offset_y,
            )
        };
        assert_eq!(to_source(left, top), (0.0, 0.0));
        let (x, y) = to_source(right, bottom);
        assert!((x - 64.0).abs() < 1e-9 && (y - 40.0).abs() < 1e-9, "{x} {y}");
        // Height-bound: 48 rows, 64 · 1.2 = 76.8 → 77 columns, centred with 9 padding
        // columns on the left.
        assert_eq!(tiles.content, [9, 0, 86, 48]);
    }
}
