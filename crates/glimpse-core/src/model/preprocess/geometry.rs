//! Where the model's input canvas lies on the source image, so that anything said about
//! patches (which tokens a reduction dropped, for instance) can be drawn on the picture the
//! user gave.
//!
//! Every step of the preprocessing moves pixels by an axis-aligned affine map: the square pad
//! shifts, the resize scales edges onto edges (Pillow maps the outer edge of the first and
//! last pixel onto each other), the centre crop shifts again and the final pad keeps the
//! origin. Their composition is one scale and one offset per axis.

use serde::Serialize;

use super::{canvas, ImageProcessorConfig, RgbImage, Size};
use crate::error::Result;

/// A canvas point `(x, y)`, in canvas pixels with pixel edges at whole numbers, lies at
/// `(x·scale_x + offset_x, y·scale_y + offset_y)` on the source image, in its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ImageGeometry {
    /// Size of the canvas the vision tower sees, in pixels.
    pub canvas_width: usize,
    pub canvas_height: usize,
    pub scale_x: f64,
    pub scale_y: f64,
    pub offset_x: f64,
    pub offset_y: f64,
    /// `[left, top, right, bottom]`: the part of the canvas that holds resized image pixels
    /// (right and bottom exclusive). Outside it the canvas is padding, even where the map
    /// still lands inside the source image.
    pub content: [usize; 4],
}

impl ImageGeometry {
    /// A canvas that is the image itself, pixel for pixel (the benchmark's synthetic image).
    pub fn unscaled(width: usize, height: usize) -> Self {
        ImageGeometry {
            canvas_width: width,
            canvas_height: height,
            scale_x: 1.0,
            scale_y: 1.0,
            offset_x: 0.0,
            offset_y: 0.0,
            content: [0, 0, width, height],
        }
    }
}

impl ImageProcessorConfig {
    /// The geometry of `image` through this preprocessing.
    pub fn geometry(&self, image: &RgbImage) -> Result<ImageGeometry> {
        let source = Size::of(image);
        let (padded, pad_left, pad_top) = match self.square_pad {
            Some(_) => {
                // As `canvas::pad_to_square`: the free space is split with the floor before the image.
                let side = source.width.max(source.height);
                let square = Size {
                    height: side,
                    width: side,
                };
                (square, (side - source.width) / 2, (side - source.height) / 2)
            }
            None => (source, 0, 0),
        };
        let resized = self.resized_size(padded)?;
        let ((crop_x, left, right), (crop_y, top, bottom)) = match self.center_crop {
            Some(crop) => (
                crop_placement(resized.width, crop.width),
                crop_placement(resized.height, crop.height),
            ),
            None => ((0, 0, resized.width), (0, 0, resized.height)),
        };
        let scale_x = padded.width as f64 / resized.width as f64;
        let scale_y = padded.height as f64 / resized.height as f64;
        Ok(ImageGeometry {
            canvas_width: self.output.width,
            canvas_height: self.output.height,
            scale_x,
            scale_y,
            offset_x: crop_x as f64 * scale_x - pad_left as f64,
            offset_y: crop_y as f64 * scale_y - pad_top as f64,
            content: [left, top, right, bottom],
        })
    }
}

