//! The device backend's host code (`GpuBackend`) on the emulated GPU, op by op against
//! the CPU backend: the launches it builds, the addresses and offsets it computes, the
//! cuBLAS product it describes, its buffer reuse and its failure handling.

use super::*;
use crate::backend::cuda::emu::device::EmuDevice;
use crate::backend::cuda::GpuBackend;
use crate::backend::{AttentionParams, Rider};
use crate::generate::SamplingParams;
use crate::model::config::Activation;

type Gpu = GpuBackend<EmuDevice>;

fn gpu() -> Gpu {
    GpuBackend::new(EmuDevice::new(4), None)
}

fn on_gpu(g: &Gpu, data: &[f32], rows: usize, cols: usize) -> <Gpu as Backend>::Tensor {
    let mut t = g.new_tensor();
    g.upload(data, rows, cols, &mut t);
    t
}

/// A weight loaded by both backends from the same checkpoint bytes.
fn both_weights(
    b: &CpuBackend,
    g: &Gpu,
    dtype: DType,
    shape: &[usize],
    values: &[f32],
) -> (CpuWeight, <Gpu as Backend>::Weight) {
    let w = weight(b, dtype, shape, values);
    let bytes: Vec<u8> = match &w.bits {
        WeightBits::F32(v) => bytemuck::cast_slice(v).to_vec(),
        WeightBits::Half(v) => bytemuck::cast_slice(v).to_vec(),
    };
    let view = TensorView {
        name: "test",
        dtype,
        shape,
        bytes: &bytes,
    };
    (w.cpu, g.load_weight(&view).unwrap())
}

/// `values` rounded to a weight type and back, as the device rounds matrix inputs.
fn rounded(values: &[f32], dtype: DType) -> Vec<f32> {
    values
        .iter()
        .map(|&v| match dtype {
            DType::F32 => v,
            DType::F16 => half::f16::from_f32(v).to_f32(),
            DType::BF16 => half::bf16::from_f32(v).to_f32(),
        })
        .collect()
}

/// Products of 16-bit weights: the device multiplies the input rounded to the weight's
/// type, so the CPU gets that rounded input too; only the summation order differs.
#[test]
fn linear_matches_cpu_for_every_weight_type_and_row_count() {
    let (b, g) = (cpu(), gpu());
    let mut rng = rng(31);
    let (k, n) = (70, 45);
    for dtype in DTYPES {
        let w_values = random(&mut rng, n * k, 0.5);
        let bias_values = random(&mut rng, n, 0.5);
        let (w_cpu, w_gpu) = both_weights(&b, &g, dtype, &[n, k], &w_values);
        let (bias_cpu, bias_gpu) = both_weights(&b, &g, dtype, &[n], &bias_values);
        for m in [1, 3, 9] {
            let x = random(&mut rng, m * k, 2.0);
            let mut want = b.new_tensor();
            b.linear(
                &tensor(&b, &rounded(&x, dtype), m, k),
                &w_cpu,
                Some(&bias_cpu),
                &mut want,
            );
            let mut got = g.new_tensor();
            g.linear(&on_gpu(&g, &x, m, k), &w_gpu, Some(&bias_gpu), &mut got);
            assert_eq!(g.shape(&got), (m, n));
            assert_close(
                &g.download(&got),
                &b.download(&want),
                1e-5,
                &format!("{dtype:?} × {m} rows"),
            );
            // Without bias, into a tensor that had another shape before.
            let mut reused = on_gpu(&g, &[9.0; 4], 2, 2);
            g.linear(&on_gpu(&g, &x, m, k), &w_gpu, None, &mut reused);
            b.linear(&tensor(&b, &rounded(&x, dtype), m, k), &w_cpu, None, &mut want);
            assert_close(&g.download(&reused), &b.download(&want), 1e-5, "no bias");
        }
    }
    g.check().unwrap();
}

