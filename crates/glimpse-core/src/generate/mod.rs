//! The generation loop: KV cache, sampling, prefill + decode, statistics.

pub(crate) mod batch;
pub(crate) mod decoding;
pub mod kv_cache;
pub mod sampler;
pub mod session;
pub(crate) mod state;
pub mod stats;

pub use sampler::{Sampler, SamplingParams};
pub use stats::GenerationStats;
