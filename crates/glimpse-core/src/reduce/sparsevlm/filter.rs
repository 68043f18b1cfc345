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

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::reduce::EncodedImage;

    const DIM: usize = 4;

    fn tensor(b: &CpuBackend, data: &[f32], rows: usize) -> <CpuBackend as Backend>::Tensor {
        let mut t = b.new_tensor();
        b.upload(data, rows, data.len() / rows.max(1), &mut t);
        t
    }

    /// A prompt of `before` text rows, then per image `tokens` visual rows (one patch
    /// each) and `after` text rows.
    fn prompt(
        b: &CpuBackend,
        images: usize,
        tokens: usize,
        before: usize,
        after: usize,
    ) -> (Sequence, Vec<EncodedImage<CpuBackend>>) {
        let mut rows = Vec::new();
        let text = |rows: &mut Vec<Row>| {
            let i = rows.len() as u32;
            rows.push(Row {
                position: i,
                origin: i,
                vision: None,
            })
        };
        (0..before).for_each(|_| text(&mut rows));
        let mut encoded = Vec::new();
        for image in 0..images as u32 {
            for token in 0..tokens as u32 {
                let i = rows.len() as u32;
                rows.push(Row {
                    position: i,
                    origin: i,
                    vision: Some(VisionRef { image, token }),
                });
            }
            (0..after).for_each(|_| text(&mut rows));
            encoded.push(EncodedImage {
                embeddings: b.new_tensor(),
                tokens: (0..tokens as u32).map(|p| VisionToken { patches: vec![p] }).collect(),
                offsets: (0..tokens as u32).collect(),
                keys: Vec::new(),
                grid: 0,
                window_similarity: Vec::new(),
                slot_len: tokens,
            });
        }
        (Sequence { rows }, encoded)
    }

    /// One filter step on random attention and hidden states.
    struct Step {
        seq: Sequence,
        queries: Vec<usize>,
        attention: Vec<f32>,
        hidden: Vec<f32>,
    }

    fn random_step(filter: &SparseVlmFilter, seq: &Sequence, rng: &mut ChaCha8Rng) -> Step {
        let queries = <SparseVlmFilter as PrefillFilter<CpuBackend>>::query_rows(filter, 0, seq);
        let n = seq.len();
        let mut attention = vec![0f32; queries.len() * n];
        for (q, &row) in queries.iter().enumerate() {
            for j in 0..=row {
                attention[q * n + j] = rng.random_range(0.0..1.0);
            }
        }
        let hidden = (0..n * DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
        Step {
            seq: seq.clone(),
            queries,
            attention,
            hidden,
        }
    }

    fn run(
        filter: &mut SparseVlmFilter,
        b: &CpuBackend,
        layer: usize,
        step: &Step,
        images: &[EncodedImage<CpuBackend>],
    ) -> FilterOutput<CpuBackend> {
        let hidden = tensor(b, &step.hidden, step.seq.len());
        filter
            .select(FilterInput {
                b,
                layer,
                seq: &step.seq,
                queries: &step.queries,
                attention: &step.attention,
                hidden: &hidden,
                images,
            })
            .unwrap()
    }

    /// The rows that go on, as the driver builds them.
    fn apply(seq: &Sequence, output: &FilterOutput<CpuBackend>) -> Sequence {
        let mut rows = Vec::new();
        let mut added = output.added.iter().peekable();
        for &r in &output.keep {
            rows.push(seq.rows[r]);
            while let Some(a) = added.next_if(|a| a.after == r) {
                rows.push(a.row);
            }
        }
        assert!(added.next().is_none(), "every added row follows a kept row, in order");
        Sequence { rows }
    }

    /// The patches each current row of `seq` stands for.
    fn patches_of(
        seq: &Sequence,
        images: &[EncodedImage<CpuBackend>],
        filter: &SparseVlmFilter,
        row: usize,
    ) -> Vec<u32> {
        let v = seq.rows[row].vision.unwrap();
        let encoded = &images[v.image as usize].tokens;
        match (v.token as usize).checked_sub(encoded.len()) {
            None => encoded[v.token as usize].patches.clone(),
            Some(k) => filter.recycled[v.image as usize][k].patches.clone(),
        }
    }

    #[test]
    fn budget_mode_keeps_exactly_the_schedule_with_recycled_tokens() {
        let b = CpuBackend::new(Some(1)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut seq, images) = prompt(&b, 2, 60, 3, 5);
        let layers = vec![1, 4, 6];
        let mut filter = SparseVlmFilter::new(layers.clone(), Budget::Keep(12), true);
        let embeddings: Vec<f32> = (0..seq.len() * DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
        filter.prepare(&b, &seq, &tensor(&b, &embeddings, seq.len())).unwrap();
        assert!(filter.raters.iter().all(|r| !r.is_empty()));

        let schedule = budget_schedule(60, 12, layers.len());
        let mut made = [0usize; 2];
        let mut next_origin = u32::MAX;
        for (stage, &layer) in layers.iter().enumerate() {
            let step = random_step(&filter, &seq, &mut rng);
            let output = run(&mut filter, &b, layer, &step, &images);
            let next = apply(&seq, &output);
            let added_hidden = output.added_hidden.as_ref().map(|t| b.download(t)).unwrap_or_default();
            assert_eq!(added_hidden.len(), output.added.len() * DIM);

            for image in 0..2u32 {
                assert_eq!(
                    next.vision_rows(image).len(),
                    schedule[stage],
                    "image {image}, layer {layer}"
                );
                let kept = output
                    .keep
                    .iter()
                    .filter(|&&r| seq.rows[r].vision.is_some_and(|v| v.image == image));
                let last_kept = kept.max().copied();
                let added: Vec<(usize, &AddedRow)> = output
                    .added
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.row.vision.unwrap().image == image)
                    .collect();
                assert!(!added.is_empty(), "tokens were deleted, so some are recycled");
                for (k, a) in added {
                    assert_eq!(
                        Some(a.after),
                        last_kept,
                        "recycled rows follow the image's last kept row"
                    );
                    let v = a.row.vision.unwrap();
                    assert_eq!(v.token as usize, 60 + made[image as usize], "token index counts on");
                    made[image as usize] += 1;
                    assert_eq!(a.row.origin, next_origin, "recycled origins count down from the top");
                    next_origin -= 1;
                    // The members are the deleted rows whose patches the token covers;
                    // its row is their mean and it sits at one of their positions.
                    let members: Vec<usize> = (0..seq.len())
                        .filter(|&r| !output.keep.contains(&r))
                        .filter(|&r| seq.rows[r].vision.is_some_and(|v| v.image == image))
                        .filter(|&r| {
                            patches_of(&seq, &images, &filter, r)
                                .iter()
                                .all(|p| a.token.patches.contains(p))
                        })
                        .collect();
                    let mut covered: Vec<u32> = members
                        .iter()
                        .flat_map(|&r| patches_of(&seq, &images, &filter, r))
                        .collect();
                    covered.sort_unstable();
                    assert_eq!(covered, a.token.patches, "the patches are exactly the members'");
                    assert!(members.iter().any(|&r| seq.rows[r].position == a.row.position));
                    for c in 0..DIM {
                        let mean = members.iter().map(|&r| step.hidden[r * DIM + c] as f64).sum::<f64>()
                            / members.len() as f64;
                        assert!((added_hidden[k * DIM + c] as f64 - mean).abs() < 1e-6);
                    }
                }
            }
            let origins: HashSet<u32> = next.rows.iter().map(|r| r.origin).collect();
            assert_eq!(origins.len(), next.len(), "origins stay unique");
            seq = next;
        }
        assert_eq!(*schedule.last().unwrap(), 12);
    }

    #[test]
    fn without_recycling_the_budget_is_plain_top_k() {
        let b = CpuBackend::new(Some(1)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (seq, images) = prompt(&b, 1, 30, 2, 4);
        let mut filter = SparseVlmFilter::new(vec![2], Budget::Keep(7), false);
        filter.raters = vec![vec![32, 34]];
        let step = random_step(&filter, &seq, &mut rng);
        assert_eq!(step.queries, vec![32, 34]);
        let output = run(&mut filter, &b, 2, &step, &images);
        assert!(output.added.is_empty() && output.added_hidden.is_none());
        // Score = mean of the two raters' rows; the top 7 by it, in sequence order.
        let n = seq.len();
        let mut columns: Vec<usize> = (2..32).collect();
        let score = |c: usize| step.attention[c] + step.attention[n + c];
        columns.sort_by(|&a, &c| score(c).total_cmp(&score(a)));
        let mut expected: Vec<usize> = (0..2).chain(32..36).chain(columns[..7].iter().copied()).collect();
        expected.sort_unstable();
        assert_eq!(output.keep, expected);
    }

    /// Attention where both raters look at the image alike: the ratings have rank one.
    fn rank_one_step(seq: &Sequence, queries: Vec<usize>) -> Step {
        let n = seq.len();
        let mut attention = vec![0f32; queries.len() * n];
        for (q, &row) in queries.iter().enumerate() {
            for j in 0..=row {
                attention[q * n + j] = if seq.rows[j].vision.is_some() {
                    ((j * 37) % 23) as f32 / 23.0 * (q + 1) as f32
                } else {
                    0.5
                };
            }
        }
        Step {
            seq: seq.clone(),
            queries,
            attention,
            hidden: (0..n * DIM).map(|i| (i % 7) as f32).collect(),
        }
    }

    #[test]
    fn rank_rule_keeps_int_rank_times_scale_plus_bias() {
        let b = CpuBackend::new(Some(1)).unwrap();
        let (seq, images) = prompt(&b, 1, 30, 2, 4);
        let mut filter = SparseVlmFilter::new(vec![0], Budget::Rank { scale: 4.5, bias: 1.9 }, true);
        filter.raters = vec![vec![33, 35]];
        let step = rank_one_step(&seq, vec![33, 35]);
        let output = run(&mut filter, &b, 0, &step, &images);
        let kept_vision = output.keep.iter().filter(|&&r| seq.rows[r].vision.is_some()).count();
        // Rank 1: int(4.5 + 1.9) = 6 kept; 24 deleted → pool 8 → one recycled token.
        assert_eq!(kept_vision, 6);
        assert_eq!(output.added.len(), 1);
        assert_eq!(output.added[0].row.origin, u32::MAX);
    }

    #[test]
    fn rank_rule_keeps_everything_at_full_rank() {
        let b = CpuBackend::new(Some(1)).unwrap();
        let (seq, images) = prompt(&b, 1, 2, 2, 4);
        let mut filter = SparseVlmFilter::new(vec![0], Budget::Rank { scale: 0.1, bias: 0.0 }, true);
        filter.raters = vec![vec![4, 5]];
        let mut step = rank_one_step(&seq, vec![4, 5]);
        // Two raters, two tokens, independent rows: rank 2 = all tokens.
        let n = seq.len();
        step.attention[2] = 0.9;
        step.attention[3] = 0.1;
        step.attention[n + 2] = 0.2;
        step.attention[n + 3] = 0.7;
        let output = run(&mut filter, &b, 0, &step, &images);
        assert_eq!(output.keep, (0..seq.len()).collect::<Vec<_>>());
        assert!(output.added.is_empty());
        // Make the rows proportional: rank 1, so int(0.1) = 0 tokens are kept; the pool
        // is int(0.6) + 1 = 1 token, the better scored (token 0), and its recycled token
        // follows the text before the image.
        step.attention[n + 2] = 1.8;
        step.attention[n + 3] = 0.2;
        let output = run(&mut filter, &b, 0, &step, &images);
        assert_eq!(output.keep, vec![0, 1, 4, 5, 6, 7]);
        assert_eq!(output.added.len(), 1);
        assert_eq!(output.added[0].after, 1);
        assert_eq!(output.added[0].token.patches, vec![0]);
    }

    #[test]
    fn an_image_without_raters_is_an_input_error() {
        let b = CpuBackend::new(Some(1)).unwrap();
        let (seq, _) = prompt(&b, 1, 3, 2, 0);
        let mut filter = SparseVlmFilter::new(vec![0], Budget::Keep(2), true);
        let e = filter
            .prepare(&b, &seq, &tensor(&b, &vec![0.5; seq.len() * DIM], seq.len()))
            .unwrap_err();
        assert!(e.message.contains("image 1 has no text after it"), "{}", e.message);
    }
}