/// One axis of a centre crop from `size` to `crop`: where canvas pixel 0 lies on the resized
/// axis (negative when the crop is larger and pads), and the canvas range the image fills.
fn crop_placement(size: usize, crop: usize) -> (i64, usize, usize) {
    let (kept, place) = canvas::crop_axis(size, crop);
    (kept.start as i64 - place as i64, place, place + kept.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ImageProcessorConfig {
        ImageProcessorConfig::from_json_str(json, "test").unwrap()
    }

    /// An image whose red and green levels are each pixel's own x and y.
    fn coordinate_image(width: u32, height: u32) -> RgbImage {
        let data = (0..height)
            .flat_map(|y| (0..width).flat_map(move |x| [x as u8, y as u8, 7]))
            .collect();
        RgbImage { width, height, data }
    }

    /// With nearest-neighbour resampling at a whole-number scale, every canvas pixel is a copy
    /// of the source pixel under its centre: the geometry must point at exactly that pixel
    /// (read back from its red and green levels), or at padding of colour `background`.
    fn assert_geometry_matches_pixels(config: &ImageProcessorConfig, image: &RgbImage, background: [f32; 3]) {
        let geometry = config.geometry(image).unwrap();
        let (width, height) = (geometry.canvas_width, geometry.canvas_height);
        let values = config.preprocess(image).unwrap();
        let plane = width * height;
        for cy in 0..height {
            for cx in 0..width {
                let at = cy * width + cx;
                let pixel = [values[at], values[plane + at], values[2 * plane + at]];
                let sx = ((cx as f64 + 0.5) * geometry.scale_x + geometry.offset_x).floor();
                let sy = ((cy as f64 + 0.5) * geometry.scale_y + geometry.offset_y).floor();
                let inside = (0.0..image.width as f64).contains(&sx) && (0.0..image.height as f64).contains(&sy);
                let expected = if inside {
                    [sx as f32, sy as f32, 7.0]
                } else {
                    background
                };
                assert_eq!(pixel, expected, "canvas pixel ({cx}, {cy})");
            }
        }
    }

    const RAW_NEAREST: &str = r#""resample": 0, "do_rescale": false, "do_normalize": false"#;

    #[test]
    fn shortest_edge_then_centre_crop() {
        let landscape = config(r#"{"size": {"shortest_edge": 48}, "crop_size": 48}"#);
        let geometry = landscape.geometry(&coordinate_image(90, 72)).unwrap();
        assert_eq!(
            geometry,
            ImageGeometry {
                canvas_width: 48,
                canvas_height: 48,
                // 90x72 becomes 60x48; the crop starts 6 pixels in.
                scale_x: 1.5,
                scale_y: 1.5,
                offset_x: 9.0,
                offset_y: 0.0,
                content: [0, 0, 48, 48],
            }
        );
    }

    #[test]
    fn shortest_edge_then_centre_crop_lands_on_the_pixels_preprocessing_copies() {
        let config = config(&format!(
            r#"{{"size": {{"shortest_edge": 32}}, "crop_size": 32, {RAW_NEAREST}}}"#
        ));
        let landscape = coordinate_image(96, 64);
        assert_eq!(config.geometry(&landscape).unwrap().offset_x, 16.0);
        assert_geometry_matches_pixels(&config, &landscape, [0.0; 3]);
        let portrait = coordinate_image(64, 128);
        assert_eq!(config.geometry(&portrait).unwrap().offset_y, 32.0);
        assert_geometry_matches_pixels(&config, &portrait, [0.0; 3]);
    }

    #[test]
    fn pad_to_square_then_resize_lands_on_the_pixels_preprocessing_copies() {
        let config = config(&format!(
            r#"{{"image_processor_type": "LlavaImageProcessor", "do_pad": true,
                "size": {{"shortest_edge": 32}}, "do_center_crop": false, {RAW_NEAREST}}}"#
        ));
        let portrait = coordinate_image(32, 64);
        let geometry = config.geometry(&portrait).unwrap();
        assert_eq!(
            (geometry.scale_x, geometry.offset_x, geometry.offset_y),
            (2.0, -16.0, 0.0)
        );
        assert_eq!(geometry.content, [0, 0, 32, 32]);
        // The pad colour: int(CLIP mean × 255).
        assert_geometry_matches_pixels(&config, &portrait, [122.0, 116.0, 104.0]);
        assert_geometry_matches_pixels(&config, &coordinate_image(64, 34), [122.0, 116.0, 104.0]);
    }

    #[test]
    fn padding_crops_and_final_padding_bound_the_content() {
        // A crop larger than the image pads it on both sides: floor((8 - 12) / 2) = -2.
        let small = config(r#"{"size": {"shortest_edge": 8}, "crop_size": 12}"#);
        let geometry = small.geometry(&coordinate_image(8, 8)).unwrap();
        assert_eq!((geometry.offset_x, geometry.offset_y), (-2.0, -2.0));
        assert_eq!(geometry.content, [2, 2, 10, 10]);

        // Padding to `pad_size` below and to the right leaves the origin where it was.
        let padded = config(r#"{"do_pad": true, "pad_size": 40, "size": {"shortest_edge": 32}, "crop_size": 32}"#);
        let geometry = padded.geometry(&coordinate_image(64, 32)).unwrap();
        assert_eq!((geometry.canvas_width, geometry.canvas_height), (40, 40));
        assert_eq!(
            (geometry.scale_x, geometry.offset_x, geometry.offset_y),
            (1.0, 16.0, 0.0)
        );
        assert_eq!(geometry.content, [0, 0, 32, 32]);
    }
}
