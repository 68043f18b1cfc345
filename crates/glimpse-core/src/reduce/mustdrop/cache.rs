//! MustDrop stage 3: the output-aware cache policy. After prefill, the caches of the
//! filter layers drop the visual tokens a later filter removed (they can no longer
//! influence the output); while decoding, visual tokens that the generated tokens keep
//! ignoring are evicted.

use std::collections::{HashMap, HashSet};

use crate::backend::Backend;
use crate::error::Result;
use crate::generate::kv_cache::KvCache;
use crate::reduce::stages::{CachePolicy, PrefillTrace};

pub(crate) struct OutputAwareCache {
    layers: Vec<usize>,
    /// Evict tokens whose accumulated attention falls below this share of the mean.
    evict: f64,
    /// Steps observed before anything is evicted.
    warmup: usize,
    steps: usize,
    /// Accumulated attention per surviving visual token (by origin).
    received: HashMap<u32, f64>,
    keys: HashSet<u32>,
}

impl OutputAwareCache {
    pub fn new(layers: Vec<usize>, evict: f64, warmup: usize) -> Self {
        OutputAwareCache {
            layers,
            evict,
            warmup,
            steps: 0,
            received: HashMap::new(),
            keys: HashSet::new(),
        }
    }

    fn first_layer(&self) -> usize {
        self.layers[0]
    }
}

impl<B: Backend> CachePolicy<B> for OutputAwareCache {
    fn after_prefill(&mut self, b: &B, trace: &PrefillTrace, cache: &mut KvCache<B>) -> Result<()> {
        let survivors: HashSet<u32> = trace.final_rows.rows.iter().map(|r| r.origin).collect();
        let last = *self.layers.last().unwrap_or(&0);
        for layer in self.first_layer()..=last.min(cache.layers.len() - 1) {
            cache.retain(b, layer, |origin| survivors.contains(&origin));
        }
        self.received = trace
            .final_rows
            .rows
            .iter()
            .filter(|r| r.vision.is_some())
            .map(|r| (r.origin, 0.0))
            .collect();
        self.keys = trace.key_origins.iter().copied().collect();
        Ok(())
    }

    fn watched_layers(&self) -> &[usize] {
        if self.evict > 0.0 {
            &self.layers
        } else {
            &[]
        }
    }

    fn after_step(&mut self, b: &B, watched: &[Vec<f32>], cache: &mut KvCache<B>) -> Result<Vec<u32>> {
        if watched.is_empty() || self.received.is_empty() {
            return Ok(Vec::new());
        }
        self.steps += 1;
        for (&layer, probs) in self.layers.iter().zip(watched) {
            for (origin, p) in cache.layers[layer].origins.iter().zip(probs) {
                if let Some(total) = self.received.get_mut(origin) {
                    *total += *p as f64 / watched.len() as f64;
                }
            }
        }
        if self.steps < self.warmup {
            return Ok(Vec::new());
        }
        let mean = self.received.values().sum::<f64>() / self.received.len() as f64;
        let mut evicted: Vec<u32> = self
            .received
            .iter()
            .filter(|(origin, &total)| !self.keys.contains(origin) && total < self.evict * mean)
            .map(|(&origin, _)| origin)
            .collect();
        evicted.sort_unstable();
        if evicted.is_empty() {
            return Ok(evicted);
        }
        let gone: HashSet<u32> = evicted.iter().copied().collect();
        for layer in self.first_layer()..cache.layers.len() {
            cache.retain(b, layer, |origin| !gone.contains(&origin));
        }
        self.received.retain(|origin, _| !gone.contains(origin));
        Ok(evicted)
    }
}
