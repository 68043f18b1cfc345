//! Multi-head softmax attention over a key/value matrix (a KV cache or a whole sequence).

use std::cell::RefCell;

use rayon::prelude::*;

use super::simd::{axpy, dot};
use super::tensor::CpuTensor;
use crate::backend::AttentionParams;

thread_local! {
    /// Per-thread score buffer, reused across calls so decode steps do not allocate.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[i, h] = softmax(q[i, h] · k[:, g(h)]ᵀ · scale) · v[:, g(h)]` where `g` maps a query
/// head to its key/value head. One parallel task per (query row, head), which also keeps
/// both cores busy in decode where there is a single query row.
pub(crate) fn attention(
    q: &CpuTensor,
    k: &CpuTensor,
    v: &CpuTensor,
    n_keys: usize,
    p: AttentionParams,
    out: &mut CpuTensor,
) {
    let (nq, d) = (q.rows, p.head_dim);
    assert_eq!(q.cols, p.n_heads * d, "attention: query width");
    assert_eq!(k.cols, p.n_kv_heads * d, "attention: key width");
    assert!(
        k.rows >= n_keys && v.rows >= n_keys,
        "attention: fewer key rows than n_keys"
    );
    assert!(!p.causal || n_keys >= nq, "attention: causal queries beyond the keys");
    let group = p.n_heads / p.n_kv_heads;
    let kv_cols = k.cols;
    out.resize(nq, p.n_heads * d);
    out.data.par_chunks_mut(d).enumerate().for_each(|(task, o)| {
        let (row, head) = (task / p.n_heads, task % p.n_heads);
        let kv_off = (head / group) * d;
        let visible = if p.causal { n_keys - nq + row + 1 } else { n_keys };
        let qh = &q.data[row * q.cols + head * d..][..d];
        SCORES.with(|cell| {
            let mut scores = cell.borrow_mut();
            scores.clear();
            scores.extend((0..visible).map(|t| dot(qh, &k.data[t * kv_cols + kv_off..][..d]) * p.scale));
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            o.fill(0.0);
            for (t, s) in scores.iter().enumerate() {
                axpy(o, *s, &v.data[t * kv_cols + kv_off..][..d]);
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|x| *x *= inv);
        });
    });
}
