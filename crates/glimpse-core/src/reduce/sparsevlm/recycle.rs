//! Token recycling: the best-scored of the tokens a filter deletes are grouped by
//! density-peak clustering of their hidden states, and each group comes back as one token
//! (the mean of its members), so that what they carried is compressed rather than lost.

use std::cmp::Ordering;

use crate::reduce::rank::top_k_by;

/// Deleted tokens taken into the recycling pool: `int(0.3 · deleted) + 1` (the integer
/// form equals the reference's float product for every count).
pub(crate) fn pool_size(deleted: usize) -> usize {
    3 * deleted / 10 + 1
}

/// Clusters made from a pool of `pool` tokens.
pub(crate) fn cluster_count(pool: usize) -> usize {
    pool / 10 + 1
}

/// Tokens that come back when `deleted` tokens are deleted.
pub(crate) fn recycled_count(deleted: usize) -> usize {
    cluster_count(pool_size(deleted))
}

/// Tokens to keep by score when `tokens` must become `target` kept plus recycled ones.
/// The rule sizes the recycling from the `tokens − target` deletions a plain top-`target`
/// would make; where keeping that many fewer deletes enough more tokens to add one more
/// recycled token, it keeps fewer still, so the image always ends with exactly `target`.
/// `None` when even keeping nothing would recycle more than `target`.
pub(crate) fn kept_with_recycling(tokens: usize, target: usize) -> Option<usize> {
    let total = |keep: usize| keep + recycled_count(tokens - keep);
    let mut keep = target.checked_sub(recycled_count(tokens.checked_sub(target)?))?;
    // Each token fewer kept adds at most one recycled token, so this lands on `target`.
    while total(keep) > target {
        keep = keep.checked_sub(1)?;
    }
    Some(keep)
}

/// One recycled token; indices refer to the deleted tokens as given to [`recycle`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Recycled {
    /// The cluster center: the new token takes its position.
    pub center: usize,
    /// Every member, ascending (the center included).
    pub members: Vec<usize>,
    /// Mean of the members' hidden rows.
    pub hidden: Vec<f32>,
}

/// Recycles deleted tokens given in sequence order with their filter scores; `hidden(i)`
/// is deleted token `i`'s row (`dim` values) of the filter layer's output. Returns the
/// recycled tokens in ascending center order.
pub(crate) fn recycle(scores: &[f64], dim: usize, hidden: impl Fn(usize) -> Vec<f32>) -> Vec<Recycled> {
    if scores.is_empty() {
        return Vec::new();
    }
    let pool = top_k_by(scores.len(), pool_size(scores.len()), |a, b| {
        scores[b].total_cmp(&scores[a]).then(a.cmp(&b))
    });
    let rows: Vec<Vec<f32>> = pool.iter().map(|&i| hidden(i)).collect();
    let points: Vec<f32> = rows.iter().flatten().copied().collect();
    density_peak_clusters(&points, dim, cluster_count(pool.len()))
        .into_iter()
        .map(|cluster| {
            let mut sum = vec![0f64; dim];
            for &m in &cluster.members {
                sum.iter_mut().zip(&rows[m]).for_each(|(s, &x)| *s += x as f64);
            }
            let n = cluster.members.len() as f64;
            Recycled {
                center: pool[cluster.center],
                members: cluster.members.iter().map(|&m| pool[m]).collect(),
                hidden: sum.into_iter().map(|s| (s / n) as f32).collect(),
            }
        })
        .collect()
}

/// A cluster of points; indices into the clustered points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cluster {
    pub center: usize,
    /// Ascending, the center included.
    pub members: Vec<usize>,
}

