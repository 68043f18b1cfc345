//! Numbers every run can report, under one vocabulary shared by CLI, JSON and benchmarks.

use serde::Serialize;

use crate::reduce::report::CropCount;

#[derive(Debug, Clone, Default, Serialize)]
pub struct GenerationStats {
    /// The backend the run used ("cpu (8 threads)", "cuda (NVIDIA H100 …)").
    pub backend: String,
    /// The `--reduce` string the run used.
    pub reduce: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Visual tokens the images bring (before any reduction), summed over images.
    pub vision_tokens_in: usize,
    /// After stage 1 (vision-tower merging).
    pub after_encoder: usize,
    /// Entering the layers after the last prefill filter.
    pub after_prefill: usize,
    /// Visual rows each language-model layer processed during prefill.
    pub layer_vision_tokens: Vec<usize>,
    /// Mean of `layer_vision_tokens` per image: the papers' "equal tokens".
    pub equal_tokens: f64,
    /// Analytic FLOPs of the language model's prefill (`4nd² + 2n²d + 3ndm` per layer).
    pub flops_prefill: f64,
    /// Analytic FLOPs of the vision tower (`4nd² + 2n²d + 2ndm` per layer).
    pub flops_vision: f64,
    pub kv_bytes_peak: usize,
    /// Held once prefill and the cache policy's trim are done: what the prompt occupies.
    pub kv_bytes_after_prefill: usize,
    pub kv_bytes_final: usize,
    /// Decode tokens whose keys/values entered (or were refused by) the cache.
    pub decode_kv_admitted: usize,
    pub decode_kv_rejected: usize,
    /// Visual tokens evicted from the cache during decoding.
    pub decode_evicted: usize,
    pub ms_encode: f64,
    pub ms_prefill: f64,
    pub ms_decode: f64,
    pub tokens_per_s: f64,
    pub prefill_tokens_per_s: f64,
    /// Per image cut into tiles (LLaVA-NeXT), its tokens per crop; empty lists for images
    /// taken whole.
    pub crops: Vec<Vec<CropCount>>,
}

/// FLOPs of one decoder layer over `n` rows (width `d`, gated MLP width `m`).
pub fn decoder_layer_flops(n: usize, d: usize, m: usize) -> f64 {
    let (n, d, m) = (n as f64, d as f64, m as f64);
    4.0 * n * d * d + 2.0 * n * n * d + 3.0 * n * d * m
}

/// FLOPs of one vision-tower layer over `n` rows (plain two-matrix MLP).
pub fn encoder_layer_flops(n: usize, d: usize, m: usize) -> f64 {
    let (n, d, m) = (n as f64, d as f64, m as f64);
    4.0 * n * d * d + 2.0 * n * n * d + 2.0 * n * d * m
}