#[test]
fn row_movement_matches_cpu() {
    let (b, g) = (cpu(), gpu());
    let mut rng = rng(32);
    let (rows, cols) = (12, 37);
    let data = random(&mut rng, rows * cols, 1.0);
    let (src_cpu, src_gpu) = (tensor(&b, &data, rows, cols), on_gpu(&g, &data, rows, cols));

    for dtype in DTYPES {
        let table = random(&mut rng, 20 * cols, 2.0);
        let (t_cpu, t_gpu) = both_weights(&b, &g, dtype, &[20, cols], &table);
        let ids = [3u32, 0, 19, 3];
        let (mut want, mut got) = (b.new_tensor(), g.new_tensor());
        b.gather_rows(&t_cpu, &ids, &mut want);
        g.gather_rows(&t_gpu, &ids, &mut got);
        assert_same_bits(&g.download(&got), &b.download(&want), &format!("gather {dtype:?}"));
    }
    // A 1-D table is one row.
    let (v_cpu, v_gpu) = both_weights(&b, &g, DType::BF16, &[cols], &data[..cols]);
    let (mut want, mut got) = (b.new_tensor(), g.new_tensor());
    b.gather_rows(&v_cpu, &[0, 0], &mut want);
    g.gather_rows(&v_gpu, &[0, 0], &mut got);
    assert_same_bits(&g.download(&got), &b.download(&want), "gather from a vector");

    let pick = [11, 2, 2, 0];
    let (mut want, mut got) = (b.new_tensor(), g.new_tensor());
    b.select_rows(&src_cpu, &pick, &mut want);
    g.select_rows(&src_gpu, &pick, &mut got);
    assert_same_bits(&g.download(&got), &b.download(&want), "select_rows");

    let (mut dst_cpu, mut dst_gpu) = (tensor(&b, &data, rows, cols), on_gpu(&g, &data, rows, cols));
    b.copy_rows(&src_cpu, 1, &mut dst_cpu, 7, 4);
    g.copy_rows(&src_gpu, 1, &mut dst_gpu, 7, 4);
    b.retain_rows(&mut dst_cpu, &[0, 3, 4, 8, 11]);
    g.retain_rows(&mut dst_gpu, &[0, 3, 4, 8, 11]);
    assert_eq!(g.shape(&dst_gpu), (5, cols));
    assert_same_bits(&g.download(&dst_gpu), &b.download(&dst_cpu), "copy + retain");

    // Growing keeps the leading rows (the new ones are unwritten); shrinking and growing
    // back within the allocation keeps them too, as the KV cache relies on.
    g.reserve_rows(&mut dst_gpu, 40, cols);
    b.reserve_rows(&mut dst_cpu, 40, cols);
    assert_same_bits(
        &g.download(&dst_gpu)[..5 * cols],
        &b.download(&dst_cpu)[..5 * cols],
        "grown",
    );
    g.reserve_rows(&mut dst_gpu, 2, cols);
    g.reserve_rows(&mut dst_gpu, 5, cols);
    assert_same_bits(
        &g.download(&dst_gpu),
        &b.download(&dst_cpu)[..5 * cols],
        "shrunk and regrown",
    );
    let mut row = vec![0f32; cols];
    g.download_row(&dst_gpu, 4, &mut row);
    assert_same_bits(&row, &b.download(&dst_cpu)[4 * cols..5 * cols], "download_row");
    g.check().unwrap();
}

/// The greedy pick on the device returns only the id, and the same id as the CPU backend
/// (and so the sampler) for every row: plain values, ties, NaN in front, nothing finite, a
/// row wider than a block.
#[test]
fn argmax_row_matches_cpu() {
    let (b, g) = (cpu(), gpu());
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let cols = 1500;
    let mut rows: Vec<Vec<f32>> = vec![
        (0..cols).map(|c| ((c * 37) % 101) as f32 * 0.25 - 9.0).collect(),
        (0..cols).map(|c| if c % 500 == 7 { 4.0 } else { 1.0 }).collect(),
        (0..cols).map(|c| if c == 0 { nan } else { (c % 13) as f32 }).collect(),
        vec![-inf; cols],
        vec![nan; cols],
    ];
    rows[0][cols - 1] = 100.0;
    let flat = rows.concat();
    let (t_cpu, t_gpu) = (tensor(&b, &flat, rows.len(), cols), on_gpu(&g, &flat, rows.len(), cols));
    let want = [cols as u32 - 1, 7, 12, 0, 0];
    for (r, &id) in want.iter().enumerate() {
        assert_eq!(b.argmax_row(&t_cpu, r, None), id, "cpu, row {r}");
        assert_eq!(g.argmax_row(&t_gpu, r, None), id, "gpu, row {r}");
    }
    g.check().unwrap();
}

