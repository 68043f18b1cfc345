//! `x · wᵀ` for linear layers.
//!
//! Two regimes: prefill multiplies many rows and is compute-bound, so weight blocks are
//! widened to f32 and handed to `gemm`; decode multiplies one row (or one per sequence of a
//! batch) and is bound by reading the weights, so it streams them in their storage type
//! through dot products, each weight row read once for all input rows.

use std::cell::RefCell;

use rayon::prelude::*;

use super::product::{matmul, View, ViewMut};
use super::tensor::{CpuTensor, CpuWeight};

/// Up to this many input rows, the product runs as dot products over streamed weight rows.
const GEMV_MAX_ROWS: usize = 4;
/// Weight rows widened to f32 at a time for `gemm` (bounds the temporary buffer).
const WIDEN_BLOCK_ROWS: usize = 512;
/// Output features per parallel task in the dot-product path.
const GEMV_ROWS_PER_TASK: usize = 32;

thread_local! {
    /// Widened weight block, kept between calls: allocating it fresh each time costs a
    /// page fault per 4 KiB when it is first written.
    static WIDENED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Products of several input rows, output feature by output feature, kept for the
    /// same reason.
    static FEATURE_MAJOR: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn linear(x: &CpuTensor, w: &CpuWeight, bias: Option<&CpuWeight>, out: &mut CpuTensor, threads: usize) {
    let (m, k, n) = (x.rows, x.cols, w.rows);
    assert_eq!(
        k, w.cols,
        "linear: input width {k} does not match weight width {}",
        w.cols
    );
    out.resize(m, n);
    if m == 1 {
        gemv(x.row(0), w, &mut out.data);
    } else if m <= GEMV_MAX_ROWS {
        gemv_rows(x, w, &mut out.data);
    } else if let Some(wf) = w.as_f32() {
        gemm_rows(x, wf, n, &mut out.data, 0, threads);
    } else {
        // Taken out of the cell rather than borrowed: while this thread waits on the
        // parallel work below, rayon may run another linear call on it.
        let mut widened = WIDENED.take();
        let block = WIDEN_BLOCK_ROWS.min(n);
        widened.resize(block * k, 0.0);
        for j0 in (0..n).step_by(block) {
            let rows = block.min(n - j0);
            let buf = &mut widened[..rows * k];
            buf.par_chunks_mut(k)
                .enumerate()
                .for_each(|(i, row)| w.read_f32((j0 + i) * k, row));
            gemm_rows(x, buf, n, &mut out.data, j0, threads);
        }
        WIDENED.set(widened);
    }
    if let Some(b) = bias {
        let bias = b.vector();
        out.data.par_chunks_mut(n).for_each(|row| {
            row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
        });
    }
}

/// Columns `col0..col0 + rows` of `out` (`x.rows × n`) get `x · wᵀ` for the `rows × x.cols`
/// weight block `w`.
fn gemm_rows(x: &CpuTensor, w: &[f32], n: usize, out: &mut [f32], col0: usize, threads: usize) {
    let (m, k) = (x.rows, x.cols);
    let rows = w.len() / k;
    matmul(
        ViewMut::row_major(out, col0, m, rows, n),
        View::row_major(&x.data, 0, m, k, k),
        View::row_major(w, 0, rows, k, k).t(),
        1.0,
        threads,
    );
}

/// `out[r·n + j] = x[r] · w[j]` for the `m` rows of `x`, reading each weight row once for all
/// of them (it stays in the core's cache between rows). Each product is the very dot
/// product [`gemv`] computes, so a row's result does not depend on the rows beside it.
fn gemv_rows(x: &CpuTensor, w: &CpuWeight, out: &mut [f32]) {
    let (m, n) = (x.rows, w.rows);
    // A task owns a run of output features, which lie apart in `out` for different rows:
    // tasks fill a feature-major buffer, transposed into `out` at the end.
    let mut by_feature = FEATURE_MAJOR.take();
    by_feature.resize(n * m, 0.0);
    by_feature
        .par_chunks_mut(GEMV_ROWS_PER_TASK * m)
        .enumerate()
        .for_each(|(chunk, outs)| {
            let j0 = chunk * GEMV_ROWS_PER_TASK;
            for (i, feature) in outs.chunks_mut(m).enumerate() {
                for (r, o) in feature.iter_mut().enumerate() {
                    *o = w.dot_row(j0 + i, x.row(r));
                }
            }
        });
    for (j, feature) in by_feature.chunks(m).enumerate() {
        for (r, &v) in feature.iter().enumerate() {
            out[r * n + j] = v;
        }
    }
    FEATURE_MAJOR.set(by_feature);
}

/// `out[j] = x · w[j]`, reading each weight row once in its storage type: decode is bound
/// by that read, so widening happens in registers rather than through a buffer.
fn gemv(x: &[f32], w: &CpuWeight, out: &mut [f32]) {
    out.par_chunks_mut(GEMV_ROWS_PER_TASK)
        .enumerate()
        .for_each(|(chunk, outs)| {
            let j0 = chunk * GEMV_ROWS_PER_TASK;
            for (i, o) in outs.iter_mut().enumerate() {
                *o = w.dot_row(j0 + i, x);
            }
        });
}
