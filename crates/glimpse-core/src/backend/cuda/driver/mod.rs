//! The real GPU behind [`Device`] (feature `cuda`): a CUDA context and one stream
//! through cudarc, cuBLAS for the matrix products, kernels from NVRTC.
//!
//! The NVIDIA libraries are loaded when a device is opened, not at build time, so a
//! binary built with this feature starts on machines without them; [`CudaDevice::open`]
//! then fails with one line saying what is missing. cudarc panics when a library or
//! one of its symbols is missing, so every first use runs under `catch_unwind`.

mod modules;

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use cudarc::cublas::{self, CudaBlas};
use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{result as driver, CudaContext, CudaSlice, CudaStream, DevicePtr, DriverError};

use super::device::{Device, Gemm};
use super::launch::LaunchConfig;
use super::nvrtc;
use super::GpuBackend;
use crate::error::{Error, Result};
use crate::model::weights::DType;
use modules::Modules;

/// The device backend on a real GPU.
pub type CudaBackend = GpuBackend<CudaDevice>;

impl CudaBackend {
    /// Opens GPU `ordinal`; weights are stored as `weight_dtype` (`None`: as the
    /// checkpoint stores them).
    pub fn open(ordinal: usize, weight_dtype: Option<DType>) -> Result<Self> {
        Ok(GpuBackend::new(CudaDevice::open(ordinal)?, weight_dtype))
    }
}

pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    modules: Modules,
    name: String,
    arch: &'static str,
    sm_count: usize,
    /// `GLIMPSE_CUDA_SYNC=1`: wait for each kernel, so a fault names the kernel that
    /// caused it rather than showing up at the next read.
    sync_each_launch: bool,
    /// The kernel most recently queued, named when a later read reports a fault.
    last_kernel: Mutex<&'static str>,
}

/// Device memory of a [`CudaDevice`]. cudarc frees a slice on the thread that drops it
/// without making its context current there; a model can be dropped on a thread that never
/// ran an op (a JavaScript finaliser), so the context is bound first.
pub struct Allocation {
    slice: CudaSlice<u8>,
    ctx: Arc<CudaContext>,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        // The slice itself is freed right after this, with the context current.
        self.ctx.record_err(self.ctx.bind_to_thread());
    }
}

/// A driver error as its name and description.
pub(crate) fn describe(e: &DriverError) -> String {
    match e.error_string() {
        Ok(text) => format!("{:?} ({})", e.0, text.to_string_lossy()),
        Err(_) => format!("{:?}", e.0),
    }
}

/// Runs a first call into an NVIDIA library, turning cudarc's panics on a missing
/// library or symbol into an error that says so.
fn guarded<T>(library: &str, call: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|_| {
        Err(Error::usage(format!(
            "no usable CUDA GPU: {library} cannot be loaded or is older than CUDA 13.0"
        )))
    })
}

impl CudaDevice {
    /// Opens GPU `ordinal` with everything the backend needs: the driver, a GPU, NVRTC
    /// and cuBLAS. Fails with one line naming what is missing.
    pub fn open(ordinal: usize) -> Result<Self> {
        // SAFETY: these only try to load the libraries.
        if !catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false) {
            return Err(Error::usage(
                "no usable CUDA GPU: the NVIDIA driver library (libcuda.so.1) is not installed",
            ));
        }
        let ctx = guarded("the NVIDIA driver library (libcuda.so.1)", || {
            CudaContext::new(ordinal).map_err(|e| Error::usage(format!("no usable CUDA GPU: {}", describe(&e))))
        })?;
        // One stream only, so cudarc's cross-stream event bookkeeping is not needed.
        // SAFETY: every buffer of this context is used on `stream` alone.
        unsafe { ctx.disable_event_tracking() };
        if !nvrtc::nvrtc_available() {
            return Err(Error::usage(
                "no usable CUDA GPU setup: NVRTC 13 (libnvrtc.so.13) cannot be loaded; install the CUDA 13 toolkit \
                 or the nvidia-cuda-nvrtc wheel and put its lib directory on LD_LIBRARY_PATH",
            ));
        }
        let stream = ctx.default_stream();
        let blas = guarded("cuBLAS (libcublas.so.13)", || {
            // SAFETY: only tries to load the library.
            if !unsafe { cublas::sys::is_culib_present() } {
                return Err(Error::usage(
                    "no usable CUDA GPU setup: cuBLAS 13 (libcublas.so.13) cannot be loaded; install the CUDA 13 \
                     toolkit or the nvidia-cublas wheel and put its lib directory on LD_LIBRARY_PATH",
                ));
            }
            CudaBlas::new(Arc::clone(&stream)).map_err(|e| Error::usage(format!("cuBLAS cannot start: {e}")))
        })?;
        let driver_error = |e: DriverError| Error::internal(format!("querying the GPU failed: {}", describe(&e)));
        let (major, minor) = ctx.compute_capability().map_err(driver_error)?;
        let sm_count = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver_error)?;
        let name = ctx.name().map_err(driver_error)?;
        // Leaked once per opened device: NVRTC's options take a 'static architecture.
        let arch: &'static str = Box::leak(format!("sm_{major}{minor}").into_boxed_str());
        Ok(CudaDevice {
            ctx,
            stream,
            blas,
            modules: Modules::new(arch),
            name,
            arch,
            sm_count: sm_count.max(1) as usize,
            sync_each_launch: std::env::var("GLIMPSE_CUDA_SYNC").is_ok_and(|v| v == "1"),
            last_kernel: Mutex::new("none"),
        })
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| Error::internal(format!("cannot use the GPU from this thread: {}", describe(&e))))
    }

    /// A failed copy or read: the cause may be an earlier kernel's fault, which CUDA
    /// reports at the next synchronising call.
    fn transfer_error(&self, what: &str, e: &DriverError) -> Error {
        let last = *self.last_kernel.lock().unwrap_or_else(|p| p.into_inner());
        Error::internal(format!(
            "GPU {what} failed: {} (last kernel queued: {last}; GLIMPSE_CUDA_SYNC=1 names the failing kernel)",
            describe(e)
        ))
    }
}

