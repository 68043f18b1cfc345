//! window_similarity and window_merge against MustDrop's stage-1 merge on the CPU backend
//! (reduce/mustdrop/encoder.rs): the same similarities, and, for the windows it merges,
//! the same hidden rows bit for bit.

use super::*;
use crate::backend::cuda::abi::{merge_copy_row, merge_window_mean};
use crate::backend::cuda::launch;
use crate::reduce::mustdrop::encoder::MustDropEncoder;
use crate::reduce::mustdrop::MergeOrder;
use crate::reduce::stages::EncoderReducer;
use crate::reduce::VisionToken;

/// Hidden states `[1 + side², dim]` (CLS first) where windows range from near-identical
/// rows to unrelated ones, so similarities spread around the threshold.
fn hidden(side: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = rng(seed);
    let per_side = side / 3;
    let bases: Vec<Vec<f32>> = (0..per_side * per_side).map(|_| random(&mut rng, dim, 1.0)).collect();
    let mut data = random(&mut rng, dim, 1.0);
    for p in 0..side * side {
        let window = (p / side / 3) * per_side + (p % side) / 3;
        // Window w's rows are its base plus noise growing with w.
        let noise = 0.1 + window as f32 * 0.35;
        data.extend(bases[window].iter().map(|b| b + noise * rng.random_range(-1.0f32..1.0)));
    }
    data
}

#[test]
fn window_similarity_and_merge_match_the_cpu_merge() {
    let b = cpu();
    for (side, dim, seed) in [(6, 37, 12), (9, 300, 13)] {
        let rows = 1 + side * side;
        let data = hidden(side, dim, seed);

        let plan = launch::window_similarity(side);
        let n_windows = plan.grid[0] as usize;
        let patches = DeviceBuffer::from_slice(&data[dim..]);
        let similarity_dev = DeviceBuffer::<f64>::unwritten(n_windows);
        Launch::new("window_similarity")
            .buf(&patches)
            .buf(&similarity_dev)
            .arg(side as i32)
            .arg(dim as i32)
            .run(&plan);
        let similarity = similarity_dev.to_vec();

        // Threshold halfway through the sorted similarities: some windows merge, some not.
        let mut sorted = similarity.clone();
        sorted.sort_by(f64::total_cmp);
        let tau = (sorted[n_windows / 2 - 1] + sorted[n_windows / 2]) / 2.0;
        let encoder = MustDropEncoder {
            tau: Some(tau),
            key_rate: 0.1,
            order: MergeOrder::Reference,
        };
        let mut merged = tensor(&b, &data, rows, dim);
        let mut tokens: Vec<VisionToken> = (0..side * side)
            .map(|p| VisionToken {
                patches: vec![p as u32],
            })
            .collect();
        let cpu_similarity = encoder.merge(&b, side, &mut merged, &mut tokens).unwrap();
        let got: Vec<f32> = similarity.iter().map(|&s| s as f32).collect();
        assert_close(&got, &cpu_similarity, 1e-6, &format!("similarity, side {side}"));
        let merged_windows = tokens.iter().filter(|t| t.patches.len() == 9).count();
        assert!(
            merged_windows > 0 && merged_windows < n_windows,
            "{merged_windows} windows merged"
        );

        // The CPU's output rows as window_merge sources: CLS, then each token.
        let mut sources = vec![merge_copy_row(0)];
        for t in &tokens {
            let first = t.patches[0] as usize;
            sources.push(if t.patches.len() == 9 {
                merge_window_mean((first / side / 3) * (side / 3) + (first % side) / 3)
            } else {
                merge_copy_row(1 + first)
            });
        }
        let (hidden_dev, sources_dev) = (DeviceBuffer::from_slice(&data), DeviceBuffer::from_slice(&sources));
        let out = DeviceBuffer::<f32>::unwritten(sources.len() * dim);
        Launch::new("window_merge")
            .buf(&hidden_dev)
            .buf(&out)
            .buf(&sources_dev)
            .arg(dim as i32)
            .arg(side as i32)
            .arg(1i32)
            .run(&launch::per_row(sources.len(), dim));
        assert_same_bits(
            &out.to_vec(),
            &b.download(&merged),
            &format!("merged rows, side {side}"),
        );
    }
}
