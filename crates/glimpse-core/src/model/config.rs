//! Runtime configuration read from a checkpoint's config.json (and generation_config.json).
//!
//! Two file formats are read:
//! - Hugging Face's `LlavaConfig` (model_type "llava") with a CLIP vision sub-config and a
//!   Llama-family text sub-config (llava-hf checkpoints), and its `LlavaNextConfig`
//!   (model_type "llava_next"), the same plus the tile grids of `image_grid_pinpoints`;
//! - the original LLaVA release's `LlavaConfig` (model_type "llava_llama", as
//!   liuhaotian/llava-v1.5-* and Dynamic-LLaVA ship it): flat Llama fields plus `mm_*`
//!   fields naming a CLIP tower whose own config lives in a separate CLIP directory (or, for
//!   the towers LLaVA releases use, is built in).
//!
//! Real checkpoints often omit fields and rely on transformers' class defaults, so every
//! field is read as optional and the defaults of the matching transformers class are filled
//! in afterwards (they differ per model type, which is why serde's static defaults are not
//! enough).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::anyres;
use crate::error::{Error, Result};

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

impl Activation {
    /// Parses an HF activation name (`hidden_act`, `projector_hidden_act`).
    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "gelu" | "gelu_python" => Some(Activation::Gelu),
            // `gelu_fast` is the same tanh formula written differently.
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Some(Activation::GeluTanh),
            "quick_gelu" => Some(Activation::QuickGelu),
            "silu" | "swish" => Some(Activation::Silu),
            _ => None,
        }
    }
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

/// How a checkpoint is laid out, which decides how its prompt is tokenized and where its
/// vision tower and image settings come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointFormat {
    /// llava-hf (`LlavaForConditionalGeneration`): `<image>` is a token of the vocabulary,
    /// and the checkpoint carries the tower and its image processor settings.
    LlavaHf,
    /// The original LLaVA release (`LlavaLlamaForCausalLM`, model_type "llava_llama").
    Original(OriginalLayout),
}

/// What an original-layout config.json says about the vision side.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginalLayout {
    /// `mm_vision_tower`: the CLIP model the tower was taken from (a Hub name or a path).
    pub vision_tower: Option<String>,
    /// `image_aspect_ratio == "pad"`: every image is first padded to a centred square of the
    /// mean colour (LLaVA's `expand2square`).
    pub pad_to_square: bool,
}

/// The image slot id of original-layout prompts. The original code splices a sentinel
/// (-200) into the token ids where `<image>` stood and replaces it by the image's
/// embeddings; here the sentinel is an id no tokenizer produces, expanded to
/// `image_seq_len` slots like llava-hf's image token, so the prompt, embedding and
/// reduction code treat both layouts alike. `Llava::embed_prompt` never looks the id up in
/// the embedding table: its rows are overwritten by the image.
pub const SPLICED_IMAGE_TOKEN: u32 = u32::MAX;

/// Dynamic-LLaVA's `sparse_config` (only the fields inference needs; the training-only
/// ones are ignored).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseConfig {
    /// The predictors read the hidden rows entering this decoder layer; reduction applies
    /// from this layer on. Checked against the language model where reduction is set up.
    pub sparse_layer: usize,
    /// Share of each image's tokens the image predictor keeps.
    pub vision_keep_rate: f32,
    /// Width of the image predictor (and of the text predictor's first projection).
    pub d_model: usize,
    /// Attention heads of the image predictor's transformer blocks.
    pub nhead: usize,
    /// Hidden width of those blocks' MLPs.
    pub dim_feedforward: usize,
    /// Number of those blocks.
    pub num_layers: usize,
    /// Whether decode-time admission by the output-text predictor is on by default.
    pub use_output_text_predictor: bool,
}

impl Default for SparseConfig {
    /// The values Dynamic-LLaVA's training script writes (and its code defaults).
    fn default() -> Self {
        SparseConfig {
            sparse_layer: 2,
            vision_keep_rate: 0.2,
            d_model: 512,
            nhead: 8,
            dim_feedforward: 2048,
            num_layers: 2,
            use_output_text_predictor: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlavaConfig {
    pub vision: VisionConfig,
    pub text: TextConfig,
    /// Id of one image slot in the prompt ids; [`SPLICED_IMAGE_TOKEN`] for original-layout
    /// checkpoints.
    pub image_token_index: u32,
    /// Hidden-state index as in HF: negative counts from the end (-2 = output of the
    /// second-to-last layer); 0 = embeddings after pre-layernorm.
    pub vision_feature_layer: i64,
    pub vision_feature_select_strategy: FeatureSelect,
    pub projector_hidden_act: Activation,
    pub multimodal_projector_bias: bool,
    /// Token ids that end generation (config.json / generation_config.json eos_token_id).
    pub eos_token_ids: Vec<u32>,
    pub format: CheckpointFormat,
    /// Dynamic-LLaVA's predictor and reduction settings, when config.json has them.
    pub sparse: Option<SparseConfig>,
    /// LLaVA-NeXT's tile grids (`image_grid_pinpoints`, height × width in pixels): present
    /// for a NeXT checkpoint, whose images are cut into tiles (see `model::anyres`).
    pub image_grid_pinpoints: Option<Vec<anyres::Size>>,
}

impl LlavaConfig {
    /// Reads `config.json` (and `generation_config.json` when present) from a model directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_dirs(dir, None)
    }

    /// Like [`LlavaConfig::from_dir`]; `vision_tower` is a CLIP model directory holding the
    /// tower of an original-layout checkpoint (its config.json is a CLIPConfig or a
    /// CLIPVisionConfig).
    pub fn from_dirs(dir: &Path, vision_tower: Option<&Path>) -> Result<Self> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::model(format!(
                "{}: no config.json (expected a Hugging Face LLaVA checkpoint directory)",
                dir.display()
            )));
        }
        let text = read_text(&config_path)?;
        let generation_path = dir.join("generation_config.json");
        let generation_text = if generation_path.is_file() {
            Some(read_text(&generation_path)?)
        } else {
            None
        };
        let generation = generation_text.as_deref().map(|t| (t, generation_path.as_path()));
        let tower = match vision_tower {
            Some(tower_dir) => {
                let tower_path = tower_dir.join("config.json");
                if !tower_path.is_file() {
                    return Err(Error::model(format!(
                        "{}: no config.json (expected a CLIP model directory for the vision tower)",
                        tower_dir.display()
                    )));
                }
                Some((read_text(&tower_path)?, tower_path))
            }
            None => None,
        };
        let tower = tower.as_ref().map(|(text, path)| (text.as_str(), path.as_path()));
        Self::from_json_with_tower(&text, &config_path, generation, tower)
    }

    /// Parses config.json text; `generation` is the text and path of generation_config.json.
    /// `path` only names the file in error messages.
    pub fn from_json(config_json: &str, path: &Path, generation: Option<(&str, &Path)>) -> Result<Self> {
        Self::from_json_with_tower(config_json, path, generation, None)
    }

    /// Like [`LlavaConfig::from_json`]; `vision_tower` is the text and path of a separate
    /// CLIP config.json for an original-layout checkpoint.
    pub fn from_json_with_tower(
        config_json: &str,
        path: &Path,
        generation: Option<(&str, &Path)>,
        vision_tower: Option<(&str, &Path)>,
    ) -> Result<Self> {
        let file = path.display().to_string();
        let generation_eos = match generation {
            Some((text, gen_path)) => {
                let gen_file = gen_path.display().to_string();
                let raw_gen: RawGenerationConfig = parse_json(text, &gen_file)?;
                token_ids(&raw_gen.eos_token_id, "eos_token_id", &gen_file)?
            }
            None => None,
        };
        let kind: RawModelKind = parse_json(config_json, &file)?;
        if kind.model_type.as_deref() == Some(ORIGINAL_MODEL_TYPE) {
            return resolve_original(config_json, generation_eos, vision_tower, &file);
        }
        if let Some((_, tower_path)) = vision_tower {
            return Err(Error::usage(format!(
                "--vision-tower {} is only for original-layout LLaVA checkpoints (model_type '{ORIGINAL_MODEL_TYPE}'); {file} describes a llava-hf checkpoint, which carries its own vision tower",
                tower_path.parent().unwrap_or(tower_path).display()
            )));
        }
        let raw: RawLlavaConfig = parse_json(config_json, &file)?;
        resolve(raw, generation_eos, &file)
    }

    /// The most tokens one image can take in the prompt: a whole-image model's fixed
    /// count, or the largest tile grid's with every feature row kept (LLaVA-NeXT).
    pub fn max_image_seq_len(&self) -> usize {
        let tile = self.vision.image_size;
        let side = tile / self.vision.patch_size;
        let tiled = self.image_grid_pinpoints.iter().flatten().map(|grid| {
            let (rows, cols) = (grid.height / tile * side, grid.width / tile * side);
            side * side + rows * (cols + 1)
        });
        tiled.max().unwrap_or_else(|| self.image_seq_len())
    }

    /// Number of vision tokens one image becomes; for LLaVA-NeXT, its base image alone (the
    /// tiles' count depends on the image, see `model::anyres`).
    pub fn image_seq_len(&self) -> usize {
        let grid = self.vision.image_size / self.vision.patch_size;
        match self.vision_feature_select_strategy {
            FeatureSelect::Patches => grid * grid,
            FeatureSelect::Full => grid * grid + 1,
        }
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::model(format!("{}: cannot read: {e}", path.display())))
}

