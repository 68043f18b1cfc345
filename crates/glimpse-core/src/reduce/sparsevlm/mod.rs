//! SparseVLM (v1): text-guided pruning inside the language model. Text tokens after the
//! image that relate to it most ("raters") are picked once from the input embeddings; at
//! a few layers the visual tokens the raters attend to least are deleted, and the best of
//! the deleted ones are clustered and recycled as a few merged tokens.

mod filter;
mod rank;
mod raters;
mod recycle;

use super::knobs::Knobs;
use super::plan::{check_budget, filter_layers, ReductionPlan};
use super::rank::budget_schedule;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::llava::Llava;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Visual tokens per image after the last filter layer, recycled ones included.
    Keep(usize),
    /// The reference rule: keep `int(rank · scale + bias)` tokens, where `rank` is the
    /// rank of the raters' attention onto the image.
    Rank { scale: f64, bias: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub budget: Budget,
    /// Filter layers; `None` = the published ones (see `plan::default_layers`).
    pub layers: Option<Vec<usize>>,
    /// Whether deleted tokens are partly recycled as cluster means.
    pub recycle: bool,
}

/// Filter layers of the reference code (for 32-layer models).
const PUBLISHED_LAYERS: [usize; 4] = [2, 6, 15, 19];

const KNOBS: &[&str] = &["keep", "scale", "bias", "layers", "recycle", "positions"];

impl Config {
    pub fn parse(mut knobs: Knobs) -> Result<Self> {
        knobs.only(KNOBS)?;
        let keep = knobs.take::<usize>("keep", "a token count")?;
        let scale = knobs.take_in::<f64>("scale", "a number of at least 0", 0.0, f64::MAX)?;
        let bias = knobs.take_in::<f64>("bias", "a number", f64::MIN, f64::MAX)?;
        let budget = match (keep, scale, bias) {
            (Some(n), None, None) => Budget::Keep(n),
            (None, Some(scale), Some(bias)) => Budget::Rank { scale, bias },
            (None, None, None) => {
                return Err(Error::usage(
                    "--reduce sparsevlm: give a budget keep=N or the rank rule scale=S,bias=B",
                ))
            }
            _ => {
                return Err(Error::usage(
                    "--reduce sparsevlm: give either keep=N or both scale=S and bias=B",
                ))
            }
        };
        let config = Config {
            budget,
            layers: knobs.take_layers("layers")?,
            recycle: knobs.take_switch("recycle")?.unwrap_or(true),
        };
        Ok(config)
    }
}

pub(crate) fn build<'m, B: Backend>(cfg: &Config, model: &'m Llava<B>, plan: &mut ReductionPlan<'m, B>) -> Result<()> {
    let layers = filter_layers(
        "sparsevlm",
        cfg.layers.as_deref(),
        &PUBLISHED_LAYERS,
        model.language.n_layers(),
    )?;
    if let Budget::Keep(n) = cfg.budget {
        let tokens = model.config.max_image_seq_len();
        check_budget("sparsevlm", n, tokens)?;
        if cfg.recycle {
            check_room_for_recycling(n, tokens, layers.len())?;
        }
    }
    plan.filter = Some(Box::new(filter::SparseVlmFilter::new(layers, cfg.budget, cfg.recycle)));
    Ok(())
}

/// Fails when a budget is too small to hold the tokens recycling adds at some filter
/// layer (every image enters the first filter with all `tokens`: SparseVLM does not
/// reduce in the vision tower).
fn check_room_for_recycling(keep: usize, tokens: usize, filters: usize) -> Result<()> {
    let mut entering = tokens;
    for target in budget_schedule(tokens, keep, filters) {
        if target < entering && recycle::kept_with_recycling(entering, target).is_none() {
            return Err(too_small_for_recycling(keep, recycle::recycled_count(entering)));
        }
        entering = target;
    }
    Ok(())
}

fn too_small_for_recycling(keep: usize, recycled: usize) -> Error {
    Error::usage(format!(
        "--reduce sparsevlm: keep={keep} leaves no room for the {recycled} recycled tokens of a filter layer \
         (raise keep or use recycle=off)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Knobs::parse("sparsevlm", text)?)
    }

    #[test]
    fn parses_both_modes_with_defaults() {
        let cfg = parse("keep=64").unwrap();
        assert_eq!(cfg.budget, Budget::Keep(64));
        assert_eq!(cfg.layers, None);
        assert!(cfg.recycle);
        let cfg = parse("scale=13.5,bias=0,layers=1/3,recycle=off").unwrap();
        assert_eq!(cfg.budget, Budget::Rank { scale: 13.5, bias: 0.0 });
        assert_eq!(cfg.layers, Some(vec![1, 3]));
        assert!(!cfg.recycle);
        assert_eq!(
            parse("scale=9,bias=-2").unwrap().budget,
            Budget::Rank { scale: 9.0, bias: -2.0 }
        );
    }

    #[test]
    fn budget_modes_are_exclusive_and_complete() {
        for bad in ["", "scale=9", "bias=6", "keep=64,scale=9,bias=6", "keep=64,bias=1"] {
            let e = parse(bad).unwrap_err();
            assert!(e.message.contains("keep=N"), "{bad}: {}", e.message);
        }
        assert!(parse("keep=64,recycle=maybe")
            .unwrap_err()
            .message
            .contains("on or off"));
        assert!(parse("scale=-1,bias=0").unwrap_err().message.contains("out of range"));
        assert!(parse("scale=nan,bias=0").is_err());
        assert!(parse("keep=64,tau=0.8")
            .unwrap_err()
            .message
            .contains("unknown setting 'tau'"));
    }

    #[test]
    fn budgets_too_small_for_recycling_are_refused() {
        // 576 tokens, one filter layer to 10: even deleting all 576 pools int(0.3 · 576) + 1
        // = 173 and recycles 173 / 10 + 1 = 18.
        let e = check_room_for_recycling(10, 576, 1).unwrap_err();
        assert!(
            e.message.contains("keep=10 leaves no room for the 18 recycled"),
            "{}",
            e.message
        );
        check_room_for_recycling(64, 576, 4).unwrap();
        check_room_for_recycling(576, 576, 4).unwrap();
        // Over four layers the last step is small enough.
        check_room_for_recycling(10, 576, 4).unwrap();
    }
}
