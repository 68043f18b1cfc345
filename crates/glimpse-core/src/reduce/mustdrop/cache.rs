//! MustDrop stage 3: the output-aware cache policy. After prefill, the caches of the
//! filter layers drop the visual tokens a later filter removed (they can no longer
//! influence the output); while decoding, visual tokens that the generated tokens keep
//! ignoring are evicted.
//!
//! The attention each cached row receives is summed on the backend, so a decode step does
//! not wait on the device for it: after the warm-up, a count of the rows below the
//! eviction threshold rides home with the next token id, and only a step whose count is
//! not zero reads the totals to decide which rows go.

use std::collections::HashSet;

use crate::backend::Backend;
use crate::error::Result;
use crate::generate::kv_cache::KvCache;
use crate::reduce::stages::{CachePolicy, PrefillTrace};

/// What a cached row is to the eviction rule (the values of the `roles` tensor).
const ROLE_TEXT: f32 = 0.0;
const ROLE_EVICTABLE: f32 = 1.0;
const ROLE_KEY: f32 = 2.0;

/// The device count is a trigger, the host's test on the read-back totals decides: a
/// slightly higher share on the device makes sure it never misses a row the host would
/// evict when the two sum the mean in different orders.
const TRIGGER_MARGIN: f64 = 1e-4;

pub(crate) struct OutputAwareCache<B: Backend> {
    layers: Vec<usize>,
    /// Evict tokens whose accumulated attention falls below this share of the mean.
    evict: f64,
    /// Steps observed before anything is evicted.
    warmup: usize,
    steps: usize,
    /// The backend's side, made once prefill is done.
    rows: Option<RowTallies<B>>,
    /// The role of each prompt row still cached, as in `RowTallies::roles`; rows past them
    /// are generated text.
    host_roles: Vec<f32>,
}

/// Per row of the watched layers' caches, on the backend (rows × 1 each).
struct RowTallies<B: Backend> {
    /// Attention received from the generated tokens.
    totals: B::Tensor,
    /// Role of each prompt row.
    roles: B::Tensor,
}

impl<B: Backend> OutputAwareCache<B> {
    pub fn new(layers: Vec<usize>, evict: f64, warmup: usize) -> Self {
        OutputAwareCache {
            layers,
            evict,
            warmup,
            steps: 0,
            rows: None,
            host_roles: Vec::new(),
        }
    }

    fn first_layer(&self) -> usize {
        self.layers[0]
    }

    fn watches(&self) -> bool {
        self.evict > 0.0 && self.host_roles.contains(&ROLE_EVICTABLE)
    }

    /// Rows (of the watched layers) whose totals fall below the eviction share of the mean
    /// over the visual rows, key tokens exempt: the host's rule, on the read-back totals.
    fn rows_to_evict(&self, totals: &[f32]) -> Vec<usize> {
        let visual = || {
            totals
                .iter()
                .zip(&self.host_roles)
                .enumerate()
                .filter(|(_, (_, &role))| role != ROLE_TEXT)
        };
        let (sum, n) = visual().fold((0f64, 0usize), |(sum, n), (_, (&t, _))| (sum + f64::from(t), n + 1));
        let threshold = self.evict * (sum / n.max(1) as f64);
        visual()
            .filter(|(_, (&t, &role))| role == ROLE_EVICTABLE && f64::from(t) < threshold)
            .map(|(row, _)| row)
            .collect()
    }
}

impl<B: Backend> CachePolicy<B> for OutputAwareCache<B> {
    fn after_prefill(&mut self, b: &B, trace: &PrefillTrace, cache: &mut KvCache<B>) -> Result<()> {
        let survivors: HashSet<u32> = trace.final_rows.rows.iter().map(|r| r.origin).collect();
        let last = *self.layers.last().unwrap_or(&0);
        for layer in self.first_layer()..=last.min(cache.layers.len() - 1) {
            cache.retain(b, layer, |origin| survivors.contains(&origin));
        }
        let visual: HashSet<u32> = trace
            .final_rows
            .rows
            .iter()
            .filter(|r| r.vision.is_some())
            .map(|r| r.origin)
            .collect();
        let keys: HashSet<u32> = trace.key_origins.iter().copied().collect();
        // Every watched layer now holds the same rows: the survivors, in order.
        self.host_roles = cache.layers[self.first_layer()]
            .origins
            .iter()
            .map(|origin| match (visual.contains(origin), keys.contains(origin)) {
                (false, _) => ROLE_TEXT,
                (true, false) => ROLE_EVICTABLE,
                (true, true) => ROLE_KEY,
            })
            .collect();
        let mut tallies = RowTallies {
            totals: b.new_tensor(),
            roles: b.new_tensor(),
        };
        b.upload(&self.host_roles, self.host_roles.len(), 1, &mut tallies.roles);
        self.rows = Some(tallies);
        Ok(())
    }

    fn watched_layers(&self) -> &[usize] {
        if self.evict > 0.0 {
            &self.layers
        } else {
            &[]
        }
    }

    fn attention_totals(&mut self) -> Option<&mut B::Tensor> {
        let rows = self.rows.as_mut().filter(|_| self.evict > 0.0)?;
        Some(&mut rows.totals)
    }

    fn after_step(&mut self, b: &B, verdict: &mut B::Tensor) -> bool {
        let Some(rows) = self.rows.as_ref().filter(|_| self.watches()) else {
            return false;
        };
        self.steps += 1;
        if self.steps < self.warmup {
            return false;
        }
        let share = (self.evict * (1.0 + TRIGGER_MARGIN)) as f32;
        b.count_evictable(&rows.totals, &rows.roles, share, verdict);
        true
    }

    fn evict(&mut self, b: &B, verdict: &[f32], cache: &mut KvCache<B>) -> Vec<u32> {
        let Some(rows) = self.rows.as_ref() else {
            return Vec::new();
        };
        if verdict.first().is_none_or(|&count| count == 0.0) {
            return Vec::new();
        }
        let gone_rows = self.rows_to_evict(&b.download(&rows.totals));
        if gone_rows.is_empty() {
            return Vec::new();
        }
        let origins = &cache.layers[self.first_layer()].origins;
        let mut evicted: Vec<u32> = gone_rows.iter().map(|&row| origins[row]).collect();
        evicted.sort_unstable();
        let gone: HashSet<u32> = evicted.iter().copied().collect();
        let kept: Vec<usize> = (0..origins.len())
            .filter(|&row| !gone.contains(&origins[row]))
            .collect();
        for layer in self.first_layer()..cache.layers.len() {
            cache.retain(b, layer, |origin| !gone.contains(&origin));
        }
        let kept_roles: Vec<usize> = kept
            .iter()
            .copied()
            .filter(|&row| row < self.host_roles.len())
            .collect();
        if let Some(rows) = self.rows.as_mut() {
            b.retain_rows(&mut rows.totals, &kept);
            b.retain_rows(&mut rows.roles, &kept_roles);
        }
        self.host_roles = kept_roles.iter().map(|&row| self.host_roles[row]).collect();
        evicted
    }
}
