//! MustDrop stage 2: dual-attention filtering. After each filter layer, a visual token
//! goes when the text after the image pays it little attention both in total (its
//! "global" share) and from any single text token (its "individual" maximum); key
//! tokens always stay.

use super::Budget;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::reduce::rank::{budget_schedule, descending, top_k_by};
use crate::reduce::sequence::{keep_text_and, Sequence};
use crate::reduce::stages::{FilterInput, FilterOutput, PrefillFilter};

pub(crate) struct DualAttentionFilter {
    layers: Vec<usize>,
    budget: Budget,
    /// Per image, the targets of the budget schedule (set at the first filter layer).
    schedules: Vec<Vec<usize>>,
}

impl DualAttentionFilter {
    pub fn new(layers: Vec<usize>, budget: Budget) -> Self {
        DualAttentionFilter {
            layers,
            budget,
            schedules: Vec::new(),
        }
    }
}

/// Attention the text pays one image's visual tokens.
struct TextAttention {
    /// Sum over text rows, per token.
    global: Vec<f64>,
    /// Max over text rows, per token.
    individual: Vec<f32>,
}

fn text_attention(attention: &[f32], n_keys: usize, n_queries: usize, rows: &[usize]) -> TextAttention {
    let mut global = vec![0f64; rows.len()];
    let mut individual = vec![0f32; rows.len()];
    for q in 0..n_queries {
        let probs = &attention[q * n_keys..(q + 1) * n_keys];
        for (j, &r) in rows.iter().enumerate() {
            global[j] += probs[r] as f64;
            individual[j] = individual[j].max(probs[r]);
        }
    }
    TextAttention { global, individual }
}

impl<B: Backend> PrefillFilter<B> for DualAttentionFilter {
    fn layers(&self) -> &[usize] {
        &self.layers
    }

    fn query_rows(&self, _layer: usize, seq: &Sequence) -> Vec<usize> {
        seq.text_after_images()
    }

    fn select(&mut self, input: FilterInput<'_, B>) -> Result<FilterOutput<B>> {
        let seq = input.seq;
        let stage = self.layers.iter().position(|&l| l == input.layer).unwrap_or(0);
        let mut kept = Vec::new();
        for (image, encoded) in input.images.iter().enumerate() {
            let rows = seq.vision_rows(image as u32);
            let is_key: Vec<bool> = rows
                .iter()
                .map(|&r| seq.rows[r].vision.is_some_and(|v| encoded.keys.contains(&v.token)))
                .collect();
            let att = text_attention(input.attention, seq.len(), input.queries.len(), &rows);
            let chosen: Vec<usize> = match self.budget {
                Budget::Thresholds { global, individual } => {
                    let total: f64 = att.global.iter().sum();
                    (0..rows.len())
                        .filter(|&j| {
                            let dropped = att.global[j] < total * global && (att.individual[j] as f64) < individual;
                            is_key[j] || !dropped
                        })
                        .collect()
                }
                Budget::Keep(keep) => {
                    if stage == 0 {
                        if image == 0 {
                            self.schedules.clear();
                        }
                        self.schedules
                            .push(budget_schedule(rows.len(), keep, self.layers.len()));
                    }
                    let target = self.schedules[image][stage];
                    let keys = is_key.iter().filter(|k| **k).count();
                    if keys > keep {
                        return Err(Error::usage(format!(
                            "--reduce mustdrop: keep={keep} is below the {keys} key tokens of an image \
                             (raise keep or lower key_rate)"
                        )));
                    }
                    // Key tokens first, then by global attention, individual, position.
                    top_k_by(rows.len(), target.min(rows.len()), |a, b| {
                        is_key[b]
                            .cmp(&is_key[a])
                            .then_with(|| att.global[b].total_cmp(&att.global[a]))
                            .then_with(|| descending(att.individual[a], att.individual[b]))
                            .then(a.cmp(&b))
                    })
                }
            };
            kept.extend(chosen.into_iter().map(|j| rows[j]));
        }
        Ok(FilterOutput::keep(keep_text_and(seq, &kept)))
    }
}
