//! Dynamic-LLaVA: learned predictors read the hidden rows entering the sparse layer. At
//! prefill the image predictor keeps each image's best-scored share of tokens; while
//! decoding, the output-text predictor decides for each new token whether its keys and
//! values stay in the caches of the sparse layer and after (it attends with them in its
//! own step either way).

use super::knobs::Knobs;
use super::plan::{check_layers, ReductionPlan};
use super::rank::top_k;
use super::sequence::{keep_text_and, Sequence};
use super::stages::{CachePolicy, FilterInput, FilterOutput, PrefillFilter};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::llava::Llava;
use crate::model::predictor::{ImagePredictor, TextPredictor};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Share of each image's tokens kept; the checkpoint's `vision_keep_rate` when unset.
    pub keep_rate: Option<f64>,
    /// Output-token admission; the checkpoint's `use_output_text_predictor` when unset.
    pub text: Option<bool>,
}

impl Config {
    pub fn parse(mut knobs: Knobs) -> Result<Self> {
        knobs.only(&["keep_rate", "text", "positions"])?;
        let keep_rate = knobs.take_in::<f64>("keep_rate", "a share between 0 and 1", 0.0, 1.0)?;
        let text = knobs.take_switch("text")?;
        Ok(Config { keep_rate, text })
    }
}

pub(crate) fn build<'m, B: Backend>(cfg: &Config, model: &'m Llava<B>, plan: &mut ReductionPlan<'m, B>) -> Result<()> {
    let predictors = model.predictors.as_ref().ok_or_else(|| {
        Error::usage(
            "--reduce dynamic needs Dynamic-LLaVA's trained predictors (model.image_score_predictor.* \
             in the checkpoint or predictors.safetensors beside it); this model has none",
        )
    })?;
    let sparse = model.config.sparse.clone().unwrap_or_default();
    let layer = sparse.sparse_layer;
    if layer == 0 {
        return Err(Error::model("sparse_config.sparse_layer must be at least 1"));
    }
    check_layers("dynamic", &[layer], model.language.n_layers())?;
    let keep_rate = cfg.keep_rate.unwrap_or(sparse.vision_keep_rate as f64);
    plan.filter = Some(Box::new(ImageTokenFilter {
        layers: [layer - 1],
        keep_rate,
        predictor: &predictors.image,
    }));
    if cfg.text.unwrap_or(sparse.use_output_text_predictor) {
        let predictor = predictors.text.as_ref().ok_or_else(|| {
            Error::usage("--reduce dynamic:text=on needs the output-text predictor, which this model lacks")
        })?;
        plan.cache = Some(Box::new(OutputAdmission { layer, predictor }));
    }
    Ok(())
}

/// Prefill: after the layer before the sparse layer, keep the top `keep_rate` share of each
/// image's tokens by the image predictor's keep margin.
struct ImageTokenFilter<'m, B: Backend> {
    layers: [usize; 1],
    keep_rate: f64,
    predictor: &'m ImagePredictor<B>,
}

impl<B: Backend> PrefillFilter<B> for ImageTokenFilter<'_, B> {
    fn layers(&self) -> &[usize] {
        &self.layers
    }

    fn query_rows(&self, _layer: usize, _seq: &Sequence) -> Vec<usize> {
        Vec::new()
    }

    fn select(&mut self, input: FilterInput<'_, B>) -> Result<FilterOutput<B>> {
        let (b, seq) = (input.b, input.seq);
        let mut kept = Vec::new();
        let mut rows_hidden = b.new_tensor();
        for image in 0..input.images.len() as u32 {
            let rows = seq.vision_rows(image);
            if rows.is_empty() {
                continue;
            }
            b.select_rows(input.hidden, &rows, &mut rows_hidden);
            let margins = self.predictor.keep_margin(b, &rows_hidden)?;
            let n = (rows.len() as f64 * self.keep_rate) as usize;
            kept.extend(top_k(&margins, n).into_iter().map(|j| rows[j]));
        }
        Ok(FilterOutput::keep(keep_text_and(seq, &kept)))
    }
}

/// Decode: the output-text predictor on the new token's row entering the sparse layer.
struct OutputAdmission<'m, B: Backend> {
    layer: usize,
    predictor: &'m TextPredictor<B>,
}

impl<B: Backend> CachePolicy<B> for OutputAdmission<'_, B> {
    fn admission_layer(&self) -> Option<usize> {
        Some(self.layer)
    }

    fn score_admission(&mut self, b: &B, hidden: &B::Tensor, verdict: &mut B::Tensor) -> Result<()> {
        self.predictor.keep_logits(b, hidden, verdict)
    }

    /// Kept when "keep" (logit 0) outscores "drop" (logit 1).
    fn admits(&self, verdict: &[f32]) -> bool {
        verdict[0] - verdict[1] > 0.0
    }
}
