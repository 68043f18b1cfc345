//! The few things the device backend needs from a GPU: memory, copies, kernel launches
//! and one matrix product. [`super::GpuBackend`] implements every `Backend` op on top of
//! this trait, so the same host code runs on a real GPU (`driver::CudaDevice`, feature
//! `cuda`) and, in tests, on the CPU emulation of CUDA (feature `kernel-emu`), where the
//! whole model is checked against the CPU backend.
//!
//! Device memory is addressed by plain `u64` addresses, as kernels see it: a buffer only
//! owns its allocation, and every copy, launch argument and matrix operand is an address
//! (a buffer's base plus a byte offset). Work is queued in order on one stream; a read
//! back to the host waits for everything queued before it.

use super::launch::LaunchConfig;
use crate::error::Result;
use crate::model::weights::DType;

pub trait Device: Send + Sync + 'static {
    /// One allocation of device memory, freed on drop.
    type Buffer: Send + Sync;

    /// What the backend reports about itself ("NVIDIA H100 80GB HBM3, sm_90").
    fn description(&self) -> String;
    /// Streaming multiprocessors, for sizing the split-key decode launches.
    fn sm_count(&self) -> usize;
    /// Free device memory, bytes.
    fn free_memory(&self) -> Result<usize>;

    /// `bytes` of uninitialised device memory (at least one byte is allocated, so every
    /// buffer has a distinct address).
    fn alloc(&self, bytes: usize) -> Result<Self::Buffer>;
    /// The device address of a buffer's first byte.
    fn address(&self, buffer: &Self::Buffer) -> u64;

    /// Copies host bytes to device address `dst`.
    fn write(&self, dst: u64, data: &[u8]) -> Result<()>;
    /// Copies device bytes at `src` into `out`, after all work queued before.
    fn read(&self, src: u64, out: &mut [u8]) -> Result<()>;
    /// Copies `bytes` between device addresses (the ranges do not overlap).
    fn copy(&self, src: u64, dst: u64, bytes: usize) -> Result<()>;

    /// Queues kernel `kernel` with `args`, one 8-byte slot per parameter in the kernel's
    /// order, each holding the value in its low bytes (see [`super::kernels::Args`]).
    fn launch(&self, kernel: &'static str, config: &LaunchConfig, args: &mut [u64]) -> Result<()>;

    /// Queues one matrix product with cuBLAS's `cublasGemmEx` meaning (below).
    fn gemm(&self, gemm: &Gemm) -> Result<()>;
}

/// `C = op(A) · op(B)` in column-major storage, as `cublasGemmEx` with
/// `CUBLAS_COMPUTE_32F`: `op(A)` is `m × k`, `op(B)` is `k × n`, `C` is `m × n` f32 with
/// column `j` starting `ldc` elements after column `j − 1`. `A` and `B` share one storage
/// type; products accumulate in f32. A transposed operand is read with its rows and
/// columns swapped: `op(A)[i][l]` is `A[l + i·lda]` when `transpose_a`, else `A[i + l·lda]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub dtype: DType,
    pub a: u64,
    pub lda: usize,
    pub transpose_a: bool,
    pub b: u64,
    pub ldb: usize,
    pub transpose_b: bool,
    pub c: u64,
    pub ldc: usize,
}
