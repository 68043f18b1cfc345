//! MustDrop's stage-1 window ops: similarity of each 3×3 window of patches, and the rows
//! of the merged hidden states.

use super::tensor::CpuTensor;
use crate::backend::{window_patches, MergeSource, MERGE_WINDOW};

fn check_grid(t: &CpuTensor, grid: usize, first_row: usize) {
    assert!(grid.is_multiple_of(MERGE_WINDOW), "window ops: grid side {grid}");
    assert!(
        first_row + grid * grid <= t.rows,
        "window ops: the grid reaches past the rows"
    );
}

/// Mean cosine similarity over the ordered pairs of distinct members of each window, in
/// f64: each member normalised, then dotted with every other.
pub(crate) fn window_similarity(hidden: &CpuTensor, grid: usize, first_row: usize) -> Vec<f64> {
    check_grid(hidden, grid, first_row);
    let windows = (grid / MERGE_WINDOW) * (grid / MERGE_WINDOW);
    (0..windows)
        .map(|w| {
            let unit: Vec<Vec<f64>> = window_patches(grid, w)
                .iter()
                .map(|&p| {
                    let row = hidden.row(first_row + p);
                    let norm = row.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
                    row.iter().map(|&x| x as f64 / norm).collect()
                })
                .collect();
            let mut sum = 0.0;
            for a in 0..unit.len() {
                for c in 0..unit.len() {
                    if a != c {
                        sum += unit[a].iter().zip(&unit[c]).map(|(x, y)| x * y).sum::<f64>();
                    }
                }
            }
            sum / (unit.len() * (unit.len() - 1)) as f64
        })
        .collect()
}

pub(crate) fn window_merge(
    hidden: &CpuTensor,
    sources: &[MergeSource],
    grid: usize,
    first_row: usize,
    out: &mut CpuTensor,
) {
    check_grid(hidden, grid, first_row);
    let dim = hidden.cols;
    out.resize(sources.len(), dim);
    for (row, source) in out.data.chunks_mut(dim.max(1)).zip(sources) {
        match *source {
            MergeSource::Row(r) => row.copy_from_slice(hidden.row(r)),
            MergeSource::Window(w) => {
                let members = window_patches(grid, w);
                row.fill(0.0);
                for &p in &members {
                    row.iter_mut().zip(hidden.row(first_row + p)).for_each(|(m, x)| *m += x);
                }
                row.iter_mut().for_each(|m| *m /= members.len() as f32);
            }
        }
    }
}