/// A draw on the device picks the token the CPU sampler picks from the same row with the
/// same uniform number, for temperatures, top-k (none, 1, ties at the cut, the whole
/// vocabulary or more) and top-p (none, a tiny one, ties at the cut), on rows with many
/// equal logits, NaN and −∞, both narrower and wider than a block.
/// A rider's values come back with the token id, greedy or sampled, on either backend.
#[test]
fn a_rider_comes_back_with_the_token() {
    let (b, g) = (cpu(), gpu());
    let logits = [0.5f32, 3.0, -1.0, 2.0, 0.0];
    let verdict = [1.25f32, -7.5, f32::NEG_INFINITY];
    let (l_cpu, l_gpu) = (tensor(&b, &logits, 1, 5), on_gpu(&g, &logits, 1, 5));
    let (v_cpu, v_gpu) = (tensor(&b, &verdict, 1, 3), on_gpu(&g, &verdict, 1, 3));
    let params = SamplingParams {
        temperature: 1e-3,
        ..Default::default()
    };
    let (mut got_cpu, mut got_gpu) = (Vec::new(), Vec::new());
    let rider_cpu = Rider {
        values: &v_cpu,
        out: &mut got_cpu,
    };
    assert_eq!(b.argmax_row(&l_cpu, 0, Some(rider_cpu)), 1);
    let rider_gpu = Rider {
        values: &v_gpu,
        out: &mut got_gpu,
    };
    assert_eq!(g.argmax_row(&l_gpu, 0, Some(rider_gpu)), 1);
    assert_same_bits(&got_cpu, &verdict, "cpu rider, greedy");
    assert_same_bits(&got_gpu, &verdict, "gpu rider, greedy");
    got_gpu.clear();
    let rider_gpu = Rider {
        values: &v_gpu,
        out: &mut got_gpu,
    };
    assert_eq!(g.sample_row(&l_gpu, 0, &params, 0.5, Some(rider_gpu)), 1);
    assert_same_bits(&got_gpu, &verdict, "gpu rider, sampled");
    g.check().unwrap();
}

#[test]
fn sample_row_matches_cpu() {
    let (b, g) = (cpu(), gpu());
    let mut rng = rng(71);
    for cols in [97, 700] {
        let mut rows: Vec<Vec<f32>> = vec![
            random(&mut rng, cols, 4.0),
            // Logits on a coarse grid: many ties, at the top-k and top-p cuts too.
            random(&mut rng, cols, 3.0)
                .iter()
                .map(|v| (v * 2.0).round() / 2.0)
                .collect(),
        ];
        let mut odd = random(&mut rng, cols, 2.0);
        for c in (0..cols).step_by(3) {
            odd[c] = if c % 2 == 0 { f32::NAN } else { f32::NEG_INFINITY };
        }
        rows.push(odd);
        let flat = rows.concat();
        let (t_cpu, t_gpu) = (tensor(&b, &flat, rows.len(), cols), on_gpu(&g, &flat, rows.len(), cols));
        let uniforms: Vec<f64> = (0..6).map(|_| rng.random::<f64>()).chain([0.0, 1.0 - 1e-12]).collect();
        for temperature in [0.6f32, 1.7] {
            for top_k in [0, 1, 7, cols - 1, cols, cols + 5] {
                for top_p in [1.0f32, 0.8, 1e-6] {
                    let params = SamplingParams {
                        temperature,
                        top_k,
                        top_p,
                        ..Default::default()
                    };
                    for r in 0..rows.len() {
                        for &u in &uniforms {
                            let want = b.sample_row(&t_cpu, r, &params, u, None);
                            let got = g.sample_row(&t_gpu, r, &params, u, None);
                            assert_eq!(got, want, "cols {cols}, row {r}, {params:?}, u {u}");
                        }
                    }
                }
            }
        }
    }
    g.check().unwrap();
}

