//! `GpuBackend`: every `Backend` op as kernel launches and cuBLAS products on a
//! [`Device`], with the same checks (and the same panics on misuse) as the CPU backend.
//!
//! `Backend` ops cannot return errors, so a device failure (allocation, launch, copy) is
//! recorded and every later op becomes a no-op that still keeps shapes and host results
//! consistent (reads return zeros); `Backend::check` reports the first failure, naming
//! the kernel or copy that failed, and does so from then on: after a device fault the
//! model's state can no longer be trusted.

use std::sync::{Mutex, MutexGuard};

use super::attention;
use super::device::Device;
use super::gemm;
use super::kernels::{self, Args, Kernel};
use super::launch;
use super::tensor::{GpuTensor, GpuWeight, Scratch};
use crate::backend::cuda::abi::{activation_code, merge_source};
use crate::backend::{AttentionParams, Backend, MergeSource, Rider, MERGE_WINDOW};
use crate::error::{Error, Result};
use crate::generate::SamplingParams;
use crate::model::config::Activation;
use crate::model::weights::{DType, TensorView};

pub struct GpuBackend<D: Device> {
    device: D,
    /// Storage type weights are converted to on upload; `None` keeps the checkpoint's.
    weight_dtype: Option<DType>,
    state: Mutex<State<D>>,
}

struct State<D: Device> {
    failure: Option<Error>,
    work: Workspace<D>,
}

/// Temporary device buffers, one per purpose. Ops hold the backend's lock from the
/// moment they fill one until their launches are queued, so concurrent generations never
/// see each other's contents (the device runs the queued work in order).
pub(crate) struct Workspace<D: Device> {
    /// Token ids, row lists, positions, visible-key counts: uploaded per op.
    pub(crate) indices: Scratch<D>,
    /// The 16-bit copy of a matrix product's input.
    pub(crate) half_input: Scratch<D>,
    pub(crate) partial_out: Scratch<D>,
    pub(crate) partial_max: Scratch<D>,
    pub(crate) partial_sum: Scratch<D>,
    pub(crate) probs_heads: Scratch<D>,
    pub(crate) probs_out: Scratch<D>,
    /// MustDrop's window similarities, read back for the host's merge decision.
    pub(crate) window_scores: Scratch<D>,
}

