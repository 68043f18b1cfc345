//! The language model's state during one generation — KV cache, working buffers, the
//! reduction plan's stages — and the two things done with it: prefill (with the prefill
//! filter between layers) and one decode step (with the cache policy around it).

use std::collections::HashMap;

use super::kv_cache::KvCache;
use super::session::PreparedPrompt;
use super::stats::{decoder_layer_flops, GenerationStats};
use crate::backend::{Backend, Rider};
use crate::error::Result;
use crate::model::llama::{Llama, LlamaScratch};
use crate::model::llava::Llava;
use crate::reduce::report::{Eviction, FilterReport, ImageReport, TokenReport};
use crate::reduce::stages::{FilterInput, FilterOutput, PrefillTrace};
use crate::reduce::{EncodedImage, PositionMode, ReductionPlan, ReductionReport, Row, Sequence, VisionRef};

/// A decode token on its way through the layers of one sequence.
pub(super) struct StepToken {
    /// Position in `Original` mode, and the token's identity in the cache.
    position: u32,
    pub(super) origin: u32,
}

pub(crate) struct GenerationState<'m, B: Backend> {
    pub(super) cache: KvCache<B>,
    /// The layers' buffers. While decoding in a batch they hold this sequence's row of the
    /// stacked step (its query and attention; its hidden row where a cache policy reads it).
    pub(super) scratch: LlamaScratch<B>,
    pub(super) hidden: B::Tensor,
    plan: ReductionPlan<'m, B>,
    /// Position (in `Original` mode) and origin of the next decode token.
    next_position: u32,
    /// Which image token each cached visual origin is, for eviction reports.
    vision_origins: HashMap<u32, VisionRef>,
    report: ReductionReport,
    layer_vision_tokens: Vec<usize>,
    flops_prefill: f64,
    after_prefill: usize,
    kv_bytes_peak: usize,
    kv_bytes_after_prefill: usize,
    decode_steps: usize,
    /// The cache policy's verdict on the last fed token, scored on the backend at the
    /// admission layer; it comes back with the next token id (see [`GenerationState::rider`])
    /// into `verdict_values`, and [`GenerationState::settle`] acts on it.
    verdict: B::Tensor,
    verdict_values: Vec<f32>,
    verdict_pending: bool,
}

impl<'m, B: Backend> GenerationState<'m, B> {
    /// Allocates everything a generation of up to `capacity` cached rows needs.
    pub(crate) fn new(b: &B, model: &Llava<B>, plan: ReductionPlan<'m, B>, capacity: usize) -> Self {
        GenerationState {
            cache: model.language.new_cache(b, capacity),
            scratch: LlamaScratch::new(b),
            hidden: b.new_tensor(),
            plan,
            next_position: 0,
            vision_origins: HashMap::new(),
            report: ReductionReport::default(),
            layer_vision_tokens: Vec::new(),
            flops_prefill: 0.0,
            after_prefill: 0,
            kv_bytes_peak: 0,
            kv_bytes_after_prefill: 0,
            decode_steps: 0,
            verdict: b.new_tensor(),
            verdict_values: Vec::new(),
            verdict_pending: false,
        }
    }

