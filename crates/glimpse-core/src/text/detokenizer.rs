//! Streams text for one token at a time without ever splitting a multi-byte character.

use crate::error::Result;
use crate::text::TextTokenizer;

pub struct IncrementalDetokenizer<'a> {
    _tokenizer: &'a TextTokenizer,
}

impl<'a> IncrementalDetokenizer<'a> {
    pub fn new(tokenizer: &'a TextTokenizer) -> Self {
        IncrementalDetokenizer { _tokenizer: tokenizer }
    }
    /// Adds one generated token; returns the newly completed text (possibly empty).
    pub fn push(&mut self, _id: u32) -> Result<String> {
        todo!()
    }
}