/// The repetition penalty on a row with positive, negative, zero, −∞ and NaN logits, some
/// seen and some not, wider than one block of the grid-stride launch; then one more id
/// marked with `set_value`, as a decode step does.
#[test]
fn penalize_repeats_matches_cpu() {
    let (b, g) = (cpu(), gpu());
    let mut rng = rng(73);
    let cols = 1500;
    let mut logits = random(&mut rng, 2 * cols, 3.0);
    for (c, special) in [(5, 0.0), (6, f32::NEG_INFINITY), (7, f32::NAN), (cols + 9, -0.0)] {
        logits[c] = special;
    }
    let seen: Vec<f32> = (0..cols)
        .map(|c| if c % 3 == 0 || c < 10 { 1.0 } else { 0.0 })
        .collect();
    let (l_cpu, l_gpu) = (tensor(&b, &logits, 2, cols), on_gpu(&g, &logits, 2, cols));
    let (mut s_cpu, mut s_gpu) = (tensor(&b, &seen, 1, cols), on_gpu(&g, &seen, 1, cols));
    let (mut out_cpu, mut out_gpu) = (b.new_tensor(), g.new_tensor());
    for (penalty, row) in [(1.3f32, 0), (0.7, 1)] {
        b.penalize_repeats(&l_cpu, row, &s_cpu, penalty, &mut out_cpu);
        g.penalize_repeats(&l_gpu, row, &s_gpu, penalty, &mut out_gpu);
        let want = b.download(&out_cpu);
        assert_same_bits(&g.download(&out_gpu), &want, "penalize_repeats");
        assert_ne!(want[12], logits[row * cols + 12], "seen id 12 was not penalised");
        assert_eq!(want[13], logits[row * cols + 13], "unseen id 13 was penalised");
    }
    b.set_value(&mut s_cpu, 0, 1001, 1.0);
    g.set_value(&mut s_gpu, 0, 1001, 1.0);
    assert_same_bits(&g.download(&s_gpu), &b.download(&s_cpu), "set_value");
    b.penalize_repeats(&l_cpu, 0, &s_cpu, 2.0, &mut out_cpu);
    g.penalize_repeats(&l_gpu, 0, &s_gpu, 2.0, &mut out_gpu);
    assert_same_bits(
        &g.download(&out_gpu),
        &b.download(&out_cpu),
        "penalize_repeats after set_value",
    );
    g.check().unwrap();
}

#[test]
fn elementwise_and_norm_ops_match_cpu() {
    let (b, g) = (cpu(), gpu());
    let mut rng = rng(33);
    let (rows, cols) = (5, 96);
    let x = random(&mut rng, rows * cols, 2.0);
    let y = random(&mut rng, rows * cols, 2.0);
    let scale = random(&mut rng, cols, 1.5);
    let shift = random(&mut rng, cols, 0.5);
    for dtype in DTYPES {
        let (w_cpu, w_gpu) = both_weights(&b, &g, dtype, &[cols], &scale);
        let (b_cpu, b_gpu) = both_weights(&b, &g, dtype, &[cols], &shift);
        let (mut want, mut got) = (b.new_tensor(), g.new_tensor());
        b.rms_norm(&tensor(&b, &x, rows, cols), &w_cpu, 1e-5, &mut want);
        g.rms_norm(&on_gpu(&g, &x, rows, cols), &w_gpu, 1e-5, &mut got);
        assert_close(&g.download(&got), &b.download(&want), 1e-6, "rms_norm");
        b.layer_norm(&tensor(&b, &x, rows, cols), &w_cpu, &b_cpu, 1e-5, &mut want);
        g.layer_norm(&on_gpu(&g, &x, rows, cols), &w_gpu, &b_gpu, 1e-5, &mut got);
        assert_close(&g.download(&got), &b.download(&want), 1e-6, "layer_norm");
    }

    let (mut sum_cpu, mut sum_gpu) = (tensor(&b, &x, rows, cols), on_gpu(&g, &x, rows, cols));
    b.add(&mut sum_cpu, &tensor(&b, &y, rows, cols));
    g.add(&mut sum_gpu, &on_gpu(&g, &y, rows, cols));
    assert_same_bits(&g.download(&sum_gpu), &b.download(&sum_cpu), "add");

    for act in [Activation::Silu, Activation::QuickGelu, Activation::GeluTanh] {
        let (mut a_cpu, mut a_gpu) = (tensor(&b, &x, rows, cols), on_gpu(&g, &x, rows, cols));
        b.activate(&mut a_cpu, act);
        g.activate(&mut a_gpu, act);
        assert_same_bits(&g.download(&a_gpu), &b.download(&a_cpu), &format!("{act:?}"));
        let (mut gate_cpu, mut gate_gpu) = (tensor(&b, &x, rows, cols), on_gpu(&g, &x, rows, cols));
        b.gated_activate(&mut gate_cpu, &tensor(&b, &y, rows, cols), act);
        g.gated_activate(&mut gate_gpu, &on_gpu(&g, &y, rows, cols), act);
        assert_same_bits(
            &g.download(&gate_gpu),
            &b.download(&gate_cpu),
            &format!("gated {act:?}"),
        );
    }

    // 6 heads of 16 dims, positions with gaps as after token dropping.
    let positions = [0u32, 1, 7, 300, 301];
    let (mut r_cpu, mut r_gpu) = (tensor(&b, &x, rows, cols), on_gpu(&g, &x, rows, cols));
    b.rope(&mut r_cpu, &positions, 6, 16, 10000.0);
    g.rope(&mut r_gpu, &positions, 6, 16, 10000.0);
    assert_same_bits(&g.download(&r_gpu), &b.download(&r_cpu), "rope");
    g.check().unwrap();
}

