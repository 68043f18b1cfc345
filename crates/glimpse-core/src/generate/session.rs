//! Prefill and the decode loop for one request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::decoding::{Decoded, Decoding, Next};
use super::state::GenerationState;
use super::stats::GenerationStats;
use crate::backend::Backend;
use crate::engine::{Event, FinishReason, GenerateOutput, GenerateRequest};
use crate::error::{Error, Result};
use crate::model::llava::Llava;
use crate::placement::{gib, kv_bytes_per_token};
use crate::reduce::{EncodedImage, ReductionPlan, Sequence};
use crate::text::TextTokenizer;

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
    let n_prompt = prompt.unreduced_len;
    let max_new = max_new_tokens(request, n_prompt, context_len);
    // Built first: it checks the sampling settings before any work is done.
    let mut decoding = Decoding::new(b, tokenizer, request, &prompt.ids, max_new)?;
    ensure_kv_fits(b, model, prompt.ids.len(), max_new)?;
    let mut state = GenerationState::new(b, model, plan, prompt.ids.len() + max_new);

    let started = Instant::now();
    state.prefill(b, model, &prompt)?;
    stats.ms_prefill = started.elapsed().as_secs_f64() * 1e3;

    let started = Instant::now();
    let finish_reason = loop {
        if cancel.load(Ordering::Relaxed) {
            break FinishReason::Cancelled;
        }
        let (logits, rider) = state.logits_and_rider();
        let next = decoding.next(b, logits, 0, rider, on_event)?;
        state.settle(b);
        match next {
            Next::Feed(id) => state.step(b, &model.language, id)?,
            Next::Finished(reason) => break reason,
        }
    };
    // A cancelled run fed a token whose verdict never came back.
    state.settle(b);
    let decoded = decoding.finish(finish_reason, on_event)?;
    stats.ms_decode = started.elapsed().as_secs_f64() * 1e3;
    Ok(output(state, decoded, stats, n_prompt))
}

/// Tokens a request may generate: its limit, cut to what the context window leaves after
/// the (unreduced) prompt.
pub(crate) fn max_new_tokens(request: &GenerateRequest, n_prompt: usize, context_len: usize) -> usize {
    request.max_tokens.min(context_len - n_prompt)
}

/// Assembles a finished sequence's output; `stats` already holds its timings.
pub(crate) fn output<B: Backend>(
    state: GenerationState<'_, B>,
    decoded: Decoded,
    mut stats: GenerationStats,
    n_prompt: usize,
) -> GenerateOutput {
    stats.prompt_tokens = n_prompt;
    stats.generated_tokens = decoded.token_ids.len();
    stats.prefill_tokens_per_s = n_prompt as f64 / (stats.ms_prefill / 1e3).max(1e-9);
    stats.tokens_per_s = decoded.token_ids.len() as f64 / (stats.ms_decode / 1e3).max(1e-9);
    let reduction = state.finish(&mut stats);
    GenerateOutput {
        text: decoded.text,
        token_ids: decoded.token_ids,
        finish_reason: decoded.finish_reason,
        stats,
        reduction,
    }
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
