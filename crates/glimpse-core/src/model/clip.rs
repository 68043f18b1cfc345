//! CLIP ViT vision tower (as transformers' CLIPVisionModel), run up to the hidden state
//! LLaVA takes its features from.
//!
//! Shapes: an image is a `g × g` grid of `p × p` patches (N = g²), hidden width D.
//! Hidden state 0 is the pre-layernormed embeddings; hidden state i is the output of
//! encoder layer i. `post_layernorm` is never applied: LLaVA does not use it.

use super::config::{FeatureSelect, LlavaConfig, VisionConfig};
use super::{Linear, Loader};
use crate::backend::{AttentionParams, Backend};
use crate::error::{Error, Result};
use crate::generate::stats::encoder_layer_flops;
use crate::reduce::stages::EncoderReducer;
use crate::reduce::VisionToken;

pub(crate) struct LayerNorm<B: Backend> {
    pub(crate) weight: B::Weight,
    pub(crate) bias: B::Weight,
}

impl<B: Backend> LayerNorm<B> {
    pub(crate) fn load(l: &Loader<'_, B>, name: &str, d: usize) -> Result<Self> {
        let l = l.at(name);
        Ok(LayerNorm {
            weight: l.get("weight", &[d])?,
            bias: l.get("bias", &[d])?,
        })
    }
}

struct EncoderLayer<B: Backend> {
    layer_norm1: LayerNorm<B>,
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    out_proj: Linear<B>,
    layer_norm2: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

impl<B: Backend> EncoderLayer<B> {
    fn load(l: &Loader<'_, B>, cfg: &VisionConfig) -> Result<Self> {
        let (d, m) = (cfg.hidden_size, cfg.intermediate_size);
        let attn = l.at("self_attn");
        Ok(EncoderLayer {
            layer_norm1: LayerNorm::load(l, "layer_norm1", d)?,
            q_proj: Linear::load(&attn, "q_proj", d, d, true)?,
            k_proj: Linear::load(&attn, "k_proj", d, d, true)?,
            v_proj: Linear::load(&attn, "v_proj", d, d, true)?,
            out_proj: Linear::load(&attn, "out_proj", d, d, true)?,
            layer_norm2: LayerNorm::load(l, "layer_norm2", d)?,
            fc1: Linear::load(&l.at("mlp"), "fc1", d, m, true)?,
            fc2: Linear::load(&l.at("mlp"), "fc2", m, d, true)?,
        })
    }
}

/// Buffers one encoder pass reuses from layer to layer.
struct Scratch<B: Backend> {
    normed: B::Tensor,
    q: B::Tensor,
    k: B::Tensor,
    v: B::Tensor,
    attn: B::Tensor,
    proj: B::Tensor,
    mlp: B::Tensor,
}

/// The parts of one layer that score its attention: enough to compute the CLS row's
/// attention without running the layer.
struct AttentionScorer<B: Backend> {
    layer_norm1: LayerNorm<B>,
    q_proj: Linear<B>,
    k_proj: Linear<B>,
}

/// What the tower produced for one image besides its features.
pub struct VisionOutput {
    pub tokens: Vec<VisionToken>,
    pub keys: Vec<u32>,
    pub window_similarity: Vec<f32>,
    pub flops: f64,
}

pub struct ClipVision<B: Backend> {
    cfg: VisionConfig,
    select: FeatureSelect,
    patch_embedding: B::Weight,
    class_embedding: B::Weight,
    position_embedding: B::Weight,
    pre_layrnorm: LayerNorm<B>,
    /// Only the layers up to the feature layer; later ones would be computed for nothing.
    layers: Vec<EncoderLayer<B>>,
    /// The layer after the feature layer (the last layer for LLaVA's `-2`), whose CLS
    /// attention ranks key tokens; `None` when the features come from the last layer,
    /// which then scores its own input.
    key_scorer: Option<AttentionScorer<B>>,
}

impl<B: Backend> ClipVision<B> {
    pub(crate) fn load(l: &Loader<'_, B>, cfg: &LlavaConfig) -> Result<Self> {
        let v = &cfg.vision;
        let total = v.num_hidden_layers as i64;
        let fl = cfg.vision_feature_layer;
        let run = if fl < 0 { total + 1 + fl } else { fl };
        if !(0..=total).contains(&run) {
            return Err(Error::model(format!(
                "vision_feature_layer {fl} is out of range for a vision tower with {total} layers"
            )));
        }
        let grid = v.image_size / v.patch_size;
        let (d, p, c) = (v.hidden_size, v.patch_size, v.num_channels);
        let emb = l.at("embeddings");
        let layers = (0..run as usize)
            .map(|i| EncoderLayer::load(&l.at(&format!("encoder.layers.{i}")), v))
            .collect::<Result<Vec<_>>>()?;
        let key_layer = l.at(&format!("encoder.layers.{run}"));
        // Checkpoints trimmed to the feature layer lack it; only key-token methods need it.
        let key_scorer = if run < total && key_layer.contains("self_attn.k_proj.weight") {
            let attn = key_layer.at("self_attn");
            Some(AttentionScorer {
                layer_norm1: LayerNorm::load(&key_layer, "layer_norm1", d)?,
                q_proj: Linear::load(&attn, "q_proj", d, d, true)?,
                k_proj: Linear::load(&attn, "k_proj", d, d, true)?,
            })
        } else {
            None
        };
        Ok(ClipVision {
            cfg: v.clone(),
            select: cfg.vision_feature_select_strategy,
            patch_embedding: emb.get("patch_embedding.weight", &[d, c, p, p])?,
            class_embedding: emb.get("class_embedding", &[d])?,
            position_embedding: emb.get("position_embedding.weight", &[grid * grid + 1, d])?,
            pre_layrnorm: LayerNorm::load(l, "pre_layrnorm", d)?,
            layers,
            key_scorer,
        })
    }

