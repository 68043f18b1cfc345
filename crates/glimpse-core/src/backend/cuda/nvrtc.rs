//! Compiles the kernel files to PTX with NVRTC (feature `cuda`).
//!
//! cudarc loads libnvrtc at first use, so a build needs no CUDA toolkit and a machine
//! without the library gets an error instead of a failed start. The kernels include no
//! CUDA header, so no include path is needed either.

use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions};

use super::sources::{program_source, KernelFile};
use crate::error::{Error, Result};

/// Targets the kernels are checked for: Ampere (A100) and Hopper (H100/H200). At run time
/// the backend compiles for the GPU it finds.
pub const ARCHITECTURES: [&str; 2] = ["sm_80", "sm_90"];

/// Whether libnvrtc can be loaded. cudarc panics inside its loader when the library is
/// missing or older than its CUDA 13.0 bindings, hence the catch_unwind.
pub fn nvrtc_available() -> bool {
    // SAFETY: is_culib_present only tries to load the library and its symbols.
    std::panic::catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

/// PTX text of one kernel file for `arch` ("sm_90").
pub fn compile(file: &KernelFile, arch: &'static str) -> Result<String> {
    if !nvrtc_available() {
        return Err(Error::usage(
            "the CUDA backend needs NVRTC 13 (libnvrtc.so.13): install the CUDA 13 toolkit or the \
             nvidia-cuda-nvrtc wheel and put its lib directory on LD_LIBRARY_PATH",
        ));
    }
    let options = CompileOptions {
        arch: Some(arch),
        name: Some(file.name.to_string()),
        ..Default::default()
    };
    match compile_ptx_with_opts(program_source(file), options) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(CompileError::CompileError { log, .. }) => Err(Error::internal(format!(
            "NVRTC cannot compile {} for {arch}:\n{}",
            file.name,
            log.to_string_lossy()
        ))),
        Err(e) => Err(Error::internal(format!(
            "NVRTC failed on {} for {arch}: {e}",
            file.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::sources::FILES;

    /// Whether NVRTC is here to test. Without it these tests check nothing, unless
    /// GLIMPSE_REQUIRE_NVRTC=1 (set by scripts/check-kernels.sh) makes that a failure.
    fn nvrtc_to_test() -> bool {
        if nvrtc_available() {
            return true;
        }
        assert_ne!(
            std::env::var("GLIMPSE_REQUIRE_NVRTC").as_deref(),
            Ok("1"),
            "GLIMPSE_REQUIRE_NVRTC=1 but libnvrtc.so.13 cannot be loaded (LD_LIBRARY_PATH?)"
        );
        eprintln!("no NVRTC here: nothing compiled");
        false
    }

    /// Every kernel file compiles for every target and exports all its entry points.
    /// With GLIMPSE_PTX_DIR set, the PTX is written there for ptxas.
    #[test]
    fn kernels_compile() {
        if !nvrtc_to_test() {
            return;
        }
        let ptx_dir = std::env::var_os("GLIMPSE_PTX_DIR").map(std::path::PathBuf::from);
        for file in FILES {
            for arch in ARCHITECTURES {
                let ptx = compile(file, arch).unwrap_or_else(|e| panic!("{e}"));
                assert!(ptx.contains(&format!(".target {arch}")), "{} {arch}", file.name);
                for kernel in file.kernels {
                    assert!(
                        ptx.contains(&format!(".entry {kernel}(")),
                        "{}: no entry point {kernel} in the {arch} PTX",
                        file.name
                    );
                }
                if let Some(dir) = &ptx_dir {
                    let stem = file.name.trim_end_matches(".cu");
                    std::fs::create_dir_all(dir).unwrap();
                    std::fs::write(dir.join(format!("{stem}.{arch}.ptx")), ptx).unwrap();
                }
            }
        }
    }

    /// A compile error comes back as one error naming the file, with NVRTC's log.
    #[test]
    fn compile_errors_carry_the_log() {
        if !nvrtc_to_test() {
            return;
        }
        let broken = KernelFile {
            name: "broken.cu",
            source: "extern \"C\" __global__ void broken() { undefined_name = 1; }\n",
            kernels: &["broken"],
        };
        let e = compile(&broken, "sm_90").unwrap_err();
        assert!(
            e.message.contains("broken.cu") && e.message.contains("undefined_name"),
            "{}",
            e.message
        );
    }
}
