//! The inner loops everything else leans on (dot products with the second operand in f32,
//! bf16 or f16; widening 16-bit values to f32; `acc += s·v`), with AVX2+FMA versions
//! picked at run time: the crate is built for baseline x86-64 so one binary runs
//! everywhere, but nearly every machine it meets has AVX2.
//!
//! The 16-bit dot products exist for decode, which reads every weight once per token:
//! widening in registers keeps it at the speed of reading the 16-bit weights from memory.

use half::{bf16, f16};

/// `Σ a[i]·b[i]`.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above); lengths match (asserted).
        return unsafe { x86::dot(a, b) };
    }
    dot_portable(a, b, |v| v)
}

/// `Σ a[i]·b[i]` with `b` widened from bf16.
pub(crate) fn dot_bf16(a: &[f32], b: &[bf16]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above); lengths match (asserted).
        return unsafe { x86::dot_bf16(a, bytemuck::cast_slice(b)) };
    }
    dot_portable(a, b, bf16::to_f32)
}

/// `Σ a[i]·b[i]` with `b` widened from f16.
pub(crate) fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above); lengths match.
        return unsafe { x86::dot_f16(a, bytemuck::cast_slice(b)) };
    }
    dot_portable(a, b, f16::to_f32)
}

/// `dst[i] = src[i]` as f32.
pub(crate) fn widen_bf16(src: &[bf16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 (checked just above); lengths match (asserted).
        return unsafe { x86::widen_bf16(bytemuck::cast_slice(src), dst) };
    }
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = s.to_f32());
}

/// `dst[i] = src[i]` as f32.
pub(crate) fn widen_f16(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU supports AVX2 and F16C (checked just above); lengths match.
        return unsafe { x86::widen_f16(bytemuck::cast_slice(src), dst) };
    }
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = s.to_f32());
}

