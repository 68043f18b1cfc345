//! The CUDA backend's device code and what the host needs to launch it.
//!
//! The kernels are our own CUDA C files in `kernels/`, embedded in the binary and compiled
//! by NVRTC at first use (feature `cuda`). Everything about launching them that is plain
//! arithmetic lives here without any CUDA dependency, so it is tested everywhere:
//! - [`launch`]: grid, block and shared-memory sizes, decode split counts;
//! - [`abi`]: the codes kernels take as arguments;
//! - [`sources`]: the kernel files, their entry points, and the text handed to NVRTC.
//!
//! With the `kernel-emu` feature the same `.cu` files are compiled as C++ against a small
//! CUDA emulation (`emu/`), and the tests run every kernel on the CPU against the CPU
//! backend.

pub mod abi;
pub mod launch;
#[cfg(feature = "cuda")]
pub mod nvrtc;
pub mod sources;

#[cfg(all(test, feature = "kernel-emu"))]
mod emu;