impl<D: Device> GpuBackend<D> {
    pub fn new(device: D, weight_dtype: Option<DType>) -> Self {
        GpuBackend {
            device,
            weight_dtype,
            state: Mutex::new(State {
                failure: None,
                work: Workspace {
                    indices: Scratch::new(),
                    half_input: Scratch::new(),
                    partial_out: Scratch::new(),
                    partial_max: Scratch::new(),
                    partial_sum: Scratch::new(),
                    probs_heads: Scratch::new(),
                    probs_out: Scratch::new(),
                    window_scores: Scratch::new(),
                },
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<D>> {
        // A panic inside an op (a failed shape check) leaves nothing half-updated that
        // later ops rely on, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `body` unless an earlier op failed; records its failure, if any.
    fn exec(&self, body: impl FnOnce(&D, &mut Workspace<D>) -> Result<()>) {
        let mut state = self.lock();
        if state.failure.is_some() {
            return;
        }
        if let Err(e) = body(&self.device, &mut state.work) {
            state.failure = Some(e);
        }
    }

    /// Gives `t` its new shape (always, so host-side bookkeeping stays right even after a
    /// failure) and room for it, keeping its first `keep_rows` rows.
    fn shape_output(&self, t: &mut GpuTensor<D>, rows: usize, cols: usize, keep_rows: usize) {
        let mut state = self.lock();
        if state.failure.is_some() {
            t.rows = rows;
            t.cols = cols;
            return;
        }
        if let Err(e) = t.resize(&self.device, rows, cols, keep_rows) {
            state.failure = Some(e);
        }
    }

    /// Uploads a list of row indices, token ids or positions as u32.
    fn upload_indices(device: &D, work: &mut Workspace<D>, values: impl Iterator<Item = usize>) -> Result<u64> {
        let values: Vec<u32> = values.map(|v| u32::try_from(v).expect("index beyond u32")).collect();
        work.indices.upload(device, bytemuck::cast_slice(&values))
    }
}

/// The one read-back of a decode step: the token id a kernel wrote at `out`, followed by
/// the rider's values, copied there on the device first.
struct TokenReadback<'a, D: Device> {
    rider: Option<Rider<'a, GpuBackend<D>>>,
    /// The id, then the rider's values as bits.
    words: Vec<u32>,
}

impl<'a, D: Device> TokenReadback<'a, D> {
    fn new(rider: Option<Rider<'a, GpuBackend<D>>>) -> Self {
        let riding = rider.as_ref().map_or(0, |r| r.values.len());
        TokenReadback {
            rider,
            words: vec![0; 1 + riding],
        }
    }

    fn bytes(&self) -> usize {
        self.words.len() * std::mem::size_of::<u32>()
    }

    fn read(&mut self, dev: &D, out: u64) -> Result<()> {
        if let Some(rider) = &self.rider {
            if rider.values.len() > 0 {
                let bytes = rider.values.len() * std::mem::size_of::<f32>();
                dev.copy(rider.values.address(dev), out + 4, bytes)?;
            }
        }
        dev.read(out, bytemuck::cast_slice_mut(&mut self.words))
    }

    /// The token id; the rider's values are in its `out` (zeros after a device failure).
    fn finish(self) -> u32 {
        if let Some(rider) = self.rider {
            rider.out.clear();
            rider
                .out
                .extend(self.words[1..].iter().map(|&bits| f32::from_bits(bits)));
        }
        self.words[0]
    }
}

/// Checks a patch grid against the rows holding it; returns its number of windows.
fn check_window_grid<D: Device>(hidden: &GpuTensor<D>, grid: usize, first_row: usize) -> usize {
    assert!(grid.is_multiple_of(MERGE_WINDOW), "window ops: grid side {grid}");
    assert!(
        first_row + grid * grid <= hidden.rows,
        "window ops: the grid reaches past the rows"
    );
    (grid / MERGE_WINDOW) * (grid / MERGE_WINDOW)
}

/// The kernel variant for a weight's storage type (f32, f16, bf16, in that order).
fn by_dtype(dtype: DType, [single, half, brain]: [Kernel; 3]) -> Kernel {
    match dtype {
        DType::F32 => single,
        DType::F16 => half,
        DType::BF16 => brain,
    }
}

impl<D: Device> Backend for GpuBackend<D> {
    type Tensor = GpuTensor<D>;
    type Weight = GpuWeight<D>;

    fn description(&self) -> String {
        match self.weight_dtype {
            None => format!("cuda ({})", self.device.description()),
            Some(d) => format!("cuda ({}, {} weights)", self.device.description(), d.name()),
        }
    }

    fn load_weight(&self, view: &TensorView<'_>) -> Result<GpuWeight<D>> {
        GpuWeight::upload(&self.device, view, self.weight_dtype)
    }

    fn weight_bytes(&self, weight: &GpuWeight<D>) -> usize {
        weight.bytes()
    }

    fn check(&self) -> Result<()> {
        match &self.lock().failure {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn free_memory(&self) -> Option<usize> {
        self.device.free_memory().ok()
    }

    fn new_tensor(&self) -> GpuTensor<D> {
        GpuTensor::empty()
    }

    fn shape(&self, t: &GpuTensor<D>) -> (usize, usize) {
        (t.rows, t.cols)
    }

    fn upload(&self, data: &[f32], rows: usize, cols: usize, out: &mut GpuTensor<D>) {
        assert_eq!(data.len(), rows * cols, "upload: data length does not match shape");
        self.shape_output(out, rows, cols, 0);
        if data.is_empty() {
            return;
        }
        self.exec(|dev, _| dev.write(out.address(dev), bytemuck::cast_slice(data)));
    }

    fn download(&self, t: &GpuTensor<D>) -> Vec<f32> {
        let mut out = vec![0f32; t.len()];
        if !out.is_empty() {
            self.exec(|dev, _| dev.read(t.address(dev), bytemuck::cast_slice_mut(&mut out)));
        }
        out
    }

    fn download_row(&self, t: &GpuTensor<D>, row: usize, out: &mut [f32]) {
        assert!(row < t.rows, "download_row: row {row} of {}", t.rows);
        assert_eq!(out.len(), t.cols, "download_row: output width");
        out.fill(0.0);
        if !out.is_empty() {
            self.exec(|dev, _| dev.read(t.row_address(dev, row), bytemuck::cast_slice_mut(out)));
        }
    }

    fn argmax_row(&self, t: &GpuTensor<D>, row: usize, rider: Option<Rider<'_, Self>>) -> u32 {
        assert!(row < t.rows, "argmax_row: row {row} of {}", t.rows);
        let mut token = TokenReadback::new(rider);
        self.exec(|dev, work| {
            let out = work.indices.reserve(dev, token.bytes())?;
            Args::new(kernels::ARGMAX_ROWS)
                .ptr(t.row_address(dev, row))
                .ptr(out)
                .i32(t.cols)
                .launch(dev, launch::per_row(1, t.cols))?;
            token.read(dev, out)
        });
        token.finish()
    }

    fn sample_row(
        &self,
        t: &GpuTensor<D>,
        row: usize,
        params: &SamplingParams,
        u: f64,
        rider: Option<Rider<'_, Self>>,
    ) -> u32 {
        assert!(row < t.rows, "sample_row: row {row} of {}", t.rows);
        // Top-k over the whole vocabulary or more is no top-k.
        let top_k = if params.top_k < t.cols { params.top_k } else { 0 };
        let mut token = TokenReadback::new(rider);
        self.exec(|dev, work| {
            // The uniform number in, then the token id and the rider's values out, in one
            // small buffer.
            let uniform = work.indices.reserve(dev, 8 + token.bytes())?;
            dev.write(uniform, &u.to_ne_bytes())?;
            let out = uniform + 8;
            Args::new(kernels::SAMPLE_ROW)
                .ptr(t.row_address(dev, row))
                .ptr(out)
                .ptr(uniform)
                .i32(t.cols)
                .f32(params.temperature)
                .i32(top_k)
                .f32(params.top_p)
                .launch(dev, launch::sample_row(t.cols))?;
            token.read(dev, out)
        });
        token.finish()
    }

    fn set_value(&self, t: &mut GpuTensor<D>, row: usize, col: usize, value: f32) {
        assert!(
            row < t.rows && col < t.cols,
            "set_value: ({row}, {col}) outside {}×{}",
            t.rows,
            t.cols
        );
        let at = (row * t.cols + col) * std::mem::size_of::<f32>();
        self.exec(|dev, _| dev.write(t.address(dev) + at as u64, &value.to_ne_bytes()));
    }

    fn penalize_repeats(
        &self,
        logits: &GpuTensor<D>,
        row: usize,
        seen: &GpuTensor<D>,
        penalty: f32,
        out: &mut GpuTensor<D>,
    ) {
        assert!(row < logits.rows, "penalize_repeats: row {row} of {}", logits.rows);
        assert_eq!(
            (seen.rows, seen.cols),
            (1, logits.cols),
            "penalize_repeats: seen is not one row as wide"
        );
        self.shape_output(out, 1, logits.cols, 0);
        self.exec(|dev, _| {
            Args::new(kernels::PENALIZE_REPEATS)
                .ptr(logits.row_address(dev, row))
                .ptr(seen.address(dev))
                .ptr(out.address(dev))
                .i32(logits.cols)
                .f32(penalty)
                .launch(dev, launch::elementwise(logits.cols))
        });
    }

    fn linear(&self, x: &GpuTensor<D>, w: &GpuWeight<D>, bias: Option<&GpuWeight<D>>, out: &mut GpuTensor<D>) {
        assert_eq!(
            x.cols, w.cols,
            "linear: input width {} does not match weight width {}",
            x.cols, w.cols
        );
        self.shape_output(out, x.rows, w.rows, 0);
        self.exec(|dev, work| gemm::linear(dev, work, x, w, bias, out));
    }

    fn gather_rows(&self, table: &GpuWeight<D>, ids: &[u32], out: &mut GpuTensor<D>) {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= table.rows) {
            panic!("gather_rows: id {bad} beyond the table's {} rows", table.rows);
        }
        let cols = table.cols;
        self.shape_output(out, ids.len(), cols, 0);
        let kernel = by_dtype(
            table.dtype,
            [
                kernels::GATHER_ROWS_F32,
                kernels::GATHER_ROWS_F16,
                kernels::GATHER_ROWS_BF16,
            ],
        );
        self.exec(|dev, work| {
            let ids = Self::upload_indices(dev, work, ids.iter().map(|&id| id as usize))?;
            Args::new(kernel)
                .ptr(table.address(dev))
                .ptr(ids)
                .ptr(out.address(dev))
                .i32(cols)
                .u32(table.rows)
                .launch(dev, launch::per_row(out.rows, cols))
        });
    }

    fn copy_rows(&self, src: &GpuTensor<D>, src_row: usize, dst: &mut GpuTensor<D>, dst_row: usize, n: usize) {
        assert_eq!(src.cols, dst.cols, "copy_rows: widths differ");
        assert!(
            src_row + n <= src.rows && dst_row + n <= dst.rows,
            "copy_rows: out of range"
        );
        let bytes = n * src.cols * 4;
        if bytes == 0 {
            return;
        }
        self.exec(|dev, _| dev.copy(src.row_address(dev, src_row), dst.row_address(dev, dst_row), bytes));
    }

    fn select_rows(&self, src: &GpuTensor<D>, rows: &[usize], out: &mut GpuTensor<D>) {
        if let Some(&r) = rows.iter().find(|&&r| r >= src.rows) {
            panic!("select_rows: row {r} of {}", src.rows);
        }
        let cols = src.cols;
        self.shape_output(out, rows.len(), cols, 0);
        self.exec(|dev, work| {
            let list = Self::upload_indices(dev, work, rows.iter().copied())?;
            Args::new(kernels::SELECT_ROWS)
                .ptr(src.address(dev))
                .ptr(list)
                .ptr(out.address(dev))
                .i32(cols)
                .launch(dev, launch::per_row(rows.len(), cols))
        });
    }

    fn retain_rows(&self, t: &mut GpuTensor<D>, rows: &[usize]) {
        for (dst, &src) in rows.iter().enumerate() {
            assert!(src >= dst && src < t.rows, "retain_rows: rows must ascend and exist");
            assert!(
                dst == 0 || rows[dst - 1] < src,
                "retain_rows: rows must ascend strictly"
            );
        }
        let moves = rows.iter().enumerate().any(|(dst, &src)| src != dst);
        if moves {
            let tensor = &*t;
            self.exec(|dev, work| {
                let list = Self::upload_indices(dev, work, rows.iter().copied())?;
                Args::new(kernels::RETAIN_ROWS)
                    .ptr(tensor.address(dev))
                    .ptr(list)
                    .i32(rows.len())
                    .i32(tensor.cols)
                    .launch(dev, launch::retain_rows(tensor.cols))
            });
        }
        t.rows = rows.len();
    }

    fn reserve_rows(&self, t: &mut GpuTensor<D>, rows: usize, cols: usize) {
        assert!(t.rows == 0 || t.cols == cols, "reserve_rows: width changes");
        let keep = t.rows;
        self.shape_output(t, rows, cols, keep);
    }

    fn add(&self, x: &mut GpuTensor<D>, y: &GpuTensor<D>) {
        assert_eq!(x.len(), y.len(), "add: shapes differ");
        let n = x.len();
        self.exec(|dev, _| {
            Args::new(kernels::ADD)
                .ptr(x.address(dev))
                .ptr(y.address(dev))
                .i64(n)
                .launch(dev, launch::elementwise(n))
        });
    }

    fn rms_norm(&self, x: &GpuTensor<D>, weight: &GpuWeight<D>, eps: f32, out: &mut GpuTensor<D>) {
        assert_eq!(weight.len(), x.cols, "rms_norm: weight width");
        let (rows, cols) = (x.rows, x.cols);
        self.shape_output(out, rows, cols, 0);
        let kernel = by_dtype(
            weight.dtype,
            [kernels::RMS_NORM_F32, kernels::RMS_NORM_F16, kernels::RMS_NORM_BF16],
        );
        self.exec(|dev, _| {
            Args::new(kernel)
                .ptr(x.address(dev))
                .ptr(weight.address(dev))
                .ptr(out.address(dev))
                .i32(cols)
                .f32(eps)
                .launch(dev, launch::per_row(rows, cols))
        });
    }

    fn layer_norm(
        &self,
        x: &GpuTensor<D>,
        weight: &GpuWeight<D>,
        bias: &GpuWeight<D>,
        eps: f32,
        out: &mut GpuTensor<D>,
    ) {
        assert!(
            weight.len() == x.cols && bias.len() == x.cols,
            "layer_norm: weight or bias width"
        );
        assert_eq!(weight.dtype, bias.dtype, "layer_norm: weight and bias types differ");
        let (rows, cols) = (x.rows, x.cols);
        self.shape_output(out, rows, cols, 0);
        let kernel = by_dtype(
            weight.dtype,
            [
                kernels::LAYER_NORM_F32,
                kernels::LAYER_NORM_F16,
                kernels::LAYER_NORM_BF16,
            ],
        );
        self.exec(|dev, _| {
            Args::new(kernel)
                .ptr(x.address(dev))
                .ptr(weight.address(dev))
                .ptr(bias.address(dev))
                .ptr(out.address(dev))
                .i32(cols)
                .f32(eps)
                .launch(dev, launch::per_row(rows, cols))
        });
    }

    fn activate(&self, x: &mut GpuTensor<D>, act: Activation) {
        let n = x.len();
        self.exec(|dev, _| {
            Args::new(kernels::ACTIVATE)
                .ptr(x.address(dev))
                .i64(n)
                .i32_signed(activation_code(act))
                .launch(dev, launch::elementwise(n))
        });
    }

    fn gated_activate(&self, gate: &mut GpuTensor<D>, up: &GpuTensor<D>, act: Activation) {
        assert_eq!(gate.len(), up.len(), "gated activation: shapes differ");
        let n = gate.len();
        self.exec(|dev, _| {
            Args::new(kernels::GATED_ACTIVATE)
                .ptr(gate.address(dev))
                .ptr(up.address(dev))
                .i64(n)
                .i32_signed(activation_code(act))
                .launch(dev, launch::elementwise(n))
        });
    }

    fn rope(&self, x: &mut GpuTensor<D>, positions: &[u32], n_heads: usize, head_dim: usize, theta: f32) {
        assert_eq!(positions.len(), x.rows, "rope: one position per row");
        assert_eq!(x.cols, n_heads * head_dim, "rope: row width is not heads × head_dim");
        if x.rows == 0 || head_dim < 2 {
            return;
        }
        self.exec(|dev, work| {
            let positions = Self::upload_indices(dev, work, positions.iter().map(|&p| p as usize))?;
            Args::new(kernels::ROPE)
                .ptr(x.address(dev))
                .ptr(positions)
                .i32(n_heads)
                .i32(head_dim)
                .f32(theta)
                .launch(dev, launch::rope(x.rows, n_heads, head_dim))
        });
    }

    fn attention(
        &self,
        q: &GpuTensor<D>,
        k: &GpuTensor<D>,
        v: &GpuTensor<D>,
        n_keys: usize,
        params: AttentionParams,
        out: &mut GpuTensor<D>,
    ) {
        let d = params.head_dim;
        assert_eq!(q.cols, params.n_heads * d, "attention: query width");
        assert_eq!(k.cols, params.n_kv_heads * d, "attention: key width");
        assert_eq!(v.cols, k.cols, "attention: value width");
        assert!(
            k.rows >= n_keys && v.rows >= n_keys,
            "attention: fewer key rows than n_keys"
        );
        assert!(
            !params.causal || n_keys >= q.rows,
            "attention: causal queries beyond the keys"
        );
        self.shape_output(out, q.rows, params.n_heads * d, 0);
        self.exec(|dev, work| attention::attention(dev, work, q, k, v, n_keys, params, out));
    }

    fn window_similarity(&self, hidden: &GpuTensor<D>, grid: usize, first_row: usize) -> Vec<f64> {
        let windows = check_window_grid(hidden, grid, first_row);
        let mut scores = vec![0f64; windows];
        if windows > 0 {
            self.exec(|dev, work| {
                let result = work.window_scores.reserve(dev, windows * 8)?;
                Args::new(kernels::WINDOW_SIMILARITY)
                    .ptr(hidden.row_address(dev, first_row))
                    .ptr(result)
                    .i32(grid)
                    .i32(hidden.cols)
                    .launch(dev, launch::window_similarity(grid))?;
                dev.read(result, bytemuck::cast_slice_mut(&mut scores))
            });
        }
        scores
    }

    fn window_merge(
        &self,
        hidden: &GpuTensor<D>,
        sources: &[MergeSource],
        grid: usize,
        first_row: usize,
        out: &mut GpuTensor<D>,
    ) {
        let windows = check_window_grid(hidden, grid, first_row);
        for &source in sources {
            match source {
                MergeSource::Row(r) => assert!(r < hidden.rows, "window_merge: row {r} of {}", hidden.rows),
                MergeSource::Window(w) => assert!(w < windows, "window_merge: window {w} of {windows}"),
            }
        }
        let cols = hidden.cols;
        self.shape_output(out, sources.len(), cols, 0);
        self.exec(|dev, work| {
            let codes: Vec<i32> = sources.iter().map(|&s| merge_source(s)).collect();
            let list = work.indices.upload(dev, bytemuck::cast_slice(&codes))?;
            Args::new(kernels::WINDOW_MERGE)
                .ptr(hidden.address(dev))
                .ptr(out.address(dev))
                .ptr(list)
                .i32(cols)
                .i32(grid)
                .i32(first_row)
                .launch(dev, launch::per_row(sources.len(), cols))
        });
    }

    fn accumulate_attention(
        &self,
        q: &GpuTensor<D>,
        k: &GpuTensor<D>,
        n_keys: usize,
        params: AttentionParams,
        weight: f32,
        totals: &mut GpuTensor<D>,
    ) {
        assert_eq!(q.rows, 1, "accumulate_attention: one query row");
        assert_eq!(
            q.cols,
            params.n_heads * params.head_dim,
            "accumulate_attention: query width"
        );
        assert!(k.rows >= n_keys, "accumulate_attention: fewer key rows than n_keys");
        let old_rows = if totals.cols == 1 { totals.rows.min(n_keys) } else { 0 };
        self.shape_output(totals, n_keys, 1, old_rows);
        if n_keys == 0 {
            return;
        }
        self.exec(|dev, work| {
            let probs = attention::probabilities_on_device(dev, work, q, k, n_keys, &[n_keys], params)?;
            Args::new(kernels::ACCUMULATE_ATTENTION)
                .ptr(totals.address(dev))
                .ptr(probs)
                .i32(n_keys)
                .i32(old_rows)
                .f32(weight)
                .launch(dev, launch::elementwise(n_keys))
        });
    }

    fn count_evictable(&self, totals: &GpuTensor<D>, role: &GpuTensor<D>, share: f32, count: &mut GpuTensor<D>) {
        let rows = role.len();
        assert!(rows <= totals.len(), "count_evictable: more roles than totals");
        self.shape_output(count, 1, 1, 0);
        self.exec(|dev, _| {
            Args::new(kernels::COUNT_EVICTABLE)
                .ptr(totals.address(dev))
                .ptr(role.address(dev))
                .i32(rows)
                .f32(share)
                .ptr(count.address(dev))
                .launch(dev, launch::count_evictable())
        });
    }

    fn attention_probs(
        &self,
        q: &GpuTensor<D>,
        k: &GpuTensor<D>,
        n_keys: usize,
        visible: &[usize],
        params: AttentionParams,
        out: &mut Vec<f32>,
    ) {
        assert_eq!(q.cols, params.n_heads * params.head_dim, "attention_probs: query width");
        assert_eq!(
            visible.len(),
            q.rows,
            "attention_probs: one visible count per query row"
        );
        assert!(k.rows >= n_keys, "attention_probs: fewer key rows than n_keys");
        out.clear();
        out.resize(q.rows * n_keys, 0.0);
        self.exec(|dev, work| attention::probabilities(dev, work, q, k, n_keys, visible, params, out));
    }
}
