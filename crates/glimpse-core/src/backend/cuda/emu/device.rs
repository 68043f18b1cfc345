//! An emulated GPU for the device backend's tests: host memory standing in for device
//! memory, kernels run by the CUDA emulation, and `cublasGemmEx` computed by definition.
//! So the tests run the real `GpuBackend` host code, every launch and every address it
//! computes, against the CPU backend.
//!
//! It is stricter than a GPU where that finds host-side bugs: new allocations are filled
//! with NaN (a read of memory nothing wrote shows up in the results), every allocation has
//! guard bytes on both sides that are checked after each launch and product, and every
//! copy and matrix operand must lie inside one live allocation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use half::{bf16, f16};

use super::launch_slots;
use crate::backend::cuda::device::{Device, Gemm};
use crate::backend::cuda::launch::LaunchConfig;
use crate::error::{Error, Result};
use crate::model::weights::DType;

/// Guard bytes on each side of an allocation (a multiple of 16, keeping data aligned).
const GUARD: usize = 64;
const POISON: u8 = 0xff;

/// Live allocations: data address → data length.
type Registry = Arc<Mutex<BTreeMap<u64, usize>>>;

pub(crate) struct EmuDevice {
    live: Registry,
    sm_count: usize,
    /// Bytes that may be allocated at once, to test running out of device memory.
    capacity: usize,
}

pub(crate) struct EmuBuffer {
    /// Guard, data, guard, as 16-byte words (the alignment `cudaMalloc` gives at least).
    raw: *mut u128,
    words: usize,
    data: u64,
    live: Registry,
}

// SAFETY: the buffer owns its allocation; kernels and copies reach it only through the
// device, whose operations run on the calling thread one at a time per backend lock.
unsafe impl Send for EmuBuffer {}
unsafe impl Sync for EmuBuffer {}

impl Drop for EmuBuffer {
    fn drop(&mut self) {
        self.live.lock().unwrap().remove(&self.data);
        // SAFETY: `raw` came from Box::into_raw of a boxed slice of `words` elements.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.raw, self.words)) });
    }
}

impl EmuDevice {
    /// `sm_count` small enough that decode attention splits its keys on tiny models.
    pub(crate) fn new(sm_count: usize) -> Self {
        EmuDevice {
            live: Arc::new(Mutex::new(BTreeMap::new())),
            sm_count,
            capacity: usize::MAX,
        }
    }

    /// A device that refuses allocations beyond `bytes` in use.
    pub(crate) fn with_capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    fn in_use(&self) -> usize {
        self.live.lock().unwrap().values().sum()
    }

    /// Fails unless `[address, address + bytes)` lies inside one live allocation.
    fn check_range(&self, what: &str, address: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let live = self.live.lock().unwrap();
        let inside = live
            .range(..=address)
            .next_back()
            .is_some_and(|(&start, &len)| address + bytes as u64 <= start + len as u64);
        if inside {
            Ok(())
        } else {
            Err(Error::internal(format!(
                "emulated device: {what} of {bytes} bytes at {address:#x} is outside every allocation"
            )))
        }
    }

    /// Fails if anything wrote into a guard.
    fn check_guards(&self, after: &str) -> Result<()> {
        let live = self.live.lock().unwrap();
        for (&data, &len) in live.iter() {
            let before = (data - GUARD as u64) as *const u8;
            // SAFETY: every registered allocation is live and spans GUARD bytes before
            // its data, the data, and at least GUARD bytes after it.
            let intact = unsafe {
                std::slice::from_raw_parts(before, GUARD).iter().all(|&b| b == POISON)
                    && std::slice::from_raw_parts((data + len as u64) as *const u8, GUARD)
                        .iter()
                        .all(|&b| b == POISON)
            };
            if !intact {
                return Err(Error::internal(format!(
                    "emulated device: {after} wrote outside the allocation at {data:#x} ({len} bytes)"
                )));
            }
        }
        Ok(())
    }