fn parse_json<'de, T: Deserialize<'de>>(text: &'de str, file: &str) -> Result<T> {
    // serde_json's message already ends with "at line L column C".
    serde_json::from_str(text).map_err(|e| Error::model(format!("{file}: invalid JSON: {e}")))
}

// ---------------------------------------------------------------------------------------
// Raw mirrors of the JSON files. Unknown keys are ignored; `null` reads as absent, as in
// transformers.

#[derive(Deserialize)]
struct RawLlavaConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vision_config: Option<RawVisionConfig>,
    text_config: Option<RawTextConfig>,
    image_token_index: Option<u32>,
    image_token_id: Option<u32>,
    #[serde(default)]
    vision_feature_layer: Value,
    image_grid_pinpoints: Option<Vec<[usize; 2]>>,
    vision_feature_select_strategy: Option<String>,
    projector_hidden_act: Option<String>,
    multimodal_projector_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    eos_token_id: Value,
    /// Older llava-hf configs repeat the text vocabulary size at the top level.
    vocab_size: Option<usize>,
    sparse_config: Option<RawSparseConfig>,
}

/// Just enough of config.json to tell the two formats apart.
#[derive(Deserialize)]
struct RawModelKind {
    model_type: Option<String>,
}

/// The original LLaVA format's own fields; the Llama fields sit beside them at the top
/// level and are read as a [`RawTextConfig`].
#[derive(Deserialize)]
struct RawOriginalConfig {
    mm_vision_tower: Option<String>,
    /// The older spelling of `mm_vision_tower`.
    vision_tower: Option<String>,
    mm_hidden_size: Option<usize>,
    mm_projector_type: Option<String>,
    #[serde(default)]
    mm_vision_select_layer: Value,
    mm_vision_select_feature: Option<String>,
    image_aspect_ratio: Option<String>,
    mm_use_im_start_end: Option<bool>,
    mm_patch_merge_type: Option<String>,
    sparse_config: Option<RawSparseConfig>,
}

/// A CLIP directory's config.json: a CLIPConfig (`model_type` "clip", the tower under
/// `vision_config`) or a CLIPVisionConfig (`model_type` "clip_vision_model").
#[derive(Deserialize)]
struct RawClipConfig {
    model_type: Option<String>,
    vision_config: Option<RawVisionConfig>,
}

#[derive(Deserialize)]
struct RawSparseConfig {
    sparse_layer: Option<usize>,
    vision_keep_rate: Option<f64>,
    d_model: Option<usize>,
    nhead: Option<usize>,
    dim_feedforward: Option<usize>,
    num_layers: Option<usize>,
    use_output_text_predictor: Option<bool>,
}

/// CLIP's `image_size` / `patch_size` may be an int or an `[h, w]` pair.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum RawSize {
    Square(usize),
    Pair([usize; 2]),
}

