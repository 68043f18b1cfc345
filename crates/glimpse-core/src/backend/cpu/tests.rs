//! The CPU kernels against plain reference loops written for clarity, not speed.

use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::tensor::{CpuTensor, CpuWeight, WeightData};
use super::CpuBackend;
use crate::backend::{AttentionParams, Backend};

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn tensor(data: Vec<f32>, rows: usize, cols: usize) -> CpuTensor {
    CpuTensor { data, rows, cols }
}

fn weight(data: WeightData, rows: usize, cols: usize) -> CpuWeight {
    CpuWeight { data, rows, cols }
}

fn naive_linear(x: &[f32], w: &[f32], bias: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = bias[j] + (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum::<f32>();
        }
    }
    out
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "element {i}: got {g}, want {w}");
    }
}

/// Both product paths (dot products for few rows, gemm for many) and every storage type
/// give the reference result; 16-bit weights are compared against their own rounded
/// values, since widening must be exact.
#[test]
fn linear_matches_reference_for_all_dtypes_and_row_counts() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let b = CpuBackend::new(Some(2)).unwrap();
    let (k, n) = (1100, 37); // k spans more than one dot-product tile, with a ragged tail
    let w32 = random(&mut rng, n * k);
    let bias = random(&mut rng, n);
    let bias_w = weight(WeightData::F32(bias.clone()), 1, n);
    let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
    let wb16: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
    let cases = [
        (weight(WeightData::F32(w32.clone()), n, k), w32.clone()),
        (
            weight(WeightData::F16(w16.clone()), n, k),
            w16.iter().map(|v| v.to_f32()).collect(),
        ),
        (
            weight(WeightData::BF16(wb16.clone()), n, k),
            wb16.iter().map(|v| v.to_f32()).collect(),
        ),
    ];
    for m in [1, 3, 9] {
        let x = random(&mut rng, m * k);
        for (w, w_exact) in &cases {
            let mut out = b.new_tensor();
            b.linear(&tensor(x.clone(), m, k), w, Some(&bias_w), &mut out);
            assert_eq!((out.rows, out.cols), (m, n));
            assert_close(&out.data, &naive_linear(&x, w_exact, &bias, m, k, n), 1e-4);
        }
    }
}

/// A decode batch stacks one row per sequence: up to the dot-product path's limit, each
/// row of the product is bit for bit the row computed alone, whatever the rows beside it.
#[test]
fn stacked_rows_give_each_row_its_own_product_exactly() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let b = CpuBackend::new(Some(2)).unwrap();
    let (k, n) = (200, 75); // more output features than one parallel task takes
    let w32 = random(&mut rng, n * k);
    let wb16: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
    let bias = weight(WeightData::F32(random(&mut rng, n)), 1, n);
    for w in [
        weight(WeightData::F32(w32.clone()), n, k),
        weight(WeightData::BF16(wb16), n, k),
    ] {
        for m in 2..=4 {
            let x = random(&mut rng, m * k);
            let mut stacked = b.new_tensor();
            b.linear(&tensor(x.clone(), m, k), &w, Some(&bias), &mut stacked);
            for r in 0..m {
                let mut alone = b.new_tensor();
                b.linear(
                    &tensor(x[r * k..(r + 1) * k].to_vec(), 1, k),
                    &w,
                    Some(&bias),
                    &mut alone,
                );
                assert_eq!(&stacked.data[r * n..(r + 1) * n], &alone.data[..], "row {r} of {m}");
            }
        }
    }
}

fn naive_attention(q: &[f32], k: &[f32], v: &[f32], nq: usize, nk: usize, p: AttentionParams) -> Vec<f32> {
    let (h, kvh, d) = (p.n_heads, p.n_kv_heads, p.head_dim);
    let mut out = vec![0f32; nq * h * d];
    for i in 0..nq {
        for head in 0..h {
            let g = head / (h / kvh);
            let visible = if p.causal { nk - nq + i + 1 } else { nk };
            let scores: Vec<f32> = (0..visible)
                .map(|t| {
                    (0..d)
                        .map(|e| q[i * h * d + head * d + e] * k[t * kvh * d + g * d + e])
                        .sum::<f32>()
                        * p.scale
                })
                .collect();
            let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            for e in 0..d {
                out[i * h * d + head * d + e] =
                    (0..visible).map(|t| exps[t] * v[t * kvh * d + g * d + e]).sum::<f32>() / sum;
            }
        }
    }
    out
}

