//! Comparing one request run on two backends: the checks behind the GPU tests (the CUDA
//! backend against the CPU backend, and in CI the device backend's host code on the
//! emulated GPU against the CPU backend).
//!
//! Logits must agree within a tolerance relative to their largest magnitude; everything a
//! reduction decided (tokens merged, kept, dropped, recycled, evicted, admitted), the
//! generated tokens and the cache sizes must agree exactly.

use crate::engine::GenerateOutput;
use crate::reduce::ReductionReport;

/// One backend's answer to a request: the next-token logits after the prompt, and a
/// greedy generation.
pub struct Run {
    pub logits: Vec<f32>,
    pub output: GenerateOutput,
}

/// How closely two runs must agree.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Largest |Δlogit| as a fraction of the largest |logit|; `None` skips logits (runs
    /// in 16-bit weights, where only the greedy tokens are held equal).
    pub logits: Option<f32>,
}

/// Largest |a − b| over the largest |a| (0 when `a` is all zeros and equal to `b`; NaN
/// when either side holds a NaN).
pub fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    // f32::max would skip a NaN difference; it must poison the result instead.
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, |m, d| if d.is_nan() || d > m { d } else { m });
    if worst == 0.0 {
        0.0
    } else {
        worst / scale
    }
}

/// Everything in which `other` differs from `reference`, one line each (empty: agreed).
pub fn differences(reference: &Run, other: &Run, tolerance: Tolerance) -> Vec<String> {
    let mut found = Vec::new();
    let mut expect = |same: bool, what: String| {
        if !same {
            found.push(what);
        }
    };
    if let Some(limit) = tolerance.logits {
        expect(
            reference.logits.len() == other.logits.len(),
            format!(
                "vocabulary: {} vs {} logits",
                reference.logits.len(),
                other.logits.len()
            ),
        );
        let diff = relative_difference(&reference.logits, &other.logits);
        // NaN compares false, so a NaN logit fails too.
        expect(
            diff <= limit,
            format!("logits differ by {diff:.2e} of the largest (limit {limit:.0e})"),
        );
    }
    let (a, b) = (&reference.output, &other.output);
    expect(
        a.token_ids == b.token_ids,
        format!("generated tokens {:?} vs {:?}", a.token_ids, b.token_ids),
    );
    let (sa, sb) = (&a.stats, &b.stats);
    for (name, x, y) in [
        ("after_encoder", sa.after_encoder, sb.after_encoder),
        ("after_prefill", sa.after_prefill, sb.after_prefill),
        (
            "kv_bytes_after_prefill",
            sa.kv_bytes_after_prefill,
            sb.kv_bytes_after_prefill,
        ),
        ("kv_bytes_final", sa.kv_bytes_final, sb.kv_bytes_final),
        ("decode_evicted", sa.decode_evicted, sb.decode_evicted),
        ("decode_kv_admitted", sa.decode_kv_admitted, sb.decode_kv_admitted),
    ] {
        expect(x == y, format!("{name}: {x} vs {y}"));
    }
    expect(
        decisions(&a.reduction) == decisions(&b.reduction),
        format!(
            "reduction decisions differ:\n  {}\n  {}",
            decisions(&a.reduction),
            decisions(&b.reduction)
        ),
    );
    found
}

/// A reduction report without its measurements (window similarities): what was merged,
/// which tokens are keys, who each filter kept, what decoding evicted and admitted.
fn decisions(report: &ReductionReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let Some(images) = value.get_mut("images").and_then(|v| v.as_array_mut()) {
        for image in images {
            if let Some(image) = image.as_object_mut() {
                image.remove("window_similarity");
                image.remove("geometry");
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_difference_scales_by_the_reference() {
        assert_eq!(relative_difference(&[10.0, -20.0], &[10.0, -20.0]), 0.0);
        assert_eq!(relative_difference(&[10.0, -20.0], &[11.0, -20.0]), 0.05);
        assert!(relative_difference(&[1.0], &[f32::NAN]).is_nan());
    }
}
