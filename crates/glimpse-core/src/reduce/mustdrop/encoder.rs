//! MustDrop stage 1: local spatial merging of similar 3×3 windows after the vision
//! tower's first layer, and the key-token set from the CLS attention of its key layer.

use super::MergeOrder;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::reduce::rank::top_k;
use crate::reduce::stages::EncoderReducer;
use crate::reduce::VisionToken;

/// Window side, in patches.
const WINDOW: usize = 3;
/// The layer whose output is merged (the first).
const MERGE_AFTER_LAYER: usize = 0;

pub(crate) struct MustDropEncoder {
    pub tau: Option<f64>,
    pub key_rate: f64,
    pub order: MergeOrder,
}

impl<B: Backend> EncoderReducer<B> for MustDropEncoder {
    fn merge_after(&self) -> Option<usize> {
        self.tau.map(|_| MERGE_AFTER_LAYER)
    }

    fn merge(&self, b: &B, grid: usize, hidden: &mut B::Tensor, tokens: &mut Vec<VisionToken>) -> Result<Vec<f32>> {
        let Some(tau) = self.tau else {
            return Ok(Vec::new());
        };
        if !grid.is_multiple_of(WINDOW) {
            return Err(Error::usage(format!(
                "--reduce mustdrop: merging needs a patch grid divisible by {WINDOW}, this model's is {grid}×{grid} \
                 (use merge=off)"
            )));
        }
        let (rows, dim) = b.shape(hidden);
        if rows != grid * grid + 1 || tokens.len() != grid * grid {
            return Err(Error::internal(
                "mustdrop merge expects one row per patch after the CLS row",
            ));
        }
        let host = b.download(hidden);
        let patch = |p: usize| &host[(1 + p) * dim..(2 + p) * dim];
        let windows = window_members(grid);
        let similarity: Vec<f64> = windows.iter().map(|w| mean_pairwise_cosine(w, &patch)).collect();

        // Merged windows, in the order the reference code emits them (descending
        // similarity, ties to the lower window id).
        let mut merged: Vec<usize> = (0..windows.len()).filter(|&w| similarity[w] >= tau).collect();
        merged.sort_by(|&a, &c| similarity[c].total_cmp(&similarity[a]).then(a.cmp(&c)));
        let mut in_merged = vec![false; grid * grid];
        for &w in &merged {
            windows[w].iter().for_each(|&p| in_merged[p] = true);
        }

        // (patches, row data) of every output token.
        let mut out: Vec<(Vec<u32>, Vec<f32>)> = merged
            .iter()
            .map(|&w| {
                let mut mean = vec![0f32; dim];
                for &p in &windows[w] {
                    mean.iter_mut().zip(patch(p)).for_each(|(m, x)| *m += x);
                }
                mean.iter_mut().for_each(|m| *m /= windows[w].len() as f32);
                (windows[w].iter().map(|&p| p as u32).collect(), mean)
            })
            .collect();
        out.extend(
            (0..grid * grid)
                .filter(|&p| !in_merged[p])
                .map(|p| (vec![p as u32], patch(p).to_vec())),
        );
        if self.order == MergeOrder::Raster {
            out.sort_by_key(|(patches, _)| patches[0]);
        }

        let mut data = Vec::with_capacity((out.len() + 1) * dim);
        data.extend_from_slice(&host[..dim]);
        for (_, row) in &out {
            data.extend_from_slice(row);
        }
        b.upload(&data, out.len() + 1, dim, hidden);
        *tokens = out.into_iter().map(|(patches, _)| VisionToken { patches }).collect();
        Ok(similarity.into_iter().map(|s| s as f32).collect())
    }

    fn wants_keys(&self) -> bool {
        true
    }

    fn keys(&self, cls_attention: &[f32]) -> Result<Vec<u32>> {
        let n = cls_attention.len();
        let count = ((self.key_rate * n as f64).ceil() as usize).min(n);
        Ok(top_k(cls_attention, count).into_iter().map(|i| i as u32).collect())
    }
}

/// Patch indices of each 3×3 window, windows and members in raster order.
fn window_members(grid: usize) -> Vec<Vec<usize>> {
    let per_side = grid / WINDOW;
    (0..per_side * per_side)
        .map(|w| {
            let (gy, gx) = (w / per_side, w % per_side);
            (0..WINDOW * WINDOW)
                .map(|t| (gy * WINDOW + t / WINDOW) * grid + gx * WINDOW + t % WINDOW)
                .collect()
        })
        .collect()
}

