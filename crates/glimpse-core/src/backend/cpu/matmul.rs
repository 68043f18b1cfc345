//! `x · wᵀ` for linear layers.
//!
//! Two regimes: prefill multiplies many rows and is compute-bound, so weight blocks are
//! widened to f32 and handed to `gemm`; decode multiplies one row and is bound by reading
//! the weights, so it streams them in their storage type through dot products.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::tensor::{CpuTensor, CpuWeight};

/// Up to this many input rows, the product runs as dot products over streamed weight rows.
const GEMV_MAX_ROWS: usize = 4;
/// Weight rows widened to f32 at a time for `gemm` (bounds the temporary buffer).
const WIDEN_BLOCK_ROWS: usize = 512;
/// Output features per parallel task in the dot-product path.
const GEMV_ROWS_PER_TASK: usize = 32;

pub(crate) fn linear(x: &CpuTensor, w: &CpuWeight, bias: Option<&CpuWeight>, out: &mut CpuTensor, threads: usize) {
    let (m, k, n) = (x.rows, x.cols, w.rows);
    assert_eq!(
        k, w.cols,
        "linear: input width {k} does not match weight width {}",
        w.cols
    );
    out.resize(m, n);
    if m <= GEMV_MAX_ROWS {
        for r in 0..m {
            gemv(x.row(r), w, &mut out.data[r * n..(r + 1) * n]);
        }
    } else if let Some(wf) = w.as_f32() {
        gemm_rows(m, n, k, &x.data, wf, &mut out.data, n, threads);
    } else {
        let block = WIDEN_BLOCK_ROWS.min(n);
        let mut widened = vec![0f32; block * k];
        for j0 in (0..n).step_by(block) {
            let rows = block.min(n - j0);
            let buf = &mut widened[..rows * k];
            buf.par_chunks_mut(k)
                .enumerate()
                .for_each(|(i, row)| w.read_f32((j0 + i) * k, row));
            gemm_rows(m, rows, k, &x.data, buf, &mut out.data[j0..], n, threads);
        }
    }
    if let Some(b) = bias {
        let bias = b.vector();
        out.data.par_chunks_mut(n).for_each(|row| {
            row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
        });
    }
}

/// `dst[i, j] = Σ_k x[i, k] · w[j, k]` for `j < n`, where `dst` rows are `dst_stride` apart.
#[allow(clippy::too_many_arguments)]
fn gemm_rows(m: usize, n: usize, k: usize, x: &[f32], w: &[f32], dst: &mut [f32], dst_stride: usize, threads: usize) {
    debug_assert!(x.len() >= m * k && w.len() >= n * k);
    debug_assert!(dst.len() >= (m - 1) * dst_stride + n);
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the pointers and strides describe in-bounds row-major matrices (asserted
    // above): dst [m, n] with row stride dst_stride, lhs x [m, k], rhs wᵀ [k, n] read from
    // w [n, k] by swapping strides. read_dst = false, so alpha is ignored and dst := x·wᵀ.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
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
