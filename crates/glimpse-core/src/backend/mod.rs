//! The compute boundary between model code and hardware.
//!
//! Model code (`model/`) is generic over [`Backend`] and never asks where a tensor lives.
//! Activations are 2-D row-major f32 matrices (`rows` tokens × `cols` features); weights
//! keep the checkpoint's storage type and are widened to f32 inside the kernels, so a
//! 16-bit checkpoint stays 16-bit in memory while every sum accumulates in f32.
//!
//! Every op writes into a caller-owned output tensor, resizing it as needed; a tensor's
//! allocation is kept across resizes, so the decode loop reuses the same buffers each step.

pub mod cpu;
pub mod cuda;

use crate::error::Result;
use crate::generate::SamplingParams;
use crate::model::config::Activation;
use crate::model::weights::TensorView;

/// Shape and masking of one multi-head attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    pub n_heads: usize,
    /// Key/value heads; `n_heads` must be a multiple (grouped-query attention).
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Causal: query `i` of `nq` sits at key index `n_keys - nq + i` and sees keys up to it.
    pub causal: bool,
    pub scale: f32,
}

/// Side of MustDrop's merge windows, in patches.
pub const MERGE_WINDOW: usize = 3;

/// Patch indices of window `w` of a `grid × grid` patch grid cut into 3×3 windows, windows
/// and their members in raster order.
pub fn window_patches(grid: usize, w: usize) -> [usize; MERGE_WINDOW * MERGE_WINDOW] {
    let per_side = grid / MERGE_WINDOW;
    let (gy, gx) = (w / per_side, w % per_side);
    std::array::from_fn(|t| (gy * MERGE_WINDOW + t / MERGE_WINDOW) * grid + gx * MERGE_WINDOW + t % MERGE_WINDOW)
}

/// Where one output row of [`Backend::window_merge`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeSource {
    /// A copy of this row of the input.
    Row(usize),
    /// The mean of this window's members.
    Window(usize),
}

/// A few values a decode step leaves on the device for the host (a cache policy's verdict
/// on the token it fed), brought back in the same transfer as the next token id so that a
/// step waits on the device once: `values` (every element, row-major) into `out`.
pub struct Rider<'a, B: Backend + ?Sized> {
    pub values: &'a B::Tensor,
    pub out: &'a mut Vec<f32>,
}

