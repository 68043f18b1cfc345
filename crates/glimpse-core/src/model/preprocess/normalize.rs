//! Rescale and normalise uint8 pixels into the model's float input, channels first.

use super::RgbImage;

/// Per-channel mean and standard deviation, already rounded to `f32` as numpy does when it
/// builds `np.array(mean, dtype=image.dtype)` for a float32 image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// How a uint8 channel value becomes a model input value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelMap {
    /// `do_rescale`: multiply by this factor.
    pub rescale_factor: Option<f64>,
    /// `do_normalize`: subtract the mean, divide by the std.
    pub normalize: Option<Normalize>,
}

impl PixelMap {
    /// The value for `level` in `channel`, with transformers' precision at each step:
    /// `rescale` multiplies in float64 and stores float32; `normalize` works in float32.
    fn value(&self, channel: usize, level: u8) -> f32 {
        let x = match self.rescale_factor {
            Some(factor) => (level as f64 * factor) as f32,
            None => level as f32,
        };
        match self.normalize {
            Some(n) => (x - n.mean[channel]) / n.std[channel],
            None => x,
        }
    }

    /// Maps an interleaved RGB image to planar CHW floats.
    pub fn to_chw(self, image: &RgbImage) -> Vec<f32> {
        // A value depends only on (channel, level): a 3 × 256 table makes this exact and cheap.
        let table: Vec<[f32; 256]> = (0..3)
            .map(|channel| std::array::from_fn(|level| self.value(channel, level as u8)))
            .collect();
        let plane = image.width as usize * image.height as usize;
        let mut out = vec![0f32; 3 * plane];
        let (red, rest) = out.split_at_mut(plane);
        let (green, blue) = rest.split_at_mut(plane);
        for (i, px) in image.data.chunks_exact(3).enumerate() {
            red[i] = table[0][px[0] as usize];
            green[i] = table[1][px[1] as usize];
            blue[i] = table[2][px[2] as usize];
        }
        out
    }
}
