//! The two inner loops everything else leans on (dot product and `acc += s·v`), with an
//! AVX2+FMA version picked at run time: the crate is built for baseline x86-64 so one
//! binary runs everywhere, but nearly every machine it meets has AVX2.

/// `Σ a[i]·b[i]`.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { x86::dot(a, b) };
    }
    dot_portable(a, b)
}

/// `acc[i] += s·v[i]`.
pub(crate) fn axpy(acc: &mut [f32], s: f32, v: &[f32]) {
    assert_eq!(acc.len(), v.len(), "axpy: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { x86::axpy(acc, s, v) };
    }
    acc.iter_mut().zip(v).for_each(|(a, x)| *a += s * x);
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    // The std macro caches its answer; this is a load and a test after the first call.
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Eight independent accumulators so the compiler can vectorise at any SIMD width.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let split = a.len() / 8 * 8;
    for (ca, cb) in a[..split].chunks_exact(8).zip(b[..split].chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += ca[l] * cb[l];
        }
    }
    let tail: f32 = a[split..].iter().zip(&b[split..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // two accumulators hide the FMA latency
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), acc1);
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let acc = _mm256_add_ps(acc0, acc1);
        let halves = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        let single = _mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1));
        let mut sum = _mm_cvtss_f32(single);
        while i < n {
            sum += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn axpy(acc: &mut [f32], s: f32, v: &[f32]) {
        let n = acc.len();
        let (pacc, pv) = (acc.as_mut_ptr(), v.as_ptr());
        let scale = _mm256_set1_ps(s);
        let mut i = 0;
        while i + 8 <= n {
            let updated = _mm256_fmadd_ps(scale, _mm256_loadu_ps(pv.add(i)), _mm256_loadu_ps(pacc.add(i)));
            _mm256_storeu_ps(pacc.add(i), updated);
            i += 8;
        }
        while i < n {
            *pacc.add(i) += s * *pv.add(i);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length from 0 to 40 covers the 16-wide, 8-wide and scalar tails.
    #[test]
    fn simd_paths_agree_with_plain_loops() {
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.91).cos()).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - want).abs() < 1e-5, "dot, n = {n}");
            assert!((dot_portable(&a, &b) - want).abs() < 1e-5, "portable dot, n = {n}");
            let mut acc = a.clone();
            axpy(&mut acc, 0.5, &b);
            for i in 0..n {
                assert!((acc[i] - (a[i] + 0.5 * b[i])).abs() < 1e-6, "axpy, n = {n}, i = {i}");
            }
        }
    }
}
