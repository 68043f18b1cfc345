//! MustDrop stage 1: local spatial merging of similar 3×3 windows after the vision
//! tower's first layer, and the key-token set from the CLS attention of its key layer.

use super::MergeOrder;
use crate::backend::{window_patches, Backend, MergeSource, MERGE_WINDOW as WINDOW};
use crate::error::{Error, Result};
use crate::reduce::rank::top_k;
use crate::reduce::stages::EncoderReducer;
use crate::reduce::VisionToken;

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
        let rows = b.shape(hidden).0;
        if rows != grid * grid + 1 || tokens.len() != grid * grid {
            return Err(Error::internal(
                "mustdrop merge expects one row per patch after the CLS row",
            ));
        }
        // Similarities on the device; which windows merge, and in what order the rows
        // come out, is decided here from them.
        let similarity = b.window_similarity(hidden, grid, 1);
        let windows: Vec<[usize; WINDOW * WINDOW]> = (0..similarity.len()).map(|w| window_patches(grid, w)).collect();

        // Merged windows, in the order the reference code emits them (descending
        // similarity, ties to the lower window id).
        let mut merged: Vec<usize> = (0..windows.len()).filter(|&w| similarity[w] >= tau).collect();
        merged.sort_by(|&a, &c| similarity[c].total_cmp(&similarity[a]).then(a.cmp(&c)));
        let mut in_merged = vec![false; grid * grid];
        for &w in &merged {
            windows[w].iter().for_each(|&p| in_merged[p] = true);
        }

        // (patches, source row) of every output token.
        let mut out: Vec<(Vec<u32>, MergeSource)> = merged
            .iter()
            .map(|&w| (windows[w].iter().map(|&p| p as u32).collect(), MergeSource::Window(w)))
            .collect();
        out.extend(
            (0..grid * grid)
                .filter(|&p| !in_merged[p])
                .map(|p| (vec![p as u32], MergeSource::Row(1 + p))),
        );
        if self.order == MergeOrder::Raster {
            out.sort_by_key(|(patches, _)| patches[0]);
        }

        // CLS first, then one row per token.
        let sources: Vec<MergeSource> = std::iter::once(MergeSource::Row(0))
            .chain(out.iter().map(|(_, source)| *source))
            .collect();
        let mut next = b.new_tensor();
        b.window_merge(hidden, &sources, grid, 1, &mut next);
        *hidden = next;
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
        assert_eq!(window_patches(6, 0), [0, 1, 2, 6, 7, 8, 12, 13, 14]);
        assert_eq!(window_patches(6, 3), [21, 22, 23, 27, 28, 29, 33, 34, 35]);
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
