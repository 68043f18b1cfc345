//! Safe entry to `gemm` for f32 matrices given as strided views into slices, so callers
//! (linear layers, attention) can multiply sub-blocks and transposes without copying.

use gemm::{gemm, Parallelism};

/// A `rows × cols` matrix inside `data`: element (i, j) is
/// `data[offset + i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// Rows of `cols` consecutive elements, `row_stride` apart, starting at `offset`.
    pub(crate) fn row_major(data: &'a [f32], offset: usize, rows: usize, cols: usize, row_stride: usize) -> Self {
        View {
            data,
            offset,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose, by swapping strides.
    pub(crate) fn t(self) -> Self {
        View {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn assert_in_bounds(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matmul: {what} view reaches past its slice");
        }
    }
}

/// A row-major `rows × cols` output block inside `data`, rows `row_stride` apart.
pub(crate) struct ViewMut<'a> {
    data: &'a mut [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> ViewMut<'a> {
    pub(crate) fn row_major(data: &'a mut [f32], offset: usize, rows: usize, cols: usize, row_stride: usize) -> Self {
        ViewMut {
            data,
            offset,
            rows,
            cols,
            row_stride,
        }
    }
}

/// `dst := scale · lhs · rhs`, split over `threads` rayon threads of the current pool.
pub(crate) fn matmul(dst: ViewMut<'_>, lhs: View<'_>, rhs: View<'_>, scale: f32, threads: usize) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert!(
        lhs.rows == m && rhs.rows == k && rhs.cols == n,
        "matmul: shapes {}×{} · {}×{} → {m}×{n}",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    // Distinct output elements must not share memory, or parallel writes would race.
    assert!(m <= 1 || dst.row_stride >= n, "matmul: output rows overlap");
    if m == 0 || n == 0 {
        return;
    }
    let last = dst.offset + (m - 1) * dst.row_stride + n - 1;
    assert!(last < dst.data.len(), "matmul: output view reaches past its slice");
    if k == 0 {
        for i in 0..m {
            dst.data[dst.offset + i * dst.row_stride..][..n].fill(0.0);
        }
        return;
    }
    lhs.assert_in_bounds("left");
    rhs.assert_in_bounds("right");
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let stride = |s: usize| s as isize;
    // SAFETY: every element gemm touches is inside its slice (checked above for all three
    // views); dst is borrowed mutably and its elements are distinct, while lhs and rhs are
    // shared borrows, so nothing read can be written during the call. With read_dst =
    // false gemm ignores dst's old contents and alpha, computing dst = scale·lhs·rhs.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr().add(dst.offset),
            1,
            stride(dst.row_stride),
            false,
            lhs.data.as_ptr().add(lhs.offset),
            stride(lhs.col_stride),
            stride(lhs.row_stride),
            rhs.data.as_ptr().add(rhs.offset),
            stride(rhs.col_stride),
            stride(rhs.row_stride),
            0.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2×3 block of a wider matrix times the transpose of a strided 4×3 block, written
    /// into the middle of a wider output, against hand-written sums.
    #[test]
    fn strided_blocks_and_transposes_multiply_like_matrices() {
        // lhs: rows 1..3, cols 1..4 of a 3×5 matrix holding 10·i + j.
        let a: Vec<f32> = (0..3).flat_map(|i| (0..5).map(move |j| (10 * i + j) as f32)).collect();
        // rhs source: 4×3 block, rows 4 apart, starting at 2; used transposed (3×4).
        let b: Vec<f32> = (0..20).map(|v| v as f32 * 0.5).collect();
        let mut out = vec![-1f32; 2 * 7];
        matmul(
            ViewMut::row_major(&mut out, 2, 2, 4, 7),
            View::row_major(&a, 6, 2, 3, 5),
            View::row_major(&b, 2, 4, 3, 4).t(),
            2.0,
            1,
        );
        for i in 0..2 {
            for j in 0..7 {
                let want = if (2..6).contains(&j) {
                    let col = j - 2;
                    2.0 * (0..3).map(|t| a[6 + i * 5 + t] * b[2 + col * 4 + t]).sum::<f32>()
                } else {
                    -1.0
                };
                assert_eq!(out[i * 7 + j], want, "out[{i}, {j}]");
            }
        }
    }

    #[test]
    #[should_panic(expected = "reaches past its slice")]
    fn views_past_the_slice_are_refused() {
        let a = vec![1f32; 6];
        let mut out = vec![0f32; 4];
        matmul(
            ViewMut::row_major(&mut out, 0, 2, 2, 2),
            View::row_major(&a, 1, 2, 3, 3),
            View::row_major(&a, 0, 3, 2, 2),
            1.0,
            1,
        );
    }
}
