//! Turns logits into the next token id.
//!
//! The processing order follows Hugging Face `generate`: repetition penalty, then
//! temperature, top-k and top-p, then a draw from the remaining distribution. The
//! repetition penalty is a logits processor there, so it also applies to greedy decoding.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::error::{Error, Result};

/// Sampling settings. Neutral values switch a step off: temperature 0 = greedy,
/// top_k 0, top_p 1.0, repetition_penalty 1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::usage(format!(
                "temperature must be a finite number >= 0 (0 = greedy), got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::usage(format!("top-p must be in (0, 1], got {}", self.top_p)));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(Error::usage(format!(
                "repetition penalty must be a finite number > 0 (1 = off), got {}",
                self.repetition_penalty
            )));
        }
        Ok(())
    }

    pub(crate) fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha20Rng,
}

impl Sampler {
    pub(crate) fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Validates the settings (usage error on nonsense like top_p 1.5).
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Sampler {
            params,
            rng: ChaCha20Rng::seed_from_u64(params.seed),
        })
    }

    /// The uniform number in [0, 1) of the next draw. A draw from the logits takes exactly
    /// one, whichever backend makes it, so a seed gives the same stream on every backend.
    pub(crate) fn next_uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }
}

/// Hugging Face's repetition penalty, a logits processor applied before greedy choice or
/// sampling: each id already in the sequence (`seen[id]` nonzero) is made less likely once,
/// a positive logit divided by `penalty` and any other multiplied by it. The device kernel
/// (kernels/sample.cu `penalize_repeats`) performs the same f32 operations.
pub(crate) fn penalize_repeats(logits: &[f32], seen: &[f32], penalty: f32, out: &mut [f32]) {
    for ((out, &logit), &seen) in out.iter_mut().zip(logits).zip(seen) {
        *out = if seen == 0.0 {
            logit
        } else if logit > 0.0 {
            logit / penalty
        } else {
            logit * penalty
        };
    }
}

/// Draws a token from `logits` with `params`' temperature, top-k and top-p, given the
/// uniform number `u` in [0, 1). NaN logits count as −∞.
///
/// The candidates are the top-k by logit (all tokens without top-k; ties go to the lower
/// id), weighted by `exp((logit − max) / temperature)`; top-p keeps the smallest set of the
/// most likely of them whose weight reaches `top_p` of theirs. The draw walks the kept
/// candidates in id order, so the result depends only on which tokens are kept, never on
/// how they were sorted: the device kernel (kernels/sample.cu) makes the same choice
/// without sorting. `candidates` is scratch, reused between calls.
pub(crate) fn draw(logits: &[f32], params: &SamplingParams, u: f64, candidates: &mut Vec<(f32, u32)>) -> u32 {
    let read = |logit: f32| if logit.is_nan() { f32::NEG_INFINITY } else { logit };
    let max_logit = logits.iter().map(|&l| read(l)).fold(f32::NEG_INFINITY, f32::max);
    if !max_logit.is_finite() {
        // Every token is impossible, or one is infinitely likely: nothing to draw.
        return greedy_choice(logits);
    }
    let SamplingParams {
        temperature,
        top_k,
        top_p,
        ..
    } = *params;

    candidates.clear();
    candidates.extend(logits.iter().zip(0u32..).map(|(&logit, id)| (read(logit), id)));
    let mut reordered = false;
    if top_k > 0 && top_k < candidates.len() {
        candidates.select_nth_unstable_by(top_k - 1, by_logit_descending);
        candidates.truncate(top_k);
        reordered = true;
    }
    // Temperature does not change the order, so top-k above could use raw logits. From
    // here on a candidate carries its unnormalised probability; subtracting the max
    // first keeps a tiny temperature from overflowing.
    for candidate in candidates.iter_mut() {
        candidate.0 = ((candidate.0 - max_logit) / temperature).exp();
    }
    let mut total: f64 = candidates.iter().map(|&(weight, _)| f64::from(weight)).sum();
    if top_p < 1.0 {
        total = keep_nucleus(candidates, total, f64::from(top_p));
        reordered = true;
    }
    if reordered {
        candidates.sort_unstable_by_key(|&(_, id)| id);
    }
    draw_in_order(candidates, u * total)
}

/// Keeps the smallest set of most likely candidates whose weight reaches `top_p` of
/// `total` (at least one); returns the kept total weight.
fn keep_nucleus(candidates: &mut Vec<(f32, u32)>, total: f64, top_p: f64) -> f64 {
    // Weights fall as logits do, so the weight order is the logit order; ties by id.
    candidates.sort_unstable_by(by_logit_descending);
    let mut kept_weight = 0.0;
    let mut kept = 0;
    for &(weight, _) in candidates.iter() {
        kept_weight += f64::from(weight);
        kept += 1;
        if kept_weight >= top_p * total {
            break;
        }
    }
    candidates.truncate(kept);
    kept_weight
}

