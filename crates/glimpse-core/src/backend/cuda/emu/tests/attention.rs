//! attention_prefill and the split-key decode pair against the CPU backend's attention,
//! with grouped-query heads, causal queries at the end of a longer cache, and ragged
//! query tiles, key tiles, head dims and key splits.

use super::*;
use crate::backend::cuda::launch;
use crate::backend::AttentionParams;

/// Online softmax rescales as it goes; the CPU normalises once. Both in f32.
const TOL: f32 = 2e-5;

struct Case {
    n_queries: usize,
    n_keys: usize,
    causal: bool,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl Case {
    fn params(&self) -> AttentionParams {
        AttentionParams {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            causal: self.causal,
            scale: 1.0 / (self.head_dim as f32).sqrt(),
        }
    }

    fn name(&self) -> String {
        format!(
            "{} queries × {} keys, causal {}, {}/{} heads of {}",
            self.n_queries, self.n_keys, self.causal, self.n_heads, self.n_kv_heads, self.head_dim
        )
    }
}

/// Inputs (with two cache rows past n_keys, which must be ignored) and the CPU result.
struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    want: Vec<f32>,
}

fn inputs(case: &Case, seed: u64) -> Inputs {
    let b = cpu();
    let mut rng = rng(seed);
    let p = case.params();
    let (q_cols, kv_cols) = (p.n_heads * p.head_dim, p.n_kv_heads * p.head_dim);
    let cache_rows = case.n_keys + 2;
    let q = random(&mut rng, case.n_queries * q_cols, 2.0);
    let k = random(&mut rng, cache_rows * kv_cols, 2.0);
    let v = random(&mut rng, cache_rows * kv_cols, 1.0);
    let mut out = b.new_tensor();
    b.attention(
        &tensor(&b, &q, case.n_queries, q_cols),
        &tensor(&b, &k, cache_rows, kv_cols),
        &tensor(&b, &v, cache_rows, kv_cols),
        case.n_keys,
        p,
        &mut out,
    );
    Inputs {
        q,
        k,
        v,
        want: b.download(&out),
    }
}

/// Passes the shape arguments shared by both kernels, in their order.
fn shape_args<'a>(launch: Launch<'a>, case: &Case) -> Launch<'a> {
    let p = case.params();
    launch
        .arg(case.n_queries as i32)
        .arg(case.n_keys as i32)
        .arg(p.n_heads as i32)
        .arg(p.n_kv_heads as i32)
        .arg(p.head_dim as i32)
        .arg(p.causal as i32)
        .arg(p.scale)
}

fn run_prefill(case: &Case, x: &Inputs) -> Vec<f32> {
    let (q, k, v) = (
        DeviceBuffer::from_slice(&x.q),
        DeviceBuffer::from_slice(&x.k),
        DeviceBuffer::from_slice(&x.v),
    );
    let out = DeviceBuffer::<f32>::unwritten(x.q.len());
    let launch = Launch::new("attention_prefill").buf(&q).buf(&k).buf(&v).buf(&out);
    shape_args(launch, case).run(&launch::attention_prefill(case.n_queries, &case.params()));
    out.to_vec()
}

fn run_decode(case: &Case, x: &Inputs, sm_count: usize) -> (Vec<f32>, usize) {
    let p = case.params();
    let plan = launch::attention_decode(case.n_queries, case.n_keys, &p, sm_count);
    let (q, k, v) = (
        DeviceBuffer::from_slice(&x.q),
        DeviceBuffer::from_slice(&x.k),
        DeviceBuffer::from_slice(&x.v),
    );
    let part_out = DeviceBuffer::<f32>::unwritten(plan.partial_out_floats);
    let part_max = DeviceBuffer::<f32>::unwritten(plan.partial_rows);
    let part_sum = DeviceBuffer::<f32>::unwritten(plan.partial_rows);
    let launch = Launch::new("attention_decode_split")
        .buf(&q)
        .buf(&k)
        .buf(&v)
        .buf(&part_out)
        .buf(&part_max)
        .buf(&part_sum);
    shape_args(launch, case)
        .arg(plan.keys_per_split as i32)
        .run(&plan.split);
    let out = DeviceBuffer::<f32>::unwritten(x.q.len());
    Launch::new("attention_decode_combine")
        .buf(&part_out)
        .buf(&part_max)
        .buf(&part_sum)
        .buf(&out)
        .arg(p.n_heads as i32)
        .arg(p.head_dim as i32)
        .arg(plan.n_splits as i32)
        .run(&plan.combine);
    (out.to_vec(), plan.n_splits)
}

fn case(n_queries: usize, n_keys: usize, causal: bool, heads: (usize, usize), head_dim: usize) -> Case {
    Case {
        n_queries,
        n_keys,
        causal,
        n_heads: heads.0,
        n_kv_heads: heads.1,
        head_dim,
    }
}

#[test]
fn prefill_attention_matches_cpu() {
    let cases = [
        // One query tile, partly filled; head_dim under a warp.
        case(3, 10, true, (4, 2), 8),
        case(6, 6, false, (4, 2), 8),
        // Exactly one tile, then a ragged second query tile and key tile; head_dim with
        // a ragged second lane chunk.
        case(16, 16, true, (2, 1), 40),
        case(37, 50, true, (4, 2), 40),
        // Several tiles each way, the vision tower's bidirectional case, and 64-dim heads.
        case(70, 70, true, (2, 2), 64),
        case(70, 70, false, (3, 1), 64),
        // Llama-7B's 128-dim heads (four lane chunks), and the largest supported head.
        case(20, 40, true, (2, 1), 128),
        case(17, 17, false, (1, 1), 256),
    ];
    for (i, c) in cases.iter().enumerate() {
        let x = inputs(c, 100 + i as u64);
        assert_close(&run_prefill(c, &x), &x.want, TOL, &c.name());
    }
}

#[test]
fn decode_attention_matches_cpu() {
    // (case, SMs to plan for, splits the plan must make): the split counts pin down that
    // the ragged and empty splits below are really exercised.
    let cases = [
        (case(1, 1, true, (2, 1), 8), 132, 1),
        // Two splits, the last holding 2 keys.
        (case(1, 130, true, (2, 1), 16), 132, 2),
        // Causal rows 0..3 see 127..130 keys: for rows 0 and 1 the second split is empty.
        (case(4, 130, true, (2, 2), 40), 132, 2),
        // Several splits with partial tiles inside warps; grouped heads.
        (case(2, 700, true, (4, 2), 64), 132, 6),
        (case(3, 300, false, (4, 1), 40), 132, 3),
        // Few SMs: one split walks all keys, warps taking many tiles each.
        (case(1, 700, false, (2, 1), 32), 1, 1),
        (case(1, 300, true, (4, 2), 128), 132, 3),
        (case(2, 200, true, (1, 1), 256), 132, 2),
    ];
    for (i, (c, sm_count, splits)) in cases.iter().enumerate() {
        let x = inputs(c, 200 + i as u64);
        let (got, n_splits) = run_decode(c, &x, *sm_count);
        assert_eq!(n_splits, *splits, "{}", c.name());
        assert_close(&got, &x.want, TOL, &c.name());
    }
}
