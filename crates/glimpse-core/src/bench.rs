//! Throughput benchmark of the engine's model path: image encode, prefill and decode
//! speed and peak memory for one model directory (a fixture or a synthetic checkpoint).
//! Only config.json and the weights are read; the prompt is made of token ids directly.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::error::Result;
use crate::generate::session::{DecodeState, PreparedPrompt};
use crate::generate::{Sampler, SamplingParams};
use crate::model::config::LlavaConfig;
use crate::model::llava::Llava;
use crate::model::weights::Weights;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub threads: Option<usize>,
    /// Text tokens after the image in the prompt.
    pub text_tokens: usize,
    /// Tokens generated after prefill.
    pub decode_tokens: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub ms_load: f64,
    pub vision_tokens: usize,
    pub prompt_tokens: usize,
    pub ms_encode: f64,
    pub ms_prefill: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens: usize,
    pub ms_decode: f64,
    pub decode_tokens_per_s: f64,
    /// Peak resident memory of the process (VmHWM), bytes; 0 where unknown.
    pub peak_rss_bytes: u64,
}

pub fn run(dir: &Path, options: &BenchOptions) -> Result<BenchReport> {
    let config = LlavaConfig::from_dir(dir)?;
    let backend = CpuBackend::new(options.threads)?;
    let started = Instant::now();
    let model = {
        let weights = Weights::open(dir)?;
        Llava::load(&backend, &weights, config)?
    };
    let ms_load = ms_since(started);
    let cfg = &model.config;

    let size = cfg.vision.image_size;
    let pixels: Vec<f32> = (0..3 * size * size)
        .map(|i| ((i * 7919) % 255) as f32 / 64.0 - 2.0)
        .collect();
    let started = Instant::now();
    let mut image = backend.new_tensor();
    model.encode_image(&backend, &pixels, &mut image)?;
    let ms_encode = ms_since(started);

    let vision_tokens = backend.shape(&image).0;
    let vocab = cfg.text.vocab_size as u32;
    let mut ids = vec![1u32];
    ids.extend(std::iter::repeat_n(cfg.image_token_index, vision_tokens));
    ids.extend((0..options.text_tokens as u32).map(|i| (100 + i * 37) % vocab));
    let prompt = PreparedPrompt {
        ids,
        images: vec![image],
    };
    let n_prompt = prompt.ids.len();

    let mut state = DecodeState::new(&backend, &model, n_prompt + options.decode_tokens);
    let started = Instant::now();
    let mut logits = state.prefill(&backend, &model, &prompt)?;
    let ms_prefill = ms_since(started);

    let mut sampler = Sampler::new(SamplingParams::default())?;
    let mut history = prompt.ids;
    let started = Instant::now();
    for _ in 0..options.decode_tokens {
        let id = sampler.sample(&mut logits, &history);
        history.push(id);
        state.step(&backend, &model.language, id, (history.len() - 1) as u32, &mut logits)?;
    }
    let ms_decode = ms_since(started);

    Ok(BenchReport {
        backend: backend.description(),
        ms_load,
        vision_tokens,
        prompt_tokens: n_prompt,
        ms_encode,
        ms_prefill,
        prefill_tokens_per_s: n_prompt as f64 / (ms_prefill / 1e3),
        decode_tokens: options.decode_tokens,
        ms_decode,
        decode_tokens_per_s: options.decode_tokens as f64 / (ms_decode / 1e3),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// High-water mark of resident memory from /proc (Linux); 0 elsewhere.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