/// Density-peak clustering of the row-major `n × dim` `points` into `count` clusters,
/// returned in ascending center order. A point is dense when its `count` nearest
/// neighbours are close; centers are the points that are both dense and far from any
/// denser point; every point joins its nearest center. Every tie goes to the lower index.
pub(crate) fn density_peak_clusters(points: &[f32], dim: usize, count: usize) -> Vec<Cluster> {
    let n = points.len() / dim.max(1);
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        // No neighbour to measure a density with: the point is its own cluster.
        return vec![Cluster {
            center: 0,
            members: vec![0],
        }];
    }
    let count = count.clamp(1, n);
    let distance = scaled_distances(points, dim, n);
    let d = |i: usize, j: usize| distance[i * n + j];

    let neighbours = count.min(n - 1);
    let density: Vec<f64> = (0..n)
        .map(|i| {
            let mut others: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| d(i, j)).collect();
            others.sort_by(f64::total_cmp);
            let mean_square = others[..neighbours].iter().map(|x| x * x).sum::<f64>() / neighbours as f64;
            (-mean_square).exp()
        })
        .collect();

    // Densest first; an equally dense point with a lower index counts as denser.
    let mut ranked: Vec<usize> = (0..n).collect();
    ranked.sort_by(|&a, &b| density[b].total_cmp(&density[a]).then(a.cmp(&b)));
    let mut delta = vec![0f64; n];
    for (place, &i) in ranked.iter().enumerate() {
        delta[i] = if place == 0 {
            distance.iter().copied().fold(0.0, f64::max)
        } else {
            ranked[..place].iter().map(|&h| d(i, h)).fold(f64::INFINITY, f64::min)
        };
    }

    let gamma: Vec<f64> = (0..n).map(|i| delta[i] * density[i]).collect();
    let centers = top_k_by(n, count, |a, b| gamma[b].total_cmp(&gamma[a]).then(a.cmp(&b)));
    let mut members = vec![Vec::new(); centers.len()];
    for i in 0..n {
        let nearest = (0..centers.len())
            .min_by(|&a, &b| match d(i, centers[a]).total_cmp(&d(i, centers[b])) {
                Ordering::Equal => a.cmp(&b),
                other => other,
            })
            .unwrap_or(0);
        members[nearest].push(i);
    }
    centers
        .into_iter()
        .zip(members)
        .map(|(center, members)| Cluster { center, members })
        .collect()
}