#[derive(Deserialize, Default)]
struct RawVisionConfig {
    model_type: Option<String>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_channels: Option<usize>,
    image_size: Option<RawSize>,
    patch_size: Option<RawSize>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawTextConfig {
    model_type: Option<String>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: Option<usize>,
    rms_norm_eps: Option<f64>,
    max_position_embeddings: Option<usize>,
    hidden_act: Option<String>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    /// Older configs: top-level theta, optional `rope_scaling` dict.
    rope_theta: Option<f64>,
    rope_scaling: Option<RawRope>,
    /// Newer configs (transformers 5): `{rope_type, rope_theta, ...}`.
    rope_parameters: Option<RawRope>,
    /// Mistral only; `Some(None)` is an explicit `null` (no window).
    #[serde(default, deserialize_with = "explicit_null")]
    sliding_window: Option<Option<usize>>,
    #[serde(default)]
    eos_token_id: Value,
}

#[derive(Deserialize)]
struct RawRope {
    rope_type: Option<String>,
    /// The pre-4.45 spelling of `rope_type`.
    #[serde(rename = "type")]
    legacy_type: Option<String>,
    rope_theta: Option<f64>,
}

#[derive(Deserialize)]
struct RawGenerationConfig {
    #[serde(default)]
    eos_token_id: Value,
}

/// Keeps "present but null" apart from "absent" (the field must also be `#[serde(default)]`).
fn explicit_null<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

// ---------------------------------------------------------------------------------------
// Defaults of the transformers classes the sub-configs stand for.

/// `CLIPVisionConfig()` defaults (ViT-B/32 at 224 px).
const CLIP_VISION_DEFAULTS: VisionConfig = VisionConfig {
    hidden_size: 768,
    intermediate_size: 3072,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    num_channels: 3,
    image_size: 224,
    patch_size: 32,
    layer_norm_eps: 1e-5,
    hidden_act: Activation::QuickGelu,
};

/// What `LlavaConfig` builds when `vision_config` is missing altogether: CLIP ViT-L/14 at
/// 336 px (the LLaVA-1.5 tower). A `vision_config` dict that is present but sparse gets
/// the plain CLIPVisionConfig defaults instead, exactly as transformers does.
const LLAVA_DEFAULT_VISION: VisionConfig = VisionConfig {
    hidden_size: 1024,
    intermediate_size: 4096,
    num_hidden_layers: 24,
    num_attention_heads: 16,
    image_size: 336,
    patch_size: 14,
    ..CLIP_VISION_DEFAULTS
};

/// Class defaults of a Llama-compatible text config (`LlamaConfig()` / `MistralConfig()`).
struct TextDefaults {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    /// `None`: same as the number of attention heads.
    num_key_value_heads: Option<usize>,
    max_position_embeddings: usize,
    rms_norm_eps: f64,
    /// `None`: the model has no sliding window at all.
    sliding_window: Option<usize>,
    eos_token_id: u32,
}

const LLAMA_DEFAULTS: TextDefaults = TextDefaults {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: None,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
    sliding_window: None,
    eos_token_id: 2,
};

const MISTRAL_DEFAULTS: TextDefaults = TextDefaults {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: Some(8),
    max_position_embeddings: 4096 * 32,
    rms_norm_eps: 1e-6,
    sliding_window: Some(4096),
    eos_token_id: 2,
};

/// RoPE base when neither `rope_theta` nor `rope_parameters.rope_theta` is given.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

const LLAVA_DEFAULT_IMAGE_TOKEN_INDEX: u32 = 32000;
const LLAVA_DEFAULT_FEATURE_LAYER: i64 = -2;

const ORIGINAL_MODEL_TYPE: &str = "llava_llama";
/// The only projector glimpse runs: Linear → GELU → Linear.
const ORIGINAL_PROJECTOR: &str = "mlp2x_gelu";

/// The CLIP towers original LLaVA releases name in `mm_vision_tower`, with their Hub
/// config's settings, so a checkpoint that carries the tower's weights needs no CLIP
/// directory. Matched on the name's last path component (it may be a local path).
fn known_vision_tower(name: &str) -> Option<VisionConfig> {
    let base = name.trim_end_matches('/').rsplit('/').next().unwrap_or(name);
    match base {
        "clip-vit-large-patch14-336" => Some(LLAVA_DEFAULT_VISION),
        "clip-vit-large-patch14" => Some(VisionConfig {
            image_size: 224,
            ..LLAVA_DEFAULT_VISION
        }),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Resolution: defaults, validation, one error line per problem.

fn resolve(raw: RawLlavaConfig, generation_eos: Option<Vec<u32>>, file: &str) -> Result<LlavaConfig> {
    let family = check_architecture(&raw, file)?;

    let vision = resolve_vision(raw.vision_config.as_ref(), file)?;
    let top_tie = raw.tie_word_embeddings.unwrap_or(false);
    let (text, text_eos) = resolve_text(raw.text_config.as_ref(), raw.vocab_size, top_tie, file)?;

    let vision_feature_layer = feature_layer(
        &raw.vision_feature_layer,
        "vision_feature_layer",
        vision.num_hidden_layers,
        file,
    )?;
    let vision_feature_select_strategy = match raw.vision_feature_select_strategy.as_deref() {
        None | Some("default") => FeatureSelect::Patches,
        Some("full") => FeatureSelect::Full,
        Some(other) => {
            return Err(Error::model(format!(
                "{file}: unsupported vision_feature_select_strategy '{other}' (expected 'default' or 'full')"
            )))
        }
    };
    let image_grid_pinpoints = match family {
        HfFamily::Llava => None,
        HfFamily::LlavaNext => Some(grid_pinpoints(
            raw.image_grid_pinpoints.as_deref(),
            &vision,
            vision_feature_select_strategy,
            file,
        )?),
    };
    let projector_hidden_act = activation(
        raw.projector_hidden_act.as_deref().unwrap_or("gelu"),
        "projector_hidden_act",
        file,
    )?;

    // The most specific source wins: generation_config.json, then the text config, then
    // the top level, then the language model's class default.
    let eos_token_ids = match generation_eos.or(text_eos) {
        Some(ids) => ids,
        None => token_ids(&raw.eos_token_id, "eos_token_id", file)?
            .unwrap_or_else(|| vec![text_defaults_eos(raw.text_config.as_ref())]),
    };

    Ok(LlavaConfig {
        vision,
        text,
        image_token_index: raw
            .image_token_index
            .or(raw.image_token_id)
            .unwrap_or(LLAVA_DEFAULT_IMAGE_TOKEN_INDEX),
        vision_feature_layer,
        vision_feature_select_strategy,
        projector_hidden_act,
        multimodal_projector_bias: raw.multimodal_projector_bias.unwrap_or(true),
        eos_token_ids,
        format: CheckpointFormat::LlavaHf,
        sparse: raw.sparse_config.map(|s| sparse_config(s, file)).transpose()?,
        image_grid_pinpoints,
    })
}

/// Resolves an original-layout config.json; `vision_tower` is a separate CLIP config.
fn resolve_original(
    config_json: &str,
    generation_eos: Option<Vec<u32>>,
    vision_tower: Option<(&str, &Path)>,
    file: &str,
) -> Result<LlavaConfig> {
    let raw: RawOriginalConfig = parse_json(config_json, file)?;
    // The Llama fields are the top level itself; `model_type` names the LLaVA class there,
    // whose defaults are LlamaConfig's.
    let mut raw_text: RawTextConfig = parse_json(config_json, file)?;
    raw_text.model_type = None;
    let top_tie = raw_text.tie_word_embeddings.unwrap_or(false);
    let (text, text_eos) = resolve_text(Some(&raw_text), None, top_tie, file)?;

    let projector = raw.mm_projector_type.as_deref().unwrap_or("linear");
    if projector != ORIGINAL_PROJECTOR {
        return Err(Error::model(format!(
            "{file}: unsupported mm_projector_type '{projector}' (glimpse supports '{ORIGINAL_PROJECTOR}')"
        )));
    }
    if raw.mm_use_im_start_end == Some(true) {
        return Err(Error::model(format!(
            "{file}: mm_use_im_start_end is true; glimpse supports LLaVA checkpoints without image start/end tokens"
        )));
    }
    let aspect = raw.image_aspect_ratio.as_deref().unwrap_or("square");
    let merge = raw.mm_patch_merge_type.as_deref().unwrap_or("flat");
    if aspect.contains("anyres") || merge != "flat" {
        return Err(Error::model(format!(
            "{file}: image_aspect_ratio '{aspect}' with mm_patch_merge_type '{merge}' (any-resolution tiling) is not supported"
        )));
    }

    let tower_name = raw.mm_vision_tower.or(raw.vision_tower);
    let vision = match vision_tower {
        Some((tower_json, tower_path)) => clip_vision_config(tower_json, &tower_path.display().to_string())?,
        None => tower_name.as_deref().and_then(known_vision_tower).ok_or_else(|| {
            Error::model(format!(
                "{file}: the vision tower {} is not built into glimpse; pass --vision-tower DIR with a local copy of it",
                tower_name.as_deref().map_or_else(|| "(no mm_vision_tower)".to_string(), |n| format!("'{n}'"))
            ))
        })?,
    };
    if let Some(mm_hidden) = raw.mm_hidden_size {
        if mm_hidden != vision.hidden_size {
            return Err(Error::model(format!(
                "{file}: mm_hidden_size {mm_hidden} does not match the vision tower's hidden_size {}",
                vision.hidden_size
            )));
        }
    }

    let vision_feature_layer = feature_layer(
        &raw.mm_vision_select_layer,
        "mm_vision_select_layer",
        vision.num_hidden_layers,
        file,
    )?;
    let vision_feature_select_strategy = match raw.mm_vision_select_feature.as_deref() {
        None | Some("patch") => FeatureSelect::Patches,
        Some("cls_patch") => FeatureSelect::Full,
        Some(other) => {
            return Err(Error::model(format!(
                "{file}: unsupported mm_vision_select_feature '{other}' (expected 'patch' or 'cls_patch')"
            )))
        }
    };
    let eos_token_ids = generation_eos
        .or(text_eos)
        .unwrap_or_else(|| vec![LLAMA_DEFAULTS.eos_token_id]);

    Ok(LlavaConfig {
        vision,
        text,
        image_token_index: SPLICED_IMAGE_TOKEN,
        vision_feature_layer,
        vision_feature_select_strategy,
        projector_hidden_act: Activation::Gelu,
        multimodal_projector_bias: true,
        eos_token_ids,
        format: CheckpointFormat::Original(OriginalLayout {
            vision_tower: tower_name,
            pad_to_square: aspect == "pad",
        }),
        sparse: raw.sparse_config.map(|s| sparse_config(s, file)).transpose()?,
        image_grid_pinpoints: None,
    })
}

/// The vision config inside a CLIP directory's config.json.
fn clip_vision_config(json: &str, file: &str) -> Result<VisionConfig> {
    let raw: RawClipConfig = parse_json(json, file)?;
    match raw.model_type.as_deref() {
        // CLIPConfig fills a missing vision_config with CLIPVisionConfig's defaults.
        Some("clip") => resolve_vision(Some(&raw.vision_config.unwrap_or_default()), file),
        Some("clip_vision_model") => {
            let vision: RawVisionConfig = parse_json(json, file)?;
            resolve_vision(Some(&vision), file)
        }
        other => Err(Error::model(format!(
            "{file}: expected a CLIP config (model_type 'clip' or 'clip_vision_model'), found {}",
            other.map_or_else(|| "no model_type".to_string(), |t| format!("model_type '{t}'"))
        ))),
    }
}

fn sparse_config(raw: RawSparseConfig, file: &str) -> Result<SparseConfig> {
    let d = SparseConfig::default();
    let field = |name: &str| format!("sparse_config.{name}");
    let config = SparseConfig {
        sparse_layer: raw.sparse_layer.unwrap_or(d.sparse_layer),
        vision_keep_rate: raw.vision_keep_rate.map_or(d.vision_keep_rate, |r| r as f32),
        d_model: positive(raw.d_model.unwrap_or(d.d_model), &field("d_model"), file)?,
        nhead: positive(raw.nhead.unwrap_or(d.nhead), &field("nhead"), file)?,
        dim_feedforward: positive(
            raw.dim_feedforward.unwrap_or(d.dim_feedforward),
            &field("dim_feedforward"),
            file,
        )?,
        num_layers: raw.num_layers.unwrap_or(d.num_layers),
        use_output_text_predictor: raw.use_output_text_predictor.unwrap_or(d.use_output_text_predictor),
    };
    if !(config.vision_keep_rate > 0.0 && config.vision_keep_rate <= 1.0) {
        return Err(Error::model(format!(
            "{file}: sparse_config.vision_keep_rate {} must be in (0, 1]",
            config.vision_keep_rate
        )));
    }
    // The image predictor splits d_model into heads, and its head halves and quarters it.
    if !config.d_model.is_multiple_of(config.nhead) || !config.d_model.is_multiple_of(4) {
        return Err(Error::model(format!(
            "{file}: sparse_config.d_model {} must be divisible by nhead {} and by 4",
            config.d_model, config.nhead
        )));
    }
    Ok(config)
}

/// Which llava-hf class a config.json describes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HfFamily {
    Llava,
    LlavaNext,
}

fn check_architecture(raw: &RawLlavaConfig, file: &str) -> Result<HfFamily> {
    const FAMILIES: [(HfFamily, &str, &str); 2] = [
        (HfFamily::Llava, "llava", "LlavaForConditionalGeneration"),
        (HfFamily::LlavaNext, "llava_next", "LlavaNextForConditionalGeneration"),
    ];
    let named = |arch: &str| raw.architectures.as_ref().is_none_or(|a| a.iter().any(|n| n == arch));
    let found = FAMILIES
        .iter()
        .find(|(_, model_type, arch)| match raw.model_type.as_deref() {
            Some(t) => t == *model_type && named(arch),
            // Without model_type, trust an explicit architecture entry.
            None => raw.architectures.is_some() && named(arch),
        });
    if let Some(&(family, _, _)) = found {
        return Ok(family);
    }
    let found = match (&raw.model_type, &raw.architectures) {
        (Some(t), Some(a)) => format!("model_type '{t}', architectures {a:?}"),
        (Some(t), None) => format!("model_type '{t}'"),
        (None, Some(a)) => format!("architectures {a:?}"),
        (None, None) => "no model_type or architectures".to_string(),
    };
    Err(Error::model(format!(
        "{file}: unsupported architecture ({found}); glimpse runs LLaVA checkpoints (model_type 'llava' or 'llava_next', LlavaForConditionalGeneration, LlavaNextForConditionalGeneration, or the original release's model_type '{ORIGINAL_MODEL_TYPE}')"
    )))
}

/// LLaVA-NeXT's tile grids: the config's, else `LlavaNextConfig`'s default. Each must be a
/// whole number of tower inputs, since the model cuts its feature grid by that count; and
/// the features must be the tower's patches alone, since NeXT lays them out as a grid.
fn grid_pinpoints(
    raw: Option<&[[usize; 2]]>,
    vision: &VisionConfig,
    select: FeatureSelect,
    file: &str,
) -> Result<Vec<anyres::Size>> {
    const NEXT_DEFAULT: [[usize; 2]; 5] = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];
    let pinpoints = raw.unwrap_or(&NEXT_DEFAULT);
    if pinpoints.is_empty() {
        return Err(Error::model(format!("{file}: image_grid_pinpoints is empty")));
    }
    let tile = vision.image_size;
    if let Some([h, w]) = pinpoints
        .iter()
        .find(|[h, w]| *h == 0 || *w == 0 || !h.is_multiple_of(tile) || !w.is_multiple_of(tile))
    {
        return Err(Error::model(format!(
            "{file}: image_grid_pinpoints entry [{h}, {w}] is not a grid of whole {tile}-pixel tiles (the vision tower's image_size)"
        )));
    }
    if select == FeatureSelect::Full {
        return Err(Error::model(format!(
            "{file}: vision_feature_select_strategy 'full' cannot be used by LLaVA-NeXT, which lays the patch features out as a grid"
        )));
    }
    Ok(pinpoints.iter().map(|&[h, w]| anyres::Size::new(h, w)).collect())
}

fn resolve_vision(raw: Option<&RawVisionConfig>, file: &str) -> Result<VisionConfig> {
    let Some(raw) = raw else {
        return Ok(LLAVA_DEFAULT_VISION);
    };
    let model_type = raw.model_type.as_deref().unwrap_or("clip_vision_model");
    if model_type != "clip_vision_model" {
        return Err(Error::model(format!(
            "{file}: unsupported architecture: vision_config.model_type '{model_type}' (glimpse supports CLIP vision towers, 'clip_vision_model')"
        )));
    }
    let d = CLIP_VISION_DEFAULTS;
    let config = VisionConfig {
        hidden_size: positive(
            raw.hidden_size.unwrap_or(d.hidden_size),
            "vision_config.hidden_size",
            file,
        )?,
        intermediate_size: positive(
            raw.intermediate_size.unwrap_or(d.intermediate_size),
            "vision_config.intermediate_size",
            file,
        )?,
        num_hidden_layers: positive(
            raw.num_hidden_layers.unwrap_or(d.num_hidden_layers),
            "vision_config.num_hidden_layers",
            file,
        )?,
        num_attention_heads: positive(
            raw.num_attention_heads.unwrap_or(d.num_attention_heads),
            "vision_config.num_attention_heads",
            file,
        )?,
        num_channels: positive(
            raw.num_channels.unwrap_or(d.num_channels),
            "vision_config.num_channels",
            file,
        )?,
        image_size: square(raw.image_size, d.image_size, "vision_config.image_size", file)?,
        patch_size: square(raw.patch_size, d.patch_size, "vision_config.patch_size", file)?,
        layer_norm_eps: raw.layer_norm_eps.map_or(d.layer_norm_eps, |v| v as f32),
        hidden_act: match raw.hidden_act.as_deref() {
            Some(name) => activation(name, "vision_config.hidden_act", file)?,
            None => d.hidden_act,
        },
    };
    if !config.hidden_size.is_multiple_of(config.num_attention_heads) {
        return Err(Error::model(format!(
            "{file}: vision_config.hidden_size {} is not divisible by num_attention_heads {}",
            config.hidden_size, config.num_attention_heads
        )));
    }
    if config.image_size < config.patch_size {
        return Err(Error::model(format!(
            "{file}: vision_config.image_size {} is smaller than patch_size {}",
            config.image_size, config.patch_size
        )));
    }
    Ok(config)
}

/// Resolves the text config and returns it with its own eos ids (if it names any).
fn resolve_text(
    raw: Option<&RawTextConfig>,
    top_vocab_size: Option<usize>,
    top_tie: bool,
    file: &str,
) -> Result<(TextConfig, Option<Vec<u32>>)> {
    let empty = RawTextConfig::default();
    let raw = raw.unwrap_or(&empty);
    let model_type = raw.model_type.as_deref().unwrap_or("llama");
    let d = text_defaults(model_type).ok_or_else(|| {
        Error::model(format!(
            "{file}: unsupported architecture: text_config.model_type '{model_type}' (glimpse supports Llama-compatible language models: llama, mistral)"
        ))
    })?;

    let hidden_size = positive(
        raw.hidden_size.unwrap_or(d.hidden_size),
        "text_config.hidden_size",
        file,
    )?;
    let num_attention_heads = positive(
        raw.num_attention_heads.unwrap_or(d.num_attention_heads),
        "text_config.num_attention_heads",
        file,
    )?;
    let num_key_value_heads = positive(
        raw.num_key_value_heads
            .or(d.num_key_value_heads)
            .unwrap_or(num_attention_heads),
        "text_config.num_key_value_heads",
        file,
    )?;
    // transformers validates this even when head_dim is given explicitly.
    if !hidden_size.is_multiple_of(num_attention_heads) {
        return Err(Error::model(format!(
            "{file}: text_config.hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}"
        )));
    }
    if !num_attention_heads.is_multiple_of(num_key_value_heads) {
        return Err(Error::model(format!(
            "{file}: text_config.num_attention_heads {num_attention_heads} is not divisible by num_key_value_heads {num_key_value_heads}"
        )));
    }
    let head_dim = positive(
        raw.head_dim.unwrap_or(hidden_size / num_attention_heads),
        "text_config.head_dim",
        file,
    )?;
    let max_position_embeddings = positive(
        raw.max_position_embeddings.unwrap_or(d.max_position_embeddings),
        "text_config.max_position_embeddings",
        file,
    )?;

    let sliding_window = match raw.sliding_window {
        Some(explicit) => explicit,
        None => d.sliding_window,
    };
    if let Some(window) = sliding_window {
        // A window as long as the context never masks anything.
        if window < max_position_embeddings {
            return Err(Error::model(format!(
                "{file}: unsupported sliding-window attention (text_config.sliding_window {window} < max_position_embeddings {max_position_embeddings}); glimpse attends over the full context"
            )));
        }
    }

    let text = TextConfig {
        hidden_size,
        intermediate_size: positive(
            raw.intermediate_size.unwrap_or(d.intermediate_size),
            "text_config.intermediate_size",
            file,
        )?,
        num_hidden_layers: positive(
            raw.num_hidden_layers.unwrap_or(d.num_hidden_layers),
            "text_config.num_hidden_layers",
            file,
        )?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        vocab_size: positive(
            raw.vocab_size.or(top_vocab_size).unwrap_or(d.vocab_size),
            "text_config.vocab_size",
            file,
        )?,
        rms_norm_eps: raw.rms_norm_eps.unwrap_or(d.rms_norm_eps) as f32,
        rope_theta: rope_theta(raw, file)? as f32,
        max_position_embeddings,
        hidden_act: activation(
            raw.hidden_act.as_deref().unwrap_or("silu"),
            "text_config.hidden_act",
            file,
        )?,
        // LlavaConfig forwards a tied text config to the top level; either one ties.
        tie_word_embeddings: top_tie || raw.tie_word_embeddings.unwrap_or(false),
        attention_bias: raw.attention_bias.unwrap_or(false),
        mlp_bias: raw.mlp_bias.unwrap_or(false),
    };
    let eos = token_ids(&raw.eos_token_id, "text_config.eos_token_id", file)?;
    Ok((text, eos))
}

fn text_defaults(model_type: &str) -> Option<&'static TextDefaults> {
    match model_type {
        "llama" => Some(&LLAMA_DEFAULTS),
        "mistral" => Some(&MISTRAL_DEFAULTS),
        _ => None,
    }
}

