//! Image preprocessing exactly as the checkpoint's image processor config says.

use std::path::Path;

use crate::error::Result;

/// A decoded image: 8-bit RGB, row-major, no padding between rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

pub struct ImageProcessorConfig {}

impl ImageProcessorConfig {
    /// Reads preprocessor_config.json or processor_config.json.
    pub fn from_dir(_dir: &Path) -> Result<Self> {
        todo!()
    }
    /// (height, width) of the pixel tensor this config produces.
    pub fn output_size(&self) -> (usize, usize) {
        todo!()
    }
    /// Returns pixel values in CHW order, `3 × height × width`, f32.
    pub fn preprocess(&self, _image: &RgbImage) -> Result<Vec<f32>> {
        todo!()
    }
}