    /// Runs the whole prompt through the model; the next token's logits are then in
    /// [`GenerationState::logits_and_rider`].
    pub(crate) fn prefill(&mut self, b: &B, model: &Llava<B>, prompt: &PreparedPrompt<B>) -> Result<()> {
        let llama = &model.language;
        let cfg = llama.config();
        let embeddings: Vec<&B::Tensor> = prompt.images.iter().map(|i| &i.embeddings).collect();
        model.embed_prompt(b, &prompt.ids, &embeddings, &mut self.hidden)?;
        self.report.images = prompt.images.iter().map(image_report).collect();
        self.next_position = prompt.unreduced_len as u32;

        let mut seq = prompt.sequence.clone();
        let filter_layers = match self.plan.filter.as_mut() {
            Some(filter) => {
                filter.prepare(b, &seq, &self.hidden)?;
                filter.layers().to_vec()
            }
            None => Vec::new(),
        };
        let mut attention = Vec::new();
        for i in 0..llama.n_layers() {
            self.layer_vision_tokens.push(seq.vision_count());
            self.flops_prefill += decoder_layer_flops(seq.len(), cfg.hidden_size, cfg.intermediate_size);
            llama.forward_layer(
                b,
                i,
                &mut self.hidden,
                &seq.positions(),
                &seq.origins(),
                &mut self.cache,
                &mut self.scratch,
            )?;
            let Some(filter) = self.plan.filter.as_mut().filter(|_| filter_layers.contains(&i)) else {
                continue;
            };
            let queries = filter.query_rows(i, &seq);
            attention.clear();
            if !queries.is_empty() {
                // Causal: during prefill a row sees the rows up to itself.
                let visible: Vec<usize> = queries.iter().map(|&q| q + 1).collect();
                llama.attention_rows(b, i, &queries, &visible, &self.cache, &mut self.scratch, &mut attention);
            }
            let output = filter.select(FilterInput {
                b,
                layer: i,
                seq: &seq,
                queries: &queries,
                attention: &attention,
                hidden: &self.hidden,
                images: &prompt.images,
            })?;
            seq = self.apply_filter(b, i, &seq, output);
            if self.plan.positions == PositionMode::Compact {
                seq.compact_positions();
            }
        }
        self.after_prefill = seq.vision_count();
        self.kv_bytes_peak = self.cache.bytes_in_use();
        self.vision_origins = seq
            .rows
            .iter()
            .filter_map(|r| r.vision.map(|v| (r.origin, v)))
            .collect();

        if let Some(policy) = self.plan.cache.as_mut() {
            let key_origins = seq
                .rows
                .iter()
                .filter(|r| {
                    r.vision
                        .is_some_and(|v| prompt.images[v.image as usize].keys.contains(&v.token))
                })
                .map(|r| r.origin)
                .collect();
            let trace = PrefillTrace {
                final_rows: seq.clone(),
                filter_layers,
                key_origins,
            };
            policy.after_prefill(b, &trace, &mut self.cache)?;
        }
        self.kv_bytes_after_prefill = self.cache.bytes_in_use();

        llama.logits_of_last(b, &self.hidden, &mut self.scratch);
        b.check()
    }

    /// The next token's logits, `[1, vocab]`, as the last prefill or step left them (on the
    /// backend), and the [`Rider`] to read back with its id: the verdict on the token fed
    /// last, while one is pending.
    pub(crate) fn logits_and_rider(&mut self) -> (&B::Tensor, Option<Rider<'_, B>>) {
        let rider = self.verdict_pending.then_some(Rider {
            values: &self.verdict,
            out: &mut self.verdict_values,
        });
        (&self.scratch.logits, rider)
    }