/// Grouped-query causal attention where the queries are the last rows of a longer cache
/// (the decode and chunked-prefill situation), and full bidirectional attention, for few
/// query rows (per-row path) and many (blocked path, with ragged and multiple blocks).
#[test]
fn attention_matches_reference_with_gqa_and_causal_offset() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let b = CpuBackend::new(Some(2)).unwrap();
    let cases = [
        (3, 10, true),
        (1, 10, true),
        (6, 6, false),
        (8, 8, true),
        (37, 50, true),
        (150, 150, true),
        (150, 150, false),
    ];
    for (nq, nk, causal) in cases {
        let p = AttentionParams {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 8,
            causal,
            scale: 0.35,
        };
        let q = random(&mut rng, nq * 4 * 8);
        // extra rows past n_keys must be ignored
        let k = random(&mut rng, (nk + 2) * 2 * 8);
        let v = random(&mut rng, (nk + 2) * 2 * 8);
        let mut out = b.new_tensor();
        b.attention(
            &tensor(q.clone(), nq, 32),
            &tensor(k.clone(), nk + 2, 16),
            &tensor(v.clone(), nk + 2, 16),
            nk,
            p,
            &mut out,
        );
        assert_close(&out.data, &naive_attention(&q, &k, &v, nq, nk, p), 1e-5);
    }
}

/// RoPE at position 0 is the identity, rotations keep each (i, i + d/2) pair's length,
/// and position p rotates pair 0 by exactly p radians (its frequency is θ⁰ = 1).
#[test]
fn rope_rotates_half_pairs_by_position() {
    let b = CpuBackend::new(Some(1)).unwrap();
    let x = vec![1.0, 0.5, 0.0, -2.0, 3.0, 1.0, 0.25, 0.75];
    let mut t = tensor([x.clone(), x.clone()].concat(), 2, 8);
    b.rope(&mut t, &[0, 3], 2, 4, 10_000.0);
    assert_close(&t.data[..8], &x, 1e-7);
    let rotated = &t.data[8..];
    let (c, s) = (3f32.cos(), 3f32.sin());
    assert_close(&rotated[0..1], &[1.0 * c - 0.0 * s], 1e-6);
    assert_close(&rotated[2..3], &[0.0 * c + 1.0 * s], 1e-6);
    for head in 0..2 {
        for i in 0..2 {
            let (a, bb) = (x[head * 4 + i], x[head * 4 + i + 2]);
            let (ra, rb) = (rotated[head * 4 + i], rotated[head * 4 + i + 2]);
            assert!(((a * a + bb * bb) - (ra * ra + rb * rb)).abs() < 1e-5);
        }
    }
}

#[test]
fn norms_match_their_definitions() {
    let b = CpuBackend::new(Some(1)).unwrap();
    let x = tensor(vec![1.0, 2.0, 3.0, 4.0, -1.0, 0.0, 1.0, 2.0], 2, 4);
    let g = weight(WeightData::F32(vec![1.0, 0.5, 2.0, 1.0]), 1, 4);
    let beta = weight(WeightData::F32(vec![0.0, 1.0, 0.0, -1.0]), 1, 4);
    let mut out = b.new_tensor();
    b.rms_norm(&x, &g, 0.0, &mut out);
    let r = (30f32 / 4.0).sqrt();
    assert_close(&out.data[..4], &[1.0 / r, 1.0 / r, 6.0 / r, 4.0 / r], 1e-6);
    b.layer_norm(&x, &g, &beta, 0.0, &mut out);
    let sd = 1.25f32.sqrt();
    assert_close(
        &out.data[..4],
        &[-1.5 / sd, -0.25 / sd + 1.0, 1.0 / sd, 1.5 / sd - 1.0],
        1e-6,
    );
}
