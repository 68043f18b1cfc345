//! What happens to one sequence's logits each decode step: sampling, end-of-sequence and
//! stop strings, the length limit, and turning tokens into text. Shared by the one-request
//! loop and the batched one, so a sequence ends the same way and with the same text
//! whether or not it ran in a batch.

use super::sampler::Sampler;
use crate::backend::{Backend, Rider};
use crate::engine::{Event, FinishReason, GenerateRequest};
use crate::error::Result;
use crate::text::{IncrementalDetokenizer, StopMatcher, TextTokenizer};

/// One sequence's decoding: the tokens so far and everything that decides the next one.
pub(crate) struct Decoding<'t, B: Backend> {
    sampler: Sampler,
    /// The repetition penalty's rows on the backend, when the request sets one.
    repeats: Option<Repeats<B>>,
    generated: Vec<u32>,
    max_new: usize,
    eos: &'t [u32],
    ignore_eos: bool,
    detokenizer: IncrementalDetokenizer<'t>,
    stop: StopMatcher,
    text: String,
}

/// The repetition penalty kept where the logits are, so that they never cross to the host:
/// the ids the sequence holds as a 1 × vocabulary row of 0/1 (built from the prompt at the
/// first step, then one element set per generated token), and the penalised logits row the
/// token is picked from.
struct Repeats<B: Backend> {
    penalty: f32,
    seen: B::Tensor,
    penalized: B::Tensor,
    /// The prompt's ids, marked in `seen` when the first step learns the vocabulary size.
    prompt_ids: Vec<u32>,
}

impl<B: Backend> Repeats<B> {
    /// Row `row` of `logits`, penalised, into `self.penalized`.
    fn apply(&mut self, b: &B, logits: &B::Tensor, row: usize) {
        let vocab = b.shape(logits).1;
        if b.shape(&self.seen) != (1, vocab) {
            let mut seen = vec![0.0; vocab];
            for &id in &self.prompt_ids {
                if let Some(mark) = seen.get_mut(id as usize) {
                    *mark = 1.0;
                }
            }
            b.upload(&seen, 1, vocab, &mut self.seen);
        }
        b.penalize_repeats(logits, row, &self.seen, self.penalty, &mut self.penalized);
    }

    fn mark(&mut self, b: &B, id: u32) {
        if (id as usize) < b.shape(&self.seen).1 {
            b.set_value(&mut self.seen, 0, id as usize, 1.0);
        }
    }
}

/// What a decode step leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// This token was generated and must be fed to the model for the next logits.
    Feed(u32),
    Finished(FinishReason),
}

/// A finished sequence's text and tokens.
pub(crate) struct Decoded {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
}

impl<'t, B: Backend> Decoding<'t, B> {
    /// `max_new`: tokens the sequence may generate (the request's limit, cut to what the
    /// context window leaves after the prompt).
    pub(crate) fn new(
        b: &B,
        tokenizer: &'t TextTokenizer,
        request: &GenerateRequest,
        prompt_ids: &[u32],
        max_new: usize,
    ) -> Result<Self> {
        let sampler = Sampler::new(request.sampling)?;
        let penalty = request.sampling.repetition_penalty;
        let repeats = (penalty != 1.0).then(|| Repeats {
            penalty,
            seen: b.new_tensor(),
            penalized: b.new_tensor(),
            prompt_ids: prompt_ids.to_vec(),
        });
        Ok(Decoding {
            sampler,
            repeats,
            generated: Vec::with_capacity(max_new),
            max_new,
            eos: tokenizer.eos_token_ids(),
            ignore_eos: request.ignore_eos,
            detokenizer: IncrementalDetokenizer::new(tokenizer),
            stop: StopMatcher::new(&request.stop),
            text: String::new(),
        })
    }

    /// Picks the next token from row `row` of `logits`, streams its text, and says whether
    /// the sequence goes on. The backend picks it (greedy, or a draw with the sampler's next
    /// uniform number) after applying any repetition penalty, so on a device only the token
    /// id crosses to the host, with `rider`'s values (the sequence's pending verdict).
    pub(crate) fn next(
        &mut self,
        b: &B,
        logits: &B::Tensor,
        row: usize,
        rider: Option<Rider<'_, B>>,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<Next> {
        if self.generated.len() == self.max_new {
            return Ok(Next::Finished(FinishReason::Length));
        }
        let params = *self.sampler.params();
        let (logits, row) = match &mut self.repeats {
            Some(repeats) => {
                repeats.apply(b, logits, row);
                (&repeats.penalized, 0)
            }
            None => (logits, row),
        };
        let id = if params.is_greedy() {
            b.argmax_row(logits, row, rider)
        } else {
            let u = self.sampler.next_uniform();
            b.sample_row(logits, row, &params, u, rider)
        };
        b.check()?;
        if !self.ignore_eos && self.eos.contains(&id) {
            return Ok(Next::Finished(FinishReason::Eos));
        }
        self.generated.push(id);
        if let Some(repeats) = &mut self.repeats {
            repeats.mark(b, id);
        }
        let check = self.stop.push(&self.detokenizer.push(id)?);
        self.text.push_str(&check.emit);
        on_event(Event::Token { id, text: check.emit });
        if check.stopped {
            return Ok(Next::Finished(FinishReason::Stop));
        }
        if self.generated.len() == self.max_new {
            return Ok(Next::Finished(FinishReason::Length));
        }
        Ok(Next::Feed(id))
    }

    /// Ends the sequence for `reason`, releasing what was held back: an unfinished
    /// character, text that might have begun a stop string (which may still complete one).
    pub(crate) fn finish(mut self, mut reason: FinishReason, on_event: &mut dyn FnMut(Event)) -> Result<Decoded> {
        if reason != FinishReason::Stop {
            let check = self.stop.push(&self.detokenizer.finish()?);
            let mut tail = check.emit;
            if check.stopped {
                reason = FinishReason::Stop;
            } else {
                tail.push_str(&self.stop.finish());
            }
            if !tail.is_empty() {
                self.text.push_str(&tail);
                on_event(Event::Flush { text: tail });
            }
        }
        Ok(Decoded {
            text: self.text,
            token_ids: self.generated,
            finish_reason: reason,
        })
    }
}