    /// The rider alone, for a token picked from logits held elsewhere (a batched step's).
    pub(crate) fn rider(&mut self) -> Option<Rider<'_, B>> {
        self.logits_and_rider().1
    }

    /// Acts on the cache policy's verdict on the step fed last, once it came back with the
    /// next token id (or, when no token was picked after it, by reading it now): a token
    /// the policy does not admit leaves the caches of the admission layer and after, and
    /// the rows it evicts leave theirs. Neither changes what that step computed (the token
    /// attended with its own keys and values either way; evictions only ever concern later
    /// steps), so deciding after the step changes nothing but when the device is waited for.
    pub(crate) fn settle(&mut self, b: &B) {
        if !self.verdict_pending {
            return;
        }
        self.verdict_pending = false;
        let Some(policy) = self.plan.cache.as_mut() else {
            return;
        };
        if self.verdict_values.is_empty() {
            self.verdict_values = b.download(&self.verdict);
        }
        if let Some(first) = policy.admission_layer() {
            let admitted = policy.admits(&self.verdict_values);
            self.report.decode_admitted.push(admitted);
            if !admitted {
                for layer in first..self.cache.layers.len() {
                    self.cache.pop(layer);
                }
            }
        }
        let step = self.decode_steps.saturating_sub(1);
        for origin in policy.evict(b, &self.verdict_values, &mut self.cache) {
            if let Some(v) = self.vision_origins.get(&origin) {
                self.report.images[v.image as usize].tokens[v.token as usize].evicted_at_step = Some(step);
                self.report.decode_evicted.push(Eviction {
                    step,
                    image: v.image,
                    token: v.token,
                });
            }
        }
        self.verdict_values.clear();
    }

    /// The next token's logits brought to the host.
    pub(crate) fn download_logits(&self, b: &B) -> Vec<f32> {
        b.download(&self.scratch.logits)
    }

    /// Rebuilds the rows (and hidden states) a filter let through, recording who left.
    fn apply_filter(&mut self, b: &B, layer: usize, seq: &Sequence, output: FilterOutput<B>) -> Sequence {
        let FilterOutput {
            keep,
            added,
            added_hidden,
        } = output;
        let mut kept = vec![false; seq.len()];
        keep.iter().for_each(|&r| kept[r] = true);
        for (row, _) in seq.rows.iter().zip(&kept).filter(|(_, k)| !**k) {
            if let Some(v) = row.vision {
                self.report.images[v.image as usize].tokens[v.token as usize].dropped_after_layer = Some(layer);
            }
        }

        let n = seq.len();
        let mut rows = Vec::with_capacity(keep.len() + added.len());
        let mut sources = Vec::with_capacity(keep.len() + added.len());
        let mut added_iter = added.into_iter().enumerate().peekable();
        for &r in &keep {
            rows.push(seq.rows[r]);
            sources.push(r);
            while let Some((k, a)) = added_iter.next_if(|(_, a)| a.after == r) {
                let image = &mut self.report.images[a.row.vision.map_or(0, |v| v.image as usize)];
                image.tokens.push(TokenReport {
                    patches: a.token.patches,
                    recycled: true,
                    ..Default::default()
                });
                rows.push(a.row);
                sources.push(n + k);
            }
        }
        match added_hidden {
            Some(extra) => {
                let a = b.shape(&extra).0;
                let cols = b.shape(&self.hidden).1;
                b.reserve_rows(&mut self.hidden, n + a, cols);
                b.copy_rows(&extra, 0, &mut self.hidden, n, a);
                let mut next = b.new_tensor();
                b.select_rows(&self.hidden, &sources, &mut next);
                self.hidden = next;
            }
            None => b.retain_rows(&mut self.hidden, &sources),
        }

        let images = self.report.images.len();
        let next = Sequence { rows };
        let kept_tokens = (0..images as u32)
            .map(|image| {
                next.rows
                    .iter()
                    .filter_map(|r| r.vision.filter(|v| v.image == image).map(|v| v.token))
                    .collect()
            })
            .collect();
        self.report.filters.push(FilterReport {
            layer,
            kept: kept_tokens,
        });
        next
    }

    /// Feeds one generated token; the following token's logits are then in
    /// [`GenerationState::logits_and_rider`].
    pub(crate) fn step(&mut self, b: &B, llama: &Llama<B>, id: u32) -> Result<()> {
        let token = self.begin_step();
        llama.embed(b, &[id], &mut self.hidden);
        for i in 0..llama.n_layers() {
            self.before_layer(b, i)?;
            let position = self.layer_position(i, &token);
            llama.forward_layer(
                b,
                i,
                &mut self.hidden,
                &[position],
                &[token.origin],
                &mut self.cache,
                &mut self.scratch,
            )?;
            self.after_layer(b, llama, i);
        }
        self.end_step(b);
        llama.logits_of_last(b, &self.hidden, &mut self.scratch);
        b.check()
    }

    /// Starts feeding a new token: where it sits, and what the cache policy will say of it.
    /// The batched step drives the same phases as [`GenerationState::step`], so a sequence
    /// is reduced the same way in a batch as alone.
    pub(super) fn begin_step(&mut self) -> StepToken {
        let position = self.next_position;
        self.next_position += 1;
        StepToken {
            position,
            origin: position,
        }
    }

    /// Whether the token's hidden row is needed in `self.hidden` before layer `i`
    /// ([`GenerationState::before_layer`] decides its admission there).
    pub(super) fn needs_hidden_before(&self, i: usize) -> bool {
        self.admission_layer() == Some(i)
    }

    fn admission_layer(&self) -> Option<usize> {
        self.plan.cache.as_ref().and_then(|p| p.admission_layer())
    }

    /// At the admission layer's input (`self.hidden` holding the token's row), has the
    /// cache policy score whether the token stays in the caches from here on; the verdict
    /// stays on the backend until the next token's read-back.
    pub(super) fn before_layer(&mut self, b: &B, i: usize) -> Result<()> {
        if self.needs_hidden_before(i) {
            if let Some(policy) = self.plan.cache.as_mut() {
                policy.score_admission(b, &self.hidden, &mut self.verdict)?;
                self.verdict_pending = true;
            }
        }
        Ok(())
    }

    /// The RoPE position the token takes in layer `i`.
    pub(super) fn layer_position(&self, i: usize, token: &StepToken) -> u32 {
        match self.plan.positions {
            PositionMode::Original => token.position,
            PositionMode::Compact => self.cache.layers[i].len as u32,
        }
    }

    /// After layer `i` ran the token (its rotated query in `self.scratch`): its attention
    /// over a layer the cache policy watches joins the policy's totals, on the backend.
    pub(super) fn after_layer(&mut self, b: &B, llama: &Llama<B>, i: usize) {
        let Some(policy) = self.plan.cache.as_mut() else {
            return;
        };
        let watched = policy.watched_layers();
        if !watched.contains(&i) {
            return;
        }
        let weight = 1.0 / watched.len() as f32;
        if let Some(totals) = policy.attention_totals() {
            llama.accumulate_attention(b, i, &self.cache, &self.scratch, weight, totals);
        }
    }

    /// Once the token went through every layer: the cache policy queues what its verdict
    /// on the step needs, read back with the next token id.
    pub(super) fn end_step(&mut self, b: &B) {
        self.kv_bytes_peak = self.kv_bytes_peak.max(self.cache.bytes_in_use());
        if let Some(policy) = self.plan.cache.as_mut() {
            if policy.after_step(b, &mut self.verdict) {
                self.verdict_pending = true;
            }
        }
        self.decode_steps += 1;
    }

    /// Fills the reduction statistics and hands over the report.
    pub(crate) fn finish(self, stats: &mut GenerationStats) -> ReductionReport {
        let images = self.report.images.len().max(1);
        stats.after_prefill = self.after_prefill;
        stats.equal_tokens = if self.layer_vision_tokens.is_empty() {
            0.0
        } else {
            self.layer_vision_tokens.iter().sum::<usize>() as f64
                / self.layer_vision_tokens.len() as f64
                / images as f64
        };
        stats.layer_vision_tokens = self.layer_vision_tokens;
        stats.flops_prefill = self.flops_prefill;
        stats.kv_bytes_peak = self.kv_bytes_peak;
        stats.kv_bytes_after_prefill = self.kv_bytes_after_prefill;
        stats.kv_bytes_final = self.cache.bytes_in_use();
        stats.decode_kv_admitted = self.report.decode_admitted.iter().filter(|a| **a).count();
        stats.decode_kv_rejected = self.report.decode_admitted.len() - stats.decode_kv_admitted;
        stats.decode_evicted = self.report.decode_evicted.len();
        self.report
    }
}