fn text_defaults_eos(raw: Option<&RawTextConfig>) -> u32 {
    let model_type = raw.and_then(|r| r.model_type.as_deref()).unwrap_or("llama");
    text_defaults(model_type).map_or(LLAMA_DEFAULTS.eos_token_id, |d| d.eos_token_id)
}

/// Follows transformers' precedence: a `rope_scaling` dict replaces `rope_parameters`;
/// theta comes from the dict, else the top-level `rope_theta`, else 10000.
fn rope_theta(raw: &RawTextConfig, file: &str) -> Result<f64> {
    let rope = raw.rope_scaling.as_ref().or(raw.rope_parameters.as_ref());
    let rope_type = rope
        .and_then(|r| r.rope_type.as_deref().or(r.legacy_type.as_deref()))
        .unwrap_or("default");
    if rope_type != "default" {
        return Err(Error::model(format!(
            "{file}: unsupported rope scaling '{rope_type}' in text_config (glimpse supports plain RoPE, rope_type 'default')"
        )));
    }
    let theta = rope
        .and_then(|r| r.rope_theta)
        .or(raw.rope_theta)
        .unwrap_or(DEFAULT_ROPE_THETA);
    if !(theta.is_finite() && theta > 0.0) {
        return Err(Error::model(format!(
            "{file}: text_config rope_theta {theta} must be a positive number"
        )));
    }
    Ok(theta)
}

