//! Key/value cache, one per layer.
//!
//! Each layer keeps its own length and the RoPE position of every cached row, so token
//! reduction can later leave layers with different survivors while each survivor keeps
//! its original position.

use crate::backend::Backend;
use crate::error::{Error, Result};

pub struct LayerCache<B: Backend> {
    pub k: B::Tensor,
    pub v: B::Tensor,
    /// Rows in use; rows beyond it are preallocated capacity.
    pub len: usize,
    /// Original sequence position of each cached row.
    pub positions: Vec<u32>,
}

pub struct KvCache<B: Backend> {
    pub layers: Vec<LayerCache<B>>,
    capacity: usize,
    width: usize,
}

impl<B: Backend> KvCache<B> {
    /// Preallocates `capacity` rows of `width` (= kv heads × head dim) per layer, so the
    /// decode loop never reallocates.
    pub fn new(b: &B, n_layers: usize, capacity: usize, width: usize) -> Self {
        let layers = (0..n_layers)
            .map(|_| {
                let (mut k, mut v) = (b.new_tensor(), b.new_tensor());
                b.reserve_rows(&mut k, capacity, width);
                b.reserve_rows(&mut v, capacity, width);
                LayerCache {
                    k,
                    v,
                    len: 0,
                    positions: Vec::with_capacity(capacity),
                }
            })
            .collect();
        KvCache {
            layers,
            capacity,
            width,
        }
    }

    /// Appends new keys/values (one row per token) to a layer.
    pub fn append(&mut self, b: &B, layer: usize, k: &B::Tensor, v: &B::Tensor, positions: &[u32]) -> Result<()> {
        let cache = &mut self.layers[layer];
        let n = positions.len();
        if cache.len + n > self.capacity {
            return Err(Error::internal(format!(
                "KV cache of layer {layer} is full ({} rows)",
                self.capacity
            )));
        }
        b.copy_rows(k, 0, &mut cache.k, cache.len, n);
        b.copy_rows(v, 0, &mut cache.v, cache.len, n);
        cache.positions.extend_from_slice(positions);
        cache.len += n;
        Ok(())
    }

    /// Bytes of keys and values currently held (f32 rows), summed over layers.
    pub fn bytes_in_use(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.len * self.width * 2 * std::mem::size_of::<f32>())
            .sum()
    }
}