    /// Element `index` of a matrix operand of type `dtype` at `base`, widened to f32.
    ///
    /// SAFETY: the element lies in a live allocation (checked by the caller).
    unsafe fn element(base: u64, dtype: DType, index: usize) -> f32 {
        let at = base + (index * dtype.size()) as u64;
        match dtype {
            DType::F32 => std::ptr::read_unaligned(at as *const f32),
            DType::F16 => f16::from_bits(std::ptr::read_unaligned(at as *const u16)).to_f32(),
            DType::BF16 => bf16::from_bits(std::ptr::read_unaligned(at as *const u16)).to_f32(),
        }
    }
}

impl Device for EmuDevice {
    type Buffer = EmuBuffer;

    fn description(&self) -> String {
        "emulated GPU".into()
    }

    fn sm_count(&self) -> usize {
        self.sm_count
    }

    fn free_memory(&self) -> Result<usize> {
        Ok(self.capacity.saturating_sub(self.in_use()))
    }

    fn alloc(&self, bytes: usize) -> Result<EmuBuffer> {
        if bytes > self.free_memory()? {
            return Err(Error::internal("emulated device: out of memory"));
        }
        let words = (GUARD + bytes.max(1)).div_ceil(16) + GUARD / 16;
        let raw = Box::into_raw(vec![u128::from_ne_bytes([POISON; 16]); words].into_boxed_slice()) as *mut u128;
        let data = raw as u64 + GUARD as u64;
        self.live.lock().unwrap().insert(data, bytes);
        Ok(EmuBuffer {
            raw,
            words,
            data,
            live: Arc::clone(&self.live),
        })
    }

    fn address(&self, buffer: &EmuBuffer) -> u64 {
        buffer.data
    }

    fn write(&self, dst: u64, data: &[u8]) -> Result<()> {
        self.check_range("write", dst, data.len())?;
        // SAFETY: the destination range lies inside a live allocation (checked above) and
        // host slices never overlap emulated device memory handed out by `alloc`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst as *mut u8, data.len()) };
        Ok(())
    }

    fn read(&self, src: u64, out: &mut [u8]) -> Result<()> {
        self.check_range("read", src, out.len())?;
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn copy(&self, src: u64, dst: u64, bytes: usize) -> Result<()> {
        self.check_range("copy source", src, bytes)?;
        self.check_range("copy destination", dst, bytes)?;
        let overlap = src < dst + bytes as u64 && dst < src + bytes as u64;
        if overlap && bytes > 0 {
            return Err(Error::internal("emulated device: overlapping device copy"));
        }
        // SAFETY: both ranges lie inside live allocations and do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    fn launch(&self, kernel: &'static str, config: &LaunchConfig, args: &mut [u64]) -> Result<()> {
        launch_slots(kernel, config, args).map_err(|e| Error::internal(format!("kernel {kernel}: {e}")))?;
        self.check_guards(&format!("kernel {kernel}"))
    }

    fn gemm(&self, g: &Gemm) -> Result<()> {
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        // Highest element index each operand is read or written at.
        let last = |rows: usize, cols: usize, ld: usize, transpose: bool| {
            if transpose {
                (cols - 1) + (rows - 1) * ld
            } else {
                (rows - 1) + (cols - 1) * ld
            }
        };
        if g.k > 0 {
            let a_last = last(g.m, g.k, g.lda, g.transpose_a);
            let b_last = last(g.k, g.n, g.ldb, g.transpose_b);
            self.check_range("gemm A", g.a, (a_last + 1) * g.dtype.size())?;
            self.check_range("gemm B", g.b, (b_last + 1) * g.dtype.size())?;
        }
        self.check_range("gemm C", g.c, (last(g.m, g.n, g.ldc, false) + 1) * 4)?;
        for j in 0..g.n {
            for i in 0..g.m {
                let mut sum = 0f32;
                for l in 0..g.k {
                    let a = if g.transpose_a { l + i * g.lda } else { i + l * g.lda };
                    let b = if g.transpose_b { j + l * g.ldb } else { l + j * g.ldb };
                    // SAFETY: both indices are within the operands' checked extents.
                    sum += unsafe { Self::element(g.a, g.dtype, a) * Self::element(g.b, g.dtype, b) };
                }
                // SAFETY: within C's checked extent.
                unsafe { std::ptr::write_unaligned((g.c + ((i + j * g.ldc) * 4) as u64) as *mut f32, sum) };
            }
        }
        self.check_guards("gemm")
    }
}
