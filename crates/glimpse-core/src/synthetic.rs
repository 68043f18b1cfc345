//! Random-weight LLaVA checkpoints with real model shapes, written in the llava-hf
//! format, so benchmarks can measure 7B-sized layers on machines that have no such
//! checkpoint (and without downloading one). The weights mean nothing; only their
//! shapes and storage type matter.

use std::borrow::Cow;
use std::path::Path;

use half::bf16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, View};
use serde_json::json;

use crate::error::{Error, Result};
use crate::model::predictor::PREDICTORS_FILE;

/// Shapes of a synthetic LLaVA checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    pub vision_hidden: usize,
    pub vision_intermediate: usize,
    pub vision_layers: usize,
    pub vision_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub text_hidden: usize,
    pub text_intermediate: usize,
    pub text_layers: usize,
    pub text_heads: usize,
    pub text_kv_heads: usize,
    pub vocab_size: usize,
    /// LLaVA-NeXT's tile grids (height, width in pixels); `None` for LLaVA-1.5.
    pub grid_pinpoints: Option<Vec<[usize; 2]>>,
}

impl SyntheticSpec {
    /// llava-1.5-7b's layer shapes (CLIP ViT-L/14-336, Vicuna-7B) with fewer layers.
    /// The vision feature layer is the second to last, as in LLaVA-1.5.
    pub fn llava_1_5_7b(text_layers: usize, vision_layers: usize) -> Self {
        SyntheticSpec {
            vision_hidden: 1024,
            vision_intermediate: 4096,
            vision_layers,
            vision_heads: 16,
            image_size: 336,
            patch_size: 14,
            text_hidden: 4096,
            text_intermediate: 11008,
            text_layers,
            text_heads: 32,
            text_kv_heads: 32,
            vocab_size: 32064,
            grid_pinpoints: None,
        }
    }

    /// llava-v1.6-vicuna-7b's shapes: LLaVA-1.5-7B's layers, LLaVA-NeXT's tile grids (up to
    /// 2×2 tiles of 336², so a large image brings 5 × 576 = 2,880 patch tokens plus 48 row
    /// ends) and the learned newline embedding.
    pub fn llava_next_7b(text_layers: usize, vision_layers: usize) -> Self {
        SyntheticSpec {
            grid_pinpoints: Some(vec![[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]),
            ..Self::llava_1_5_7b(text_layers, vision_layers)
        }
    }

    fn config_json(&self) -> serde_json::Value {
        let mut config = json!({
            "architectures": ["LlavaForConditionalGeneration"],
            "model_type": "llava",
            "image_token_index": 32000,
            "vision_feature_layer": -2,
            "vision_feature_select_strategy": "default",
            "projector_hidden_act": "gelu",
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": self.vision_hidden,
                "intermediate_size": self.vision_intermediate,
                "num_hidden_layers": self.vision_layers,
                "num_attention_heads": self.vision_heads,
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "hidden_act": "quick_gelu",
                "layer_norm_eps": 1e-5
            },
            "text_config": {
                "model_type": "llama",
                "hidden_size": self.text_hidden,
                "intermediate_size": self.text_intermediate,
                "num_hidden_layers": self.text_layers,
                "num_attention_heads": self.text_heads,
                "num_key_value_heads": self.text_kv_heads,
                "vocab_size": self.vocab_size,
                "max_position_embeddings": 4096,
                "rms_norm_eps": 1e-5,
                "rope_theta": 10000.0,
                "hidden_act": "silu",
                "tie_word_embeddings": false
            },
            "eos_token_id": 2,
            "sparse_config": {
                "sparse_layer": 2,
                "vision_keep_rate": 0.2,
                "d_model": PREDICTOR_WIDTH,
                "nhead": 8,
                "dim_feedforward": PREDICTOR_FEEDFORWARD,
                "num_layers": 2,
                "use_output_text_predictor": true
            }
        });
        if let Some(grids) = &self.grid_pinpoints {
            config["architectures"] = json!(["LlavaNextForConditionalGeneration"]);
            config["model_type"] = json!("llava_next");
            config["image_grid_pinpoints"] = json!(grids);
        }
        config
    }

