//! Runtime configuration read from a checkpoint's config.json (and generation_config.json).

use std::path::Path;

use crate::error::Result;

/// Activation functions named by HF configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: exact erf form.
    Gelu,
    /// `gelu_pytorch_tanh` / `gelu_new`: tanh approximation.
    GeluTanh,
    /// `quick_gelu`: x·sigmoid(1.702x).
    QuickGelu,
    /// `silu` / `swish`.
    Silu,
}

/// Which vision tokens feed the projector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSelect {
    /// `default`: drop the CLS token.
    Patches,
    /// `full`: keep CLS and patches.
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub layer_norm_eps: f32,
    pub hidden_act: Activation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f32,
    /// From `rope_theta` (older configs) or `rope_parameters.rope_theta` (newer ones).
    pub rope_theta: f32,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlavaConfig {
    pub vision: VisionConfig,
    pub text: TextConfig,
    pub image_token_index: u32,
    /// Hidden-state index as in HF: negative counts from the end (-2 = output of the
    /// second-to-last layer); 0 = embeddings after pre-layernorm.
    pub vision_feature_layer: i64,
    pub vision_feature_select_strategy: FeatureSelect,
    pub projector_hidden_act: Activation,
    pub multimodal_projector_bias: bool,
    /// Token ids that end generation (config.json / generation_config.json eos_token_id).
    pub eos_token_ids: Vec<u32>,
}

impl LlavaConfig {
    /// Reads `config.json` (and `generation_config.json` when present) from a model directory.
    pub fn from_dir(_dir: &Path) -> Result<Self> {
        todo!()
    }

    /// Number of vision tokens one image becomes.
    pub fn image_seq_len(&self) -> usize {
        let grid = self.vision.image_size / self.vision.patch_size;
        match self.vision_feature_select_strategy {
            FeatureSelect::Patches => grid * grid,
            FeatureSelect::Full => grid * grid + 1,
        }
    }
}