    /// Bidirectional multi-head attention over all of an image's rows.
    fn attention_params(&self) -> AttentionParams {
        let head_dim = self.cfg.hidden_size / self.cfg.num_attention_heads;
        AttentionParams {
            n_heads: self.cfg.num_attention_heads,
            n_kv_heads: self.cfg.num_attention_heads,
            head_dim,
            causal: false,
            scale: (head_dim as f32).powf(-0.5),
        }
    }

    /// Number of patches along one side.
    pub fn grid(&self) -> usize {
        self.cfg.image_size / self.cfg.patch_size
    }

    /// Encodes one image given as CHW pixel values (`channels × image_size × image_size`)
    /// into `out`: one row per selected token (patches in raster order, CLS first when kept).
    /// A stage-1 `reducer` may merge tokens and pick key tokens on the way.
    pub fn forward(
        &self,
        b: &B,
        pixels: &[f32],
        reducer: Option<&dyn EncoderReducer<B>>,
        out: &mut B::Tensor,
    ) -> Result<VisionOutput> {
        let (c, s) = (self.cfg.num_channels, self.cfg.image_size);
        if pixels.len() != c * s * s {
            return Err(Error::internal(format!(
                "vision tower expects {c}×{s}×{s} pixel values, got {}",
                pixels.len()
            )));
        }
        if reducer.is_some() && self.select != FeatureSelect::Patches {
            return Err(Error::usage(
                "token reduction needs a model whose image features are the patch tokens \
                 (vision_feature_select_strategy \"default\")",
            ));
        }
        let grid = self.grid();
        let mut output = VisionOutput {
            tokens: (0..(grid * grid) as u32)
                .map(|p| VisionToken { patches: vec![p] })
                .collect(),
            keys: Vec::new(),
            window_similarity: Vec::new(),
            flops: 0.0,
        };
        let mut x = self.embed(b, pixels);
        let mut normed = b.new_tensor();
        b.layer_norm(
            &x,
            &self.pre_layrnorm.weight,
            &self.pre_layrnorm.bias,
            self.cfg.layer_norm_eps,
            &mut normed,
        );
        std::mem::swap(&mut x, &mut normed);

        let mut scratch = Scratch {
            normed,
            q: b.new_tensor(),
            k: b.new_tensor(),
            v: b.new_tensor(),
            attn: b.new_tensor(),
            proj: b.new_tensor(),
            mlp: b.new_tensor(),
        };
        let wants_keys = reducer.is_some_and(|r| r.wants_keys());
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            if wants_keys && self.key_scorer.is_none() && i == last {
                let scorer = (&layer.layer_norm1, &layer.q_proj, &layer.k_proj);
                output.keys = self.key_tokens(b, scorer, &x, reducer)?;
            }
            output.flops += encoder_layer_flops(b.shape(&x).0, self.cfg.hidden_size, self.cfg.intermediate_size);
            self.encoder_layer(b, layer, &mut x, &mut scratch);
            if let Some(r) = reducer.filter(|r| r.merge_after() == Some(i)) {
                output.window_similarity = r.merge(b, grid, &mut x, &mut output.tokens)?;
            }
        }
        if wants_keys {
            if let Some(s) = &self.key_scorer {
                output.keys = self.key_tokens(b, (&s.layer_norm1, &s.q_proj, &s.k_proj), &x, reducer)?;
            } else if self.layers.is_empty() {
                return Err(Error::model("key tokens need at least one vision-tower layer"));
            }
        }

