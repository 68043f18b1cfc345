//! Dynamic-LLaVA's token predictors (Huang et al., ICLR 2025): small networks that read
//! the language model's hidden rows entering the sparsification layer and score each row
//! "keep" (logit 0) against "drop" (logit 1).
//!
//! - The image predictor scores one image's rows together: LayerNorm → Linear(d→dm) → GELU,
//!   two pre-norm transformer blocks over the image's rows (no mask), then an MLP
//!   (dm → dm/2 → dm/4 → 2, GELU between) on each row's first half of features joined with
//!   the image-wide mean of the second half.
//! - The output-text predictor scores one row on its own: LayerNorm, then an MLP
//!   (d → dm → dm/2 → dm/4 → 2, GELU between).
//!
//! LayerNorms use eps 1e-5 and GELU is the exact erf form (PyTorch's defaults, which the
//! reference modules use). The tensors are `model.image_score_predictor.*` and
//! `model.output_text_score_predictor.*`, in the checkpoint or in a side file
//! `predictors.safetensors` in the model directory.

use std::path::Path;

use super::clip::LayerNorm;
use super::config::{Activation, LlavaConfig, SparseConfig};
use super::weights::Weights;
use super::{Linear, Loader};
use crate::backend::{AttentionParams, Backend};
use crate::error::{Error, Result};

/// The side file that may hold the predictors next to a checkpoint without them.
pub const PREDICTORS_FILE: &str = "predictors.safetensors";

const IMAGE_PREFIX: &str = "model.image_score_predictor";
const TEXT_PREFIX: &str = "model.output_text_score_predictor";
const LAYER_NORM_EPS: f32 = 1e-5;

/// One timm-style pre-norm transformer block of the image predictor.
struct Block<B: Backend> {
    norm1: LayerNorm<B>,
    /// The fused `attn.qkv` projection (no bias), split into its query, key and value rows.
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    proj: Linear<B>,
    norm2: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

impl<B: Backend> Block<B> {
    fn load(l: &Loader<'_, B>, cfg: &SparseConfig) -> Result<Self> {
        let (dm, ff) = (cfg.d_model, cfg.dim_feedforward);
        let attn = l.at("attn");
        let mut qkv = attn.get_row_blocks("qkv.weight", &[3 * dm, dm], 3)?.into_iter();
        let mut next = || {
            qkv.next()
                .map(|weight| Linear { weight, bias: None })
                .ok_or_else(|| Error::internal("qkv split gave fewer than 3 blocks"))
        };
        let (q, k, v) = (next()?, next()?, next()?);
        let mlp = l.at("mlp");
        Ok(Block {
            norm1: LayerNorm::load(l, "norm1", dm)?,
            q,
            k,
            v,
            proj: Linear::load(&attn, "proj", dm, dm, true)?,
            norm2: LayerNorm::load(l, "norm2", dm)?,
            fc1: Linear::load(&mlp, "fc1", dm, ff, true)?,
            fc2: Linear::load(&mlp, "fc2", ff, dm, true)?,
        })
    }