/// Pairwise Euclidean distances divided by `√dim`, `n × n`. Each pair is computed once
/// and stored both ways, so `d(i, j)` and `d(j, i)` are identical and equal distances
/// make exactly equal densities.
fn scaled_distances(points: &[f32], dim: usize, n: usize) -> Vec<f64> {
    let scale = (dim as f64).sqrt();
    let row = |i: usize| &points[i * dim..(i + 1) * dim];
    let mut distance = vec![0f64; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let squared: f64 = row(i)
                .iter()
                .zip(row(j))
                .map(|(&a, &b)| {
                    let diff = a as f64 - b as f64;
                    diff * diff
                })
                .sum();
            let value = squared.sqrt() / scale;
            distance[i * n + j] = value;
            distance[j * n + i] = value;
        }
    }
    distance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_cluster_counts() {
        assert_eq!(pool_size(1), 1);
        assert_eq!(pool_size(9), 3);
        assert_eq!(pool_size(10), 4);
        assert_eq!(pool_size(384), 116);
        assert_eq!(cluster_count(9), 1);
        assert_eq!(cluster_count(10), 2);
        assert_eq!(recycled_count(384), 12);
        // The integer form is the reference's int(0.3 · n) + 1.
        for n in 0..5000 {
            assert_eq!(pool_size(n), (0.3 * n as f64) as usize + 1, "n = {n}");
        }
    }

    #[test]
    fn kept_and_recycled_add_up_to_the_target() {
        // 576 → 333: 243 deleted → pool 73 → 8 clusters; keeping 325 deletes 251 → pool 76
        // → still 8: the plain rule holds.
        assert_eq!(kept_with_recycling(576, 333), Some(325));
        // 100 → 40: 60 deleted → pool 19 → 2 clusters; keeping 38 deletes 62 → pool 19.
        assert_eq!(kept_with_recycling(100, 40), Some(38));
        for tokens in 1..400usize {
            for target in 1..tokens {
                let rule = target.checked_sub(recycled_count(tokens - target));
                match kept_with_recycling(tokens, target) {
                    Some(keep) => {
                        assert_eq!(keep + recycled_count(tokens - keep), target, "{tokens} → {target}");
                        if let Some(rule) = rule.filter(|&k| k + recycled_count(tokens - k) == target) {
                            assert_eq!(keep, rule, "the plain rule wins where it is exact");
                        }
                    }
                    None => assert!(recycled_count(tokens) > target, "{tokens} → {target} is reachable"),
                }
            }
        }
        // 200 → 5: even keeping nothing recycles int(60.3 / 10) + 1 = 7.
        assert_eq!(kept_with_recycling(200, 5), None);
    }

    /// Two tight groups on a line: {0, 1, 2} around 0 and {3, 4, 5, 6} around 10, plus
    /// an outlier at 30.
    const LINE: [f32; 8] = [0.0, 0.5, -0.5, 10.0, 10.4, 9.8, 10.1, 30.0];

    #[test]
    fn two_groups_and_an_outlier() {
        // Worked by hand with count = 2 (so k = 2 neighbours). Mean squared distance to
        // the two nearest: point 3 (10.0) 0.025, point 6 (10.1) 0.05, point 5 0.065,
        // point 4 0.125, point 0 0.25, points 1 and 2 0.625, the outlier ≈ 390. Point 3
        // is densest (δ = the largest distance, 30.5); point 0 is the densest of the left
        // group, 9.8 from the nearest denser point; every other δ is at most 0.5 and the
        // outlier's density is ≈ e^-390. Centers 0 and 3; the outlier joins 3.
        let clusters = density_peak_clusters(&LINE, 1, 2);
        assert_eq!(
            clusters,
            vec![
                Cluster {
                    center: 0,
                    members: vec![0, 1, 2]
                },
                Cluster {
                    center: 3,
                    members: vec![3, 4, 5, 6, 7]
                },
            ]
        );
    }

    #[test]
    fn distances_are_scaled_by_the_square_root_of_the_dimension() {
        // The same line embedded in 4 dimensions (value, 0, 0, 0): every distance is half
        // as large, so densities change but the clustering does not.
        let points: Vec<f32> = LINE.iter().flat_map(|&x| [x, 0.0, 0.0, 0.0]).collect();
        assert_eq!(density_peak_clusters(&points, 4, 2), density_peak_clusters(&LINE, 1, 2));
        let d = scaled_distances(&points, 4, LINE.len());
        assert!((d[7] - 15.0).abs() < 1e-12, "|30 − 0| / √4 = 15");
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        // Two points, one cluster: each is the other's only neighbour, so the densities,
        // the δs (both the distance, 2) and the γs tie; the lower index is the center.
        let clusters = density_peak_clusters(&[1.0, 3.0], 1, 1);
        assert_eq!(
            clusters,
            vec![Cluster {
                center: 0,
                members: vec![0, 1]
            }]
        );
        // Three equally spaced points, two clusters: 1 is densest (δ = the largest
        // distance, 2); 0 and 2 tie on density and δ, so the lower, 0, is the second
        // center; 2 is nearer to 1.
        let clusters = density_peak_clusters(&[0.0, 1.0, 2.0], 1, 2);
        assert_eq!(
            clusters,
            vec![
                Cluster {
                    center: 0,
                    members: vec![0]
                },
                Cluster {
                    center: 1,
                    members: vec![1, 2]
                },
            ]
        );
        // Duplicates at 0 and at 10 tie on density; within each pair the lower index is
        // denser, so 0 and 3 have δ = 10 and become the centers. Point 2, at 5, is
        // equidistant from both and joins the lower center.
        let clusters = density_peak_clusters(&[0.0, 0.0, 5.0, 10.0, 10.0], 1, 2);
        assert_eq!(clusters[0].center, 0);
        assert_eq!(clusters[1].center, 3);
        assert_eq!(clusters[0].members, vec![0, 1, 2]);
        assert_eq!(clusters[1].members, vec![3, 4]);
    }

    #[test]
    fn one_point_is_its_own_cluster() {
        assert_eq!(
            density_peak_clusters(&[1.0, 2.0], 2, 1),
            vec![Cluster {
                center: 0,
                members: vec![0]
            }]
        );
    }

    #[test]
    fn recycling_pools_the_best_scored_and_averages_members() {
        // 12 deleted tokens: the pool is the top int(3.6) + 1 = 4 by score: 11, 2 and two
        // of the three tokens scoring 0.8 (5, 7, 9), the lower indices. One cluster
        // (4 / 10 + 1), whose row is the mean of the four.
        let scores = [0.1, 0.2, 0.9, 0.0, 0.3, 0.8, 0.1, 0.8, 0.2, 0.8, 0.0, 0.95];
        let hidden = |i: usize| vec![i as f32, 2.0 * i as f32];
        let out = recycle(&scores, 2, hidden);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].members, vec![2, 5, 7, 11]);
        assert!(out[0].members.contains(&out[0].center));
        assert_eq!(out[0].hidden, vec![6.25, 12.5]);
    }
}
