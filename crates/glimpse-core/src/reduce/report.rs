//! What a reduction did to each visual token, for `--show-kept`, `--json` and tests.

use serde::Serialize;

use crate::model::preprocess::ImageGeometry;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReductionReport {
    /// The `--reduce` string.
    pub spec: String,
    pub images: Vec<ImageReport>,
    /// Per filter layer, the tokens (indices into each image's `tokens`) that left it.
    pub filters: Vec<FilterReport>,
    /// For each generated token fed back into the model, whether its keys/values stayed
    /// in the cache (empty when no policy decides admission).
    pub decode_admitted: Vec<bool>,
    pub decode_evicted: Vec<Eviction>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImageReport {
    /// Patches per side.
    pub grid: usize,
    pub tokens: Vec<TokenReport>,
    pub keys: Vec<u32>,
    /// Stage-1 merge similarity of every window (empty when no merge ran).
    pub window_similarity: Vec<f32>,
    /// Where the model's canvas, and so each patch, lies on the source image.
    pub geometry: Option<ImageGeometry>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenReport {
    /// Raster indices of the patches the token stands for.
    pub patches: Vec<u32>,
    pub key: bool,
    /// Made by a filter from dropped tokens (SparseVLM recycling).
    pub recycled: bool,
    /// The layer after which a prefill filter removed it.
    pub dropped_after_layer: Option<usize>,
    /// The decode step at which the cache policy evicted it.
    pub evicted_at_step: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilterReport {
    pub layer: usize,
    pub kept: Vec<Vec<u32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Eviction {
    pub step: usize,
    pub image: u32,
    pub token: u32,
}