/// `acc[i] += s·v[i]`.
pub(crate) fn axpy(acc: &mut [f32], s: f32, v: &[f32]) {
    assert_eq!(acc.len(), v.len(), "axpy: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above); lengths match (asserted).
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
fn dot_portable<T: Copy>(a: &[f32], b: &[T], widen: impl Fn(T) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let split = a.len() / 8 * 8;
    for (ca, cb) in a[..split].chunks_exact(8).zip(b[..split].chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += ca[l] * widen(cb[l]);
        }
    }
    let tail: f32 = a[split..].iter().zip(&b[split..]).map(|(x, y)| x * widen(*y)).sum();
    acc.iter().sum::<f32>() + tail
}

/// Callers of every function here guarantee that the CPU has the enabled features and
/// that paired slices have equal lengths.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_with(a, b.as_ptr(), |p| _mm256_loadu_ps(p), |v| v)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_bf16(a: &[f32], b: &[u16]) -> f32 {
        dot_with(a, b.as_ptr(), |p| load8_bf16(p), bf16_to_f32)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
        dot_with(
            a,
            b.as_ptr(),
            |p| _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
            f16_to_f32,
        )
    }

    /// Eight bf16 values widened: bf16 is the top half of an f32, so zero-extend to 32
    /// bits and shift left by 16.
    #[inline(always)]
    unsafe fn load8_bf16(p: *const u16) -> __m256 {
        let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(wide))
    }

    fn bf16_to_f32(v: u16) -> f32 {
        f32::from_bits((v as u32) << 16)
    }

    fn f16_to_f32(v: u16) -> f32 {
        half::f16::from_bits(v).to_f32()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn widen_bf16(src: &[u16], dst: &mut [f32]) {
        widen_with(src, dst, |p| load8_bf16(p), bf16_to_f32);
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn widen_f16(src: &[u16], dst: &mut [f32]) {
        widen_with(src, dst, |p| _mm256_cvtph_ps(_mm_loadu_si128(p.cast())), f16_to_f32);
    }

    /// `dst[i] = widen(src[i])`, eight at a time through `load8`. Always inlined, so the
    /// loads compile with the caller's target features.
    ///
    /// SAFETY (callers): `dst` and `src` have the same length and the CPU has the
    /// features `load8` uses.
    #[inline(always)]
    unsafe fn widen_with(
        src: &[u16],
        dst: &mut [f32],
        load8: impl Fn(*const u16) -> __m256,
        widen: impl Fn(u16) -> f32,
    ) {
        let n = dst.len();
        let (ps, pd) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(pd.add(i), load8(ps.add(i)));
            i += 8;
        }
        while i < n {
            *pd.add(i) = widen(*ps.add(i));
            i += 1;
        }
    }

    /// `Σ a[i]·widen(b[i])` where `load8` widens eight consecutive `b` elements. Four
    /// accumulators hide the FMA latency. Always inlined, so the loads compile with the
    /// caller's target features.
    ///
    /// SAFETY (callers): `b` points to at least `a.len()` readable elements and the CPU
    /// has the features `load8` uses.
    #[inline(always)]
    unsafe fn dot_with<T: Copy>(
        a: &[f32],
        b: *const T,
        load8: impl Fn(*const T) -> __m256,
        widen: impl Fn(T) -> f32,
    ) -> f32 {
        let n = a.len();
        let pa = a.as_ptr();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (l, acc) in acc.iter_mut().enumerate() {
                let at = i + 8 * l;
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(at)), load8(b.add(at)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), load8(b.add(i)), acc[0]);
            i += 8;
        }
        let mut sum = horizontal_sum(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        while i < n {
            sum += *pa.add(i) * widen(*b.add(i));
            i += 1;
        }
        sum
    }

    #[inline(always)]
    unsafe fn horizontal_sum(v: __m256) -> f32 {
        let halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)))
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

    fn close(got: f32, want: f64, n: usize) -> bool {
        // Summation order differs between paths; bound the error by the operand sizes.
        (got as f64 - want).abs() <= 1e-6 * (1.0 + n as f64)
    }

    /// Every length from 0 to 80 covers the 32-wide, 8-wide and scalar tails; each
    /// dispatched kernel and its portable twin match an f64 sum of the widened values.
    #[test]
    fn simd_paths_agree_with_plain_loops() {
        for n in 0..80 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.91).cos()).collect();
            let b16: Vec<f16> = b.iter().map(|&v| f16::from_f32(v)).collect();
            let bb16: Vec<bf16> = b.iter().map(|&v| bf16::from_f32(v)).collect();
            let exact = |widened: &mut dyn Iterator<Item = f32>| -> f64 {
                a.iter().zip(widened).map(|(x, y)| *x as f64 * y as f64).sum()
            };
            let want = exact(&mut b.iter().copied());
            assert!(close(dot(&a, &b), want, n), "dot, n = {n}");
            assert!(close(dot_portable(&a, &b, |v| v), want, n), "portable dot, n = {n}");
            let want = exact(&mut b16.iter().map(|v| v.to_f32()));
            assert!(close(dot_f16(&a, &b16), want, n), "f16 dot, n = {n}");
            assert!(
                close(dot_portable(&a, &b16, f16::to_f32), want, n),
                "portable f16 dot, n = {n}"
            );
            let want = exact(&mut bb16.iter().map(|v| v.to_f32()));
            assert!(close(dot_bf16(&a, &bb16), want, n), "bf16 dot, n = {n}");
            assert!(
                close(dot_portable(&a, &bb16, bf16::to_f32), want, n),
                "portable bf16 dot, n = {n}"
            );
            let mut widened = vec![f32::NAN; n];
            widen_f16(&b16, &mut widened);
            assert!(
                widened.iter().zip(&b16).all(|(w, v)| *w == v.to_f32()),
                "f16 widen, n = {n}"
            );
            widen_bf16(&bb16, &mut widened);
            assert!(
                widened.iter().zip(&bb16).all(|(w, v)| *w == v.to_f32()),
                "bf16 widen, n = {n}"
            );
            let mut acc = a.clone();
            axpy(&mut acc, 0.5, &b);
            for i in 0..n {
                assert!((acc[i] - (a[i] + 0.5 * b[i])).abs() < 1e-6, "axpy, n = {n}, i = {i}");
            }
        }
    }
}
