//! The engine's public API: load a model once, run many generations.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::error::Result;
use crate::generate::{GenerationStats, SamplingParams};
pub use crate::model::preprocess::RgbImage;
pub use crate::text::{ContentPart, Message};

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Worker threads for the CPU backend; `None` = all cores.
    pub threads: Option<usize>,
}

/// One generation: a conversation whose `Image` parts are filled, in order, by `images`.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub messages: Vec<Message>,
    pub images: Vec<RgbImage>,
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    pub stop: Vec<String>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    Eos,
    Stop,
    Length,
    Cancelled,
}

/// Streamed to the caller while generating.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text completed by the latest token (may be empty while a character is incomplete).
    Token { id: u32, text: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateOutput {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub stats: GenerationStats,
}

/// What `glimpse inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub dir: PathBuf,
    pub architecture: String,
    pub parameters: u64,
    pub dtype: String,
    pub weight_bytes: u64,
    pub vision_layers: usize,
    pub text_layers: usize,
    pub hidden_size: usize,
    pub image_tokens: usize,
    pub context_length: usize,
    pub backend: String,
}

pub struct Engine {}

impl Engine {
    pub fn load(_dir: &Path, _options: LoadOptions) -> Result<Engine> {
        todo!()
    }

    pub fn info(&self) -> ModelInfo {
        todo!()
    }

    /// Runs one generation on the calling thread. `cancel` is polled once per token;
    /// `on_event` sees each token as it is produced.
    pub fn generate(
        &self,
        _request: &GenerateRequest,
        _cancel: &AtomicBool,
        _on_event: &mut dyn FnMut(Event),
    ) -> Result<GenerateOutput> {
        todo!()
    }
}
