//! Device storage: activation matrices, weights, and growable scratch buffers.

use super::device::Device;
use crate::error::{Error, Result};
use crate::model::weights::{DType, TensorView};

/// A row-major f32 matrix in device memory. Like the CPU tensor it keeps its allocation
/// when it shrinks, so buffers reused across decode steps stop allocating.
pub struct GpuTensor<D: Device> {
    pub(crate) buffer: Option<D::Buffer>,
    /// Floats the allocation holds.
    pub(crate) capacity: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl<D: Device> GpuTensor<D> {
    pub(crate) fn empty() -> Self {
        GpuTensor {
            buffer: None,
            capacity: 0,
            rows: 0,
            cols: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Address of element (row, 0); 0 for a tensor without an allocation (which no
    /// launch reads: every launch over zero elements is skipped).
    pub(crate) fn row_address(&self, device: &D, row: usize) -> u64 {
        self.buffer
            .as_ref()
            .map_or(0, |b| device.address(b) + (row * self.cols * 4) as u64)
    }

    pub(crate) fn address(&self, device: &D) -> u64 {
        self.row_address(device, 0)
    }

    /// Makes the tensor `rows × cols`, growing the allocation when needed; the first
    /// `keep_rows` rows (at the old width, which must equal the new one) survive growth.
    pub(crate) fn resize(&mut self, device: &D, rows: usize, cols: usize, keep_rows: usize) -> Result<()> {
        let needed = rows * cols;
        let keep = keep_rows.min(self.rows).min(rows) * cols;
        self.rows = rows;
        self.cols = cols;
        if needed <= self.capacity {
            return Ok(());
        }
        let buffer = device.alloc(needed * 4).map_err(|e| out_of_memory(e, needed * 4))?;
        if keep > 0 {
            if let Some(old) = &self.buffer {
                device.copy(device.address(old), device.address(&buffer), keep * 4)?;
            }
        }
        self.buffer = Some(buffer);
        self.capacity = needed;
        Ok(())
    }
}

fn out_of_memory(e: Error, bytes: usize) -> Error {
    Error::internal(format!(
        "cannot allocate {:.1} MiB of GPU memory: {}",
        bytes as f64 / (1024.0 * 1024.0),
        e.message
    ))
}

/// A parameter tensor in device memory, as a matrix (dimension 0 is rows, the rest are
/// flattened into columns; a 1-D tensor is one row).
pub struct GpuWeight<D: Device> {
    pub(crate) buffer: D::Buffer,
    pub(crate) dtype: DType,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl<D: Device> GpuWeight<D> {
    /// Uploads a checkpoint tensor in `storage` type (`None`: the checkpoint's). Vectors
    /// (norm scales, biases) are then widened to f32, as the CPU backend does, so every
    /// row-wise kernel reads them in f32; they are a negligible share of the bytes.
    pub(crate) fn upload(device: &D, view: &TensorView<'_>, storage: Option<DType>) -> Result<Self> {
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
        let store = |stored: &TensorView<'_>| -> Result<D::Buffer> {
            let buffer = device.alloc(stored.bytes.len()).map_err(|e| {
                let e = out_of_memory(e, stored.bytes.len());
                Error::new(e.kind, format!("weight '{}': {}", view.name, e.message))
            })?;
            device.write(device.address(&buffer), stored.bytes)?;
            Ok(buffer)
        };
        // A vector goes through the storage type first, so it holds the same values as
        // on the CPU backend, which converts every tensor and then widens vectors.
        let (buffer, dtype) = view.with_storage(storage, |stored| {
            if rows == 1 {
                stored
                    .with_storage(Some(DType::F32), |wide| store(wide))
                    .map(|b| (b, DType::F32))
            } else {
                store(stored).map(|b| (b, stored.dtype))
            }
        })?;
        Ok(GpuWeight {
            buffer,
            dtype,
            rows,
            cols,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.rows * self.cols
    }

    pub(crate) fn bytes(&self) -> usize {
        self.len() * self.dtype.size()
    }

    pub(crate) fn address(&self, device: &D) -> u64 {
        device.address(&self.buffer)
    }
}

/// A device buffer reused by one kind of temporary data (16-bit copies of matrix inputs,
/// index lists, partial attention results), grown on demand and never shrunk.
pub(crate) struct Scratch<D: Device> {
    buffer: Option<D::Buffer>,
    bytes: usize,
}

impl<D: Device> Scratch<D> {
    pub(crate) fn new() -> Self {
        Scratch { buffer: None, bytes: 0 }
    }

    /// The address of at least `bytes` bytes. Work queued earlier that still reads the
    /// old contents runs first: the device orders everything on one stream, and freeing
    /// a replaced buffer is ordered too.
    pub(crate) fn reserve(&mut self, device: &D, bytes: usize) -> Result<u64> {
        if bytes > self.bytes || self.buffer.is_none() {
            // Room to grow a little, so slowly growing requests (one more cached key per
            // decode step) do not reallocate every time.
            let size = bytes.max(self.bytes + self.bytes / 2).max(256);
            self.buffer = None;
            self.buffer = Some(device.alloc(size).map_err(|e| out_of_memory(e, size))?);
            self.bytes = size;
        }
        Ok(self.buffer.as_ref().map_or(0, |b| device.address(b)))
    }

    /// Writes `data` into the buffer and returns its address.
    pub(crate) fn upload(&mut self, device: &D, data: &[u8]) -> Result<u64> {
        let address = self.reserve(device, data.len())?;
        device.write(address, data)?;
        Ok(address)
    }
}
