//! attention_probs_heads + attention_probs_reduce against the CPU backend's
//! attention_probs: rows seeing all keys, a prefix, none, and more than exist.

use super::*;
use crate::backend::cuda::launch;
use crate::backend::AttentionParams;

#[test]
fn attention_probs_match_cpu() {
    let b = cpu();
    let mut rng = rng(11);
    let p = AttentionParams {
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 40,
        causal: true, // ignored: `visible` decides
        scale: 0.16,
    };
    let n_keys = 70;
    let cache_rows = n_keys + 3;
    let visible = [70usize, 0, 33, 100, 1];
    let rows = visible.len();
    let q = random(&mut rng, rows * p.n_heads * p.head_dim, 3.0);
    let k = random(&mut rng, cache_rows * p.n_kv_heads * p.head_dim, 3.0);
    let mut want = Vec::new();
    b.attention_probs(
        &tensor(&b, &q, rows, p.n_heads * p.head_dim),
        &tensor(&b, &k, cache_rows, p.n_kv_heads * p.head_dim),
        n_keys,
        &visible,
        p,
        &mut want,
    );

    let plan = launch::attention_probs(rows, n_keys, &p);
    let visible_u32: Vec<u32> = visible.iter().map(|&v| v as u32).collect();
    let (q_dev, k_dev) = (DeviceBuffer::from_slice(&q), DeviceBuffer::from_slice(&k));
    let visible_dev = DeviceBuffer::from_slice(&visible_u32);
    let scratch = DeviceBuffer::<f32>::unwritten(plan.scratch_floats);
    Launch::new("attention_probs_heads")
        .buf(&q_dev)
        .buf(&k_dev)
        .buf(&visible_dev)
        .buf(&scratch)
        .arg(n_keys as i32)
        .arg(p.n_heads as i32)
        .arg(p.n_kv_heads as i32)
        .arg(p.head_dim as i32)
        .arg(p.scale)
        .run(&plan.heads);
    let out = DeviceBuffer::<f32>::unwritten(rows * n_keys);
    Launch::new("attention_probs_reduce")
        .buf(&scratch)
        .buf(&out)
        .arg(rows as i32)
        .arg(n_keys as i32)
        .arg(p.n_heads as i32)
        .run(&plan.reduce);
    let got = out.to_vec();
    assert_close(&got, &want, 1e-6, "attention_probs");
    // Rows with no visible key are exactly zero; others sum to one.
    assert!(got[n_keys..2 * n_keys].iter().all(|&v| v == 0.0));
    let first: f32 = got[..n_keys].iter().sum();
    assert!((first - 1.0).abs() < 1e-5, "{first}");
}
