//! Elementwise and row-wise ops: norms, activations, rotary embedding.
//! Each row of a matrix is a token, so rows are processed in parallel.

use rayon::prelude::*;

use super::tensor::{CpuTensor, CpuWeight};
use crate::model::config::Activation;

/// Rows per parallel task for cheap row-wise ops (keeps task overhead below the work).
const ROWS_PER_TASK: usize = 8;

/// Llama RMSNorm: `x / sqrt(mean(x²) + eps) · w`, computed in f32 as transformers does.
pub(crate) fn rms_norm(x: &CpuTensor, w: &CpuWeight, eps: f32, out: &mut CpuTensor) {
    let d = x.cols;
    let weight = w.vector();
    out.resize(x.rows, d);
    out.data
        .par_chunks_mut(d * ROWS_PER_TASK)
        .zip(x.data.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(o, xi)| {
            for (orow, xrow) in o.chunks_mut(d).zip(xi.chunks(d)) {
                let mean_sq = xrow.iter().map(|v| v * v).sum::<f32>() / d as f32;
                let inv = 1.0 / (mean_sq + eps).sqrt();
                for ((o, v), g) in orow.iter_mut().zip(xrow).zip(weight) {
                    *o = g * (v * inv);
                }
            }
        });
}

/// LayerNorm with biased variance, as torch.nn.LayerNorm.
pub(crate) fn layer_norm(x: &CpuTensor, w: &CpuWeight, b: &CpuWeight, eps: f32, out: &mut CpuTensor) {
    let d = x.cols;
    let (weight, bias) = (w.vector(), b.vector());
    out.resize(x.rows, d);
    out.data
        .par_chunks_mut(d * ROWS_PER_TASK)
        .zip(x.data.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(o, xi)| {
            for (orow, xrow) in o.chunks_mut(d).zip(xi.chunks(d)) {
                let mean = xrow.iter().sum::<f32>() / d as f32;
                let var = xrow.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                let inv = 1.0 / (var + eps).sqrt();
                for (((o, v), g), b) in orow.iter_mut().zip(xrow).zip(weight).zip(bias) {
                    *o = (v - mean) * inv * g + b;
                }
            }
        });
}

pub(crate) fn activation(v: f32, act: Activation) -> f32 {
    match act {
        Activation::Gelu => 0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::GeluTanh => {
            const SQRT_2_OVER_PI: f32 = 0.797_884_6;
            0.5 * v * (1.0 + (SQRT_2_OVER_PI * (v + 0.044_715 * v * v * v)).tanh())
        }
        Activation::QuickGelu => v / (1.0 + (-1.702 * v).exp()),
        Activation::Silu => v / (1.0 + (-v).exp()),
    }
}

pub(crate) fn activate(x: &mut CpuTensor, act: Activation) {
    x.data
        .par_chunks_mut(4096)
        .for_each(|c| c.iter_mut().for_each(|v| *v = activation(*v, act)));
}

pub(crate) fn gated_activate(gate: &mut CpuTensor, up: &CpuTensor, act: Activation) {
    assert_eq!(gate.data.len(), up.data.len(), "gated activation: shapes differ");
    gate.data
        .par_chunks_mut(4096)
        .zip(up.data.par_chunks(4096))
        .for_each(|(g, u)| {
            g.iter_mut().zip(u).for_each(|(g, u)| *g = activation(*g, act) * u);
        });
}

pub(crate) fn add(x: &mut CpuTensor, y: &CpuTensor) {
    assert_eq!(x.data.len(), y.data.len(), "add: shapes differ");
    x.data
        .par_chunks_mut(4096)
        .zip(y.data.par_chunks(4096))
        .for_each(|(a, b)| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        });
}

/// Rotate-half RoPE: within each head, element `i` of the first half pairs with element
/// `i + d/2`, rotated by `position · θ^(−2i/d)`. Frequencies and angles are f32, as in
/// transformers' Llama rotary embedding.
pub(crate) fn rope(x: &mut CpuTensor, positions: &[u32], n_heads: usize, head_dim: usize, theta: f32) {
    assert_eq!(positions.len(), x.rows, "rope: one position per row");
    assert_eq!(x.cols, n_heads * head_dim, "rope: row width is not heads × head_dim");
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let cols = x.cols;
    x.data
        .par_chunks_mut(cols)
        .zip(positions.par_iter())
        .for_each(|(row, &pos)| {
            for (i, f) in inv_freq.iter().enumerate() {
                let angle = pos as f32 * f;
                let (sin, cos) = angle.sin_cos();
                for h in 0..n_heads {
                    let base = h * head_dim;
                    let (a, b) = (row[base + i], row[base + i + half]);
                    row[base + i] = a * cos - b * sin;
                    row[base + i + half] = b * cos + a * sin;
                }
            }
        });
}

pub(crate) fn gather_rows(table: &CpuWeight, ids: &[u32], out: &mut CpuTensor) {
    let d = table.cols;
    out.resize(ids.len(), d);
    out.data.par_chunks_mut(d).zip(ids.par_iter()).for_each(|(row, &id)| {
        table.read_f32(id as usize * d, row);
    });
}

pub(crate) fn select_rows(src: &CpuTensor, rows: &[usize], out: &mut CpuTensor) {
    let c = src.cols;
    out.resize(rows.len(), c);
    for (dst, &r) in out.data.chunks_mut(c.max(1)).zip(rows) {
        assert!(r < src.rows, "select_rows: row {r} of {}", src.rows);
        dst.copy_from_slice(src.row(r));
    }
}

pub(crate) fn retain_rows(t: &mut CpuTensor, rows: &[usize]) {
    let c = t.cols;
    for (dst, &src) in rows.iter().enumerate() {
        assert!(src >= dst && src < t.rows, "retain_rows: rows must ascend and exist");
        assert!(
            dst == 0 || rows[dst - 1] < src,
            "retain_rows: rows must ascend strictly"
        );
        if src != dst {
            t.data.copy_within(src * c..(src + 1) * c, dst * c);
        }
    }
    t.resize(rows.len(), c);
}