/// Reads a feature-layer index (`field` names it in errors).
fn feature_layer(value: &Value, field: &str, num_layers: usize, file: &str) -> Result<i64> {
    let layer = match value {
        Value::Null => LLAVA_DEFAULT_FEATURE_LAYER,
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| Error::model(format!("{file}: {field} {n} is not an integer")))?,
        Value::Array(_) => {
            return Err(Error::model(format!(
                "{file}: {field} {value} is a list of layers; glimpse supports a single layer for now"
            )))
        }
        other => {
            return Err(Error::model(format!(
                "{file}: {field} must be an integer, found {other}"
            )))
        }
    };
    // HF indexes hidden_states, which has num_layers + 1 entries (embeddings first).
    let count = num_layers as i64 + 1;
    if layer >= count || layer < -count {
        return Err(Error::model(format!(
            "{file}: {field} {layer} is out of range for a vision tower with {num_layers} layers"
        )));
    }
    Ok(layer)
}

/// Reads an `eos_token_id`-style value: an int, a list of ints, or null/absent (`None`).
fn token_ids(value: &Value, field: &str, file: &str) -> Result<Option<Vec<u32>>> {
    let one = |v: &Value| -> Result<u32> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| Error::model(format!("{file}: {field} must hold token ids, found {v}")))
    };
    match value {
        Value::Null => Ok(None),
        Value::Array(items) => {
            let mut ids: Vec<u32> = Vec::with_capacity(items.len());
            for item in items {
                let id = one(item)?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Ok(Some(ids))
        }
        other => Ok(Some(vec![one(other)?])),
    }
}

fn activation(name: &str, field: &str, file: &str) -> Result<Activation> {
    Activation::from_hf_name(name).ok_or_else(|| {
        Error::model(format!(
            "{file}: unsupported activation '{name}' in {field} (supported: gelu, gelu_pytorch_tanh, gelu_new, quick_gelu, silu)"
        ))
    })
}

fn positive(value: usize, field: &str, file: &str) -> Result<usize> {
    if value == 0 {
        return Err(Error::model(format!("{file}: {field} must be positive, found 0")));
    }
    Ok(value)
}

