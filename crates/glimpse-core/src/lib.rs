//! glimpse-core: the glimpse inference engine.
//!
//! Runs LLaVA-family vision-language models (CLIP ViT vision tower, MLP projector,
//! Llama-family language model) from Hugging Face checkpoints, on a pluggable compute
//! backend. The public entry point is [`engine::Engine`].

pub mod backend;
pub mod bench;
pub mod engine;
pub mod error;
pub mod generate;
pub mod model;
pub mod reduce;
pub mod synthetic;
pub mod text;

pub use engine::{Engine, Event, GenerateRequest, LoadOptions};
pub use error::{Error, ErrorKind, Result};
pub use text::{ContentPart, Message};
