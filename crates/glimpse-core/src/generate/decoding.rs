//! What happens to one sequence's logits each decode step: sampling, end-of-sequence and
//! stop strings, the length limit, and turning tokens into text. Shared by the one-request
//! loop and the batched one, so a sequence ends the same way and with the same text
//! whether or not it ran in a batch.

use super::sampler::Sampler;
use crate::backend::Backend;
use crate::engine::{Event, FinishReason, GenerateRequest};
use crate::error::Result;
use crate::text::{IncrementalDetokenizer, StopMatcher, TextTokenizer};

/// One sequence's decoding: the tokens so far and everything that decides the next one.
pub(crate) struct Decoding<'t> {
    sampler: Sampler,
    /// The logits row, brought to the host only when the sampler needs more than the
    /// greedy choice (reused every step).
    logits: Vec<f32>,
    /// Prompt ids, then generated ids (what the repetition penalty looks at).
    history: Vec<u32>,
    generated: Vec<u32>,
    max_new: usize,
    eos: &'t [u32],
    ignore_eos: bool,
    detokenizer: IncrementalDetokenizer<'t>,
    stop: StopMatcher,
    text: String,
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

impl<'t> Decoding<'t> {
    /// `max_new`: tokens the sequence may generate (the request's limit, cut to what the
    /// context window leaves after the prompt).
    pub(crate) fn new(
        tokenizer: &'t TextTokenizer,
        request: &GenerateRequest,
        prompt_ids: Vec<u32>,
        max_new: usize,
    ) -> Result<Self> {
        Ok(Decoding {
            sampler: Sampler::new(request.sampling)?,
            logits: Vec::new(),
            history: prompt_ids,
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
    /// uniform number), so on a device only the token id crosses to the host; only the
    /// repetition penalty, which rewrites the logits from the history first, reads the row
    /// and samples here.
    pub(crate) fn next<B: Backend>(
        &mut self,
        b: &B,
        logits: &B::Tensor,
        row: usize,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<Next> {
        if self.generated.len() == self.max_new {
            return Ok(Next::Finished(FinishReason::Length));
        }
        let params = *self.sampler.params();
        let id = if params.repetition_penalty != 1.0 {
            self.logits.resize(b.shape(logits).1, 0.0);
            b.download_row(logits, row, &mut self.logits);
            self.sampler.sample(&mut self.logits, &self.history)
        } else if params.is_greedy() {
            b.argmax_row(logits, row)
        } else {
            let u = self.sampler.next_uniform();
            b.sample_row(logits, row, &params, u)
        };
        b.check()?;
        if !self.ignore_eos && self.eos.contains(&id) {
            return Ok(Next::Finished(FinishReason::Eos));
        }
        self.generated.push(id);
        self.history.push(id);
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
