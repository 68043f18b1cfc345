//! The CUDA backend: our kernels (`kernels/*.cu`) for every op but the matrix products,
//! cuBLAS for those, and the host code that drives both.
//!
//! - [`GpuBackend`] (`ops`, `gemm`, `attention`, `tensor`) implements `Backend` on any
//!   [`device::Device`]: device memory, copies, kernel launches and one GEMM;
//! - `driver` (feature `cuda`) is that device on a real GPU through cudarc, loading the
//!   NVIDIA libraries at run time and compiling the kernels with NVRTC at first use;
//!   `CudaBackend` is the backend on it;
//! - [`launch`]: grid, block and shared-memory sizes, decode split counts;
//! - [`kernels`]: every kernel's parameter list, which each launch is held to;
//! - [`abi`]: the codes kernels take as arguments;
//! - [`sources`]: the kernel files, their entry points, and the text handed to NVRTC.
//!
//! With the `kernel-emu` feature the same `.cu` files are compiled as C++ against a small
//! CUDA emulation (`emu/`): the tests run every kernel on the CPU against the CPU backend,
//! and run `GpuBackend` itself, up to the whole engine, on an emulated device.

pub mod abi;
mod attention;
pub mod device;
#[cfg(feature = "cuda")]
pub mod driver;
mod gemm;
pub mod kernels;
pub mod launch;
#[cfg(feature = "cuda")]
pub mod nvrtc;
mod ops;
pub mod sources;
mod tensor;

#[cfg(feature = "cuda")]
pub use driver::{CudaBackend, CudaDevice};
pub use ops::GpuBackend;
pub use tensor::{GpuTensor, GpuWeight};

#[cfg(all(test, feature = "kernel-emu"))]
mod emu;