impl Device for CudaDevice {
    type Buffer = Allocation;

    fn description(&self) -> String {
        format!("{}, {}", self.name, self.arch)
    }

    fn sm_count(&self) -> usize {
        self.sm_count
    }

    fn free_memory(&self) -> Result<usize> {
        self.bind()?;
        let (free, _total) = self
            .ctx
            .mem_get_info()
            .map_err(|e| Error::internal(format!("querying GPU memory failed: {}", describe(&e))))?;
        Ok(free)
    }

    fn alloc(&self, bytes: usize) -> Result<Allocation> {
        self.bind()?;
        // SAFETY: the memory is uninitialised; the backend writes before it reads.
        let slice = unsafe { self.stream.alloc::<u8>(bytes.max(1)) }.map_err(|e| Error::internal(describe(&e)))?;
        Ok(Allocation {
            slice,
            ctx: Arc::clone(&self.ctx),
        })
    }

    fn address(&self, buffer: &Allocation) -> u64 {
        let (address, _record) = buffer.slice.device_ptr(&self.stream);
        address
    }

    fn write(&self, dst: u64, data: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: the backend passes an address inside a live allocation with room for
        // `data`; a copy from pageable memory returns once the data has been staged, so
        // `data` may go away afterwards.
        unsafe { driver::memcpy_htod_async(dst, data, self.stream.cu_stream()) }
            .map_err(|e| self.transfer_error("upload", &e))
    }

    fn read(&self, src: u64, out: &mut [u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: as in `write`; the stream is synchronised before `out` is used.
        unsafe { driver::memcpy_dtoh_async(out, src, self.stream.cu_stream()) }
            .and_then(|()| self.stream.synchronize())
            .map_err(|e| self.transfer_error("read", &e))
    }

    fn copy(&self, src: u64, dst: u64, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: the backend passes two non-overlapping ranges inside live allocations.
        unsafe { driver::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream()) }
            .map_err(|e| self.transfer_error("copy", &e))
    }

    fn launch(&self, kernel: &'static str, config: &LaunchConfig, args: &mut [u64]) -> Result<()> {
        self.bind()?;
        let function = self.modules.function(&self.ctx, kernel, config.shared_bytes)?;
        let mut params: Vec<*mut c_void> = args.iter_mut().map(|slot| slot as *mut u64 as *mut c_void).collect();
        let [gx, gy, gz] = config.grid;
        let [bx, by, bz] = config.block;
        // SAFETY: `params` holds one pointer per kernel parameter (the argument list was
        // checked against the kernel's C signature), each to an 8-byte slot whose low
        // bytes hold the value; pointer arguments are addresses of live allocations. The
        // driver copies the values before returning.
        unsafe {
            driver::launch_kernel(
                function.cu_function(),
                (gx, gy, gz),
                (bx, by, bz),
                config.shared_bytes,
                self.stream.cu_stream(),
                &mut params,
            )
        }
        .map_err(|e| {
            Error::internal(format!(
                "CUDA kernel {kernel} ({}) failed to launch: {}",
                super::kernels::file_of(kernel),
                describe(&e)
            ))
        })?;
        *self.last_kernel.lock().unwrap_or_else(|p| p.into_inner()) = kernel;
        if self.sync_each_launch {
            self.stream
                .synchronize()
                .map_err(|e| Error::internal(format!("CUDA kernel {kernel} failed: {}", describe(&e))))?;
        }
        Ok(())
    }

    fn gemm(&self, g: &Gemm) -> Result<()> {
        use cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType_t};
        self.bind()?;
        let operand = match g.dtype {
            DType::F32 => cudaDataType_t::CUDA_R_32F,
            DType::F16 => cudaDataType_t::CUDA_R_16F,
            DType::BF16 => cudaDataType_t::CUDA_R_16BF,
        };
        let op = |transpose: bool| {
            if transpose {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let int = |v: usize| i32::try_from(v).expect("matrix dimension beyond cuBLAS's int (checked by the caller)");
        let (alpha, beta) = (1f32, 0f32);
        // SAFETY: the operands are device addresses of live allocations large enough
        // for the shapes and leading dimensions given; alpha and beta are host f32s, as
        // the default pointer mode and CUBLAS_COMPUTE_32F expect.
        unsafe {
            cublas::result::gemm_ex(
                *self.blas.handle(),
                op(g.transpose_a),
                op(g.transpose_b),
                int(g.m),
                int(g.n),
                int(g.k),
                &alpha as *const f32 as *const c_void,
                g.a as *const c_void,
                operand,
                int(g.lda),
                g.b as *const c_void,
                operand,
                int(g.ldb),
                &beta as *const f32 as *const c_void,
                g.c as *mut c_void,
                cudaDataType_t::CUDA_R_32F,
                int(g.ldc),
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| {
            Error::internal(format!(
                "cuBLAS GemmEx ({}×{}×{}, {:?}) failed: {e}",
                g.m, g.n, g.k, g.dtype
            ))
        })
    }
}