fn square(raw: Option<RawSize>, default: usize, field: &str, file: &str) -> Result<usize> {
    let size = match raw {
        None => default,
        Some(RawSize::Square(n)) => n,
        Some(RawSize::Pair([h, w])) if h == w => h,
        Some(RawSize::Pair([h, w])) => {
            return Err(Error::model(format!(
                "{file}: {field} [{h}, {w}] is not square; glimpse supports square images and patches"
            )))
        }
    };
    positive(size, field, file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// config.json of llava-hf/llava-1.5-7b-hf as published (sparse: most text fields come
    /// from LlamaConfig's defaults).
    const LLAVA_15_7B: &str = r#"{
  "architectures": [
    "LlavaForConditionalGeneration"
  ],
  "ignore_index": -100,
  "image_token_index": 32000,
  "model_type": "llava",
  "pad_token_id": 32001,
  "projector_hidden_act": "gelu",
  "text_config": {
    "_name_or_path": "lmsys/vicuna-7b-v1.5",
    "architectures": [
      "LlamaForCausalLM"
    ],
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "rms_norm_eps": 1e-05,
    "torch_dtype": "float16",
    "vocab_size": 32064
  },
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.36.0.dev0",
  "vision_config": {
    "hidden_size": 1024,
    "image_size": 336,
    "intermediate_size": 4096,
    "model_type": "clip_vision_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "patch_size": 14,
    "projection_dim": 768,
    "vocab_size": 32000
  },
  "vision_feature_layer": -2,
  "vision_feature_select_strategy": "default",
  "vocab_size": 32064
}"#;

    /// The newer transformers 5 form: `rope_parameters`, `image_token_id`, list eos.
    const ROPE_PARAMETERS: &str = r#"{
  "architectures": ["LlavaForConditionalGeneration"],
  "model_type": "llava",
  "image_token_id": 7,
  "projector_hidden_act": "gelu_pytorch_tanh",
  "multimodal_projector_bias": false,
  "vision_feature_layer": -1,
  "vision_feature_select_strategy": "full",
  "text_config": {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "vocab_size": 100,
    "rms_norm_eps": 1e-06,
    "max_position_embeddings": 512,
    "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
    "tie_word_embeddings": true,
    "attention_bias": true,
    "mlp_bias": true,
    "eos_token_id": [5, 6]
  },
  "vision_config": {
    "model_type": "clip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "image_size": [56, 56],
    "patch_size": 14,
    "layer_norm_eps": 1e-06,
    "hidden_act": "gelu"
  }
}"#;

    fn parse(json: &str) -> Result<LlavaConfig> {
        LlavaConfig::from_json(json, Path::new("m/config.json"), None)
    }

    fn parse_err(json: &str) -> Error {
        match parse(json) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e,
        }
    }

    fn write_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        dir
    }

    // Expected values below are what transformers 5.24's LlavaConfig resolves for the same
    // JSON (checked with `LlavaConfig(**json.load(f))`).

    #[test]
    fn llava_15_7b_resolves_like_transformers() {
        let dir = write_dir(&[("config.json", LLAVA_15_7B)]);
        let config = LlavaConfig::from_dir(dir.path()).expect("config");
        assert_eq!(
            config.vision,
            VisionConfig {
                hidden_size: 1024,
                intermediate_size: 4096,
                num_hidden_layers: 24,
                num_attention_heads: 16,
                num_channels: 3,
                image_size: 336,
                patch_size: 14,
                layer_norm_eps: 1e-5,
                hidden_act: Activation::QuickGelu,
            }
        );
        assert_eq!(
            config.text,
            TextConfig {
                hidden_size: 4096,
                intermediate_size: 11008,
                num_hidden_layers: 32,
                num_attention_heads: 32,
                num_key_value_heads: 32,
                head_dim: 128,
                vocab_size: 32064,
                rms_norm_eps: 1e-5,
                rope_theta: 10000.0,
                max_position_embeddings: 4096,
                hidden_act: Activation::Silu,
                tie_word_embeddings: false,
                attention_bias: false,
                mlp_bias: false,
            }
        );
        assert_eq!(config.image_token_index, 32000);
        assert_eq!(config.vision_feature_layer, -2);
        assert_eq!(config.vision_feature_select_strategy, FeatureSelect::Patches);
        assert_eq!(config.projector_hidden_act, Activation::Gelu);
        assert!(config.multimodal_projector_bias);
        assert_eq!(config.eos_token_ids, vec![2]);
        assert_eq!(config.image_seq_len(), 576);
    }

    #[test]
    fn rope_parameters_form() {
        let config = parse(ROPE_PARAMETERS).expect("config");
        assert_eq!(
            config.vision,
            VisionConfig {
                hidden_size: 32,
                intermediate_size: 48,
                num_hidden_layers: 3,
                num_attention_heads: 2,
                num_channels: 3,
                image_size: 56,
                patch_size: 14,
                layer_norm_eps: 1e-6,
                hidden_act: Activation::Gelu,
            }
        );
        assert_eq!(
            config.text,
            TextConfig {
                hidden_size: 64,
                intermediate_size: 96,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 32,
                vocab_size: 100,
                rms_norm_eps: 1e-6,
                rope_theta: 500000.0,
                max_position_embeddings: 512,
                hidden_act: Activation::Silu,
                tie_word_embeddings: true,
                attention_bias: true,
                mlp_bias: true,
            }
        );
        assert_eq!(config.image_token_index, 7);
        assert_eq!(config.vision_feature_layer, -1);
        assert_eq!(config.vision_feature_select_strategy, FeatureSelect::Full);
        assert_eq!(config.projector_hidden_act, Activation::GeluTanh);
        assert!(!config.multimodal_projector_bias);
        assert_eq!(config.eos_token_ids, vec![5, 6]);
        assert_eq!(config.image_seq_len(), 17);
    }

    #[test]
    fn missing_vision_config_is_clip_l_336_and_text_is_llama_defaults() {
        let config = parse(r#"{"model_type": "llava"}"#).expect("config");
        assert_eq!(config.vision, LLAVA_DEFAULT_VISION);
        assert_eq!(
            (
                config.vision.hidden_size,
                config.vision.image_size,
                config.vision.patch_size
            ),
            (1024, 336, 14)
        );
        assert_eq!(config.text.vocab_size, 32000);
        assert_eq!(config.text.rms_norm_eps, 1e-6);
        assert_eq!(config.text.max_position_embeddings, 2048);
        assert_eq!(config.text.rope_theta, 10000.0);
        assert_eq!(config.eos_token_ids, vec![2]);
    }

    #[test]
    fn sparse_vision_dict_gets_clip_vision_defaults_and_mistral_its_own() {
        let config = parse(
            r#"{"model_type": "llava", "vision_config": {"hidden_size": 96},
                "text_config": {"model_type": "mistral", "sliding_window": null,
                                "rope_theta": 1000000.0, "rope_scaling": null}}"#,
        )
        .expect("config");
        assert_eq!(
            config.vision,
            VisionConfig {
                hidden_size: 96,
                ..CLIP_VISION_DEFAULTS
            }
        );
        assert_eq!(
            (
                config.vision.image_size,
                config.vision.patch_size,
                config.vision.num_hidden_layers
            ),
            (224, 32, 12)
        );
        let t = &config.text;
        assert_eq!(
            (t.intermediate_size, t.num_key_value_heads, t.head_dim),
            (14336, 8, 128)
        );
        assert_eq!(t.max_position_embeddings, 131072);
        assert_eq!(t.rope_theta, 1_000_000.0);
    }

    #[test]
    fn generation_config_eos_wins_and_falls_back_in_order() {
        let dir = write_dir(&[
            ("config.json", ROPE_PARAMETERS),
            (
                "generation_config.json",
                r#"{"bos_token_id": 1, "eos_token_id": [9, 2, 9]}"#,
            ),
        ]);
        assert_eq!(
            LlavaConfig::from_dir(dir.path()).expect("config").eos_token_ids,
            vec![9, 2]
        );

        let dir = write_dir(&[
            ("config.json", ROPE_PARAMETERS),
            ("generation_config.json", r#"{"eos_token_id": 11}"#),
        ]);
        assert_eq!(
            LlavaConfig::from_dir(dir.path()).expect("config").eos_token_ids,
            vec![11]
        );

        // No eos in generation_config.json: the text config's list.
        let dir = write_dir(&[
            ("config.json", ROPE_PARAMETERS),
            ("generation_config.json", r#"{"do_sample": false}"#),
        ]);
        assert_eq!(
            LlavaConfig::from_dir(dir.path()).expect("config").eos_token_ids,
            vec![5, 6]
        );

        // Nothing in the text config: the top level.
        let config = parse(r#"{"model_type": "llava", "eos_token_id": 3}"#).expect("config");
        assert_eq!(config.eos_token_ids, vec![3]);
    }

    #[test]
    fn legacy_rope_spellings() {
        let config = parse(r#"{"model_type": "llava", "text_config": {"rope_theta": 20000}}"#).expect("config");
        assert_eq!(config.text.rope_theta, 20000.0);
        let config = parse(
            r#"{"model_type": "llava", "text_config": {"rope_theta": 20000, "rope_scaling": {"type": "default"}}}"#,
        )
        .expect("config");
        assert_eq!(config.text.rope_theta, 20000.0);
    }

    #[test]
    fn rope_scaling_other_than_default_is_refused() {
        let err = parse_err(
            r#"{"model_type": "llava", "text_config": {"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 500000.0}}}"#,
        );
        assert_eq!(err.kind, ErrorKind::Model);
        assert_eq!(
            err.message,
            "m/config.json: unsupported rope scaling 'llama3' in text_config (glimpse supports plain RoPE, rope_type 'default')"
        );
        let err =
            parse_err(r#"{"model_type": "llava", "text_config": {"rope_scaling": {"type": "linear", "factor": 2.0}}}"#);
        assert!(
            err.message.contains("unsupported rope scaling 'linear'"),
            "{}",
            err.message
        );
    }

    #[test]
    fn missing_config_json_names_the_directory() {
        let dir = write_dir(&[]);
        let err = LlavaConfig::from_dir(dir.path()).expect_err("no config");
        assert_eq!(err.kind, ErrorKind::Model);
        assert_eq!(
            err.message,
            format!(
                "{}: no config.json (expected a Hugging Face LLaVA checkpoint directory)",
                dir.path().display()
            )
        );
    }

    #[test]
    fn invalid_json_names_file_line_and_column() {
        let dir = write_dir(&[("config.json", "{\n  \"model_type\": \"llava\",\n  oops\n}")]);
        let err = LlavaConfig::from_dir(dir.path()).expect_err("bad json");
        let file = dir.path().join("config.json");
        assert_eq!(err.kind, ErrorKind::Model);
        assert_eq!(
            err.message,
            format!(
                "{}: invalid JSON: key must be a string at line 3 column 3",
                file.display()
            )
        );

        let dir = write_dir(&[
            ("config.json", ROPE_PARAMETERS),
            ("generation_config.json", "{\"eos_token_id\": }"),
        ]);
        let err = LlavaConfig::from_dir(dir.path()).expect_err("bad json");
        let file = dir.path().join("generation_config.json");
        assert_eq!(
            err.message,
            format!("{}: invalid JSON: expected value at line 1 column 18", file.display())
        );
    }

    #[test]
    fn wrong_field_type_is_reported_with_position() {
        let err = parse_err("{\"model_type\": \"llava\",\n \"text_config\": {\"hidden_size\": \"big\"}}");
        assert_eq!(
            err.message,
            "m/config.json: invalid JSON: invalid type: string \"big\", expected usize at line 2 column 37"
        );
    }

    #[test]
    fn unsupported_architectures() {
        let err = parse_err(r#"{"model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"]}"#);
        assert_eq!(
            err.message,
            "m/config.json: unsupported architecture (model_type 'qwen2_vl', architectures [\"Qwen2VLForConditionalGeneration\"]); glimpse runs LLaVA checkpoints (model_type 'llava' or 'llava_next', LlavaForConditionalGeneration, LlavaNextForConditionalGeneration, or the original release's model_type 'llava_llama')"
        );
        let err = parse_err(r#"{"model_type": "llava", "text_config": {"model_type": "qwen2"}}"#);
        assert_eq!(
            err.message,
            "m/config.json: unsupported architecture: text_config.model_type 'qwen2' (glimpse supports Llama-compatible language models: llama, mistral)"
        );
        let err = parse_err(r#"{"model_type": "llava", "vision_config": {"model_type": "siglip_vision_model"}}"#);
        assert!(
            err.message.contains("vision_config.model_type 'siglip_vision_model'"),
            "{}",
            err.message
        );
        // Mistral's class default has a 4096-token sliding window.
        let err = parse_err(r#"{"model_type": "llava", "text_config": {"model_type": "mistral"}}"#);
        assert_eq!(
            err.message,
            "m/config.json: unsupported sliding-window attention (text_config.sliding_window 4096 < max_position_embeddings 131072); glimpse attends over the full context"
        );
        // Without model_type an explicit LLaVA architecture is enough.
        assert!(parse(r#"{"architectures": ["LlavaForConditionalGeneration"]}"#).is_ok());
        assert!(parse(r#"{}"#).is_err());
    }

    #[test]
    fn llava_next_reads_its_tile_grids() {
        let size = |h, w| anyres::Size::new(h, w);
        // LlavaNextConfig's default grids, in order.
        let config = parse(r#"{"model_type": "llava_next"}"#).expect("config");
        assert_eq!(
            config.image_grid_pinpoints,
            Some(vec![
                size(336, 672),
                size(672, 336),
                size(672, 672),
                size(1008, 336),
                size(336, 1008)
            ])
        );
        let config = parse(
            r#"{"architectures": ["LlavaNextForConditionalGeneration"], "vision_config": {"image_size": 48, "patch_size": 4},
                "image_grid_pinpoints": [[48, 96], [96, 48]]}"#,
        )
        .expect("config");
        assert_eq!(config.image_grid_pinpoints, Some(vec![size(48, 96), size(96, 48)]));
        // A plain LLaVA config has no tiles, whatever it carries.
        let config = parse(r#"{"model_type": "llava", "image_grid_pinpoints": [[336, 672]]}"#).expect("config");
        assert_eq!(config.image_grid_pinpoints, None);
    }

    #[test]
    fn llava_next_grid_checks() {
        let err = parse_err(r#"{"model_type": "llava_next", "image_grid_pinpoints": [[336, 672], [336, 500]]}"#);
        assert_eq!(
            err.message,
            "m/config.json: image_grid_pinpoints entry [336, 500] is not a grid of whole 336-pixel tiles (the vision tower's image_size)"
        );
        let err = parse_err(r#"{"model_type": "llava_next", "image_grid_pinpoints": []}"#);
        assert_eq!(err.message, "m/config.json: image_grid_pinpoints is empty");
        let err = parse_err(r#"{"model_type": "llava_next", "vision_feature_select_strategy": "full"}"#);
        assert!(
            err.message.contains("'full' cannot be used by LLaVA-NeXT"),
            "{}",
            err.message
        );
        let err = parse_err(r#"{"model_type": "llava_next", "architectures": ["LlavaForConditionalGeneration"]}"#);
        assert!(err.message.contains("unsupported architecture"), "{}", err.message);
    }

    #[test]
    fn feature_layer_checks() {
        let err = parse_err(r#"{"model_type": "llava", "vision_feature_layer": [-2, -5]}"#);
        assert_eq!(
            err.message,
            "m/config.json: vision_feature_layer [-2,-5] is a list of layers; glimpse supports a single layer for now"
        );
        // CLIP-L has 24 layers, so hidden_states has 25 entries: -25..=24 are valid.
        assert_eq!(
            parse(r#"{"model_type": "llava", "vision_feature_layer": -25}"#)
                .expect("ok")
                .vision_feature_layer,
            -25
        );
        assert_eq!(
            parse(r#"{"model_type": "llava", "vision_feature_layer": 24}"#)
                .expect("ok")
                .vision_feature_layer,
            24
        );
        let err = parse_err(r#"{"model_type": "llava", "vision_feature_layer": -26}"#);
        assert_eq!(
            err.message,
            "m/config.json: vision_feature_layer -26 is out of range for a vision tower with 24 layers"
        );
        let err = parse_err(r#"{"model_type": "llava", "vision_feature_select_strategy": "cls"}"#);
        assert!(
            err.message.contains("unsupported vision_feature_select_strategy 'cls'"),
            "{}",
            err.message
        );
    }

    #[test]
    fn inconsistent_sizes_are_refused() {
        let err =
            parse_err(r#"{"model_type": "llava", "text_config": {"hidden_size": 100, "num_attention_heads": 3}}"#);
        assert_eq!(
            err.message,
            "m/config.json: text_config.hidden_size 100 is not divisible by num_attention_heads 3"
        );
        let err = parse_err(r#"{"model_type": "llava", "text_config": {"num_key_value_heads": 5}}"#);
        assert!(
            err.message
                .contains("num_attention_heads 32 is not divisible by num_key_value_heads 5"),
            "{}",
            err.message
        );
        let err = parse_err(r#"{"model_type": "llava", "vision_config": {"patch_size": 0}}"#);
        assert_eq!(
            err.message,
            "m/config.json: vision_config.patch_size must be positive, found 0"
        );
        let err = parse_err(r#"{"model_type": "llava", "vision_config": {"image_size": [336, 224]}}"#);
        assert!(
            err.message.contains("image_size [336, 224] is not square"),
            "{}",
            err.message
        );
        let err = parse_err(r#"{"model_type": "llava", "projector_hidden_act": "relu"}"#);
        assert!(
            err.message
                .contains("unsupported activation 'relu' in projector_hidden_act"),
            "{}",
            err.message
        );
        let err = parse_err(r#"{"model_type": "llava", "eos_token_id": -1}"#);
        assert_eq!(err.message, "m/config.json: eos_token_id must hold token ids, found -1");
    }

    /// config.json of liuhaotian/llava-v1.5-7b (the original release's format).
    const ORIGINAL_15_7B: &str = r#"{
  "_name_or_path": "./checkpoints/vicuna-7b-v1-5",
  "architectures": ["LlavaLlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "freeze_mm_mlp_adapter": false,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "image_aspect_ratio": "pad",
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_length": 4096,
  "max_position_embeddings": 4096,
  "mm_hidden_size": 1024,
  "mm_projector_type": "mlp2x_gelu",
  "mm_use_im_patch_token": false,
  "mm_use_im_start_end": false,
  "mm_vision_select_feature": "patch",
  "mm_vision_select_layer": -2,
  "mm_vision_tower": "openai/clip-vit-large-patch14-336",
  "model_type": "llava_llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pad_token_id": 0,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.31.0",
  "use_cache": true,
  "use_mm_proj": true,
  "vocab_size": 32000
}"#;

    /// `original` with `field` set to `value` (raw JSON).
    fn original_with(field: &str, value: &str) -> String {
        let mut json: Value = serde_json::from_str(ORIGINAL_15_7B).expect("json");
        json[field] = serde_json::from_str(value).expect("value");
        json.to_string()
    }

    fn with_tower(json: &str, tower: &str) -> Result<LlavaConfig> {
        LlavaConfig::from_json_with_tower(
            json,
            Path::new("m/config.json"),
            None,
            Some((tower, Path::new("clip/config.json"))),
        )
    }

    // The original format is read as LLaVA's own code reads it (llava/model/llava_arch.py,
    // multimodal_encoder/clip_encoder.py): LlamaConfig fields plus the mm_* settings.

    #[test]
    fn original_llava_15_7b_resolves_to_the_same_model_as_llava_hf() {
        let config = parse(ORIGINAL_15_7B).expect("config");
        let hf = parse(LLAVA_15_7B).expect("config");
        assert_eq!(config.vision, hf.vision);
        // Same language model; the vocabulary has no <image> row, since the image slot is
        // spliced in rather than tokenized.
        assert_eq!(
            config.text,
            TextConfig {
                vocab_size: 32000,
                ..hf.text.clone()
            }
        );
        assert_eq!(config.image_token_index, SPLICED_IMAGE_TOKEN);
        assert_eq!(config.vision_feature_layer, -2);
        assert_eq!(config.vision_feature_select_strategy, FeatureSelect::Patches);
        assert_eq!(config.projector_hidden_act, Activation::Gelu);
        assert!(config.multimodal_projector_bias);
        assert_eq!(config.eos_token_ids, vec![2]);
        assert_eq!(config.image_seq_len(), 576);
        assert_eq!(
            config.format,
            CheckpointFormat::Original(OriginalLayout {
                vision_tower: Some("openai/clip-vit-large-patch14-336".into()),
                pad_to_square: true,
            })
        );
        assert_eq!(config.sparse, None);
        assert_eq!(hf.format, CheckpointFormat::LlavaHf);
    }

    #[test]
    fn original_select_feature_layer_aspect_and_local_tower_paths() {
        let config = parse(&original_with("mm_vision_select_feature", "\"cls_patch\"")).expect("config");
        assert_eq!(config.vision_feature_select_strategy, FeatureSelect::Full);
        assert_eq!(config.image_seq_len(), 577);
        let config = parse(&original_with("mm_vision_select_layer", "-1")).expect("config");
        assert_eq!(config.vision_feature_layer, -1);
        let config = parse(&original_with("image_aspect_ratio", "\"square\"")).expect("config");
        assert!(matches!(
            config.format,
            CheckpointFormat::Original(OriginalLayout {
                pad_to_square: false,
                ..
            })
        ));
        // A local copy of a known tower is recognised by its directory name.
        let config = parse(&original_with(
            "mm_vision_tower",
            "\"/data/openai/clip-vit-large-patch14/\"",
        ))
        .expect("config");
        assert_eq!(config.vision.image_size, 224);
        assert_eq!(config.image_seq_len(), 256);
    }

    #[test]
    fn original_problems_are_one_line_each() {
        let cases = [
            (
                original_with("mm_projector_type", "\"linear\""),
                "m/config.json: unsupported mm_projector_type 'linear' (glimpse supports 'mlp2x_gelu')",
            ),
            (
                original_with("mm_use_im_start_end", "true"),
                "m/config.json: mm_use_im_start_end is true; glimpse supports LLaVA checkpoints without image start/end tokens",
            ),
            (
                original_with("image_aspect_ratio", "\"anyres\""),
                "m/config.json: image_aspect_ratio 'anyres' with mm_patch_merge_type 'flat' (any-resolution tiling) is not supported",
            ),
            (
                original_with("mm_vision_select_feature", "\"cls\""),
                "m/config.json: unsupported mm_vision_select_feature 'cls' (expected 'patch' or 'cls_patch')",
            ),
            (
                original_with("mm_vision_select_layer", "-26"),
                "m/config.json: mm_vision_select_layer -26 is out of range for a vision tower with 24 layers",
            ),
            (
                original_with("mm_hidden_size", "768"),
                "m/config.json: mm_hidden_size 768 does not match the vision tower's hidden_size 1024",
            ),
            (
                original_with("mm_vision_tower", "\"google/siglip-so400m-patch14-384\""),
                "m/config.json: the vision tower 'google/siglip-so400m-patch14-384' is not built into glimpse; pass --vision-tower DIR with a local copy of it",
            ),
            (
                original_with("mm_vision_tower", "null"),
                "m/config.json: the vision tower (no mm_vision_tower) is not built into glimpse; pass --vision-tower DIR with a local copy of it",
            ),
        ];
        for (json, message) in cases {
            let err = parse_err(&json);
            assert_eq!(err.kind, ErrorKind::Model);
            assert_eq!(err.message, message);
        }
    }

    #[test]
    fn a_separate_clip_config_gives_the_tower() {
        // openai/clip-vit-large-patch14-336 ships a CLIPConfig; only its vision part matters.
        let clip = r#"{"model_type": "clip", "projection_dim": 768,
            "text_config": {"hidden_size": 768},
            "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                              "model_type": "clip_vision_model", "num_attention_heads": 16,
                              "num_hidden_layers": 24, "patch_size": 14}}"#;
        let config = with_tower(ORIGINAL_15_7B, clip).expect("config");
        assert_eq!(config.vision, LLAVA_DEFAULT_VISION);

        // A bare CLIPVisionConfig, for a tower the built-in table does not know.
        let tiny = r#"{"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 48, "patch_size": 4}"#;
        let json = original_with("mm_vision_tower", "\"someone/tiny-clip\"");
        let err = with_tower(&json, tiny).expect_err("mm_hidden_size 1024 vs 32");
        assert!(err
            .message
            .contains("mm_hidden_size 1024 does not match the vision tower's hidden_size 32"));
        let mut json: Value = serde_json::from_str(&json).expect("json");
        json["mm_hidden_size"] = Value::from(32);
        let config = with_tower(&json.to_string(), tiny).expect("config");
        assert_eq!(
            config.vision,
            VisionConfig {
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 3,
                num_attention_heads: 2,
                image_size: 48,
                patch_size: 4,
                ..CLIP_VISION_DEFAULTS
            }
        );
        assert_eq!(config.image_seq_len(), 144);

        let err = with_tower(ORIGINAL_15_7B, r#"{"model_type": "siglip"}"#).expect_err("not CLIP");
        assert_eq!(
            err.message,
            "clip/config.json: expected a CLIP config (model_type 'clip' or 'clip_vision_model'), found model_type 'siglip'"
        );
        let err = with_tower(LLAVA_15_7B, clip).expect_err("llava-hf has its own tower");
        assert_eq!(err.kind, ErrorKind::Usage);
        assert_eq!(
            err.message,
            "--vision-tower clip is only for original-layout LLaVA checkpoints (model_type 'llava_llama'); m/config.json describes a llava-hf checkpoint, which carries its own vision tower"
        );
    }

    #[test]
    fn sparse_config_fills_defaults_and_ignores_unknown_keys() {
        // Dynamic-LLaVA-13B's sparse_config carries training-only and unknown keys.
        let json = original_with(
            "sparse_config",
            r#"{"d_model": 512, "dim_feedforward": 2048, "instruct_keep_rate": 0.7, "maskclip": null,
                "mask_loss_weight": 100.0, "nhead": 8, "vision_keep_rate": 0.5, "sparse_layer": 2,
                "use_output_text_predictor": false}"#,
        );
        let config = parse(&json).expect("config");
        assert_eq!(
            config.sparse,
            Some(SparseConfig {
                vision_keep_rate: 0.5,
                use_output_text_predictor: false,
                ..SparseConfig::default()
            })
        );
        let config = parse(r#"{"model_type": "llava", "sparse_config": {}}"#).expect("config");
        assert_eq!(config.sparse, Some(SparseConfig::default()));
        assert_eq!(
            SparseConfig::default(),
            SparseConfig {
                sparse_layer: 2,
                vision_keep_rate: 0.2,
                d_model: 512,
                nhead: 8,
                dim_feedforward: 2048,
                num_layers: 2,
                use_output_text_predictor: true,
            }
        );

        let err = parse_err(r#"{"model_type": "llava", "sparse_config": {"vision_keep_rate": 0}}"#);
        assert_eq!(
            err.message,
            "m/config.json: sparse_config.vision_keep_rate 0 must be in (0, 1]"
        );
        let err = parse_err(r#"{"model_type": "llava", "sparse_config": {"d_model": 36, "nhead": 8}}"#);
        assert_eq!(
            err.message,
            "m/config.json: sparse_config.d_model 36 must be divisible by nhead 8 and by 4"
        );
        let err = parse_err(r#"{"model_type": "llava", "sparse_config": {"nhead": 0}}"#);
        assert_eq!(
            err.message,
            "m/config.json: sparse_config.nhead must be positive, found 0"
        );
    }
}
