//! Numerical rank of the small rater × token attention matrix, as `torch.linalg.matrix_rank`
//! computes it for single-precision input: the singular values above
//! `σ_max · max(rows, cols) · ε_f32`.
//!
//! The singular values come from the eigenvalues of the smaller Gram matrix (`R·Rᵀ` or
//! `Rᵀ·R`), built and diagonalised in f64. Squaring costs precision only near
//! `σ_max · 1e-8`, more than ten times below the smallest tolerance the rule can have, so
//! the count is the one an SVD of the f32 matrix gives.

/// Machine epsilon of f32: torch's default relative tolerance factor for f32 input.
const F32_EPSILON: f64 = 1.192_092_9e-7;
/// Jacobi sweeps after which the eigenvalues are taken as they are (a few suffice).
const MAX_SWEEPS: usize = 64;

/// Rank of the row-major `rows × cols` matrix `m`.
pub(crate) fn matrix_rank(m: &[f32], rows: usize, cols: usize) -> usize {
    let singular = singular_values(m, rows, cols);
    let Some(&largest) = singular.first() else {
        return 0;
    };
    let tolerance = largest * rows.max(cols) as f64 * F32_EPSILON;
    singular.iter().filter(|&&s| s > tolerance).count()
}

/// Singular values of the row-major `rows × cols` matrix `m`, descending
/// (`min(rows, cols)` of them).
pub(crate) fn singular_values(m: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    assert_eq!(m.len(), rows * cols, "matrix data does not match its shape");
    let mut gram = smaller_gram(m, rows, cols);
    let mut values: Vec<f64> = symmetric_eigenvalues(&mut gram, rows.min(cols))
        .into_iter()
        .map(|lambda| lambda.max(0.0).sqrt())
        .collect();
    values.sort_by(|a, b| b.total_cmp(a));
    values
}

/// `R·Rᵀ` when there are fewer rows than columns, else `Rᵀ·R`; row-major, in f64.
fn smaller_gram(m: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let by_rows = rows <= cols;
    let (n, inner) = if by_rows { (rows, cols) } else { (cols, rows) };
    let at = |i: usize, k: usize| -> f64 {
        if by_rows {
            m[i * cols + k] as f64
        } else {
            m[k * cols + i] as f64
        }
    };
    let mut gram = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let dot: f64 = (0..inner).map(|k| at(i, k) * at(j, k)).sum();
            gram[i * n + j] = dot;
            gram[j * n + i] = dot;
        }
    }
    gram
}

/// Eigenvalues of the symmetric row-major `n × n` matrix `a` by cyclic Jacobi rotations
/// (accurate to rounding relative to the largest, which is all the rank needs); `a` is
/// overwritten.
fn symmetric_eigenvalues(a: &mut [f64], n: usize) -> Vec<f64> {
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _ in 0..MAX_SWEEPS {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= total * f64::EPSILON * f64::EPSILON {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                rotate(a, n, p, q);
            }
        }
    }
    (0..n).map(|i| a[i * n + i]).collect()
}