    /// `z += attn(norm1(z))`, then `z += mlp(norm2(z))`.
    fn forward(&self, b: &B, z: &mut B::Tensor, params: AttentionParams) {
        let n = b.shape(z).0;
        let mut normed = b.new_tensor();
        let (mut q, mut k, mut v) = (b.new_tensor(), b.new_tensor(), b.new_tensor());
        let (mut attn, mut out) = (b.new_tensor(), b.new_tensor());

        b.layer_norm(z, &self.norm1.weight, &self.norm1.bias, LAYER_NORM_EPS, &mut normed);
        self.q.forward(b, &normed, &mut q);
        self.k.forward(b, &normed, &mut k);
        self.v.forward(b, &normed, &mut v);
        b.attention(&q, &k, &v, n, params, &mut attn);
        self.proj.forward(b, &attn, &mut out);
        b.add(z, &out);

        b.layer_norm(z, &self.norm2.weight, &self.norm2.bias, LAYER_NORM_EPS, &mut normed);
        let mut hidden = b.new_tensor();
        self.fc1.forward(b, &normed, &mut hidden);
        b.activate(&mut hidden, Activation::Gelu);
        self.fc2.forward(b, &hidden, &mut out);
        b.add(z, &out);
    }
}

/// Scores the vision rows of one image (`image_score_predictor`).
pub struct ImagePredictor<B: Backend> {
    input_dim: usize,
    d_model: usize,
    nhead: usize,
    /// `down_mlp.0` (LayerNorm) and `down_mlp.1` (Linear d → dm).
    input_norm: LayerNorm<B>,
    down: Linear<B>,
    /// `transformer.{i}`.
    blocks: Vec<Block<B>>,
    /// `output_mlp.{0,2,4}`: dm → dm/2 → dm/4 → 2.
    head: Vec<Linear<B>>,
}

impl<B: Backend> ImagePredictor<B> {
    fn load(l: &Loader<'_, B>, input_dim: usize, cfg: &SparseConfig) -> Result<Self> {
        let dm = cfg.d_model;
        // A checkpoint with more blocks than the config names would silently lose them.
        let extra = format!("transformer.{}.norm1.weight", cfg.num_layers);
        if l.contains(&extra) {
            return Err(Error::model(format!(
                "the image predictor has a block '{IMAGE_PREFIX}.transformer.{}' beyond sparse_config.num_layers {}",
                cfg.num_layers, cfg.num_layers
            )));
        }
        // Loaded in module order, so a size mismatch is reported at its first tensor.
        let input_norm = LayerNorm::load(&l.at("down_mlp"), "0", input_dim)?;
        let down = Linear::load(&l.at("down_mlp"), "1", input_dim, dm, true)?;
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::load(&l.at(&format!("transformer.{i}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        let out = l.at("output_mlp");
        Ok(ImagePredictor {
            input_dim,
            d_model: dm,
            nhead: cfg.nhead,
            input_norm,
            down,
            blocks,
            head: vec![
                Linear::load(&out, "0", dm, dm / 2, true)?,
                Linear::load(&out, "2", dm / 2, dm / 4, true)?,
                Linear::load(&out, "4", dm / 4, 2, true)?,
            ],
        })
    }

    /// `logit0 − logit1` for each row of `x` [n, H], one image's hidden rows (the rows
    /// attend to each other, so they must be exactly that image's rows). Positive = keep.
    pub fn keep_margin(&self, b: &B, x: &B::Tensor) -> Result<Vec<f32>> {
        let (n, width) = b.shape(x);
        check_width(width, self.input_dim)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let dm = self.d_model;
        let mut normed = b.new_tensor();
        b.layer_norm(
            x,
            &self.input_norm.weight,
            &self.input_norm.bias,
            LAYER_NORM_EPS,
            &mut normed,
        );
        let mut z = b.new_tensor();
        self.down.forward(b, &normed, &mut z);
        b.activate(&mut z, Activation::Gelu);

        let head_dim = dm / self.nhead;
        let params = AttentionParams {
            n_heads: self.nhead,
            n_kv_heads: self.nhead,
            head_dim,
            causal: false,
            scale: (head_dim as f32).powf(-0.5),
        };
        for block in &self.blocks {
            block.forward(b, &mut z, params);
        }

        // Each row keeps its first half of features and takes the image-wide mean of the
        // second half: the predictor's local/global split.
        let mut rows = b.download(&z);
        let half = dm / 2;
        let mut global = vec![0f64; dm - half];
        for row in rows.chunks_exact(dm) {
            for (sum, &value) in global.iter_mut().zip(&row[half..]) {
                *sum += f64::from(value);
            }
        }
        let global: Vec<f32> = global.iter().map(|sum| (sum / n as f64) as f32).collect();
        for row in rows.chunks_exact_mut(dm) {
            row[half..].copy_from_slice(&global);
        }
        let mut joined = b.new_tensor();
        b.upload(&rows, n, dm, &mut joined);

        let logits = mlp(b, &self.head, &joined);
        Ok(margins(b, &logits))
    }
}

/// Scores one generated token's row (`output_text_score_predictor`).
pub struct TextPredictor<B: Backend> {
    input_dim: usize,
    /// `output_mlp.0`.
    input_norm: LayerNorm<B>,
    /// `output_mlp.{1,3,5,7}`: d → dm → dm/2 → dm/4 → 2.
    layers: Vec<Linear<B>>,
}

impl<B: Backend> TextPredictor<B> {
    fn load(l: &Loader<'_, B>, input_dim: usize, cfg: &SparseConfig) -> Result<Self> {
        let dm = cfg.d_model;
        let out = l.at("output_mlp");
        Ok(TextPredictor {
            input_dim,
            input_norm: LayerNorm::load(&out, "0", input_dim)?,
            layers: vec![
                Linear::load(&out, "1", input_dim, dm, true)?,
                Linear::load(&out, "3", dm, dm / 2, true)?,
                Linear::load(&out, "5", dm / 2, dm / 4, true)?,
                Linear::load(&out, "7", dm / 4, 2, true)?,
            ],
        })
    }

    /// The keep and drop logits [1, 2] of the single row `x` [1, H], left on the backend
    /// (keep when the first is larger).
    pub fn keep_logits(&self, b: &B, x: &B::Tensor, out: &mut B::Tensor) -> Result<()> {
        let (n, width) = b.shape(x);
        check_width(width, self.input_dim)?;
        if n != 1 {
            return Err(Error::internal(format!(
                "the text predictor scores one row at a time, got {n}"
            )));
        }
        let mut normed = b.new_tensor();
        b.layer_norm(
            x,
            &self.input_norm.weight,
            &self.input_norm.bias,
            LAYER_NORM_EPS,
            &mut normed,
        );
        *out = mlp(b, &self.layers, &normed);
        Ok(())
    }
}

/// Both predictors of a Dynamic-LLaVA checkpoint.
pub struct DynamicPredictors<B: Backend> {
    pub image: ImagePredictor<B>,
    /// `None` when the checkpoint has no output-text predictor (an image-only model).
    /// Whether it is used by default is `SparseConfig::use_output_text_predictor`.
    pub text: Option<TextPredictor<B>>,
}

impl<B: Backend> DynamicPredictors<B> {
    /// Loads the predictors from the checkpoint's own tensors or from
    /// `model_dir/predictors.safetensors`; `None` when neither has any predictor tensor.
    /// Sizes come from `config.sparse` (Dynamic-LLaVA's defaults when it has none) and
    /// every tensor's shape is checked against them.
    pub fn load(b: &B, weights: &Weights, model_dir: &Path, config: &LlavaConfig) -> Result<Option<Self>> {
        let side_path = model_dir.join(PREDICTORS_FILE);
        let side = if side_path.is_file() {
            Some(Weights::open_file(&side_path)?)
        } else {
            None
        };
        let source = match (has_predictors(weights), &side) {
            (true, Some(_)) => {
                return Err(Error::model(format!(
                    "predictor tensors are both in the checkpoint and in {}; keep only one copy",
                    side_path.display()
                )))
            }
            (true, None) => weights,
            (false, Some(side)) => side,
            (false, None) => return Ok(None),
        };
        let sparse = config.sparse.clone().unwrap_or_default();
        let hidden = config.text.hidden_size;
        let image = ImagePredictor::load(&Loader::new(source, b, IMAGE_PREFIX), hidden, &sparse)?;
        let text = if source.has_stored_prefix(&format!("{TEXT_PREFIX}.")) {
            Some(TextPredictor::load(
                &Loader::new(source, b, TEXT_PREFIX),
                hidden,
                &sparse,
            )?)
        } else {
            None
        };
        Ok(Some(DynamicPredictors { image, text }))
    }
}

fn has_predictors(weights: &Weights) -> bool {
    weights.has_stored_prefix(&format!("{IMAGE_PREFIX}.")) || weights.has_stored_prefix(&format!("{TEXT_PREFIX}."))
}

fn check_width(width: usize, expected: usize) -> Result<()> {
    if width != expected {
        return Err(Error::internal(format!(
            "a predictor reads rows of {expected} features, got {width}"
        )));
    }
    Ok(())
}

/// Linear layers with an exact GELU between consecutive ones.
fn mlp<B: Backend>(b: &B, layers: &[Linear<B>], x: &B::Tensor) -> B::Tensor {
    let mut current = b.new_tensor();
    let mut next = b.new_tensor();
    for (i, layer) in layers.iter().enumerate() {
        let input = if i == 0 { x } else { &current };
        layer.forward(b, input, &mut next);
        if i + 1 < layers.len() {
            b.activate(&mut next, Activation::Gelu);
        }
        std::mem::swap(&mut current, &mut next);
    }
    current
}

/// `logit0 − logit1` for each row of a [n, 2] logit matrix.
fn margins<B: Backend>(b: &B, logits: &B::Tensor) -> Vec<f32> {
    b.download(logits)
        .chunks_exact(2)
        .map(|pair| pair[0] - pair[1])
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::Value;

    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::error::ErrorKind;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test/fixtures")
    }

    /// The golden file written by tools/fixturegen/predictors.py with torch.
    fn golden() -> Value {
        let path = fixtures().join("expected/predictors.json");
        let text = std::fs::read_to_string(&path).expect("predictors.json");
        serde_json::from_str(&text).expect("valid JSON")
    }

    fn matrix(value: &Value) -> (Vec<f32>, usize, usize) {
        let rows = value.as_array().expect("rows");
        let cols = rows[0].as_array().expect("row").len();
        let data = rows
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .map(|v| v.as_f64().expect("number") as f32)
            })
            .collect();
        (data, rows.len(), cols)
    }

