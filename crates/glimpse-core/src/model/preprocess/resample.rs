//! Pillow's `Image.resize` for 8-bit RGB, reproduced bit for bit.
//!
//! Checkpoints were trained on pixels that Pillow produced, and transformers' PIL-backend
//! processors still resize through it, so the vision tower only sees the same input when we
//! follow Pillow's arithmetic exactly:
//!
//! * Filters other than nearest are separable convolutions. For each output index the
//!   filter is centred on the output pixel's centre mapped into the source, stretched by the
//!   downscale factor (so it averages every covered source pixel), cut to the source
//!   bounds and normalised to sum 1, all in `f64`.
//! * Weights become fixed point with 22 fractional bits; each pass accumulates in `i32`
//!   starting from one half, shifts right and clamps to 0..=255, so the first pass is
//!   rounded to 8 bits before the second reads it. The horizontal pass goes first unless
//!   the height shrinks by more than twice as many pixels as the width (a rule Pillow 13
//!   introduced; earlier versions always went horizontal first and differ there).
//! * A pass whose axis keeps its size is skipped, and an unchanged size is a plain copy.
//! * Nearest samples the source at positions accumulated by repeated `f64` addition.
//!
//! Every output pixel depends only on its own row and column weights, so any rectangle of
//! the resized image can be computed alone with identical values. The preprocessing uses
//! that to resize only what the centre crop keeps.

use std::ops::Range;

use rayon::prelude::*;

use super::RgbImage;