    /// Dynamic-LLaVA's two predictors at their published sizes, by checkpoint name.
    fn predictor_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, dm, ff) = (self.text_hidden, PREDICTOR_WIDTH, PREDICTOR_FEEDFORWARD);
        let mut t: Vec<(String, Vec<usize>)> = Vec::new();
        let linear = |t: &mut Vec<(String, Vec<usize>)>, name: String, inp: usize, out: usize| {
            t.push((format!("{name}.weight"), vec![out, inp]));
            t.push((format!("{name}.bias"), vec![out]));
        };
        let norm = |t: &mut Vec<(String, Vec<usize>)>, name: String, d: usize| {
            t.push((format!("{name}.weight"), vec![d]));
            t.push((format!("{name}.bias"), vec![d]));
        };
        let image = "model.image_score_predictor";
        norm(&mut t, format!("{image}.down_mlp.0"), h);
        linear(&mut t, format!("{image}.down_mlp.1"), h, dm);
        for i in 0..2 {
            let block = format!("{image}.transformer.{i}");
            norm(&mut t, format!("{block}.norm1"), dm);
            t.push((format!("{block}.attn.qkv.weight"), vec![3 * dm, dm]));
            linear(&mut t, format!("{block}.attn.proj"), dm, dm);
            norm(&mut t, format!("{block}.norm2"), dm);
            linear(&mut t, format!("{block}.mlp.fc1"), dm, ff);
            linear(&mut t, format!("{block}.mlp.fc2"), ff, dm);
        }
        linear(&mut t, format!("{image}.output_mlp.0"), dm, dm / 2);
        linear(&mut t, format!("{image}.output_mlp.2"), dm / 2, dm / 4);
        linear(&mut t, format!("{image}.output_mlp.4"), dm / 4, 2);
        let text = "model.output_text_score_predictor";
        norm(&mut t, format!("{text}.output_mlp.0"), h);
        linear(&mut t, format!("{text}.output_mlp.1"), h, dm);
        linear(&mut t, format!("{text}.output_mlp.3"), dm, dm / 2);
        linear(&mut t, format!("{text}.output_mlp.5"), dm / 2, dm / 4);
        linear(&mut t, format!("{text}.output_mlp.7"), dm / 4, 2);
        t
    }

    /// Every tensor of the checkpoint, by llava-hf name.
    fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (vd, vm, td, tm) = (
            self.vision_hidden,
            self.vision_intermediate,
            self.text_hidden,
            self.text_intermediate,
        );
        let grid = self.image_size / self.patch_size;
        let kv = td / self.text_heads * self.text_kv_heads;
        let mut t: Vec<(String, Vec<usize>)> = Vec::new();
        let v = "vision_tower.vision_model";
        t.push((format!("{v}.embeddings.class_embedding"), vec![vd]));
        t.push((
            format!("{v}.embeddings.patch_embedding.weight"),
            vec![vd, 3, self.patch_size, self.patch_size],
        ));
        t.push((
            format!("{v}.embeddings.position_embedding.weight"),
            vec![grid * grid + 1, vd],
        ));
        for n in ["weight", "bias"] {
            t.push((format!("{v}.pre_layrnorm.{n}"), vec![vd]));
        }
        for i in 0..self.vision_layers {
            let l = format!("{v}.encoder.layers.{i}");
            for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                t.push((format!("{l}.self_attn.{p}.weight"), vec![vd, vd]));
                t.push((format!("{l}.self_attn.{p}.bias"), vec![vd]));
            }
            for norm in ["layer_norm1", "layer_norm2"] {
                t.push((format!("{l}.{norm}.weight"), vec![vd]));
                t.push((format!("{l}.{norm}.bias"), vec![vd]));
            }
            t.push((format!("{l}.mlp.fc1.weight"), vec![vm, vd]));
            t.push((format!("{l}.mlp.fc1.bias"), vec![vm]));
            t.push((format!("{l}.mlp.fc2.weight"), vec![vd, vm]));
            t.push((format!("{l}.mlp.fc2.bias"), vec![vd]));
        }
        t.push(("multi_modal_projector.linear_1.weight".into(), vec![td, vd]));
        t.push(("multi_modal_projector.linear_1.bias".into(), vec![td]));
        t.push(("multi_modal_projector.linear_2.weight".into(), vec![td, td]));
        t.push(("multi_modal_projector.linear_2.bias".into(), vec![td]));
        if self.grid_pinpoints.is_some() {
            t.push(("image_newline".into(), vec![td]));
        }
        let m = "language_model.model";
        t.push((format!("{m}.embed_tokens.weight"), vec![self.vocab_size, td]));
        for i in 0..self.text_layers {
            let l = format!("{m}.layers.{i}");
            t.push((format!("{l}.input_layernorm.weight"), vec![td]));
            t.push((format!("{l}.post_attention_layernorm.weight"), vec![td]));
            t.push((format!("{l}.self_attn.q_proj.weight"), vec![td, td]));
            t.push((format!("{l}.self_attn.k_proj.weight"), vec![kv, td]));
            t.push((format!("{l}.self_attn.v_proj.weight"), vec![kv, td]));
            t.push((format!("{l}.self_attn.o_proj.weight"), vec![td, td]));
            t.push((format!("{l}.mlp.gate_proj.weight"), vec![tm, td]));
            t.push((format!("{l}.mlp.up_proj.weight"), vec![tm, td]));
            t.push((format!("{l}.mlp.down_proj.weight"), vec![td, tm]));
        }
        t.push((format!("{m}.norm.weight"), vec![td]));
        t.push(("language_model.lm_head.weight".into(), vec![self.vocab_size, td]));
        t
    }

    /// Writes config.json, a bf16 model.safetensors and Dynamic-LLaVA predictors (random
    /// too, so `--reduce dynamic` can be timed) into `dir`.
    pub fn write(&self, dir: &Path, seed: u64) -> Result<()> {
        let io = |e: std::io::Error| Error::input(format!("cannot write {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let config = serde_json::to_string_pretty(&self.config_json()).map_err(|e| Error::internal(e.to_string()))?;
        std::fs::write(dir.join("config.json"), config).map_err(io)?;
        write_random(&dir.join("model.safetensors"), self.tensors(), seed)?;
        write_random(&dir.join(PREDICTORS_FILE), self.predictor_tensors(), seed ^ 0x5eed)
    }
}

/// Width and MLP width of the synthetic Dynamic-LLaVA predictors (the released models').
const PREDICTOR_WIDTH: usize = 512;
const PREDICTOR_FEEDFORWARD: usize = 2048;

fn write_random(path: &Path, tensors: Vec<(String, Vec<usize>)>, seed: u64) -> Result<()> {
    let tensors = tensors.into_iter().enumerate().map(|(i, (name, shape))| {
        let fill = fill_for(&name);
        let seed = seed.wrapping_add(i as u64);
        (name, RandomTensor { shape, fill, seed })
    });
    safetensors::serialize_to_file(tensors, None, path)
        .map_err(|e| Error::input(format!("cannot write {}: {e}", path.display())))
}

/// How a tensor is initialised: norms start at identity so activations keep their scale.
#[derive(Debug, Clone, Copy)]
enum Fill {
    Ones,
    Zeros,
    Uniform(f32),
}

fn fill_for(name: &str) -> Fill {
    let is_norm = name.contains("norm") || name.contains("layrnorm");
    match (is_norm, name.ends_with(".bias")) {
        (true, false) => Fill::Ones,
        (_, true) => Fill::Zeros,
        // uniform with std 0.02, like the usual initializer_range
        (false, false) => Fill::Uniform(0.02 * 3f32.sqrt()),
    }
}

/// A bf16 tensor whose data is generated when the writer asks for it, so only one
/// tensor is ever held in memory.
struct RandomTensor {
    shape: Vec<usize>,
    fill: Fill,
    seed: u64,
}

impl View for RandomTensor {
    fn dtype(&self) -> Dtype {
        Dtype::BF16
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let n: usize = self.shape.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let values: Vec<bf16> = match self.fill {
            Fill::Ones => vec![bf16::ONE; n],
            Fill::Zeros => vec![bf16::ZERO; n],
            Fill::Uniform(a) => (0..n).map(|_| bf16::from_f32(rng.random_range(-a..a))).collect(),
        };
        Cow::Owned(bytemuck::cast_slice(&values).to_vec())
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 2
    }
}