/// One Jacobi rotation in the (p, q) plane that zeroes `a[p][q]`.
fn rotate(a: &mut [f64], n: usize, p: usize, q: usize) {
    let apq = a[p * n + q];
    if apq == 0.0 {
        return;
    }
    let (app, aqq) = (a[p * n + p], a[q * n + q]);
    let theta = (aqq - app) / (2.0 * apq);
    // The smaller root of t² + 2θt − 1 = 0, written to stay finite for huge θ.
    let t = if theta.abs() > 1e150 {
        0.5 / theta
    } else {
        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
    };
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;
    a[p * n + p] = app - t * apq;
    a[q * n + q] = aqq + t * apq;
    a[p * n + q] = 0.0;
    a[q * n + p] = 0.0;
    for r in (0..n).filter(|&r| r != p && r != q) {
        let (arp, arq) = (a[r * n + p], a[r * n + q]);
        let new_rp = c * arp - s * arq;
        let new_rq = s * arp + c * arq;
        a[r * n + p] = new_rp;
        a[p * n + r] = new_rp;
        a[r * n + q] = new_rq;
        a[q * n + r] = new_rq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9 * y.abs().max(1.0))
    }

    #[test]
    fn singular_values_of_known_matrices() {
        // diag(3, 2) padded with a zero column: singular values 3, 2.
        let m = [3.0, 0.0, 0.0, 0.0, 2.0, 0.0];
        assert!(close(&singular_values(&m, 2, 3), &[3.0, 2.0]));
        // Its transpose has the same singular values.
        let t = [3.0, 0.0, 0.0, 2.0, 0.0, 0.0];
        assert!(close(&singular_values(&t, 3, 2), &[3.0, 2.0]));
        // [[1, 1], [1, -1]] / 1 has singular values √2, √2; [[2, 0], [0, -5]]: 5, 2.
        let s2 = 2f64.sqrt();
        assert!(close(&singular_values(&[1.0, 1.0, 1.0, -1.0], 2, 2), &[s2, s2]));
        assert!(close(&singular_values(&[2.0, 0.0, 0.0, -5.0], 2, 2), &[5.0, 2.0]));
        // Rank one: u·vᵀ with |u| = 3, |v| = 5 has the single value 15.
        let (u, v) = ([1.0f32, 2.0, 2.0], [3.0f32, 4.0]);
        let m: Vec<f32> = u.iter().flat_map(|a| v.iter().map(move |b| a * b)).collect();
        let values = singular_values(&m, 3, 2);
        assert!((values[0] - 15.0).abs() < 1e-9 && values[1] < 1e-6 * 15.0, "{values:?}");
    }

    #[test]
    fn full_rank_matrices() {
        assert_eq!(matrix_rank(&[1.0, 0.0, 0.0, 1.0], 2, 2), 2);
        // A 4×6 matrix of independent rows.
        let m: Vec<f32> = (0..24).map(|i| ((i * i * 7 + 3) % 11) as f32 / 11.0).collect();
        assert_eq!(matrix_rank(&m, 4, 6), 4);
        assert_eq!(matrix_rank(&m, 6, 4), 4);
    }

    #[test]
    fn rank_deficient_matrices() {
        assert_eq!(matrix_rank(&[0.0; 6], 2, 3), 0);
        assert_eq!(matrix_rank(&[], 0, 5), 0);
        // Third row = first + second; fourth = 2 × first.
        let a = [0.1f32, 0.7, 0.2, 0.05, 0.3, 0.1, 0.4, 0.25];
        let mut m: Vec<f32> = a.to_vec();
        m.extend((0..4).map(|j| a[j] + a[4 + j]));
        m.extend((0..4).map(|j| 2.0 * a[j]));
        assert_eq!(matrix_rank(&m, 4, 4), 2);
        // Identical attention rows, as raters that attend alike give: rank one.
        let row = [0.02f32, 0.5, 0.13, 0.35, 0.0];
        let m: Vec<f32> = row.iter().cycle().take(15).copied().collect();
        assert_eq!(matrix_rank(&m, 3, 5), 1);
        assert_eq!(rank_of_transpose(&m, 3, 5), 1);
    }

    fn rank_of_transpose(m: &[f32], rows: usize, cols: usize) -> usize {
        let t: Vec<f32> = (0..cols)
            .flat_map(|j| (0..rows).map(move |i| m[i * cols + j]))
            .collect();
        matrix_rank(&t, cols, rows)
    }

    #[test]
    fn values_below_the_relative_tolerance_do_not_count() {
        // diag(1, 1e-7) in a 2×2: tolerance = 1 · 2 · 1.19e-7 ≈ 2.4e-7 > 1e-7 → rank 1;
        // diag(1, 1e-6) is above it → rank 2.
        assert_eq!(matrix_rank(&[1.0, 0.0, 0.0, 1e-7], 2, 2), 1);
        assert_eq!(matrix_rank(&[1.0, 0.0, 0.0, 1e-6], 2, 2), 2);
        // The tolerance grows with the larger side: with 50 columns, 3e-6 is below
        // 50 · 1.19e-7 ≈ 6e-6.
        let mut m = vec![0f32; 2 * 50];
        m[0] = 1.0;
        m[50 + 1] = 3e-6;
        assert_eq!(matrix_rank(&m, 2, 50), 1);
        m[50 + 1] = 1e-5;
        assert_eq!(matrix_rank(&m, 2, 50), 2);
    }
}
