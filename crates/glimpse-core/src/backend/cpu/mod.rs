//! CPU backend: f32 compute on a private rayon thread pool, matrix products through `gemm`.

mod attention;
mod matmul;
mod ops;
mod product;
mod simd;
mod tensor;
mod windows;

pub use tensor::{CpuTensor, CpuWeight};

use crate::backend::{AttentionParams, Backend, MergeSource, Rider};
use crate::error::{Error, Result};
use crate::generate::sampler::{draw, greedy_choice, penalize_repeats, SamplingParams};
use crate::model::config::Activation;
use crate::model::weights::{DType, TensorView};

pub struct CpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    /// Storage type weights are converted to on load; `None` keeps the checkpoint's.
    weight_dtype: Option<DType>,
}

impl CpuBackend {
    /// `threads = None` uses every available core.
    pub fn new(threads: Option<usize>) -> Result<Self> {
        let threads = match threads {
            Some(0) => return Err(Error::usage("--threads must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("glimpse-cpu-{i}"))
            .build()
            .map_err(|e| Error::internal(format!("cannot start {threads} CPU threads: {e}")))?;
        Ok(CpuBackend {
            pool,
            threads,
            weight_dtype: None,
        })
    }

    /// Stores weights as `dtype` (`None`: as the checkpoint stores them).
    pub fn with_weight_dtype(mut self, dtype: Option<DType>) -> Self {
        self.weight_dtype = dtype;
        self
    }

    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Weight = CpuWeight;

    fn description(&self) -> String {
        match self.weight_dtype {
            None => format!("cpu ({} threads)", self.threads),
            Some(d) => format!("cpu ({} threads, {} weights)", self.threads, d.name()),
        }
    }

    fn load_weight(&self, view: &TensorView<'_>) -> Result<CpuWeight> {
        view.with_storage(self.weight_dtype, CpuWeight::from_view)
    }

    fn weight_bytes(&self, weight: &CpuWeight) -> usize {
        weight.bytes()
    }

    fn new_tensor(&self) -> CpuTensor {
        CpuTensor::default()
    }

    fn shape(&self, t: &CpuTensor) -> (usize, usize) {
        (t.rows, t.cols)
    }

    fn upload(&self, data: &[f32], rows: usize, cols: usize, out: &mut CpuTensor) {
        assert_eq!(data.len(), rows * cols, "upload: data length does not match shape");
        out.resize(rows, cols);
        out.data.copy_from_slice(data);
    }

    fn download(&self, t: &CpuTensor) -> Vec<f32> {
        t.data.clone()
    }

    fn download_row(&self, t: &CpuTensor, row: usize, out: &mut [f32]) {
        out.copy_from_slice(t.row(row));
    }

    fn argmax_row(&self, t: &CpuTensor, row: usize, rider: Option<Rider<'_, Self>>) -> u32 {
        take_rider(rider);
        greedy_choice(t.row(row))
    }

    fn sample_row(
        &self,
        t: &CpuTensor,
        row: usize,
        params: &SamplingParams,
        u: f64,
        rider: Option<Rider<'_, Self>>,
    ) -> u32 {
        take_rider(rider);
        draw(t.row(row), params, u, &mut Vec::new())
    }

    fn set_value(&self, t: &mut CpuTensor, row: usize, col: usize, value: f32) {
        assert!(
            row < t.rows && col < t.cols,
            "set_value: ({row}, {col}) outside {}×{}",
            t.rows,
            t.cols
        );
        t.data[row * t.cols + col] = value;
    }

    fn penalize_repeats(&self, logits: &CpuTensor, row: usize, seen: &CpuTensor, penalty: f32, out: &mut CpuTensor) {
        assert!(row < logits.rows, "penalize_repeats: row {row} of {}", logits.rows);
        assert_eq!(
            (seen.rows, seen.cols),
            (1, logits.cols),
            "penalize_repeats: seen is not one row as wide"
        );
        out.resize(1, logits.cols);
        penalize_repeats(logits.row(row), &seen.data, penalty, &mut out.data);
    }

    fn linear(&self, x: &CpuTensor, w: &CpuWeight, bias: Option<&CpuWeight>, out: &mut CpuTensor) {
        self.pool.install(|| matmul::linear(x, w, bias, out, self.threads));
    }

    fn gather_rows(&self, table: &CpuWeight, ids: &[u32], out: &mut CpuTensor) {
        self.pool.install(|| ops::gather_rows(table, ids, out));
    }

    fn copy_rows(&self, src: &CpuTensor, src_row: usize, dst: &mut CpuTensor, dst_row: usize, n: usize) {
        assert_eq!(src.cols, dst.cols, "copy_rows: widths differ");
        assert!(
            src_row + n <= src.rows && dst_row + n <= dst.rows,
            "copy_rows: out of range"
        );
        let c = src.cols;
        dst.data[dst_row * c..(dst_row + n) * c].copy_from_slice(&src.data[src_row * c..(src_row + n) * c]);
    }

    fn select_rows(&self, src: &CpuTensor, rows: &[usize], out: &mut CpuTensor) {
        ops::select_rows(src, rows, out);
    }

    fn retain_rows(&self, t: &mut CpuTensor, rows: &[usize]) {
        ops::retain_rows(t, rows);
    }

    fn reserve_rows(&self, t: &mut CpuTensor, rows: usize, cols: usize) {
        assert!(t.rows == 0 || t.cols == cols, "reserve_rows: width changes");
        t.resize(rows, cols);
    }

    fn add(&self, x: &mut CpuTensor, y: &CpuTensor) {
        self.pool.install(|| ops::add(x, y));
    }

    fn rms_norm(&self, x: &CpuTensor, weight: &CpuWeight, eps: f32, out: &mut CpuTensor) {
        self.pool.install(|| ops::rms_norm(x, weight, eps, out));
    }

    fn layer_norm(&self, x: &CpuTensor, weight: &CpuWeight, bias: &CpuWeight, eps: f32, out: &mut CpuTensor) {
        self.pool.install(|| ops::layer_norm(x, weight, bias, eps, out));
    }

    fn activate(&self, x: &mut CpuTensor, act: Activation) {
        self.pool.install(|| ops::activate(x, act));
    }

    fn gated_activate(&self, gate: &mut CpuTensor, up: &CpuTensor, act: Activation) {
        self.pool.install(|| ops::gated_activate(gate, up, act));
    }

    fn rope(&self, x: &mut CpuTensor, positions: &[u32], n_heads: usize, head_dim: usize, theta: f32) {
        self.pool.install(|| ops::rope(x, positions, n_heads, head_dim, theta));
    }

    fn attention(
        &self,
        q: &CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        n_keys: usize,
        params: AttentionParams,
        out: &mut CpuTensor,
    ) {
        self.pool.install(|| attention::attention(q, k, v, n_keys, params, out));
    }

    fn window_similarity(&self, hidden: &CpuTensor, grid: usize, first_row: usize) -> Vec<f64> {
        windows::window_similarity(hidden, grid, first_row)
    }

    fn window_merge(
        &self,
        hidden: &CpuTensor,
        sources: &[MergeSource],
        grid: usize,
        first_row: usize,
        out: &mut CpuTensor,
    ) {
        windows::window_merge(hidden, sources, grid, first_row, out);
    }

    fn accumulate_attention(
        &self,
        q: &CpuTensor,
        k: &CpuTensor,
        n_keys: usize,
        params: AttentionParams,
        weight: f32,
        totals: &mut CpuTensor,
    ) {
        assert_eq!(q.rows, 1, "accumulate_attention: one query row");
        let mut probs = Vec::new();
        self.attention_probs(q, k, n_keys, &[n_keys], params, &mut probs);
        // Rows the cache gained since the last call start at zero.
        totals.resize(n_keys, 1);
        for (total, &p) in totals.data.iter_mut().zip(&probs) {
            *total += weight * p;
        }
    }

    fn count_evictable(&self, totals: &CpuTensor, role: &CpuTensor, share: f32, count: &mut CpuTensor) {
        let rows = role.data.len();
        assert!(rows <= totals.data.len(), "count_evictable: more roles than totals");
        let marked = || totals.data[..rows].iter().zip(&role.data).filter(|(_, &r)| r != 0.0);
        let (sum, n) = marked().fold((0f64, 0usize), |(s, n), (&t, _)| (s + f64::from(t), n + 1));
        let threshold = if n > 0 {
            f64::from(share) * (sum / n as f64)
        } else {
            0.0
        };
        let below = marked().filter(|(&t, &r)| r == 1.0 && f64::from(t) < threshold).count();
        count.resize(1, 1);
        count.data[0] = below as f32;
    }

    fn attention_probs(
        &self,
        q: &CpuTensor,
        k: &CpuTensor,
        n_keys: usize,
        visible: &[usize],
        params: AttentionParams,
        out: &mut Vec<f32>,
    ) {
        self.pool
            .install(|| attention::attention_probs(q, k, n_keys, visible, params, out));
    }
}

#[cfg(test)]
mod tests;

/// A rider's values are already in host memory: copied to where the caller wants them.
fn take_rider(rider: Option<Rider<'_, CpuBackend>>) {
    if let Some(Rider { values, out }) = rider {
        out.clear();
        out.extend_from_slice(&values.data);
    }
}
