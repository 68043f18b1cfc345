//! Image preprocessing exactly as the checkpoint's image processor config says.
//!
//! Reproduces transformers' PIL-backend image processors (`CLIPImageProcessor`,
//! `LlavaImageProcessor`) on 8-bit RGB input, step for step:
//!
//! 1. `LlavaImageProcessor` with `do_pad` (or [`SquarePad::MeanColour`], for original
//!    LLaVA checkpoints): pad to a centred square filled with the mean colour (uint8).
//! 2. Resize with Pillow (uint8), to `{height, width}` or so the shortest edge matches.
//! 3. Centre crop (uint8), zero-padding any axis shorter than the crop.
//! 4. Rescale (computed in `f64`, stored as `f32`) and normalise (`f32`), channels first.
//! 5. Other processors with `do_pad` and a `pad_size`: zeros below and to the right.
//!
//! Steps 2 and 3 are fused: only the part of the resized image the crop keeps is computed,
//! which gives the same values (see `resample`) without building a large intermediate.

mod canvas;
mod config;
mod geometry;
mod normalize;
mod resample;
mod tiles;

#[cfg(test)]
mod tests;

use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::anyres;

pub use self::geometry::ImageGeometry;
use self::normalize::PixelMap;
use self::resample::Filter;

/// A decoded image: 8-bit RGB, row-major, no padding between rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// A height and width in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Size {
    height: usize,
    width: usize,
}

impl Size {
    fn of(image: &RgbImage) -> Size {
        Size {
            height: image.height as usize,
            width: image.width as usize,
        }
    }
}

/// The size a resize aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResizeTarget {
    /// Scale so the shorter side has this length, the longer one truncated.
    ShortestEdge(usize),
    /// Exactly this size, ignoring the aspect ratio.
    Exact(Size),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resize {
    target: ResizeTarget,
    filter: Filter,
}

/// Whether images are padded to a square before the processor's own steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SquarePad {
    /// As the processor config says (`LlavaImageProcessor` with `do_pad`).
    AsConfigured,
    /// Always, centred on the mean colour: original LLaVA's `image_aspect_ratio: "pad"`,
    /// which pads before handing the image to a plain `CLIPImageProcessor`.
    MeanColour,
}

/// The preprocessing one checkpoint asks for, with each optional step resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    /// Background of the pad-to-square step (`LlavaImageProcessor` with `do_pad`).
    square_pad: Option<[u8; 3]>,
    resize: Option<Resize>,
    center_crop: Option<Size>,
    pixel_map: PixelMap,
    /// Final zero padding to `pad_size` (the generic `do_pad` of other processors).
    pad_to: Option<Size>,
    /// The size every preprocessed image has; the vision tower needs it fixed.
    output: Size,
    /// LLaVA-NeXT's `image_grid_pinpoints`: the tile grids an image may be cut into.
    pinpoints: Option<Vec<anyres::Size>>,
}

/// Whether a config may ask for any-resolution tiling (`image_grid_pinpoints`): only the
/// LLaVA-NeXT path reads it; a single-tile model refuses such a processor when it loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiling {
    Refuse,
    Accept,
}