/// MustDrop's window ops: the device computes similarities from the Gram matrix, the CPU
/// from normalised rows, so they agree to rounding; merged rows agree bit for bit.
#[test]
fn window_ops_match_cpu() {
    let (b, g) = (cpu(), gpu());
    let mut rng = rng(35);
    let (grid, dim) = (6, 40);
    let rows = 1 + grid * grid;
    let mut data = random(&mut rng, rows * dim, 1.0);
    // Window 0: one direction at different lengths, similarity 1.
    for p in crate::backend::window_patches(grid, 0) {
        for d in 0..dim {
            data[(1 + p) * dim + d] = data[dim + d] * (1.0 + p as f32);
        }
    }
    let (h_cpu, h_gpu) = (tensor(&b, &data, rows, dim), on_gpu(&g, &data, rows, dim));
    let (want, got) = (
        b.window_similarity(&h_cpu, grid, 1),
        g.window_similarity(&h_gpu, grid, 1),
    );
    assert_eq!(got.len(), 4);
    for (w, (x, y)) in got.iter().zip(&want).enumerate() {
        assert!((x - y).abs() < 1e-12, "window {w}: {x} vs {y}");
    }
    assert!((got[0] - 1.0).abs() < 1e-12);

    use crate::backend::MergeSource::{Row, Window};
    let sources = [Row(0), Window(2), Row(5), Window(0), Row(36)];
    let (mut m_cpu, mut m_gpu) = (b.new_tensor(), g.new_tensor());
    b.window_merge(&h_cpu, &sources, grid, 1, &mut m_cpu);
    g.window_merge(&h_gpu, &sources, grid, 1, &mut m_gpu);
    assert_eq!(g.shape(&m_gpu), (5, dim));
    assert_same_bits(&g.download(&m_gpu), &b.download(&m_cpu), "window_merge");
    g.check().unwrap();
}

fn params(n_heads: usize, n_kv_heads: usize, head_dim: usize, causal: bool) -> AttentionParams {
    AttentionParams {
        n_heads,
        n_kv_heads,
        head_dim,
        causal,
        scale: (head_dim as f32).powf(-0.5),
    }
}

/// MustDrop's decode totals: three steps of one query over a cache that grows by a row
/// each step (new rows start from zero), then the eviction count over rows of three roles,
/// with shares that put the threshold below, among and above the totals.
#[test]
fn eviction_bookkeeping_matches_cpu() {
    let (b, g) = (cpu(), gpu());
    let mut rng = rng(36);
    let p = params(4, 2, 16, true);
    let keys = random(&mut rng, 303 * 32, 1.5);
    let (k_cpu, k_gpu) = (tensor(&b, &keys, 303, 32), on_gpu(&g, &keys, 303, 32));
    let (mut t_cpu, mut t_gpu) = (b.new_tensor(), g.new_tensor());
    for n_keys in 300..303 {
        let q = random(&mut rng, 64, 1.5);
        let (q_cpu, q_gpu) = (tensor(&b, &q, 1, 64), on_gpu(&g, &q, 1, 64));
        b.accumulate_attention(&q_cpu, &k_cpu, n_keys, p, 0.5, &mut t_cpu);
        g.accumulate_attention(&q_gpu, &k_gpu, n_keys, p, 0.5, &mut t_gpu);
        assert_eq!(g.shape(&t_gpu), (n_keys, 1));
        assert_close(&g.download(&t_gpu), &b.download(&t_cpu), 1e-6, "accumulate_attention");
    }
    // Role 1 (may go) on most rows, 2 (stays) on every seventh, 0 (text) on the rest.
    let role: Vec<f32> = (0..290).map(|j| [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 2.0][j % 7]).collect();
    let (r_cpu, r_gpu) = (tensor(&b, &role, 290, 1), on_gpu(&g, &role, 290, 1));
    let (mut c_cpu, mut c_gpu) = (b.new_tensor(), g.new_tensor());
    let mut counts = Vec::new();
    for share in [0.0f32, 0.9, 1.1, 100.0] {
        b.count_evictable(&t_cpu, &r_cpu, share, &mut c_cpu);
        g.count_evictable(&t_gpu, &r_gpu, share, &mut c_gpu);
        let (want, got) = (b.download(&c_cpu)[0], g.download(&c_gpu)[0]);
        assert_eq!(got, want, "count_evictable, share {share}");
        counts.push(want);
    }
    let may_go = role.iter().filter(|&&r| r == 1.0).count() as f32;
    assert_eq!((counts[0], counts[3]), (0.0, may_go));
    assert!(
        counts[1] > 0.0 && counts[2] > counts[1] && counts[2] < may_go,
        "{counts:?}"
    );
    g.check().unwrap();
}

