//! Checkpoint tensors: safetensors files (single or sharded), memory-mapped.

use std::path::Path;

use crate::error::Result;

/// Storage type of a checkpoint tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

/// A borrowed view of one tensor inside a mapped file. `bytes` is little-endian and may
/// be unaligned.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

pub struct Weights {}

impl Weights {
    /// Opens `model.safetensors` or every shard named by `model.safetensors.index.json`.
    pub fn open(_dir: &Path) -> Result<Self> {
        todo!()
    }
    /// Looks a tensor up by its llava-hf on-disk name, also trying the other layouts.
    pub fn get(&self, _name: &str) -> Result<TensorView<'_>> {
        todo!()
    }
    /// Like [`Weights::get`], and checks the shape.
    pub fn get_shaped(&self, _name: &str, _shape: &[usize]) -> Result<TensorView<'_>> {
        todo!()
    }
    pub fn contains(&self, _name: &str) -> bool {
        todo!()
    }
}
