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
pub mod parity;
pub mod placement;
pub mod reduce;
pub mod synthetic;
pub mod text;

// The emulated-GPU tests compile the integration tests' fixture helpers, which name this
// crate by its public name.
#[cfg(all(test, feature = "kernel-emu"))]
extern crate self as glimpse_core;

pub use engine::{DeviceChoice, Engine, Event, GenerateRequest, LoadOptions};
pub use error::{Error, ErrorKind, Result};
pub use text::{ContentPart, Message};
