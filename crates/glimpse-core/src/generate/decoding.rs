//! What happens to one sequence's logits each decode step: sampling, end-of-sequence and
//! stop strings, the length limit, and turning tokens into text. Shared by the one-request
//! loop and the batched one, so a sequence ends the same way and with the same text
//! whether or not it ran in a batch.

use super::sampler::Sampler;
use crate::engine::{Event, FinishReason, GenerateRequest};
use crate::error::Result;
use crate::text::{IncrementalDetokenizer, StopMatcher, TextTokenizer};

/// One sequence's decoding: the tokens so far and everything that decides the next one.
pub(crate) struct Decoding<'t> {
    sampler: Sampler,
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

    /// Picks the next token from `logits` (which sampling may modify), streams its text,
    /// and says whether the sequence goes on.
    pub(crate) fn next(&mut self, logits: &mut [f32], on_event: &mut dyn FnMut(Event)) -> Result<Next> {
        if self.generated.len() == self.max_new {
            return Ok(Next::Finished(FinishReason::Length));
        }
        let id = self.sampler.sample(logits, &self.history);
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
