//! SparseVLM's prefill filter: after each of its layers, per image, score the visual
//! tokens by the raters' mean attention, keep the best (a rank-derived count or the
//! budget schedule's), and recycle the best deleted ones as cluster means.

use std::collections::{HashMap, HashSet};

use super::rank::matrix_rank;
use super::raters::select_raters;
use super::recycle::{kept_with_recycling, recycle, recycled_count, Recycled};
use super::{too_small_for_recycling, Budget};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::reduce::rank::{budget_schedule, top_k_by};
use crate::reduce::sequence::{keep_text_and, Row, Sequence, VisionRef, VisionToken};
use crate::reduce::stages::{AddedRow, FilterInput, FilterOutput, PrefillFilter};

pub(crate) struct SparseVlmFilter {
    layers: Vec<usize>,
    budget: Budget,
    recycle: bool,
    /// Per image, the origins of its raters (text rows are never removed, so an origin
    /// finds its row at every layer).
    raters: Vec<Vec<u32>>,
    /// Per image, the budget schedule's targets (set at the first filter layer).
    schedules: Vec<Vec<usize>>,
    /// Per image, the tokens recycling made so far; token index = the image's encoder
    /// tokens + place in this list.
    recycled: Vec<Vec<VisionToken>>,
    /// Origin of the next recycled row (counting down from `u32::MAX`).
    next_origin: u32,
}

impl SparseVlmFilter {
    pub fn new(layers: Vec<usize>, budget: Budget, recycle: bool) -> Self {
        SparseVlmFilter {
            layers,
            budget,
            recycle,
            raters: Vec::new(),
            schedules: Vec::new(),
            recycled: Vec::new(),
            next_origin: u32::MAX,
        }
    }

    /// How many of an image's `tokens` to keep by score at filter `stage`; `None` keeps
    /// them all and recycles nothing.
    fn kept_count(&mut self, image: usize, stage: usize, tokens: usize, ratings: &[f32]) -> Result<Option<usize>> {
        match self.budget {
            Budget::Rank { scale, bias } => {
                let rank = matrix_rank(ratings, ratings.len() / tokens, tokens);
                if rank == tokens {
                    return Ok(None);
                }
                // Python's int(): toward zero; at most all but one token is kept.
                let wanted = (rank as f64 * scale + bias).trunc().max(0.0) as usize;
                Ok(Some(wanted.min(tokens - 1)))
            }
            Budget::Keep(keep) => {
                if stage == 0 {
                    self.schedules.resize(image + 1, Vec::new());
                    self.schedules[image] = budget_schedule(tokens, keep, self.layers.len());
                }
                let target = self.schedules[image][stage];
                if target >= tokens {
                    return Ok(None);
                }
                if !self.recycle {
                    return Ok(Some(target));
                }
                kept_with_recycling(tokens, target)
                    .map(Some)
                    .ok_or_else(|| too_small_for_recycling(keep, recycled_count(tokens)))
            }
        }
    }
}

/// What one image's filtering produced.
struct ImageOutcome {
    image: u32,
    /// Sequence rows of the image's visual tokens that entered the layer.
    rows: Vec<usize>,
    /// Indices into `rows` of the kept tokens, ascending.
    kept: Vec<usize>,
    /// Recycled tokens; their indices refer to `deleted`.
    recycled: Vec<Recycled>,
    deleted: Vec<usize>,
}

impl<B: Backend> PrefillFilter<B> for SparseVlmFilter {
    fn layers(&self) -> &[usize] {
        &self.layers
    }

    fn prepare(&mut self, b: &B, seq: &Sequence, embeddings: &B::Tensor) -> Result<()> {
        let images = seq
            .rows
            .iter()
            .filter_map(|r| r.vision.map(|v| v.image as usize + 1))
            .max()
            .unwrap_or(0);
        let dim = b.shape(embeddings).1;
        let host = b.download(embeddings);
        self.raters = (0..images as u32)
            .map(|image| {
                let rows = select_raters(&host, dim, seq, image);
                if rows.is_empty() && !seq.vision_rows(image).is_empty() {
                    return Err(Error::input(format!(
                        "--reduce sparsevlm: image {} has no text after it that could rate its tokens \
                         (put the question after the image)",
                        image + 1
                    )));
                }
                Ok(rows.into_iter().map(|r| seq.rows[r].origin).collect())
            })
            .collect::<Result<_>>()?;
        self.recycled = vec![Vec::new(); images];
        Ok(())
    }

    fn query_rows(&self, _layer: usize, seq: &Sequence) -> Vec<usize> {
        let raters: HashSet<u32> = self.raters.iter().flatten().copied().collect();
        (0..seq.len())
            .filter(|&i| raters.contains(&seq.rows[i].origin))
            .collect()
    }

