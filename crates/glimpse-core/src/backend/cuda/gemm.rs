//! Linear layers as one cuBLAS matrix product each.
//!
//! Row-major `out[M×N] = x[M×K] · W[N×K]ᵀ` is, read column-major, `outᶜ[N×M] =
//! Wᶜ[K×N]ᵀ · xᶜ[K×M]`: A is the weight transposed (lda = K), B the input as stored
//! (ldb = K), C the output (ldc = N). A 16-bit weight multiplies a 16-bit copy of the
//! input (cuBLAS takes one type for both operands), rounded to nearest even; the
//! products still accumulate in f32.

use super::device::{Device, Gemm};
use super::kernels::{self, Args};
use super::launch;
use super::ops::Workspace;
use super::tensor::{GpuTensor, GpuWeight};
use crate::error::Result;
use crate::model::weights::DType;

/// The product `linear` asks of the device, for a given shape.
pub(crate) fn linear_gemm(m: usize, n: usize, k: usize, dtype: DType, w: u64, x: u64, out: u64) -> Gemm {
    Gemm {
        m: n,
        n: m,
        k,
        dtype,
        a: w,
        lda: k,
        transpose_a: true,
        b: x,
        ldb: k,
        transpose_b: false,
        c: out,
        ldc: n,
    }
}

/// `out = x · wᵀ (+ bias)`; `out` is already `x.rows × w.rows`.
pub(crate) fn linear<D: Device>(
    device: &D,
    work: &mut Workspace<D>,
    x: &GpuTensor<D>,
    w: &GpuWeight<D>,
    bias: Option<&GpuWeight<D>>,
    out: &GpuTensor<D>,
) -> Result<()> {
    let (m, k, n) = (x.rows, x.cols, w.rows);
    if m == 0 || n == 0 {
        return Ok(());
    }
    for (what, v) in [("rows", m), ("outputs", n), ("inputs", k)] {
        assert!(i32::try_from(v).is_ok(), "linear: {v} {what} exceed cuBLAS's int");
    }
    if k == 0 {
        device.write(out.address(device), &vec![0u8; m * n * 4])?;
    } else {
        let input = match w.dtype {
            DType::F32 => x.address(device),
            half => {
                let rounded = work.half_input.reserve(device, m * k * 2)?;
                let kernel = if half == DType::F16 {
                    kernels::ROUND_TO_F16
                } else {
                    kernels::ROUND_TO_BF16
                };
                let args = Args::new(kernel).ptr(x.address(device)).ptr(rounded).i64(m * k);
                args.launch(device, launch::elementwise(m * k))?;
                rounded
            }
        };
        device.gemm(&linear_gemm(
            m,
            n,
            k,
            w.dtype,
            w.address(device),
            input,
            out.address(device),
        ))?;
    }
    if let Some(bias) = bias {
        assert!(
            bias.rows == 1 && bias.cols == n && bias.dtype == DType::F32,
            "linear: bias must be an f32 row of {n}"
        );
        let args = Args::new(kernels::ADD_BIAS)
            .ptr(out.address(device))
            .ptr(bias.address(device))
            .i64(m * n)
            .i32(n);
        args.launch(device, launch::elementwise(m * n))?;
    }
    Ok(())
}
