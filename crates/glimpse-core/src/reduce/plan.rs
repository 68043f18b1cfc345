//! `--reduce SPEC`: parsing the user's string into a method and its settings, and turning
//! that into the stage objects one generation runs with.

use super::knobs::Knobs;
use super::stages::{CachePolicy, EncoderReducer, PrefillFilter};
use super::{dynamic, fastv, mustdrop, sparsevlm};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::llava::Llava;

/// How RoPE positions are assigned once tokens are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionMode {
    /// Every token keeps its unreduced position; removed tokens leave gaps.
    Original,
    /// Positions are renumbered 0..n after every removal, and a decode token takes the
    /// length of each layer's cache (the MustDrop and SparseVLM reference code).
    Compact,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    None,
    MustDrop(mustdrop::Config),
    FastV(fastv::Config),
    SparseVlm(sparsevlm::Config),
    Dynamic(dynamic::Config),
}

/// A parsed, validated `--reduce` string.
#[derive(Debug, Clone, PartialEq)]
pub struct ReduceSpec {
    pub method: Method,
    pub positions: PositionMode,
    /// The string as the user gave it, for reports.
    pub text: String,
}

impl Default for ReduceSpec {
    fn default() -> Self {
        ReduceSpec {
            method: Method::None,
            positions: PositionMode::Original,
            text: "none".to_string(),
        }
    }
}

/// Method names with their settings, for help texts.
pub const METHODS: &[(&str, &str)] = &[
    ("none", "no reduction"),
    (
        "mustdrop",
        "keep=N | g=G,i=I; tau=0.8, merge=on, key_rate=0.08, layers=2/6/10/14, order=raster|reference, evict=0.1, warmup=32",
    ),
    ("fastv", "k=2, keep=N | r=R"),
    ("sparsevlm", "keep=N | scale=S,bias=B; layers=2/6/15/19, recycle=on"),
    (
        "dynamic",
        "keep_rate=R (default: the checkpoint's), text=on|off; needs Dynamic-LLaVA predictor weights",
    ),
];

impl ReduceSpec {
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        let mut knobs = Knobs::parse(name, rest)?;
        let positions = match knobs.take_choice("positions", &["original", "compact"])? {
            Some("compact") => PositionMode::Compact,
            _ => PositionMode::Original,
        };
        let method = match name {
            "none" => {
                knobs.only(&["positions"])?;
                Method::None
            }
            "mustdrop" => Method::MustDrop(mustdrop::Config::parse(knobs)?),
            "fastv" => Method::FastV(fastv::Config::parse(knobs)?),
            "sparsevlm" => Method::SparseVlm(sparsevlm::Config::parse(knobs)?),
            "dynamic" => Method::Dynamic(dynamic::Config::parse(knobs)?),
            other => {
                let names: Vec<&str> = METHODS.iter().map(|(n, _)| *n).collect();
                return Err(Error::usage(format!(
                    "unknown reduction method '{other}' (known: {})",
                    names.join(", ")
                )));
            }
        };
        Ok(ReduceSpec {
            method,
            positions,
            text: text.to_string(),
        })
    }

    pub fn is_none(&self) -> bool {
        self.method == Method::None
    }

    /// The stage objects for one generation on `model`; fails when the spec does not fit
    /// the model (a filter layer it lacks, a budget above its image tokens).
    pub fn plan<'m, B: Backend>(&self, model: &'m Llava<B>) -> Result<ReductionPlan<'m, B>> {
        let mut plan = ReductionPlan {
            encoder: None,
            filter: None,
            cache: None,
            positions: self.positions,
        };
        match &self.method {
            Method::None => {}
            Method::MustDrop(cfg) => mustdrop::build(cfg, model, &mut plan)?,
            Method::FastV(cfg) => fastv::build(cfg, model, &mut plan)?,
            Method::SparseVlm(cfg) => sparsevlm::build(cfg, model, &mut plan)?,
            Method::Dynamic(cfg) => dynamic::build(cfg, model, &mut plan)?,
        }
        Ok(plan)
    }
}

