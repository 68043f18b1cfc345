//! FastV: after layer K−1, keep the visual tokens the last prompt token attends to most.

use super::knobs::Knobs;
use super::plan::{check_budget, check_layers, ReductionPlan};
use super::rank::top_k;
use super::sequence::{keep_text_and, Sequence};
use super::stages::{FilterInput, FilterOutput, PrefillFilter};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::llava::Llava;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Tokens kept per image.
    Keep(usize),
    /// Share of each image's tokens dropped.
    DropShare(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Layers before pruning: the filter reads layer `k − 1` and layers from `k` on see
    /// the survivors.
    pub k: usize,
    pub budget: Budget,
}

impl Config {
    pub fn parse(mut knobs: Knobs) -> Result<Self> {
        knobs.only(&["k", "keep", "r", "positions"])?;
        let k = knobs.take::<usize>("k", "a layer count")?.unwrap_or(2);
        if k == 0 {
            return Err(Error::usage("--reduce fastv: k must be at least 1"));
        }
        let keep = knobs.take::<usize>("keep", "a token count")?;
        let share = knobs.take_in::<f64>("r", "a share between 0 and 1", 0.0, 1.0)?;
        let budget = match (keep, share) {
            (Some(_), Some(_)) => return Err(Error::usage("--reduce fastv: give keep=N or r=R, not both")),
            (Some(n), None) => Budget::Keep(n),
            (None, Some(r)) => Budget::DropShare(r),
            (None, None) => Budget::Keep(288),
        };
        Ok(Config { k, budget })
    }
}

pub(crate) fn build<'m, B: Backend>(cfg: &Config, model: &'m Llava<B>, plan: &mut ReductionPlan<'m, B>) -> Result<()> {
    let layer = cfg.k - 1;
    check_layers("fastv", &[layer], model.language.n_layers())?;
    if let Budget::Keep(n) = cfg.budget {
        check_budget("fastv", n, model.config.max_image_seq_len())?;
    }
    plan.filter = Some(Box::new(FastVFilter {
        layers: [layer],
        budget: cfg.budget,
    }));
    Ok(())
}

struct FastVFilter {
    layers: [usize; 1],
    budget: Budget,
}

impl<B: Backend> PrefillFilter<B> for FastVFilter {
    fn layers(&self) -> &[usize] {
        &self.layers
    }

    fn query_rows(&self, _layer: usize, seq: &Sequence) -> Vec<usize> {
        vec![seq.len() - 1]
    }

    fn select(&mut self, input: FilterInput<'_, B>) -> Result<FilterOutput<B>> {
        let seq = input.seq;
        let last_row = &input.attention[..seq.len()];
        let mut kept = Vec::new();
        for image in 0..input.images.len() as u32 {
            let rows = seq.vision_rows(image);
            let n = match self.budget {
                Budget::Keep(n) => n.min(rows.len()),
                Budget::DropShare(r) => (rows.len() as f64 * (1.0 - r)) as usize,
            };
            let scores: Vec<f32> = rows.iter().map(|&r| last_row[r]).collect();
            kept.extend(top_k(&scores, n).into_iter().map(|j| rows[j]));
        }
        Ok(FilterOutput::keep(keep_text_and(seq, &kept)))
    }
}
