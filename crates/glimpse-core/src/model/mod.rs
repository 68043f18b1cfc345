//! The LLaVA model: configuration, weights, preprocessing and the three networks.

pub mod clip;
pub mod config;
pub mod llama;
pub mod llava;
pub mod preprocess;
pub mod projector;
pub mod weights;