/// The stages one generation runs with.
pub struct ReductionPlan<'m, B: Backend> {
    pub encoder: Option<Box<dyn EncoderReducer<B> + 'm>>,
    pub filter: Option<Box<dyn PrefillFilter<B> + 'm>>,
    pub cache: Option<Box<dyn CachePolicy<B> + 'm>>,
    pub positions: PositionMode,
}

/// A method's default filter layers, published for a 32-layer language model
/// (LLaVA-1.5-7B), on a model of `n_layers`: unchanged when they all exist, otherwise placed
/// at the same relative depths (rounded, duplicates merged), so the defaults also work on
/// shallow models. Layers the user names are never moved.
pub fn default_layers(published: &[usize], n_layers: usize) -> Vec<usize> {
    const PUBLISHED_DEPTH: f64 = 32.0;
    if published.iter().all(|&l| l < n_layers) {
        return published.to_vec();
    }
    let mut layers: Vec<usize> = published
        .iter()
        .map(|&l| ((l as f64 * n_layers as f64 / PUBLISHED_DEPTH).round() as usize).min(n_layers.saturating_sub(1)))
        .collect();
    layers.dedup();
    layers
}

/// The filter layers a method runs with: the user's (checked to exist) or the published
/// ones placed for this model's depth.
pub fn filter_layers(
    method: &str,
    chosen: Option<&[usize]>,
    published: &[usize],
    n_layers: usize,
) -> Result<Vec<usize>> {
    let layers = chosen.map_or_else(|| default_layers(published, n_layers), <[usize]>::to_vec);
    check_layers(method, &layers, n_layers)?;
    Ok(layers)
}

/// Checks that filter layers exist in the language model.
pub fn check_layers(method: &str, layers: &[usize], n_layers: usize) -> Result<()> {
    match layers.iter().find(|&&l| l >= n_layers) {
        Some(l) => Err(Error::usage(format!(
            "--reduce {method}: layer {l} does not exist, the language model has {n_layers} layers (0 to {})",
            n_layers.saturating_sub(1)
        ))),
        None => Ok(()),
    }
}

/// Checks a per-image budget against the tokens an image has.
pub fn check_budget(method: &str, keep: usize, image_tokens: usize) -> Result<()> {
    if keep == 0 || keep > image_tokens {
        return Err(Error::usage(format!(
            "--reduce {method}: keep={keep} must be between 1 and the {image_tokens} tokens of an image"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_methods_and_positions() {
        assert!(ReduceSpec::parse("none").unwrap().is_none());
        let spec = ReduceSpec::parse("fastv:k=3,keep=144,positions=compact").unwrap();
        assert_eq!(spec.positions, PositionMode::Compact);
        assert!(matches!(spec.method, Method::FastV(_)));
        let spec = ReduceSpec::parse("sparsevlm:keep=64,recycle=off").unwrap();
        assert!(matches!(spec.method, Method::SparseVlm(_)));
    }

    #[test]
    fn default_layers_scale_to_shallow_models_only() {
        assert_eq!(default_layers(&[2, 6, 10, 14], 32), vec![2, 6, 10, 14]);
        assert_eq!(default_layers(&[2, 6, 10, 14], 15), vec![2, 6, 10, 14]);
        assert_eq!(default_layers(&[2, 6, 10, 14], 8), vec![1, 2, 3, 4]);
        assert_eq!(default_layers(&[2, 6, 10, 14], 2), vec![0, 1]);
        assert_eq!(default_layers(&[2, 6, 15, 19], 16), vec![1, 3, 8, 10]);
    }

    #[test]
    fn unknown_method_and_knob_are_usage_errors() {
        let e = ReduceSpec::parse("tome:r=8").unwrap_err();
        assert!(e.message.contains("unknown reduction method 'tome'"), "{}", e.message);
        let e = ReduceSpec::parse("none:keep=3").unwrap_err();
        assert!(e.message.contains("unknown setting 'keep'"), "{}", e.message);
        let e = ReduceSpec::parse("mustdrop:kep=64").unwrap_err();
        assert!(e.message.contains("unknown setting 'kep'"), "{}", e.message);
        let e = ReduceSpec::parse("fastv:positions=weird").unwrap_err();
        assert!(e.message.contains("must be one of original, compact"), "{}", e.message);
    }
}
