//! MustDrop (multi-stage vision token dropping): stage 1 merges similar neighbouring
//! patches and picks key tokens in the vision tower, stage 2 filters by text attention
//! at several layers, stage 3 trims the caches and evicts what the output ignores.

mod cache;
pub(crate) mod encoder;
mod filter;

use super::knobs::Knobs;
use super::plan::{check_budget, filter_layers, ReductionPlan};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::llava::Llava;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Visual tokens per image after the last filter layer.
    Keep(usize),
    /// The reference thresholds: drop a token when its share of the text's attention is
    /// below `global` and its largest single attention below `individual`.
    Thresholds { global: f64, individual: f64 },
}

/// Where merged window tokens go in the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOrder {
    /// At their window's place in raster order.
    Raster,
    /// First, by descending similarity (the reference code).
    Reference,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub budget: Budget,
    /// Window similarity threshold; `None` disables merging.
    pub tau: Option<f64>,
    pub key_rate: f64,
    /// Filter layers; `None` = the published ones (see `plan::default_layers`).
    pub layers: Option<Vec<usize>>,
    pub order: MergeOrder,
    /// Decode-time eviction share (0 = off) and the steps observed before evicting.
    pub evict: f64,
    pub warmup: usize,
}

/// Filter layers of the reference code (for 32-layer models).
const PUBLISHED_LAYERS: [usize; 4] = [2, 6, 10, 14];

const KNOBS: &[&str] = &[
    "keep",
    "g",
    "i",
    "tau",
    "merge",
    "key_rate",
    "layers",
    "order",
    "evict",
    "warmup",
    "positions",
];

impl Config {
    pub fn parse(mut knobs: Knobs) -> Result<Self> {
        knobs.only(KNOBS)?;
        let keep = knobs.take::<usize>("keep", "a token count")?;
        let global = knobs.take_in::<f64>("g", "a share between 0 and 1", 0.0, 1.0)?;
        let individual = knobs.take_in::<f64>("i", "a probability between 0 and 1", 0.0, 1.0)?;
        let budget = match (keep, global, individual) {
            (Some(n), None, None) => Budget::Keep(n),
            (None, Some(global), Some(individual)) => Budget::Thresholds { global, individual },
            (None, None, None) => {
                return Err(Error::usage(
                    "--reduce mustdrop: give a budget keep=N or the thresholds g=G,i=I",
                ))
            }
            _ => {
                return Err(Error::usage(
                    "--reduce mustdrop: give either keep=N or both g=G and i=I",
                ))
            }
        };
        let tau = knobs
            .take_in::<f64>("tau", "a similarity between -1 and 1", -1.0, 1.0)?
            .unwrap_or(0.8);
        let merge = knobs.take_switch("merge")?.unwrap_or(true);
        let config = Config {
            budget,
            tau: merge.then_some(tau),
            key_rate: knobs
                .take_in::<f64>("key_rate", "a share between 0 and 1", 0.0, 1.0)?
                .unwrap_or(0.08),
            layers: knobs.take_layers("layers")?,
            order: match knobs.take_choice("order", &["raster", "reference"])? {
                Some("reference") => MergeOrder::Reference,
                _ => MergeOrder::Raster,
            },
            evict: knobs
                .take_in::<f64>("evict", "a share of at least 0", 0.0, f64::MAX)?
                .unwrap_or(0.1),
            warmup: knobs.take::<usize>("warmup", "a step count")?.unwrap_or(32),
        };
        Ok(config)
    }
}

pub(crate) fn build<'m, B: Backend>(cfg: &Config, model: &'m Llava<B>, plan: &mut ReductionPlan<'m, B>) -> Result<()> {
    let layers = filter_layers(
        "mustdrop",
        cfg.layers.as_deref(),
        &PUBLISHED_LAYERS,
        model.language.n_layers(),
    )?;
    if let Budget::Keep(n) = cfg.budget {
        check_budget("mustdrop", n, model.config.max_image_seq_len())?;
    }
    plan.encoder = Some(Box::new(encoder::MustDropEncoder {
        tau: cfg.tau,
        key_rate: cfg.key_rate,
        order: cfg.order,
    }));
    plan.filter = Some(Box::new(filter::DualAttentionFilter::new(layers.clone(), cfg.budget)));
    plan.cache = Some(Box::new(cache::OutputAwareCache::new(layers, cfg.evict, cfg.warmup)));
    Ok(())
}
