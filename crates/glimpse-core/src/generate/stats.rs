//! Numbers every run can report, under one vocabulary shared by CLI, JSON and benchmarks.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub vision_tokens_in: usize,
    pub generated_tokens: usize,
    pub ms_encode: f64,
    pub ms_prefill: f64,
    pub ms_decode: f64,
    pub tokens_per_s: f64,
    pub prefill_tokens_per_s: f64,
    pub kv_bytes_peak: usize,
}
