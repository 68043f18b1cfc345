//! Ranking helpers shared by the methods: budgets spread over filter layers and stable
//! top-k selection.

use std::cmp::Ordering;

/// Visual tokens per image after each of `filters` filter layers when `n0` enter the
/// first and `keep` must remain after the last: a geometric decay, so every layer
/// removes the same share, ending exactly at `keep` (everything is kept when
/// `keep >= n0`).
pub fn budget_schedule(n0: usize, keep: usize, filters: usize) -> Vec<usize> {
    if keep >= n0 || filters == 0 {
        return vec![n0; filters];
    }
    let ratio = keep as f64 / n0 as f64;
    (1..=filters)
        .map(|f| {
            let target = (n0 as f64 * ratio.powf(f as f64 / filters as f64)).round() as usize;
            target.clamp(keep, n0)
        })
        .collect()
}

/// Indices of the `k` best items under `better` (a total order where `Less` ranks first),
/// returned ascending. Ties must be broken by `better` itself.
pub fn top_k_by(n: usize, k: usize, mut better: impl FnMut(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| better(a, b));
    order.truncate(k);
    order.sort_unstable();
    order
}

/// Top `k` by descending score, ties to the lower index.
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    top_k_by(scores.len(), k, |a, b| descending(scores[a], scores[b]).then(a.cmp(&b)))
}

/// Orders larger values first (NaN last).
pub fn descending(a: f32, b: f32) -> Ordering {
    b.partial_cmp(&a).unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_ends_at_the_budget_and_decays() {
        assert_eq!(budget_schedule(576, 64, 4), vec![333, 192, 111, 64]);
        assert_eq!(budget_schedule(100, 100, 3), vec![100, 100, 100]);
        assert_eq!(budget_schedule(50, 80, 2), vec![50, 50]);
        assert_eq!(budget_schedule(10, 9, 1), vec![9]);
    }

    #[test]
    fn top_k_breaks_ties_by_index_and_returns_ascending() {
        assert_eq!(top_k(&[0.1, 0.5, 0.5, 0.9, 0.2], 3), vec![1, 2, 3]);
        assert_eq!(top_k(&[0.5, 0.5, 0.5], 2), vec![0, 1]);
        assert_eq!(top_k(&[1.0, f32::NAN, 2.0], 2), vec![0, 2]);
    }
}