/// Pillow's resampling filters, named by the ids transformers stores as `resample`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Filter {
    /// Maps Pillow's `Resampling` value (0..=5) to a filter.
    pub fn from_pil_id(id: i64) -> Option<Filter> {
        Some(match id {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => return None,
        })
    }

    /// Half-width of the kernel at scale 1, in source pixels.
    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
            // Never used as a convolution; see `nearest_region`.
            Filter::Nearest => 0.0,
        }
    }

    /// The kernel, written with the same operations in the same order as Pillow's C so that
    /// the `f64` results (and thus the rounded fixed-point weights) agree exactly.
    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    // Pillow writes these constants as C floats, so they carry f32 rounding.
                    x.sin() / x * (0.54f32 as f64 + 0.46f32 as f64 * x.cos())
                }
            }
            Filter::Bicubic => {
                // Keys' cubic convolution with a = -0.5.
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
            Filter::Nearest => 0.0,
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// Fractional bits of the fixed-point weights: an `i32` sum keeps 8 bits for the pixel
/// value and 2 bits of headroom, because kernels with negative lobes overshoot 0..=255.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Turns an accumulated fixed-point sum into a pixel value.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Fixed-point weights of one axis, for a contiguous range of output indices.
struct AxisWeights {
    /// First source index read by each output index.
    starts: Vec<usize>,
    /// Number of source indices read by each output index.
    lens: Vec<usize>,
    /// `stride` weights per output index; only the first `lens[i]` are meaningful.
    weights: Vec<i32>,
    stride: usize,
}

impl AxisWeights {
    /// Weights for output indices `outputs` of an axis resized from `in_size` to `out_size`.
    fn new(filter: Filter, in_size: usize, out_size: usize, outputs: Range<usize>) -> Self {
        // Pillow passes the source box as C floats, hence the f32 step.
        let scale = (in_size as f32) as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = filter.support() * filter_scale;
        let stride = support.ceil() as usize * 2 + 1;
        let inv_filter_scale = 1.0 / filter_scale;
        let one = (1u32 << PRECISION_BITS) as f64;

        let count = outputs.len();
        let mut starts = Vec::with_capacity(count);
        let mut lens = Vec::with_capacity(count);
        let mut weights = vec![0i32; count * stride];
        let mut raw = vec![0f64; stride];
        for (slot, out_index) in outputs.enumerate() {
            let center = (out_index as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero; both ends are then clamped to the source.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let len = end.saturating_sub(first).min(stride);

            let mut total = 0.0;
            for (tap, w) in raw[..len].iter_mut().enumerate() {
                *w = filter.weight(((first + tap) as f64 - center + 0.5) * inv_filter_scale);
                total += *w;
            }
            let fixed = &mut weights[slot * stride..slot * stride + len];
            for (dst, &w) in fixed.iter_mut().zip(&raw[..len]) {
                let w = if total != 0.0 { w / total } else { w };
                *dst = if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                };
            }
            starts.push(first);
            lens.push(len);
        }
        AxisWeights {
            starts,
            lens,
            weights,
            stride,
        }
    }

    fn taps(&self, slot: usize) -> (usize, &[i32]) {
        let from = slot * self.stride;
        (self.starts[slot], &self.weights[from..from + self.lens[slot]])
    }

    /// The source indices read by all outputs together (starts and ends never decrease).
    fn source_span(&self) -> Range<usize> {
        match (self.starts.first(), self.starts.last(), self.lens.last()) {
            (Some(&first), Some(&last), Some(&len)) => first..last + len,
            _ => 0..0,
        }
    }
}

/// Returns the rectangle `cols` × `rows` of `image` resized to `out_width` × `out_height`.
///
/// The ranges must lie within the output size.
pub fn resize_region(
    image: &RgbImage,
    out_width: usize,
    out_height: usize,
    filter: Filter,
    cols: Range<usize>,
    rows: Range<usize>,
) -> RgbImage {
    let (in_width, in_height) = (image.width as usize, image.height as usize);
    debug_assert!(cols.end <= out_width && rows.end <= out_height);
    let resizes = (out_width, out_height) != (in_width, in_height);
    if filter == Filter::Nearest && resizes {
        return nearest_region(image, out_width, out_height, cols, rows);
    }

    let horizontal = (out_width != in_width).then(|| AxisWeights::new(filter, in_width, out_width, cols.clone()));
    let vertical = (out_height != in_height).then(|| AxisWeights::new(filter, in_height, out_height, rows.clone()));
    let source = View {
        data: &image.data,
        width: in_width,
        first_row: 0,
        first_col: 0,
    };
    match (horizontal, vertical) {
        (None, None) => copy_region(&image.data, in_width, cols, rows),
        (Some(horizontal), None) => horizontal_pass(&source, rows, &horizontal),
        (None, Some(vertical)) => vertical_pass(&source, cols, &vertical),
        (Some(horizontal), Some(vertical)) => {
            // Pillow 13 runs the vertical pass first when the height loses more than twice
            // as many pixels as the width; the order changes the intermediate rounding.
            let height_loss = in_height as i64 - out_height as i64;
            let width_loss = in_width as i64 - out_width as i64;
            if height_loss > 0 && height_loss > width_loss * 2 {
                let needed_cols = horizontal.source_span();
                let stage = vertical_pass(&source, needed_cols.clone(), &vertical);
                let stage = View {
                    data: &stage.data,
                    width: needed_cols.len(),
                    first_row: rows.start,
                    first_col: needed_cols.start,
                };
                horizontal_pass(&stage, rows, &horizontal)
            } else {
                let needed_rows = vertical.source_span();
                let stage = horizontal_pass(&source, needed_rows.clone(), &horizontal);
                let stage = View {
                    data: &stage.data,
                    width: cols.len(),
                    first_row: needed_rows.start,
                    first_col: cols.start,
                };
                vertical_pass(&stage, cols, &vertical)
            }
        }
    }
}

/// Part of an image plane: `data` holds rows of `width` RGB pixels, starting at row
/// `first_row` and column `first_col` of the plane.
struct View<'a> {
    data: &'a [u8],
    width: usize,
    first_row: usize,
    first_col: usize,
}

impl View<'_> {
    /// The bytes of plane row `row` from plane column `col` to the end of the view.
    fn row_from(&self, row: usize, col: usize) -> &[u8] {
        let start = (row - self.first_row) * self.width * 3;
        &self.data[start + (col - self.first_col) * 3..start + self.width * 3]
    }
}

