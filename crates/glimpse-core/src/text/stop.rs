//! Stop strings: holds back streamed text that might be the start of a stop string.

pub struct StopMatcher {}

/// What to do with a chunk of streamed text.
#[derive(Debug, PartialEq, Eq)]
pub struct StopCheck {
    /// Text that is safe to show now.
    pub emit: String,
    /// A stop string was completed; generation ends after emitting `emit`.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(_stops: &[String]) -> Self {
        todo!()
    }
    pub fn push(&mut self, _text: &str) -> StopCheck {
        todo!()
    }
    /// End of generation: releases any held-back text.
    pub fn finish(&mut self) -> String {
        todo!()
    }
}