fn image_report<B: Backend>(image: &EncodedImage<B>) -> ImageReport {
    ImageReport {
        grid: image.grid,
        tokens: image
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| TokenReport {
                patches: t.patches.clone(),
                key: image.keys.contains(&(i as u32)),
                ..Default::default()
            })
            .collect(),
        keys: image.keys.clone(),
        window_similarity: image.window_similarity.clone(),
        // The engine knows the preprocessing; it fills these in.
        geometry: None,
        tiles: None,
    }
}

/// The rows of an unreduced-or-stage-1-reduced prompt: text rows count positions one by
/// one, an image's slot spans its `slot_len` positions whatever its token count, and each
/// visual token sits at its slot's start plus its offset.
pub(crate) fn initial_sequence<B: Backend>(
    ids: &[u32],
    image_token: u32,
    images: &[EncodedImage<B>],
    mode: PositionMode,
) -> Sequence {
    let mut rows = Vec::with_capacity(ids.len());
    let mut position = 0u32;
    let mut i = 0;
    let mut image = 0usize;
    while i < ids.len() {
        if ids[i] != image_token || image >= images.len() {
            rows.push(Row {
                position,
                origin: position,
                vision: None,
            });
            position += 1;
            i += 1;
            continue;
        }
        let count = images[image].tokens.len();
        for (token, &offset) in images[image].offsets.iter().enumerate() {
            rows.push(Row {
                position: position + offset,
                origin: position + offset,
                vision: Some(VisionRef {
                    image: image as u32,
                    token: token as u32,
                }),
            });
        }
        position += images[image].slot_len as u32;
        i += count;
        image += 1;
    }
    let mut seq = Sequence { rows };
    if mode == PositionMode::Compact {
        seq.compact_positions();
    }
    seq
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::reduce::VisionToken;

    /// A 2×2-patch image merged into two tokens: one covering patches 0, 1 and 3, one
    /// covering patch 2.
    fn merged_image(b: &CpuBackend) -> EncodedImage<CpuBackend> {
        EncodedImage {
            embeddings: b.new_tensor(),
            tokens: vec![VisionToken { patches: vec![0, 1, 3] }, VisionToken { patches: vec![2] }],
            offsets: vec![0, 2],
            keys: vec![],
            grid: 2,
            window_similarity: vec![],
            slot_len: 4,
        }
    }

    #[test]
    fn tokens_keep_their_slot_positions_and_text_continues_after_the_slot() {
        let b = CpuBackend::new(Some(1)).unwrap();
        let images = [merged_image(&b)];
        let ids = [1, 9, 9, 5, 6];
        let seq = initial_sequence(&ids, 9, &images, PositionMode::Original);
        assert_eq!(seq.positions(), vec![0, 1, 3, 5, 6]);
        assert_eq!(seq.origins(), vec![0, 1, 3, 5, 6]);
        assert_eq!(seq.vision_rows(0), vec![1, 2]);
        assert_eq!(seq.text_after_images(), vec![3, 4]);
        let compact = initial_sequence(&ids, 9, &images, PositionMode::Compact);
        assert_eq!(compact.positions(), vec![0, 1, 2, 3, 4]);
        assert_eq!(compact.origins(), vec![0, 1, 3, 5, 6], "identity survives renumbering");
    }
}

