//! Kernels compiled by NVRTC at first use and kept for the life of the process.
//!
//! Compiling is the slow part (a second or so per file), so PTX is cached per process,
//! keyed by file and GPU architecture; each device then loads a file's module once and
//! keeps the functions of all its kernels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::Ptx;

use super::describe;
use crate::backend::cuda::launch::SHARED_BYTES_WITHOUT_OPT_IN;
use crate::backend::cuda::nvrtc;
use crate::backend::cuda::sources::{KernelFile, FILES};
use crate::error::{Error, Result};

/// PTX text by (kernel file, architecture).
type PtxCache = Mutex<HashMap<(&'static str, &'static str), Arc<String>>>;

/// PTX of each (kernel file, architecture) compiled so far in this process.
fn ptx_cache() -> &'static PtxCache {
    static CACHE: OnceLock<PtxCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn ptx(file: &'static KernelFile, arch: &'static str) -> Result<Arc<String>> {
    let mut cache = ptx_cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ptx) = cache.get(&(file.name, arch)) {
        return Ok(Arc::clone(ptx));
    }
    // Held while compiling: two threads asking for the same file compile it once.
    let ptx = Arc::new(nvrtc::compile(file, arch)?);
    cache.insert((file.name, arch), Arc::clone(&ptx));
    Ok(ptx)
}

/// A loaded kernel and the dynamic shared memory it has been allowed.
#[derive(Clone)]
struct Loaded {
    function: CudaFunction,
    shared_allowed: u32,
}

/// The functions one device has loaded, by kernel name.
pub(super) struct Modules {
    arch: &'static str,
    functions: Mutex<HashMap<&'static str, Loaded>>,
}

impl Modules {
    pub(super) fn new(arch: &'static str) -> Self {
        Modules {
            arch,
            functions: Mutex::new(HashMap::new()),
        }
    }

    /// The function of `kernel`, compiling and loading its file on first use, allowed at
    /// least `shared_bytes` of dynamic shared memory.
    pub(super) fn function(
        &self,
        ctx: &Arc<CudaContext>,
        kernel: &'static str,
        shared_bytes: u32,
    ) -> Result<CudaFunction> {
        let mut functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        if !functions.contains_key(kernel) {
            let file = FILES
                .iter()
                .find(|f| f.kernels.contains(&kernel))
                .ok_or_else(|| Error::internal(format!("no kernel file defines {kernel}")))?;
            let module = ctx
                .load_module(Ptx::from_src(ptx(file, self.arch)?.as_str()))
                .map_err(|e| load_error(file.name, self.arch, &e))?;
            for &name in file.kernels {
                let function = module
                    .load_function(name)
                    .map_err(|e| Error::internal(format!("kernel {name} of {}: {}", file.name, describe(&e))))?;
                functions.insert(
                    name,
                    Loaded {
                        function,
                        shared_allowed: SHARED_BYTES_WITHOUT_OPT_IN,
                    },
                );
            }
        }
        let loaded = functions.get_mut(kernel).expect("loaded with its file above");
        if shared_bytes > loaded.shared_allowed {
            // Above 48 KiB a kernel must opt in to the larger dynamic shared memory.
            loaded
                .function
                .set_attribute(
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    shared_bytes as i32,
                )
                .map_err(|e| {
                    Error::internal(format!(
                        "kernel {kernel}: {shared_bytes} bytes of shared memory refused: {}",
                        describe(&e)
                    ))
                })?;
            loaded.shared_allowed = shared_bytes;
        }
        Ok(loaded.function.clone())
    }
}

fn load_error(file: &str, arch: &str, e: &cudarc::driver::DriverError) -> Error {
    use cudarc::driver::sys::CUresult;
    let hint = match e.0 {
        CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION => {
            "; the NVRTC library is newer than the driver: put the NVRTC of the driver's CUDA release first on \
             LD_LIBRARY_PATH"
        }
        CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU | CUresult::CUDA_ERROR_INVALID_PTX => {
            "; the kernels were compiled for another GPU architecture"
        }
        _ => "",
    };
    Error::internal(format!(
        "loading the CUDA kernels of {file} ({arch}) failed: {}{hint}",
        describe(e)
    ))
}