/// Mean cosine similarity over the ordered pairs of distinct members.
fn mean_pairwise_cosine<'a>(members: &[usize], row: &impl Fn(usize) -> &'a [f32]) -> f64 {
    let unit: Vec<Vec<f64>> = members
        .iter()
        .map(|&p| {
            let r = row(p);
            let norm = r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            r.iter().map(|&x| x as f64 / norm).collect()
        })
        .collect();
    let mut sum = 0.0;
    for a in 0..unit.len() {
        for c in 0..unit.len() {
            if a != c {
                sum += unit[a].iter().zip(&unit[c]).map(|(x, y)| x * y).sum::<f64>();
            }
        }
    }
    sum / (unit.len() * (unit.len() - 1)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    fn encoder(tau: f64, order: MergeOrder) -> MustDropEncoder {
        MustDropEncoder {
            tau: Some(tau),
            key_rate: 0.08,
            order,
        }
    }

    #[test]
    fn windows_cover_the_grid_in_raster_order() {
        let w = window_members(6);
        assert_eq!(w.len(), 4);
        assert_eq!(w[0], vec![0, 1, 2, 6, 7, 8, 12, 13, 14]);
        assert_eq!(w[3], vec![21, 22, 23, 27, 28, 29, 33, 34, 35]);
    }

    /// A 6×6 grid whose top-left window is nine copies of one direction (similarity 1)
    /// and the rest alternate between orthogonal directions.
    fn hidden(b: &CpuBackend) -> (<CpuBackend as Backend>::Tensor, Vec<f32>) {
        let dim = 4;
        let mut data = vec![9.0, 9.0, 9.0, 9.0]; // CLS
        for p in 0..36 {
            let (y, x) = (p / 6, p % 6);
            let row = if y < 3 && x < 3 {
                [1.0 + p as f32, 2.0 + 2.0 * p as f32, 0.0, 0.0]
            } else if p % 2 == 0 {
                [0.0, 0.0, 1.0, 0.0]
            } else {
                [0.0, 0.0, 0.0, 1.0 + p as f32]
            };
            data.extend_from_slice(&row);
        }
        let mut t = b.new_tensor();
        b.upload(&data, 37, dim, &mut t);
        (t, data)
    }

    #[test]
    fn merges_similar_windows_into_their_mean_keeping_the_sum() {
        let b = CpuBackend::new(Some(1)).unwrap();
        let (mut t, data) = hidden(&b);
        let mut tokens: Vec<VisionToken> = (0..36).map(|p| VisionToken { patches: vec![p] }).collect();
        let sim = encoder(0.9, MergeOrder::Raster)
            .merge(&b, 6, &mut t, &mut tokens)
            .unwrap();
        assert!((sim[0] - 1.0).abs() < 1e-6, "{sim:?}");
        assert!(sim[1..].iter().all(|&s| s < 0.9));
        assert_eq!(tokens.len(), 36 - 8);
        assert_eq!(tokens[0].patches, vec![0, 1, 2, 6, 7, 8, 12, 13, 14]);
        assert_eq!(tokens[1].patches, vec![3]);
        let out = b.download(&t);
        // The merged row times the window size equals the sum of the rows it replaced.
        let window_sum: f32 = [0, 1, 2, 6, 7, 8, 12, 13, 14]
            .iter()
            .map(|p| data[(1 + p) * 4 + 1])
            .sum();
        assert!((out[4 + 1] * 9.0 - window_sum).abs() < 1e-4);
        assert_eq!(&out[..4], &data[..4], "CLS row untouched");
    }

    #[test]
    fn reference_order_puts_merged_windows_first() {
        let b = CpuBackend::new(Some(1)).unwrap();
        let (mut t, _) = hidden(&b);
        let mut tokens: Vec<VisionToken> = (0..36).map(|p| VisionToken { patches: vec![p] }).collect();
        // A threshold every window passes: all four merge, ordered by similarity.
        let sim = encoder(-1.0, MergeOrder::Reference)
            .merge(&b, 6, &mut t, &mut tokens)
            .unwrap();
        assert_eq!(tokens.len(), 4);
        let mut expected: Vec<usize> = (0..4).collect();
        expected.sort_by(|&a, &c| sim[c].total_cmp(&sim[a]).then(a.cmp(&c)));
        let firsts: Vec<u32> = tokens.iter().map(|t| t.patches[0]).collect();
        let window_first = [0u32, 3, 18, 21];
        assert_eq!(firsts, expected.iter().map(|&w| window_first[w]).collect::<Vec<_>>());
    }

    #[test]
    fn grid_not_divisible_by_three_is_a_usage_error() {
        let b = CpuBackend::new(Some(1)).unwrap();
        let mut t = b.new_tensor();
        b.upload(&[0.0; 17 * 2], 17, 2, &mut t);
        let mut tokens: Vec<VisionToken> = (0..16).map(|p| VisionToken { patches: vec![p] }).collect();
        let e = encoder(0.8, MergeOrder::Raster)
            .merge(&b, 4, &mut t, &mut tokens)
            .unwrap_err();
        assert!(e.message.contains("divisible by 3"), "{}", e.message);
    }

    #[test]
    fn key_count_is_the_ceiling_of_the_rate() {
        let e = encoder(0.8, MergeOrder::Raster);
        let scores: Vec<f32> = (0..576).map(|i| (i % 50) as f32).collect();
        let keys = <MustDropEncoder as EncoderReducer<CpuBackend>>::keys(&e, &scores).unwrap();
        assert_eq!(keys.len(), 47);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }
}