/// The first candidate, in their order, at which the running weight passes `target`.
fn draw_in_order(candidates: &[(f32, u32)], target: f64) -> u32 {
    let mut cumulative = 0.0;
    for &(weight, id) in candidates {
        cumulative += f64::from(weight);
        if target < cumulative {
            return id;
        }
    }
    // Rounding can leave `target` a hair above the last sum: take the last token that
    // had any weight.
    candidates
        .iter()
        .rev()
        .find(|&&(weight, _)| weight > 0.0)
        .map_or(candidates[0].1, |&(_, id)| id)
}

/// Descending by value, ties broken by the lower id so results never depend on sort order.
fn by_logit_descending(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Index of the largest logit; the lowest id wins a tie, NaN never wins, and a row with
/// nothing above −∞ gives 0. The device backends' argmax kernel follows the same rules.
pub(crate) fn greedy_choice(logits: &[f32]) -> u32 {
    let mut best = None;
    let mut best_logit = f32::NEG_INFINITY;
    for (i, &logit) in logits.iter().enumerate() {
        if logit > best_logit {
            best = Some(i);
            best_logit = logit;
        }
    }
    best.unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn sampler(temperature: f32, top_k: usize, top_p: f32, repetition_penalty: f32, seed: u64) -> Sampler {
        Sampler::new(SamplingParams {
            temperature,
            top_k,
            top_p,
            repetition_penalty,
            seed,
        })
        .unwrap()
    }

    /// The token a decode step picks from `logits` with `sampler`'s settings (no penalty).
    fn pick(sampler: &mut Sampler, logits: &[f32]) -> u32 {
        if sampler.params().is_greedy() {
            greedy_choice(logits)
        } else {
            let u = sampler.next_uniform();
            draw(logits, sampler.params(), u, &mut Vec::new())
        }
    }

    fn draws(sampler: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
        (0..n).map(|_| pick(sampler, logits)).collect()
    }

    const LOGITS: [f32; 6] = [0.5, 2.0, -1.0, 1.9, 0.0, 1.5];

    #[test]
    fn greedy_picks_the_largest_logit() {
        let mut s = Sampler::new(SamplingParams::default()).unwrap();
        assert_eq!(pick(&mut s, &LOGITS), 1);
        assert_eq!(pick(&mut s, &[-3.0, -1.0, -2.0]), 1);
    }

    #[test]
    fn greedy_choice_skips_nan_even_in_front() {
        assert_eq!(greedy_choice(&[f32::NAN, -2.0, 1.0, f32::NAN]), 2);
        assert_eq!(greedy_choice(&[f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY]), 0);
        assert_eq!(greedy_choice(&[-1.0, f32::INFINITY, f32::INFINITY]), 1);
    }

    #[test]
    fn greedy_tie_goes_to_the_lowest_id() {
        let mut s = Sampler::new(SamplingParams::default()).unwrap();
        assert_eq!(pick(&mut s, &[0.0, 3.0, 1.0, 3.0]), 1);
    }

    #[test]
    fn nan_logits_are_never_chosen() {
        let mut s = Sampler::new(SamplingParams::default()).unwrap();
        assert_eq!(pick(&mut s, &[f32::NAN, -5.0, f32::NAN]), 1);
        let mut s = sampler(1.0, 0, 1.0, 1.0, 3);
        for _ in 0..200 {
            assert_eq!(pick(&mut s, &[f32::NAN, 0.0, f32::NEG_INFINITY]), 1);
        }
    }

    #[test]
    fn same_seed_gives_same_sequence() {
        let a = draws(&mut sampler(1.0, 0, 1.0, 1.0, 42), &LOGITS, 200);
        let b = draws(&mut sampler(1.0, 0, 1.0, 1.0, 42), &LOGITS, 200);
        assert_eq!(a, b);
    }

    #[test]
    fn different_seeds_give_different_sequences() {
        let a = draws(&mut sampler(1.0, 0, 1.0, 1.0, 1), &LOGITS, 200);
        let b = draws(&mut sampler(1.0, 0, 1.0, 1.0, 2), &LOGITS, 200);
        assert_ne!(a, b);
        // Both actually sample: several different tokens show up.
        assert!(a.iter().any(|&id| id != a[0]));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = sampler(1.5, 1, 1.0, 1.0, 7);
        assert!(draws(&mut s, &LOGITS, 300).iter().all(|&id| id == 1));
    }

    #[test]
    fn tiny_top_p_is_greedy() {
        let mut s = sampler(1.5, 0, 1e-6, 1.0, 7);
        assert!(draws(&mut s, &LOGITS, 300).iter().all(|&id| id == 1));
    }

    #[test]
    fn top_k_limits_the_choice_to_the_k_best() {
        let mut s = sampler(5.0, 3, 1.0, 1.0, 11);
        let seen = draws(&mut s, &LOGITS, 2000);
        // The three best logits are ids 1 (2.0), 3 (1.9) and 5 (1.5).
        for id in [1, 3, 5] {
            assert!(seen.contains(&id), "id {id} never drawn");
        }
        assert!(seen.iter().all(|id| [1, 3, 5].contains(id)));
    }

    #[test]
    fn top_p_keeps_the_smallest_sufficient_set() {
        // Probabilities 0.5, 0.3, 0.15, 0.05 (logits are their logs, temperature 1).
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.15f32.ln(), 0.05f32.ln()];
        // 0.5 + 0.3 = 0.8 >= 0.75 → ids 0 and 1 only.
        let seen = draws(&mut sampler(1.0, 0, 0.75, 1.0, 5), &logits, 2000);
        assert!(seen.contains(&0) && seen.contains(&1));
        assert!(seen.iter().all(|&id| id < 2));
        // 0.8 < 0.81 → the third token joins.
        let seen = draws(&mut sampler(1.0, 0, 0.81, 1.0, 5), &logits, 4000);
        assert!(seen.contains(&2));
        assert!(seen.iter().all(|&id| id < 3));
    }

    #[test]
    fn repetition_penalty_flips_a_greedy_choice() {
        let logits = [1.0, 1.8, 1.5, -0.5];
        assert_eq!(greedy_choice(&logits), 1);
        let seen = [0.0, 1.0, 0.0, 1.0];
        let mut row = [0.0; 4];
        penalize_repeats(&logits, &seen, 1.3, &mut row);
        // Positive logits are divided, negative ones multiplied, unseen ones copied.
        assert_eq!(row, [1.0, 1.8 / 1.3, 1.5, -0.5 * 1.3]);
        // 1.8 / 1.3 = 1.385 < 1.5, so id 2 now wins.
        assert_eq!(greedy_choice(&row), 2);
    }

    /// Two tokens with logits 0 and ln 3 at temperature 2 have probabilities
    /// 1/(1+√3) and √3/(1+√3) (0.366 / 0.634).
    #[test]
    fn temperature_gives_the_expected_distribution() {
        let logits = [0.0, 3.0f32.ln()];
        let n = 10_000;
        let mut s = sampler(2.0, 0, 1.0, 1.0, 1234);
        let ones = draws(&mut s, &logits, n).iter().filter(|&&id| id == 1).count();
        let expected = 3.0f64.sqrt() / (1.0 + 3.0f64.sqrt());
        let observed = ones as f64 / n as f64;
        // Four standard deviations of a binomial proportion (σ ≈ 0.0048).
        assert!(
            (observed - expected).abs() < 0.02,
            "observed {observed}, expected {expected}"
        );

        // Temperature 1 keeps the raw 1:3 odds.
        let mut s = sampler(1.0, 0, 1.0, 1.0, 99);
        let ones = draws(&mut s, &logits, n).iter().filter(|&&id| id == 1).count();
        let observed = ones as f64 / n as f64;
        assert!((observed - 0.75).abs() < 0.02, "observed {observed}, expected 0.75");
    }

    #[test]
    fn tiny_temperature_does_not_overflow() {
        let mut s = sampler(1e-6, 0, 1.0, 1.0, 0);
        assert!(draws(&mut s, &[100.0, 300.0, 299.0], 50).iter().all(|&id| id == 1));
    }

    #[test]
    fn invalid_settings_are_usage_errors() {
        let bad = [
            SamplingParams {
                temperature: -0.1,
                ..Default::default()
            },
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                temperature: f32::INFINITY,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            SamplingParams {
                top_p: 1.5,
                ..Default::default()
            },
            SamplingParams {
                top_p: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                repetition_penalty: 0.0,
                ..Default::default()
            },
            SamplingParams {
                repetition_penalty: -1.0,
                ..Default::default()
            },
        ];
        for params in bad {
            let err = Sampler::new(params).err().expect("settings should be rejected");
            assert_eq!(err.kind, ErrorKind::Usage, "{params:?}");
        }
        let err = Sampler::new(SamplingParams {
            top_p: 1.5,
            ..Default::default()
        })
        .err()
        .unwrap();
        assert_eq!(err.message, "top-p must be in (0, 1], got 1.5");
    }
}