/// Prefill (many queries) and decode (a few queries, keys split over the emulated SMs)
/// over a cache with spare rows past `n_keys`, with grouped-query heads.
#[test]
fn attention_matches_cpu() {
    let (b, g) = (cpu(), gpu());
    let mut rng = rng(34);
    for (n_queries, n_keys, causal) in [
        (20, 20, true),
        (9, 300, true),
        (3, 300, true),
        (1, 1, true),
        (17, 17, false),
    ] {
        let p = params(4, 2, 16, causal);
        let cache_rows = n_keys + 5;
        let q = random(&mut rng, n_queries * 64, 1.5);
        let k = random(&mut rng, cache_rows * 32, 1.5);
        let v = random(&mut rng, cache_rows * 32, 1.0);
        let (mut want, mut got) = (b.new_tensor(), g.new_tensor());
        b.attention(
            &tensor(&b, &q, n_queries, 64),
            &tensor(&b, &k, cache_rows, 32),
            &tensor(&b, &v, cache_rows, 32),
            n_keys,
            p,
            &mut want,
        );
        g.attention(
            &on_gpu(&g, &q, n_queries, 64),
            &on_gpu(&g, &k, cache_rows, 32),
            &on_gpu(&g, &v, cache_rows, 32),
            n_keys,
            p,
            &mut got,
        );
        let what = format!("{n_queries} queries × {n_keys} keys");
        assert_close(&g.download(&got), &b.download(&want), 2e-5, &what);

        let visible: Vec<usize> = (0..n_queries).map(|i| (n_keys / 2 + i).min(n_keys)).collect();
        let (mut probs_cpu, mut probs_gpu) = (Vec::new(), vec![7.0; 3]);
        b.attention_probs(
            &tensor(&b, &q, n_queries, 64),
            &tensor(&b, &k, cache_rows, 32),
            n_keys,
            &visible,
            p,
            &mut probs_cpu,
        );
        g.attention_probs(
            &on_gpu(&g, &q, n_queries, 64),
            &on_gpu(&g, &k, cache_rows, 32),
            n_keys,
            &visible,
            p,
            &mut probs_gpu,
        );
        assert_close(&probs_gpu, &probs_cpu, 1e-6, &format!("probs, {what}"));
    }
    g.check().unwrap();
}

/// An allocation the device refuses fails the op; later ops do nothing but keep shapes
/// right, reads give zeros, and `check` keeps reporting the failure.
#[test]
fn a_device_failure_is_reported_and_sticks() {
    let g = GpuBackend::new(EmuDevice::new(4).with_capacity(64 * 1024), None);
    let small = on_gpu(&g, &[1.0; 8], 2, 4);
    g.check().unwrap();
    let mut big = g.new_tensor();
    g.reserve_rows(&mut big, 100_000, 4);
    let e = g.check().unwrap_err();
    assert!(e.message.contains("cannot allocate"), "{}", e.message);
    assert_eq!(g.shape(&big), (100_000, 4));
    let mut copy = g.new_tensor();
    g.select_rows(&small, &[1, 0], &mut copy);
    assert_eq!(g.shape(&copy), (2, 4));
    assert_eq!(g.download(&small), vec![0.0; 8], "reads after a failure give zeros");
    assert_eq!(g.check().unwrap_err(), e);
}
