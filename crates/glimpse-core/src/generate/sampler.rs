//! Turns logits into the next token id.

use crate::error::Result;

/// Sampling settings. Neutral values switch a step off: temperature 0 = greedy,
/// top_k 0, top_p 1.0, repetition_penalty 1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

pub struct Sampler {}

impl Sampler {
    /// Validates the settings (usage error on nonsense like top_p 1.5).
    pub fn new(_params: SamplingParams) -> Result<Self> {
        todo!()
    }
    /// Picks the next token. `logits` may be modified in place; `history` holds the prompt
    /// and generated ids so far (for the repetition penalty).
    pub fn sample(&mut self, _logits: &mut [f32], _history: &[u32]) -> u32 {
        todo!()
    }
}