impl ImageProcessorConfig {
    /// Reads preprocessor_config.json or processor_config.json.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        config::read_dir(dir, SquarePad::AsConfigured, Tiling::Refuse)
    }

    /// A LLaVA-NeXT processor: like [`ImageProcessorConfig::from_dir`], and reads the tile
    /// grids of `image_grid_pinpoints` (see [`ImageProcessorConfig::preprocess_tiles`]).
    pub fn from_dir_tiled(dir: &Path) -> Result<Self> {
        config::read_dir(dir, SquarePad::AsConfigured, Tiling::Accept)
    }

    /// Like [`ImageProcessorConfig::from_dir`], with the pad-to-square step chosen by `pad`.
    pub fn from_dir_with(dir: &Path, pad: SquarePad) -> Result<Self> {
        config::read_dir(dir, pad, Tiling::Refuse)
    }

    /// Parses the text of a preprocessor_config.json; `source` names it in error messages.
    pub fn from_json_str(text: &str, source: &str) -> Result<Self> {
        config::parse_text(text, source, SquarePad::AsConfigured, Tiling::Refuse)
    }

    /// Like [`ImageProcessorConfig::from_json_str`], with the pad-to-square step chosen by `pad`.
    pub fn from_json_str_with(text: &str, source: &str, pad: SquarePad) -> Result<Self> {
        config::parse_text(text, source, pad, Tiling::Refuse)
    }

    /// (height, width) of the pixel tensor this config produces.
    pub fn output_size(&self) -> (usize, usize) {
        (self.output.height, self.output.width)
    }

    /// Returns pixel values in CHW order, `3 × height × width`, f32.
    pub fn preprocess(&self, image: &RgbImage) -> Result<Vec<f32>> {
        validate(image)?;
        let padded;
        let source = match self.square_pad {
            Some(background) => {
                padded = canvas::pad_to_square(image, background);
                &padded
            }
            None => image,
        };
        let resized = self.resized_size(Size::of(source))?;
        let pixels = match self.center_crop {
            Some(crop) => {
                let (rows, top) = canvas::crop_axis(resized.height, crop.height);
                let (cols, left) = canvas::crop_axis(resized.width, crop.width);
                let kept = self.resized_region(source, resized, cols, rows);
                canvas::place(&kept, crop, top, left)
            }
            None => self.resized_region(source, resized, 0..resized.width, 0..resized.height),
        };
        let values = self.pixel_map.to_chw(&pixels);
        match self.pad_to {
            Some(target) => canvas::pad_values_bottom_right(values, &pixels, target),
            None => Ok(values),
        }
    }

    /// An image of size `image` after the resize step (its own size when there is none),
    /// following transformers' `get_resize_output_image_size` with `default_to_square=False`.
    fn resized_size(&self, image: Size) -> Result<Size> {
        let Size { height, width } = image;
        let Some(resize) = self.resize else {
            return Ok(image);
        };
        let size = match resize.target {
            ResizeTarget::Exact(size) => size,
            ResizeTarget::ShortestEdge(edge) => {
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                // Python: int(edge * long / short), a true division truncated toward zero.
                let new_long = ((edge as u64 * long as u64) as f64 / short as f64) as usize;
                if width <= height {
                    Size {
                        height: new_long,
                        width: edge,
                    }
                } else {
                    Size {
                        height: edge,
                        width: new_long,
                    }
                }
            }
        };
        // Pillow stores sizes in C ints.
        if size.height > i32::MAX as usize || size.width > i32::MAX as usize {
            return Err(Error::input(format!(
                "image of {width}x{height} pixels would be resized to {}x{}, too large to process",
                size.width, size.height
            )));
        }
        Ok(size)
    }

    /// The rectangle `cols` × `rows` of `image` after the resize step.
    fn resized_region(&self, image: &RgbImage, resized: Size, cols: Range<usize>, rows: Range<usize>) -> RgbImage {
        match self.resize {
            Some(resize) => resample::resize_region(image, resized.width, resized.height, resize.filter, cols, rows),
            None => resample::copy_region(&image.data, image.width as usize, cols, rows),
        }
    }
}

/// Rejects images whose buffer does not hold exactly `width × height` RGB pixels.
fn validate(image: &RgbImage) -> Result<()> {
    if image.width == 0 || image.height == 0 {
        return Err(Error::input(format!(
            "image is empty ({}x{} pixels)",
            image.width, image.height
        )));
    }
    let expected = (image.width as usize)
        .checked_mul(image.height as usize)
        .and_then(|pixels| pixels.checked_mul(3));
    if expected != Some(image.data.len()) {
        return Err(Error::input(format!(
            "image data has {} bytes, but {}x{} RGB pixels need {}",
            image.data.len(),
            image.width,
            image.height,
            expected.map_or_else(|| "more than fit in memory".to_string(), |n| n.to_string())
        )));
    }
    Ok(())
}
