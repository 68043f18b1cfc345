//! Multi-head softmax attention over a key/value matrix (a KV cache or a whole sequence).

use std::cell::RefCell;

use rayon::prelude::*;

use super::product::{matmul, View, ViewMut};
use super::simd::{axpy, dot};
use super::tensor::CpuTensor;
use crate::backend::AttentionParams;

/// From this many query rows on (prefill, image encoding), attention runs on blocks of
/// query rows with matrix products; below it (decode), one task per (row, head) keeps
/// every core busy on the single query row.
const BLOCKED_MIN_QUERIES: usize = 8;
/// Most query rows per block: enough for gemm to reuse each packed key/value panel,
/// few enough that a causal block spends little on masked scores.
const QUERY_BLOCK: usize = 64;

thread_local! {
    /// Per-thread score buffer, reused across calls so neither path allocates per call.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[i, h] = softmax(q[i, h] · k[:, g(h)]ᵀ · scale) · v[:, g(h)]` where `g` maps a query
/// head to its key/value head.
pub(crate) fn attention(
    q: &CpuTensor,
    k: &CpuTensor,
    v: &CpuTensor,
    n_keys: usize,
    p: AttentionParams,
    out: &mut CpuTensor,
) {
    let d = p.head_dim;
    assert_eq!(q.cols, p.n_heads * d, "attention: query width");
    assert_eq!(k.cols, p.n_kv_heads * d, "attention: key width");
    assert_eq!(v.cols, k.cols, "attention: value width");
    assert!(
        k.rows >= n_keys && v.rows >= n_keys,
        "attention: fewer key rows than n_keys"
    );
    assert!(
        !p.causal || n_keys >= q.rows,
        "attention: causal queries beyond the keys"
    );
    out.resize(q.rows, p.n_heads * d);
    if q.rows >= BLOCKED_MIN_QUERIES {
        attention_blocked(q, k, v, n_keys, p, out);
    } else {
        attention_per_row(q, k, v, n_keys, p, out);
    }
}

/// Keys that query row `row` of `nq` may attend to.
fn visible_keys(p: &AttentionParams, n_keys: usize, nq: usize, row: usize) -> usize {
    if p.causal {
        n_keys - nq + row + 1
    } else {
        n_keys
    }
}

/// Turns scores into `exp(s − max)` in place and returns their sum.
fn exp_shifted(scores: &mut [f32]) -> f32 {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    sum
}

/// One task per block of query rows; per head, the block's scores are one matrix product
/// with the keys and its output one product with the values.
fn attention_blocked(
    q: &CpuTensor,
    k: &CpuTensor,
    v: &CpuTensor,
    n_keys: usize,
    p: AttentionParams,
    out: &mut CpuTensor,
) {
    let (nq, d, out_cols, kv_cols) = (q.rows, p.head_dim, out.cols, k.cols);
    let group = p.n_heads / p.n_kv_heads;
    // At least two blocks per thread, so short prompts still use every core.
    let block = QUERY_BLOCK.min(nq.div_ceil(2 * rayon::current_num_threads()));
    out.data
        .par_chunks_mut(block * out_cols)
        .enumerate()
        .for_each(|(b, o)| {
            let (row0, rows) = (b * block, o.len() / out_cols);
            // Keys seen by the block's last row; earlier causal rows mask the rest.
            let keys = visible_keys(&p, n_keys, nq, row0 + rows - 1);
            let mut inv_sums = [0f32; QUERY_BLOCK];
            SCORES.with(|cell| {
                let mut scores = cell.borrow_mut();
                scores.resize(rows * keys, 0.0);
                for head in 0..p.n_heads {
                    let kv_off = (head / group) * d;
                    matmul(
                        ViewMut::row_major(&mut scores, 0, rows, keys, keys),
                        View::row_major(&q.data, row0 * q.cols + head * d, rows, d, q.cols),
                        View::row_major(&k.data, kv_off, keys, d, kv_cols).t(),
                        p.scale,
                        1,
                    );
                    for (r, row_scores) in scores.chunks_mut(keys).enumerate() {
                        let (live, masked) = row_scores.split_at_mut(visible_keys(&p, n_keys, nq, row0 + r));
                        inv_sums[r] = 1.0 / exp_shifted(live);
                        masked.fill(0.0);
                    }
                    matmul(
                        ViewMut::row_major(o, head * d, rows, d, out_cols),
                        View::row_major(&scores, 0, rows, keys, keys),
                        View::row_major(&v.data, kv_off, keys, d, kv_cols),
                        1.0,
                        1,
                    );
                    for (r, inv) in inv_sums[..rows].iter().enumerate() {
                        o[r * out_cols + head * d..][..d].iter_mut().for_each(|x| *x *= inv);
                    }
                }
            });
        });
}

/// One task per (query row, head), with dot products against each key.
fn attention_per_row(
    q: &CpuTensor,
    k: &CpuTensor,
    v: &CpuTensor,
    n_keys: usize,
    p: AttentionParams,
    out: &mut CpuTensor,
) {
    let (nq, d, kv_cols) = (q.rows, p.head_dim, k.cols);
    let group = p.n_heads / p.n_kv_heads;
    out.data.par_chunks_mut(d).enumerate().for_each(|(task, o)| {
        let (row, head) = (task / p.n_heads, task % p.n_heads);
        let kv_off = (head / group) * d;
        let visible = visible_keys(&p, n_keys, nq, row);
        let qh = &q.data[row * q.cols + head * d..][..d];
        SCORES.with(|cell| {
            let mut scores = cell.borrow_mut();
            scores.clear();
            scores.extend((0..visible).map(|t| dot(qh, &k.data[t * kv_cols + kv_off..][..d]) * p.scale));
            let inv = 1.0 / exp_shifted(&mut scores);
            o.fill(0.0);
            for (t, s) in scores.iter().enumerate() {
                axpy(o, *s, &v.data[t * kv_cols + kv_off..][..d]);
            }
            o.iter_mut().for_each(|x| *x *= inv);
        });
    });
}

/// Head-averaged probabilities of each query row over the keys it sees (see
/// `Backend::attention_probs`). One task per query row: callers ask for a few rows only.
pub(crate) fn attention_probs(
    q: &CpuTensor,
    k: &CpuTensor,
    n_keys: usize,
    visible: &[usize],
    p: AttentionParams,
    out: &mut Vec<f32>,
) {
    let (d, kv_cols) = (p.head_dim, k.cols);
    assert_eq!(q.cols, p.n_heads * d, "attention_probs: query width");
    assert_eq!(
        visible.len(),
        q.rows,
        "attention_probs: one visible count per query row"
    );
    assert!(k.rows >= n_keys, "attention_probs: fewer key rows than n_keys");
    let group = p.n_heads / p.n_kv_heads;
    out.clear();
    out.resize(q.rows * n_keys, 0.0);
    out.par_chunks_mut(n_keys.max(1)).enumerate().for_each(|(row, o)| {
        let seen = visible[row].min(n_keys);
        let mut scores = vec![0f32; seen];
        for head in 0..p.n_heads {
            let kv_off = (head / group) * d;
            let qh = &q.data[row * q.cols + head * d..][..d];
            for (t, s) in scores.iter_mut().enumerate() {
                *s = dot(qh, &k.data[t * kv_cols + kv_off..][..d]) * p.scale;
            }
            let inv = 1.0 / exp_shifted(&mut scores) / p.n_heads as f32;
            for (acc, s) in o.iter_mut().zip(&scores) {
                *acc += s * inv;
            }
        }
    });
}
