//! Padding and centre-crop geometry, with transformers' offset rounding.

use std::ops::Range;

use super::{RgbImage, Size};
use crate::error::{Error, Result};

/// `LlavaImageProcessor.pad_to_square`: the image centred on a square of `background`,
/// the free space split with the extra pixel (for odd differences) after the image.
pub fn pad_to_square(image: &RgbImage, background: [u8; 3]) -> RgbImage {
    let (width, height) = (image.width as usize, image.height as usize);
    if width == height {
        return image.clone();
    }
    let side = width.max(height);
    let (top, left) = if width > height {
        ((side - height) / 2, 0)
    } else {
        (0, (side - width) / 2)
    };
    let mut data = background.repeat(side * side);
    for (y, row) in image.data.chunks_exact(width * 3).enumerate() {
        let start = ((top + y) * side + left) * 3;
        data[start..start + width * 3].copy_from_slice(row);
    }
    RgbImage {
        width: side as u32,
        height: side as u32,
        data,
    }
}

/// Centre crop of one axis from `size` to `crop` pixels, as transformers' `center_crop`
/// does it: the crop starts at `(size - crop) // 2` (floor division, negative when the crop
/// is larger, in which case the missing pixels are zeros). Returns the source range that
/// survives and where it lands in the crop.
pub fn crop_axis(size: usize, crop: usize) -> (Range<usize>, usize) {
    let offset = (size as i64 - crop as i64).div_euclid(2);
    let start = offset.max(0);
    let end = (offset + crop as i64).min(size as i64);
    (start as usize..end as usize, (start - offset) as usize)
}

/// A black `size` canvas with `part` pasted at (`top`, `left`).
pub fn place(part: &RgbImage, size: Size, top: usize, left: usize) -> RgbImage {
    let part_row = part.width as usize * 3;
    let mut data = vec![0u8; size.height * size.width * 3];
    if part_row > 0 {
        for (y, row) in part.data.chunks_exact(part_row).enumerate() {
            let start = ((top + y) * size.width + left) * 3;
            data[start..start + part_row].copy_from_slice(row);
        }
    }
    RgbImage {
        width: size.width as u32,
        height: size.height as u32,
        data,
    }
}

/// The PIL backend's generic `pad`: CHW `values` of an image shaped like `image`, extended
/// with zeros below and to the right up to `target`.
pub fn pad_values_bottom_right(values: Vec<f32>, image: &RgbImage, target: Size) -> Result<Vec<f32>> {
    let (width, height) = (image.width as usize, image.height as usize);
    if (height, width) == (target.height, target.width) {
        return Ok(values);
    }
    if height > target.height || width > target.width {
        return Err(Error::input(format!(
            "preprocessed image is {width}x{height} pixels, larger than the configured pad_size {}x{}",
            target.width, target.height
        )));
    }
    let mut padded = vec![0f32; 3 * target.height * target.width];
    for (channel_in, channel_out) in values
        .chunks_exact(height * width)
        .zip(padded.chunks_exact_mut(target.height * target.width))
    {
        for (row_in, row_out) in channel_in
            .chunks_exact(width)
            .zip(channel_out.chunks_exact_mut(target.width))
        {
            row_out[..width].copy_from_slice(row_in);
        }
    }
    Ok(padded)
}