pub trait Backend: Send + Sync + 'static {
    /// A 2-D f32 activation matrix on this backend's device.
    type Tensor: Send + Sync;
    /// A parameter tensor in its storage type on this backend's device.
    type Weight: Send + Sync;

    /// Human-readable description for `--stats` and `inspect` ("cpu (8 threads)").
    fn description(&self) -> String;

    /// Copies a checkpoint tensor onto the device, keeping its storage type.
    fn load_weight(&self, view: &TensorView<'_>) -> Result<Self::Weight>;
    /// Bytes the weight occupies on the device.
    fn weight_bytes(&self, weight: &Self::Weight) -> usize;

    /// The first device failure, if any. Ops cannot return errors, so a backend whose
    /// device can fail (an allocation, a kernel launch) records the failure, turns later
    /// ops into no-ops, and reports it here; the generation loop asks after each step.
    fn check(&self) -> Result<()> {
        Ok(())
    }
    /// Device memory still free, bytes, where the device has memory of its own to run
    /// out of (`None` for the host).
    fn free_memory(&self) -> Option<usize> {
        None
    }

    /// An empty (0 × 0) tensor to be sized by the first op that writes it.
    fn new_tensor(&self) -> Self::Tensor;
    /// (rows, cols) of a tensor.
    fn shape(&self, t: &Self::Tensor) -> (usize, usize);
    fn upload(&self, data: &[f32], rows: usize, cols: usize, out: &mut Self::Tensor);
    fn download(&self, t: &Self::Tensor) -> Vec<f32>;
    /// Copies one row into `out` (whose length must equal the row width).
    fn download_row(&self, t: &Self::Tensor, row: usize, out: &mut [f32]);
    /// Index of the largest value of row `row`, by the rules of the greedy sampler
    /// (`generate::sampler::greedy_choice`); on a device only the index comes back, with
    /// the [`Rider`]'s values if there is one.
    fn argmax_row(&self, t: &Self::Tensor, row: usize, rider: Option<Rider<'_, Self>>) -> u32;
    /// A token drawn from row `row` with `params`' temperature, top-k and top-p, given the
    /// uniform number `u` in [0, 1), by the rules of `generate::sampler::draw`; on a device
    /// only the token id comes back, with the [`Rider`]'s values if there is one.
    /// `params.temperature` must be above 0.
    fn sample_row(
        &self,
        t: &Self::Tensor,
        row: usize,
        params: &SamplingParams,
        u: f64,
        rider: Option<Rider<'_, Self>>,
    ) -> u32;

    /// Sets element (`row`, `col`) of `t` to `value` (on a device, a copy queued like the
    /// ops: nothing waits for it).
    fn set_value(&self, t: &mut Self::Tensor, row: usize, col: usize, value: f32);
    /// Hugging Face's repetition penalty on row `row` of `logits`, written to `out` (1 ×
    /// cols), by the rules of `generate::sampler::penalize_repeats`: `seen` (1 × cols)
    /// marks the ids already in the sequence with a nonzero value.
    fn penalize_repeats(
        &self,
        logits: &Self::Tensor,
        row: usize,
        seen: &Self::Tensor,
        penalty: f32,
        out: &mut Self::Tensor,
    );

    /// `out = x · wᵀ (+ bias)`, with `w` of shape `[out_features, in_features]`.
    fn linear(&self, x: &Self::Tensor, w: &Self::Weight, bias: Option<&Self::Weight>, out: &mut Self::Tensor);
    /// `out[i] = table[ids[i]]` (embedding lookup); a 1-D table is one row.
    fn gather_rows(&self, table: &Self::Weight, ids: &[u32], out: &mut Self::Tensor);
    /// Copies `n` rows of `src` starting at `src_row` into `dst` starting at `dst_row`;
    /// `dst` must already hold enough rows.
    fn copy_rows(&self, src: &Self::Tensor, src_row: usize, dst: &mut Self::Tensor, dst_row: usize, n: usize);
    /// `out[i] = src[rows[i]]`.
    fn select_rows(&self, src: &Self::Tensor, rows: &[usize], out: &mut Self::Tensor);
    /// Keeps only `rows` (strictly ascending) of `t`, moved to the front in that order; the
    /// tensor shrinks to `rows.len()` rows. Used to compact hidden states and caches in place.
    fn retain_rows(&self, t: &mut Self::Tensor, rows: &[usize]);
    /// Grows (or shrinks) a tensor to `rows` rows of `cols`, keeping the leading rows' data.
    fn reserve_rows(&self, t: &mut Self::Tensor, rows: usize, cols: usize);
    /// `x += y`, elementwise, same shapes.
    fn add(&self, x: &mut Self::Tensor, y: &Self::Tensor);
    fn rms_norm(&self, x: &Self::Tensor, weight: &Self::Weight, eps: f32, out: &mut Self::Tensor);
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        weight: &Self::Weight,
        bias: &Self::Weight,
        eps: f32,
        out: &mut Self::Tensor,
    );
    /// Applies an activation in place.
    fn activate(&self, x: &mut Self::Tensor, act: Activation);
    /// `gate = act(gate) · up` (SwiGLU-style gated MLP).
    fn gated_activate(&self, gate: &mut Self::Tensor, up: &Self::Tensor, act: Activation);
    /// Rotary position embedding (Llama's rotate-half form) on each of the `n_heads`
    /// heads of every row, row `i` at position `positions[i]`.
    fn rope(&self, x: &mut Self::Tensor, positions: &[u32], n_heads: usize, head_dim: usize, theta: f32);
    /// Softmax attention of `q` over the first `n_keys` rows of `k`/`v`.
    fn attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        n_keys: usize,
        params: AttentionParams,
        out: &mut Self::Tensor,
    );
    /// MustDrop stage 1: for each 3×3 window of a `grid × grid` patch grid whose patch `p`
    /// is row `first_row + p` of `hidden`, the mean cosine similarity over the ordered
    /// pairs of distinct members, in f64 (host memory: which windows merge is decided on
    /// the host). `grid` must be a multiple of 3.
    fn window_similarity(&self, hidden: &Self::Tensor, grid: usize, first_row: usize) -> Vec<f64>;
    /// Builds `out` one row per source (see [`MergeSource`]), with windows and rows as in
    /// [`Backend::window_similarity`]. A window's mean sums its members in raster order
    /// and divides by their count, in f32.
    fn window_merge(
        &self,
        hidden: &Self::Tensor,
        sources: &[MergeSource],
        grid: usize,
        first_row: usize,
        out: &mut Self::Tensor,
    );
    /// MustDrop's decode bookkeeping: `totals` (`n_keys` × 1; the rows it had keep their
    /// values, rows beyond them start at zero) gains `weight` × the head-averaged attention
    /// probabilities of the single query row `q` over the first `n_keys` rows of `k`, each
    /// product rounded before the sum.
    fn accumulate_attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        n_keys: usize,
        params: AttentionParams,
        weight: f32,
        totals: &mut Self::Tensor,
    );
    /// Into `count` (1 × 1): how many of the leading rows of `totals` that `role` (one
    /// value per row) marks 1 (a token that may be evicted) hold a total below `share` ×
    /// the mean total of the rows marked 1 or 2 (2: a token that stays), the mean in f64.
    /// MustDrop's test of whether a decode step evicts anything.
    fn count_evictable(&self, totals: &Self::Tensor, role: &Self::Tensor, share: f32, count: &mut Self::Tensor);
    /// Head-averaged attention probabilities of a few query rows, for the token filters
    /// that rank keys by the attention they receive: `out[i][j]` = mean over query heads of
    /// `softmax_j(q[i]·k[j]·scale)` over keys `j < visible[i]`, zero beyond. `out` becomes
    /// `q.rows × n_keys` (host memory: filters rank on the host). `params.causal` is
    /// ignored: `visible` says which keys each row sees.
    fn attention_probs(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        n_keys: usize,
        visible: &[usize],
        params: AttentionParams,
        out: &mut Vec<f32>,
    );
}