        let n = b.shape(&x).0;
        match self.select {
            FeatureSelect::Full => *out = x,
            FeatureSelect::Patches => {
                b.reserve_rows(out, n - 1, self.cfg.hidden_size);
                b.copy_rows(&x, 1, out, 0, n - 1);
            }
        }
        Ok(output)
    }

    /// Key tokens from the head-averaged attention of the CLS row onto each token in the
    /// scoring layer, whose input is `x` (CLS first).
    fn key_tokens(
        &self,
        b: &B,
        (layer_norm1, q_proj, k_proj): (&LayerNorm<B>, &Linear<B>, &Linear<B>),
        x: &B::Tensor,
        reducer: Option<&dyn EncoderReducer<B>>,
    ) -> Result<Vec<u32>> {
        let Some(reducer) = reducer else {
            return Ok(Vec::new());
        };
        let n = b.shape(x).0;
        let mut normed = b.new_tensor();
        b.layer_norm(
            x,
            &layer_norm1.weight,
            &layer_norm1.bias,
            self.cfg.layer_norm_eps,
            &mut normed,
        );
        let (mut cls, mut q, mut k) = (b.new_tensor(), b.new_tensor(), b.new_tensor());
        b.select_rows(&normed, &[0], &mut cls);
        q_proj.forward(b, &cls, &mut q);
        k_proj.forward(b, &normed, &mut k);
        let params = self.attention_params();
        let mut probs = Vec::new();
        b.attention_probs(&q, &k, n, &[n], params, &mut probs);
        reducer.keys(&probs[1..])
    }

    /// `[CLS; patches] + positions`: patches go through the stride-p convolution, written
    /// as a matrix product over unfolded patches.
    fn embed(&self, b: &B, pixels: &[f32]) -> B::Tensor {
        let (c, s, p, d) = (
            self.cfg.num_channels,
            self.cfg.image_size,
            self.cfg.patch_size,
            self.cfg.hidden_size,
        );
        let g = self.grid();
        let n = g * g;
        let mut patches_host = vec![0f32; n * c * p * p];
        for (idx, row) in patches_host.chunks_mut(c * p * p).enumerate() {
            let (py, px) = (idx / g, idx % g);
            for ch in 0..c {
                for ky in 0..p {
                    let src = ch * s * s + (py * p + ky) * s + px * p;
                    row[(ch * p + ky) * p..][..p].copy_from_slice(&pixels[src..src + p]);
                }
            }
        }
        let mut patches = b.new_tensor();
        b.upload(&patches_host, n, c * p * p, &mut patches);
        let mut patch_embeds = b.new_tensor();
        b.linear(&patches, &self.patch_embedding, None, &mut patch_embeds);

        let mut x = b.new_tensor();
        b.gather_rows(&self.class_embedding, &[0], &mut x);
        b.reserve_rows(&mut x, n + 1, d);
        b.copy_rows(&patch_embeds, 0, &mut x, 1, n);
        let mut positions = b.new_tensor();
        let ids: Vec<u32> = (0..=n as u32).collect();
        b.gather_rows(&self.position_embedding, &ids, &mut positions);
        b.add(&mut x, &positions);
        x
    }

    fn encoder_layer(&self, b: &B, layer: &EncoderLayer<B>, x: &mut B::Tensor, s: &mut Scratch<B>) {
        let eps = self.cfg.layer_norm_eps;
        let n = b.shape(x).0;

        // self-attention block (pre-norm, residual)
        b.layer_norm(
            x,
            &layer.layer_norm1.weight,
            &layer.layer_norm1.bias,
            eps,
            &mut s.normed,
        );
        layer.q_proj.forward(b, &s.normed, &mut s.q);
        layer.k_proj.forward(b, &s.normed, &mut s.k);
        layer.v_proj.forward(b, &s.normed, &mut s.v);
        let params = self.attention_params();
        b.attention(&s.q, &s.k, &s.v, n, params, &mut s.attn);
        layer.out_proj.forward(b, &s.attn, &mut s.proj);
        b.add(x, &s.proj);

        // MLP block (pre-norm, residual)
        b.layer_norm(
            x,
            &layer.layer_norm2.weight,
            &layer.layer_norm2.bias,
            eps,
            &mut s.normed,
        );
        layer.fc1.forward(b, &s.normed, &mut s.mlp);
        b.activate(&mut s.mlp, self.cfg.hidden_act);
        layer.fc2.forward(b, &s.mlp, &mut s.proj);
        b.add(x, &s.proj);
    }
}