#[cfg(test)]
mod admission_tests {
    use std::path::PathBuf;

    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::model::config::LlavaConfig;
    use crate::model::weights::Weights;
    use crate::reduce::stages::CachePolicy;

    /// Refuses every decode token from layer 1 on.
    struct RejectAll;

    impl<B: Backend> CachePolicy<B> for RejectAll {
        fn admission_layer(&self) -> Option<usize> {
            Some(1)
        }
        fn admits(&self, _verdict: &[f32]) -> bool {
            false
        }
    }

    fn plan<'m>(cache: Option<Box<dyn CachePolicy<CpuBackend> + 'm>>) -> ReductionPlan<'m, CpuBackend> {
        ReductionPlan {
            encoder: None,
            filter: None,
            cache,
            positions: PositionMode::Original,
        }
    }

    /// Logits after prefill of a text prompt and after each of two fed tokens.
    fn run(model: &Llava<CpuBackend>, b: &CpuBackend, plan: ReductionPlan<'_, CpuBackend>) -> Vec<Vec<f32>> {
        let ids = vec![1u32, 40, 41, 42, 43];
        let prompt = PreparedPrompt {
            sequence: initial_sequence::<CpuBackend>(&ids, u32::MAX, &[], PositionMode::Original),
            unreduced_len: ids.len(),
            ids,
            images: Vec::new(),
        };
        let mut state = GenerationState::new(b, model, plan, 16);
        state.prefill(b, model, &prompt).unwrap();
        let mut all = vec![state.download_logits(b)];
        for id in [50, 51] {
            state.settle(b);
            state.step(b, &model.language, id).unwrap();
            all.push(state.download_logits(b));
        }
        all
    }

    #[test]
    fn survivors_keep_their_original_positions_in_every_layer() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test/fixtures/models/tiny-llava-mha");
        let b = CpuBackend::new(Some(1)).unwrap();
        let model = Llava::load(&b, &Weights::open(&dir).unwrap(), LlavaConfig::from_dir(&dir).unwrap()).unwrap();
        let spec = crate::reduce::ReduceSpec::parse("mustdrop:keep=20,layers=0/1,tau=0.3,evict=0").unwrap();
        let plan = spec.plan(&model).unwrap();
        let size = model.config.vision.image_size;
        let pixels: Vec<f32> = (0..3 * size * size)
            .map(|i| ((i * 37) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let (image, _) = model.encode_image(&b, &pixels, plan.encoder.as_deref()).unwrap();
        let slot = image.slot_len;
        let image_token = model.config.image_token_index;
        let mut ids = vec![1u32, 40];
        ids.extend(std::iter::repeat_n(image_token, image.tokens.len()));
        ids.extend([41, 42, 43]);
        let images = vec![image];
        let prompt = PreparedPrompt {
            sequence: initial_sequence(&ids, image_token, &images, PositionMode::Original),
            unreduced_len: ids.len() - images[0].tokens.len() + slot,
            ids,
            images,
        };
        let mut state = GenerationState::new(&b, &model, plan, 256);
        state.prefill(&b, &model, &prompt).unwrap();
        state.step(&b, &model.language, 50).unwrap();
        for (i, layer) in state.cache.layers.iter().enumerate() {
            assert!(layer.len < 2 + 144 + 3 + 1, "layer {i} dropped nothing");
            // Without renumbering, a row's position is its index in the unreduced prompt.
            assert_eq!(layer.positions, layer.origins, "layer {i}");
        }
        assert_eq!(*state.cache.layers[1].positions.last().unwrap(), (2 + 144 + 3) as u32);
    }

    #[test]
    fn a_refused_token_still_attends_to_itself_but_leaves_the_cache() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test/fixtures/models/tiny-llava-mha");
        let b = CpuBackend::new(Some(1)).unwrap();
        let model = Llava::load(&b, &Weights::open(&dir).unwrap(), LlavaConfig::from_dir(&dir).unwrap()).unwrap();
        let admitted = run(&model, &b, plan(None));
        let refused = run(&model, &b, plan(Some(Box::new(RejectAll))));
        assert_eq!(refused[0], admitted[0], "prefill is untouched");
        // The step that refuses token 50 computes exactly what admitting it computes: the
        // token attended with its own key and value.
        assert_eq!(refused[1], admitted[1]);
        // The next step no longer sees token 50 at layer 1.
        assert_ne!(refused[2], admitted[2]);
    }
}
