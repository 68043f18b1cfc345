//! Prefill and the decode loop for one request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::kv_cache::KvCache;
use super::sampler::Sampler;
use super::stats::GenerationStats;
use crate::backend::Backend;
use crate::engine::{Event, FinishReason, GenerateOutput, GenerateRequest};
use crate::error::Result;
use crate::model::llama::{Llama, LlamaScratch};
use crate::model::llava::Llava;
use crate::text::{IncrementalDetokenizer, StopMatcher, TextTokenizer};

/// A prompt ready for the language model: token ids with image slots expanded, and the
/// embeddings of each image in slot order.
pub(crate) struct PreparedPrompt<B: Backend> {
    pub ids: Vec<u32>,
    pub images: Vec<B::Tensor>,
}

/// Runs prefill over the prompt, then samples up to `request.max_tokens` tokens (fewer
/// if the context window ends first), streaming each through `on_event`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<B: Backend>(
    b: &B,
    model: &Llava<B>,
    tokenizer: &TextTokenizer,
    prompt: PreparedPrompt<B>,
    request: &GenerateRequest,
    context_len: usize,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
    mut stats: GenerationStats,
) -> Result<GenerateOutput> {
    let mut sampler = Sampler::new(request.sampling)?;
    let n_prompt = prompt.ids.len();
    let max_new = request.max_tokens.min(context_len - n_prompt);
    let llama = &model.language;
    let mut state = DecodeState::new(b, model, n_prompt + max_new);

    let started = Instant::now();
    let mut logits = state.prefill(b, model, &prompt)?;
    stats.ms_prefill = started.elapsed().as_secs_f64() * 1e3;

    // decode
    let started = Instant::now();
    let eos = tokenizer.eos_token_ids();
    let mut history = prompt.ids;
    let mut generated = Vec::with_capacity(max_new);
    let mut detokenizer = IncrementalDetokenizer::new(tokenizer);
    let mut stop = StopMatcher::new(&request.stop);
    let mut text = String::new();
    let mut finish_reason = loop {
        if cancel.load(Ordering::Relaxed) {
            break FinishReason::Cancelled;
        }
        if generated.len() == max_new {
            break FinishReason::Length;
        }
        let id = sampler.sample(&mut logits, &history);
        if !request.ignore_eos && eos.contains(&id) {
            break FinishReason::Eos;
        }
        generated.push(id);
        history.push(id);
        let check = stop.push(&detokenizer.push(id)?);
        text.push_str(&check.emit);
        on_event(Event::Token { id, text: check.emit });
        if check.stopped {
            break FinishReason::Stop;
        }
        if generated.len() < max_new {
            state.step(b, llama, id, (history.len() - 1) as u32, &mut logits)?;
        }
    };
    // Release what was held back: an unfinished character, text that might have begun a
    // stop string (which may still complete one).
    if finish_reason != FinishReason::Stop {
        let check = stop.push(&detokenizer.finish()?);
        let mut tail = check.emit;
        if check.stopped {
            finish_reason = FinishReason::Stop;
        } else {
            tail.push_str(&stop.finish());
        }
        if !tail.is_empty() {
            text.push_str(&tail);
            on_event(Event::Flush { text: tail });
        }
    }
    stats.ms_decode = started.elapsed().as_secs_f64() * 1e3;
    stats.prompt_tokens = n_prompt;
    stats.generated_tokens = generated.len();
    stats.kv_bytes_peak = state.cache.bytes_in_use();
    stats.prefill_tokens_per_s = n_prompt as f64 / (stats.ms_prefill / 1e3).max(1e-9);
    stats.tokens_per_s = generated.len() as f64 / (stats.ms_decode / 1e3).max(1e-9);
    Ok(GenerateOutput {
        text,
        token_ids: generated,
        finish_reason,
        stats,
    })
}

/// The language model's state during one generation: its KV cache and working buffers.
pub(crate) struct DecodeState<B: Backend> {
    cache: KvCache<B>,
    scratch: LlamaScratch<B>,
    hidden: B::Tensor,
}

impl<B: Backend> DecodeState<B> {
    /// Allocates everything a generation of up to `capacity` tokens needs.
    pub(crate) fn new(b: &B, model: &Llava<B>, capacity: usize) -> Self {
        DecodeState {
            cache: model.language.new_cache(b, capacity),
            scratch: LlamaScratch::new(b),
            hidden: b.new_tensor(),
        }
    }

    /// Runs the whole prompt through the model and returns the next token's logits.
    pub(crate) fn prefill(&mut self, b: &B, model: &Llava<B>, prompt: &PreparedPrompt<B>) -> Result<Vec<f32>> {
        let llama = &model.language;
        model.embed_prompt(b, &prompt.ids, &prompt.images, &mut self.hidden)?;
        let positions: Vec<u32> = (0..prompt.ids.len() as u32).collect();
        llama.forward(b, &mut self.hidden, &positions, &mut self.cache, &mut self.scratch)?;
        llama.logits_of_last(b, &self.hidden, &mut self.scratch);
        let mut logits = vec![0f32; llama.config().vocab_size];
        b.download_row(&self.scratch.logits, 0, &mut logits);
        Ok(logits)
    }

    /// Feeds one token at `position` and writes the following token's logits.
    pub(crate) fn step(&mut self, b: &B, llama: &Llama<B>, id: u32, position: u32, logits: &mut [f32]) -> Result<()> {
        llama.embed(b, &[id], &mut self.hidden);
        llama.forward(b, &mut self.hidden, &[position], &mut self.cache, &mut self.scratch)?;
        llama.logits_of_last(b, &self.hidden, &mut self.scratch);
        b.download_row(&self.scratch.logits, 0, logits);
        Ok(())
    }
}