    /// A config with the fixture's language-model width and the given sparse_config JSON.
    fn config(sparse: &Value) -> LlavaConfig {
        let json = format!(
            r#"{{"model_type": "llava", "text_config": {{"hidden_size": 64, "num_attention_heads": 4}}, "sparse_config": {sparse}}}"#
        );
        LlavaConfig::from_json(&json, Path::new("config.json"), None).expect("config")
    }

    /// A checkpoint without predictor tensors, beside which the side file is looked for.
    fn base_weights() -> Weights {
        Weights::open(&fixtures().join("models/tiny-llava-mha")).expect("fixture weights")
    }

    fn load(model_dir: &Path, sparse: &Value) -> Result<Option<DynamicPredictors<CpuBackend>>> {
        let b = CpuBackend::new(Some(1)).expect("backend");
        DynamicPredictors::load(&b, &base_weights(), model_dir, &config(sparse))
    }

    #[test]
    fn margins_match_the_torch_predictors() {
        let golden = golden();
        let b = CpuBackend::new(Some(1)).expect("backend");
        let model_dir = fixtures().join("models/tiny-llava-reduce");
        let predictors = DynamicPredictors::load(&b, &base_weights(), &model_dir, &config(&golden["sparse_config"]))
            .expect("load")
            .expect("the side file holds predictors");

        let (rows, n, width) = matrix(&golden["image"]["rows"]);
        let mut x = b.new_tensor();
        b.upload(&rows, n, width, &mut x);
        let got = predictors.image.keep_margin(&b, &x).expect("image margins");
        let (logits, _, _) = matrix(&golden["image"]["logits"]);
        let want: Vec<f32> = logits.chunks_exact(2).map(|l| l[0] - l[1]).collect();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-5, "image row {i}: margin {g}, torch {w}");
        }
        // The keep order the reduction takes from these margins.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &c| got[c].total_cmp(&got[a]).then(a.cmp(&c)));
        let ranking: Vec<usize> = golden["image"]["ranking"]
            .as_array()
            .expect("ranking")
            .iter()
            .map(|v| v.as_u64().expect("index") as usize)
            .collect();
        assert_eq!(order, ranking);