    fn select(&mut self, input: FilterInput<'_, B>) -> Result<FilterOutput<B>> {
        let seq = input.seq;
        let stage = self.layers.iter().position(|&l| l == input.layer).unwrap_or(0);
        let query_of: HashMap<u32, usize> = input
            .queries
            .iter()
            .enumerate()
            .map(|(q, &row)| (seq.rows[row].origin, q))
            .collect();
        let dim = input.b.shape(input.hidden).1;
        if self.recycled.len() < input.images.len() {
            self.recycled.resize(input.images.len(), Vec::new());
        }

        let mut outcomes = Vec::new();
        for image in 0..input.images.len() {
            let rows = seq.vision_rows(image as u32);
            let raters = self.raters.get(image).map_or(&[][..], |r| &r[..]);
            if rows.is_empty() {
                continue;
            }
            if raters.is_empty() {
                return Err(Error::internal("sparsevlm filter ran without raters"));
            }
            // ratings[t][j]: rater t's attention on the image's token j.
            let mut ratings = Vec::with_capacity(raters.len() * rows.len());
            for origin in raters {
                let q = query_of
                    .get(origin)
                    .copied()
                    .ok_or_else(|| Error::internal("a rater's attention row was not computed"))?;
                let probs = &input.attention[q * seq.len()..(q + 1) * seq.len()];
                ratings.extend(rows.iter().map(|&r| probs[r]));
            }
            let scores: Vec<f64> = (0..rows.len())
                .map(|j| {
                    (0..raters.len())
                        .map(|t| ratings[t * rows.len() + j] as f64)
                        .sum::<f64>()
                        / raters.len() as f64
                })
                .collect();

            let Some(count) = self.kept_count(image, stage, rows.len(), &ratings)? else {
                outcomes.push(ImageOutcome {
                    image: image as u32,
                    kept: (0..rows.len()).collect(),
                    rows,
                    recycled: Vec::new(),
                    deleted: Vec::new(),
                });
                continue;
            };
            let kept = top_k_by(rows.len(), count, |a, b| {
                scores[b].total_cmp(&scores[a]).then(a.cmp(&b))
            });
            let deleted: Vec<usize> = (0..rows.len()).filter(|j| kept.binary_search(j).is_err()).collect();
            let recycled = if self.recycle {
                let deleted_scores: Vec<f64> = deleted.iter().map(|&j| scores[j]).collect();
                recycle(&deleted_scores, dim, |i| {
                    let mut row = vec![0f32; dim];
                    input.b.download_row(input.hidden, rows[deleted[i]], &mut row);
                    row
                })
            } else {
                Vec::new()
            };
            outcomes.push(ImageOutcome {
                image: image as u32,
                rows,
                kept,
                recycled,
                deleted,
            });
        }

        let kept_rows: Vec<usize> = outcomes
            .iter()
            .flat_map(|o| o.kept.iter().map(|&j| o.rows[j]))
            .collect();
        let keep = keep_text_and(seq, &kept_rows);

        let mut added = Vec::new();
        let mut added_hidden = Vec::new();
        for outcome in &outcomes {
            self.add_recycled(&input, &keep, outcome, &mut added, &mut added_hidden)?;
        }
        let added_hidden = (!added.is_empty()).then(|| {
            let mut t = input.b.new_tensor();
            input.b.upload(&added_hidden, added.len(), dim, &mut t);
            t
        });
        Ok(FilterOutput {
            keep,
            added,
            added_hidden,
        })
    }
}

impl SparseVlmFilter {
    /// Appends one image's recycled tokens as rows right after its last kept token (or,
    /// when it kept none, where its tokens were).
    fn add_recycled<B: Backend>(
        &mut self,
        input: &FilterInput<'_, B>,
        keep: &[usize],
        outcome: &ImageOutcome,
        added: &mut Vec<AddedRow>,
        added_hidden: &mut Vec<f32>,
    ) -> Result<()> {
        if outcome.recycled.is_empty() {
            return Ok(());
        }
        let seq = input.seq;
        let image = outcome.image as usize;
        let encoded = &input.images[image].tokens;
        let anchor = match outcome.kept.last() {
            Some(&j) => Some(outcome.rows[j]),
            None => outcome.rows[0].checked_sub(1),
        };
        let after = anchor
            .and_then(|a| keep.partition_point(|&r| r <= a).checked_sub(1))
            .map(|i| keep[i])
            .ok_or_else(|| Error::internal("recycled tokens have no kept row to follow"))?;

        for cluster in &outcome.recycled {
            let mut patches: Vec<u32> = Vec::new();
            for row in cluster.members.iter().map(|&m| outcome.rows[outcome.deleted[m]]) {
                let token = seq.rows[row].vision.map_or(0, |v| v.token as usize);
                let source = match token.checked_sub(encoded.len()) {
                    None => &encoded[token],
                    Some(k) => &self.recycled[image][k],
                };
                patches.extend_from_slice(&source.patches);
            }
            patches.sort_unstable();
            patches.dedup();
            let center = seq.rows[outcome.rows[outcome.deleted[cluster.center]]];
            let token = VisionToken { patches };
            added.push(AddedRow {
                after,
                row: Row {
                    position: center.position,
                    origin: self.next_origin,
                    vision: Some(VisionRef {
                        image: outcome.image,
                        token: (encoded.len() + self.recycled[image].len()) as u32,
                    }),
                },
                token: token.clone(),
            });
            added_hidden.extend_from_slice(&cluster.hidden);
            self.recycled[image].push(token);
            self.next_origin -= 1;
        }
        Ok(())
    }
}