/// Resamples plane rows `rows` of `view` along x into a `weights`-wide image.
fn horizontal_pass(view: &View, rows: Range<usize>, weights: &AxisWeights) -> RgbImage {
    let out_width = weights.starts.len();
    let mut out = vec![0u8; rows.len() * out_width * 3];
    if !out.is_empty() {
        out.par_chunks_mut(out_width * 3)
            .zip(rows.clone())
            .for_each(|(out_row, row)| {
                for (slot, out_px) in out_row.chunks_exact_mut(3).enumerate() {
                    let (start, taps) = weights.taps(slot);
                    let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                    for (px, &k) in view.row_from(row, start).chunks_exact(3).zip(taps) {
                        acc[0] += px[0] as i32 * k;
                        acc[1] += px[1] as i32 * k;
                        acc[2] += px[2] as i32 * k;
                    }
                    out_px[0] = clip8(acc[0]);
                    out_px[1] = clip8(acc[1]);
                    out_px[2] = clip8(acc[2]);
                }
            });
    }
    RgbImage {
        width: out_width as u32,
        height: rows.len() as u32,
        data: out,
    }
}

/// Resamples plane columns `cols` of `view` along y into a `weights`-tall image.
fn vertical_pass(view: &View, cols: Range<usize>, weights: &AxisWeights) -> RgbImage {
    let out_height = weights.starts.len();
    let row_len = cols.len() * 3;
    let mut out = vec![0u8; out_height * row_len];
    if !out.is_empty() {
        out.par_chunks_mut(row_len).enumerate().for_each_init(
            || vec![0i32; row_len],
            |acc, (slot, out_row)| {
                let (start, taps) = weights.taps(slot);
                acc.fill(1 << (PRECISION_BITS - 1));
                for (tap, &k) in taps.iter().enumerate() {
                    let line = &view.row_from(start + tap, cols.start)[..row_len];
                    // Channels are independent, so the interleaved bytes are summed alike.
                    for (a, &v) in acc.iter_mut().zip(line) {
                        *a += v as i32 * k;
                    }
                }
                for (dst, &a) in out_row.iter_mut().zip(acc.iter()) {
                    *dst = clip8(a);
                }
            },
        );
    }
    RgbImage {
        width: cols.len() as u32,
        height: out_height as u32,
        data: out,
    }
}

/// Pillow's nearest-neighbour resize (an affine scale with source positions accumulated
/// step by step; positions outside the source leave black pixels).
fn nearest_region(
    image: &RgbImage,
    out_width: usize,
    out_height: usize,
    cols: Range<usize>,
    rows: Range<usize>,
) -> RgbImage {
    let (in_width, in_height) = (image.width as usize, image.height as usize);
    let source_x = nearest_positions(in_width, out_width, cols.end);
    let source_y = nearest_positions(in_height, out_height, rows.end);
    let row_len = cols.len() * 3;
    let mut out = vec![0u8; rows.len() * row_len];
    if row_len == 0 {
        return RgbImage {
            width: 0,
            height: rows.len() as u32,
            data: out,
        };
    }
    for (out_row, sy) in out.chunks_exact_mut(row_len).zip(&source_y[rows.clone()]) {
        let Some(sy) = *sy else { continue };
        let in_row = &image.data[sy * in_width * 3..(sy + 1) * in_width * 3];
        for (out_px, sx) in out_row.chunks_exact_mut(3).zip(&source_x[cols.clone()]) {
            if let Some(sx) = *sx {
                out_px.copy_from_slice(&in_row[sx * 3..sx * 3 + 3]);
            }
        }
    }
    RgbImage {
        width: cols.len() as u32,
        height: rows.len() as u32,
        data: out,
    }
}

/// Source index of each of the first `count` output indices along one axis.
fn nearest_positions(in_size: usize, out_size: usize, count: usize) -> Vec<Option<usize>> {
    let step = (in_size as f32) as f64 / out_size as f64;
    let mut position = step * 0.5;
    (0..count)
        .map(|_| {
            let index = if position < 0.0 { -1 } else { position as i64 };
            position += step;
            (index >= 0 && (index as usize) < in_size).then_some(index as usize)
        })
        .collect()
}

/// Copies the rectangle `cols` × `rows` out of rows of `width` pixels.
pub fn copy_region(data: &[u8], width: usize, cols: Range<usize>, rows: Range<usize>) -> RgbImage {
    let mut out = Vec::with_capacity(cols.len() * rows.len() * 3);
    for row in rows.clone() {
        let base = row * width * 3;
        out.extend_from_slice(&data[base + cols.start * 3..base + cols.end * 3]);
    }
    RgbImage {
        width: cols.len() as u32,
        height: rows.len() as u32,
        data: out,
    }
}
