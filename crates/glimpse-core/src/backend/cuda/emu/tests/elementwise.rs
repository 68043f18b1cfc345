//! activate, gated_activate, rope, softmax_rows and argmax_rows against the CPU backend
//! (softmax against a plain reference: the CPU backend has no softmax op; argmax against
//! the greedy sampler).

use super::*;
use crate::backend::cuda::abi::activation_code;
use crate::backend::cuda::launch::{self, LaunchConfig};
use crate::generate::sampler::greedy_choice;
use crate::model::config::Activation;

const ACTIVATIONS: [Activation; 4] = [
    Activation::Gelu,
    Activation::GeluTanh,
    Activation::QuickGelu,
    Activation::Silu,
];

/// Same formulas in the same order and the same C library for exp and tanh, so equal
/// bits; except erf, which the CPU backend takes from the `libm` crate: its last-bit
/// differences grow where 1 + erf(x) cancels, hence a tolerance for exact GELU.
fn assert_activation(got: &[f32], want: &[f32], act: Activation, what: &str) {
    if act == Activation::Gelu {
        assert_close(got, want, 2e-7, what);
    } else {
        assert_same_bits(got, want, what);
    }
}

fn run_activate(x: &[f32], act: Activation, config: &LaunchConfig) -> Vec<f32> {
    let x_dev = DeviceBuffer::from_slice(x);
    Launch::new("activate")
        .buf(&x_dev)
        .arg(x.len() as i64)
        .arg(activation_code(act))
        .run(config);
    x_dev.to_vec()
}

#[test]
fn activations_match_cpu() {
    let b = cpu();
    let mut rng = rng(3);
    let n = 1000; // four blocks of 256, the last one ragged
    let x = random(&mut rng, n, 8.0);
    let up = random(&mut rng, n, 2.0);
    for act in ACTIVATIONS {
        let mut want = tensor(&b, &x, 1, n);
        b.activate(&mut want, act);
        let got = run_activate(&x, act, &launch::elementwise(n));
        assert_activation(&got, &b.download(&want), act, &format!("{act:?}"));

        let mut gate = tensor(&b, &x, 1, n);
        b.gated_activate(&mut gate, &tensor(&b, &up, 1, n), act);
        let (gate_dev, up_dev) = (DeviceBuffer::from_slice(&x), DeviceBuffer::from_slice(&up));
        Launch::new("gated_activate")
            .buf(&gate_dev)
            .buf(&up_dev)
            .arg(n as i64)
            .arg(activation_code(act))
            .run(&launch::elementwise(n));
        assert_activation(&gate_dev.to_vec(), &b.download(&gate), act, &format!("gated {act:?}"));
    }
}

/// Past launch::elementwise's block cap the grid strides; two blocks over 5000 elements
/// take the same path at a size the emulation runs quickly.
#[test]
fn activation_grid_stride_covers_everything() {
    let b = cpu();
    let x = random(&mut rng(4), 5000, 4.0);
    let mut want = tensor(&b, &x, 1, 5000);
    b.activate(&mut want, Activation::Silu);
    let two_blocks = LaunchConfig {
        grid: [2, 1, 1],
        ..launch::elementwise(5000)
    };
    let got = run_activate(&x, Activation::Silu, &two_blocks);
    assert_same_bits(&got, &b.download(&want), "silu, strided");
}

#[test]
fn rope_matches_cpu() {
    let b = cpu();
    let mut rng = rng(5);
    // (heads, head_dim): fewer pairs than a warp; more pairs (320) than threads (256).
    for (n_heads, head_dim) in [(3, 16), (5, 128)] {
        let rows = 7;
        let cols = n_heads * head_dim;
        let x = random(&mut rng, rows * cols, 2.0);
        // Positions with gaps, as after dropping, up to long-context angles.
        let positions: Vec<u32> = (0..rows).map(|_| rng.random_range(0..5000)).collect();
        let mut want = tensor(&b, &x, rows, cols);
        b.rope(&mut want, &positions, n_heads, head_dim, 10_000.0);

        let (x_dev, pos_dev) = (DeviceBuffer::from_slice(&x), DeviceBuffer::from_slice(&positions));
        Launch::new("rope")
            .buf(&x_dev)
            .buf(&pos_dev)
            .arg(n_heads as i32)
            .arg(head_dim as i32)
            .arg(10_000.0f32)
            .run(&launch::rope(rows, n_heads, head_dim));
        // Same f32 operations and the same C library pow/sin/cos: equal bits.
        assert_same_bits(
            &x_dev.to_vec(),
            &b.download(&want),
            &format!("rope {n_heads}×{head_dim}"),
        );
    }
}

fn softmax_reference(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[test]
fn softmax_rows_match_reference() {
    let mut rng = rng(6);
    for cols in [1, 50, 1000, 32_000] {
        let rows = 3;
        let x = random(&mut rng, rows * cols, 10.0);
        let want: Vec<f32> = x.chunks(cols).flat_map(softmax_reference).collect();
        let (x_dev, out) = (
            DeviceBuffer::from_slice(&x),
            DeviceBuffer::<f32>::unwritten(rows * cols),
        );
        Launch::new("softmax_rows")
            .buf(&x_dev)
            .buf(&out)
            .arg(cols as i32)
            .run(&launch::per_row(rows, cols));
        // 1/sum·e against e/sum, and sums in another order.
        assert_close(&out.to_vec(), &want, 1e-6, &format!("softmax cols {cols}"));
    }
}

#[test]
fn argmax_matches_the_greedy_sampler() {
    let mut rng = rng(7);
    let cols = 5000;
    let mut rows: Vec<Vec<f32>> = (0..3).map(|_| random(&mut rng, cols, 5.0)).collect();
    // Ties: the lowest index wins, even across threads and warps.
    let mut tie = vec![0.0f32; cols];
    for i in [4321, 700, 4999, 33] {
        tie[i] = 9.0;
    }
    rows.push(tie);
    // NaN is never the answer; a row of −inf and NaN only gives 0.
    let mut nan_first = random(&mut rng, cols, 1.0);
    nan_first[0] = f32::NAN;
    nan_first[17] = f32::NAN;
    rows.push(nan_first);
    let mut hopeless = vec![f32::NEG_INFINITY; cols];
    hopeless[3] = f32::NAN;
    rows.push(hopeless);

    let want: Vec<u32> = rows.iter().map(|r| greedy_choice(r)).collect();
    assert_eq!(want[3], 33);

    let flat: Vec<f32> = rows.concat();
    let (x_dev, out) = (
        DeviceBuffer::from_slice(&flat),
        DeviceBuffer::<u32>::unwritten(rows.len()),
    );
    Launch::new("argmax_rows")
        .buf(&x_dev)
        .buf(&out)
        .arg(cols as i32)
        .run(&launch::per_row(rows.len(), cols));
    assert_eq!(out.to_vec(), want);

    // Narrow rows: one warp, most lanes without a column.
    let narrow = [1.0f32, 3.0, 3.0];
    let (x_dev, out) = (DeviceBuffer::from_slice(&narrow), DeviceBuffer::<u32>::unwritten(1));
    Launch::new("argmax_rows")
        .buf(&x_dev)
        .buf(&out)
        .arg(3i32)
        .run(&launch::per_row(1, 3));
    assert_eq!(out.to_vec(), [1]);
}
