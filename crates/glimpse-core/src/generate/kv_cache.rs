//! Key/value cache, one per layer.
//!
//! Each layer keeps its own length, and for every cached row the token it belongs to
//! (`origins`) and the RoPE position its key was rotated with (`positions`): token
//! reduction leaves layers with different survivors, and each survivor keeps its position.

use crate::backend::Backend;
use crate::error::{Error, Result};

pub struct LayerCache<B: Backend> {
    pub k: B::Tensor,
    pub v: B::Tensor,
    /// Rows in use; rows beyond it are preallocated capacity.
    pub len: usize,
    /// RoPE position of each cached row.
    pub positions: Vec<u32>,
    /// Identity of each cached row's token (see `reduce::Row::origin`).
    pub origins: Vec<u32>,
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
                    origins: Vec::with_capacity(capacity),
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
    pub fn append(
        &mut self,
        b: &B,
        layer: usize,
        k: &B::Tensor,
        v: &B::Tensor,
        positions: &[u32],
        origins: &[u32],
    ) -> Result<()> {
        let cache = &mut self.layers[layer];
        let n = positions.len();
        debug_assert_eq!(origins.len(), n);
        if cache.len + n > self.capacity {
            return Err(Error::internal(format!(
                "KV cache of layer {layer} is full ({} rows)",
                self.capacity
            )));
        }
        b.copy_rows(k, 0, &mut cache.k, cache.len, n);
        b.copy_rows(v, 0, &mut cache.v, cache.len, n);
        cache.positions.extend_from_slice(positions);
        cache.origins.extend_from_slice(origins);
        cache.len += n;
        Ok(())
    }

    /// Forgets the most recently appended row of a layer (a token that attended with its
    /// own key and value but is not admitted to the cache).
    pub fn pop(&mut self, layer: usize) {
        let cache = &mut self.layers[layer];
        if cache.len > 0 {
            cache.len -= 1;
            cache.positions.pop();
            cache.origins.pop();
        }
    }

    /// Keeps only the rows of `layer` whose origin `keep` accepts, in order; returns how
    /// many rows were removed.
    pub fn retain(&mut self, b: &B, layer: usize, mut keep: impl FnMut(u32) -> bool) -> usize {
        let cache = &mut self.layers[layer];
        let rows: Vec<usize> = (0..cache.len).filter(|&r| keep(cache.origins[r])).collect();
        let removed = cache.len - rows.len();
        if removed == 0 {
            return 0;
        }
        let capacity = self.capacity;
        for t in [&mut cache.k, &mut cache.v] {
            b.retain_rows(t, &rows);
            b.reserve_rows(t, capacity, self.width);
        }
        cache.positions = rows.iter().map(|&r| cache.positions[r]).collect();
        cache.origins = rows.iter().map(|&r| cache.origins[r]).collect();
        cache.len = rows.len();
        removed
    }

    /// Rows in use, summed over layers.
    pub fn rows_in_use(&self) -> usize {
        self.layers.iter().map(|l| l.len).sum()
    }

    /// Bytes of keys and values currently held (f32 rows), summed over layers.
    pub fn bytes_in_use(&self) -> usize {
        self.rows_in_use() * self.row_bytes()
    }

    /// Bytes one cached token occupies in one layer (its key and its value).
    pub fn row_bytes(&self) -> usize {
        self.width * 2 * std::mem::size_of::<f32>()
    }
}
