//! Host-memory storage for the CPU backend.

use half::{bf16, f16};

use super::simd::{dot, dot_bf16, dot_f16, widen_bf16, widen_f16};
use crate::error::{Error, Result};
use crate::model::weights::{DType, TensorView};

/// A row-major f32 matrix. Resizing keeps the allocation, so buffers reused across decode
/// steps stop allocating after the first step.
#[derive(Debug, Clone, Default)]
pub struct CpuTensor {
    pub(crate) data: Vec<f32>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl CpuTensor {
    pub(crate) fn resize(&mut self, rows: usize, cols: usize) {
        self.data.resize(rows * cols, 0.0);
        self.rows = rows;
        self.cols = cols;
    }

    pub(crate) fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// Weight elements in the checkpoint's storage type.
#[derive(Debug)]
pub enum WeightData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

/// A parameter tensor viewed as a matrix: dimension 0 is rows, the rest are flattened
/// into columns (a 1-D tensor is one row).
#[derive(Debug)]
pub struct CpuWeight {
    pub(crate) data: WeightData,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl CpuWeight {
    pub(crate) fn from_view(view: &TensorView<'_>) -> Result<Self> {
        let (rows, cols) = match view.shape {
            [] => (1, 1),
            [n] => (1, *n),
            [r, rest @ ..] => (*r, rest.iter().product()),
        };
        let expected = rows * cols * view.dtype.size();
        if view.bytes.len() != expected {
            return Err(Error::model(format!(
                "tensor '{}' holds {} bytes, its shape {:?} needs {}",
                view.name,
                view.bytes.len(),
                view.shape,
                expected
            )));
        }
        // pod_collect_to_vec copies, so unaligned checkpoint bytes are fine.
        let data = match view.dtype {
            DType::F32 => WeightData::F32(bytemuck::pod_collect_to_vec(view.bytes)),
            DType::F16 => WeightData::F16(bytemuck::pod_collect_to_vec(view.bytes)),
            DType::BF16 => WeightData::BF16(bytemuck::pod_collect_to_vec(view.bytes)),
        };
        // Vectors (norm scales, biases, embeddings of one row) are tiny: widen them once
        // here so row-wise kernels read f32 directly instead of converting every call.
        let data = match data {
            WeightData::F16(_) | WeightData::BF16(_) if rows == 1 => {
                let mut widened = vec![0f32; cols];
                read_into(&data, 0, &mut widened);
                WeightData::F32(widened)
            }
            other => other,
        };
        Ok(CpuWeight { data, rows, cols })
    }

    pub(crate) fn bytes(&self) -> usize {
        match &self.data {
            WeightData::F32(v) => v.len() * 4,
            WeightData::F16(v) => v.len() * 2,
            WeightData::BF16(v) => v.len() * 2,
        }
    }

    /// Widens elements `start..start + out.len()` (flat index) to f32.
    pub(crate) fn read_f32(&self, start: usize, out: &mut [f32]) {
        read_into(&self.data, start, out);
    }

    /// `x · row j`, reading the row in its storage type (no widened copy).
    pub(crate) fn dot_row(&self, j: usize, x: &[f32]) -> f32 {
        let row = j * self.cols..(j + 1) * self.cols;
        match &self.data {
            WeightData::F32(v) => dot(x, &v[row]),
            WeightData::F16(v) => dot_f16(x, &v[row]),
            WeightData::BF16(v) => dot_bf16(x, &v[row]),
        }
    }

    /// The weight as f32 when it already is f32 (no copy needed).
    pub(crate) fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            WeightData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// A one-row weight (norm scale, bias), which loading always stores as f32.
    pub(crate) fn vector(&self) -> &[f32] {
        match (&self.data, self.rows) {
            (WeightData::F32(v), 1) => v,
            _ => panic!(
                "vector(): weight is a {}×{} matrix or not widened",
                self.rows, self.cols
            ),
        }
    }
}

fn read_into(data: &WeightData, start: usize, out: &mut [f32]) {
    let end = start + out.len();
    match data {
        WeightData::F32(v) => out.copy_from_slice(&v[start..end]),
        WeightData::F16(v) => widen_f16(&v[start..end], out),
        WeightData::BF16(v) => widen_bf16(&v[start..end], out),
    }
}