        let text = predictors.text.as_ref().expect("text predictor");
        let (rows, n, width) = matrix(&golden["text"]["rows"]);
        let (logits, _, _) = matrix(&golden["text"]["logits"]);
        let admit = golden["text"]["admit"].as_array().expect("admit");
        for i in 0..n {
            let mut x = b.new_tensor();
            b.upload(&rows[i * width..(i + 1) * width], 1, width, &mut x);
            let mut got = b.new_tensor();
            text.keep_logits(&b, &x, &mut got).expect("text logits");
            let got = margins(&b, &got)[0];
            let want = logits[2 * i] - logits[2 * i + 1];
            assert!((got - want).abs() <= 1e-5, "text row {i}: margin {got}, torch {want}");
            assert_eq!(got > 0.0, admit[i].as_bool().expect("bool"), "text row {i}");
        }
    }

    #[test]
    fn no_predictor_tensors_anywhere_is_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let loaded = load(dir.path(), &golden()["sparse_config"]).expect("load");
        assert!(loaded.is_none());
    }

    #[test]
    fn sizes_that_disagree_with_the_tensors_name_the_tensor_and_both_shapes() {
        let mut sparse = golden()["sparse_config"].clone();
        sparse["d_model"] = Value::from(64);
        let err = load(&fixtures().join("models/tiny-llava-reduce"), &sparse)
            .err()
            .expect("shape mismatch");
        assert_eq!(err.kind, ErrorKind::Model);
        assert_eq!(
            err.message,
            "tensor 'model.image_score_predictor.down_mlp.1.weight' has shape [32,64], expected [64,64]"
        );

        let mut sparse = golden()["sparse_config"].clone();
        sparse["num_layers"] = Value::from(1);
        let err = load(&fixtures().join("models/tiny-llava-reduce"), &sparse)
            .err()
            .expect("extra block");
        assert_eq!(
            err.message,
            "the image predictor has a block 'model.image_score_predictor.transformer.1' beyond sparse_config.num_layers 1"
        );
    }

    #[test]
    fn predictors_in_the_checkpoint_and_in_the_side_file_are_refused() {
        let b = CpuBackend::new(Some(1)).expect("backend");
        let side = fixtures().join("models/tiny-llava-reduce");
        // The side file standing in for a checkpoint that has the predictors itself.
        let checkpoint = Weights::open_file(&side.join(PREDICTORS_FILE)).expect("side file");
        let sparse = golden()["sparse_config"].clone();
        let err = DynamicPredictors::load(&b, &checkpoint, &side, &config(&sparse))
            .err()
            .expect("two copies");
        assert_eq!(
            err.message,
            format!(
                "predictor tensors are both in the checkpoint and in {}; keep only one copy",
                side.join(PREDICTORS_FILE).display()
            )
        );
        // The same tensors from the checkpoint alone load.
        let empty = tempfile::tempdir().expect("temp dir");
        let loaded = DynamicPredictors::load(&b, &checkpoint, empty.path(), &config(&sparse)).expect("load");
        assert!(loaded.is_some_and(|p| p.text.is_some()));
    }
}
