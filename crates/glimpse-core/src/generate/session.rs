//! Prefill and the decode loop for one request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::sampler::Sampler;
use super::state::GenerationState;
use super::stats::GenerationStats;
use crate::backend::Backend;
use crate::engine::{Event, FinishReason, GenerateOutput, GenerateRequest};
use crate::error::{Error, Result};
use crate::model::llava::Llava;
use crate::placement::{gib, kv_bytes_per_token};
use crate::reduce::{EncodedImage, ReductionPlan, Sequence};
use crate::text::{IncrementalDetokenizer, StopMatcher, TextTokenizer};

/// A prompt ready for the language model: token ids with each image slot sized to its
/// image's tokens, the encoded images in slot order, and what each row stands for.
pub(crate) struct PreparedPrompt<B: Backend> {
    pub ids: Vec<u32>,
    pub images: Vec<EncodedImage<B>>,
    pub sequence: Sequence,
    /// Length of the prompt before any reduction (the first decode token's position).
    pub unreduced_len: usize,
}

/// Runs prefill over the prompt, then samples up to `request.max_tokens` tokens (fewer
/// if the context window ends first), streaming each through `on_event`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<B: Backend>(
    b: &B,
    model: &Llava<B>,
    plan: ReductionPlan<'_, B>,
    tokenizer: &TextTokenizer,
    prompt: PreparedPrompt<B>,
    request: &GenerateRequest,
    context_len: usize,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
    mut stats: GenerationStats,
) -> Result<GenerateOutput> {
    let mut sampler = Sampler::new(request.sampling)?;
    let n_prompt = prompt.unreduced_len;
    let max_new = request.max_tokens.min(context_len - n_prompt);
    ensure_kv_fits(b, model, prompt.ids.len(), max_new)?;
    let mut state = GenerationState::new(b, model, plan, prompt.ids.len() + max_new);

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
            state.step(b, &model.language, id, &mut logits)?;
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
    stats.prefill_tokens_per_s = n_prompt as f64 / (stats.ms_prefill / 1e3).max(1e-9);
    stats.tokens_per_s = generated.len() as f64 / (stats.ms_decode / 1e3).max(1e-9);
    let reduction = state.finish(&mut stats);
    Ok(GenerateOutput {
        text,
        token_ids: generated,
        finish_reason,
        stats,
        reduction,
    })
}

/// Fails when a device with memory of its own lacks room for the KV cache of a prompt of
/// `prompt_rows` rows and `max_new` new tokens (the cache is allocated whole, up front).
pub(crate) fn ensure_kv_fits<B: Backend>(b: &B, model: &Llava<B>, prompt_rows: usize, max_new: usize) -> Result<()> {
    let Some(free) = b.free_memory() else {
        return Ok(());
    };
    let needed = kv_bytes_per_token(&model.config) * (prompt_rows + max_new) as u64;
    if needed <= free as u64 {
        return Ok(());
    }
    Err(Error::usage(format!(
        "not enough GPU memory for this request: its KV cache ({prompt_rows} prompt + {max_new} new tokens) needs {} \
         but {} is free; use a smaller --max-tokens, a --reduce method that merges visual tokens, or --device cpu",
        gib(needed),
        gib(free as u64)
    )))
}
