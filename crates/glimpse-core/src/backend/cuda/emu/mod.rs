//! Test harness that runs the CUDA kernels on the CPU (feature `kernel-emu`; see
//! cuda_emu.h for the execution model). It mirrors how the device backend launches: device
//! buffers passed as raw pointers, arguments as an array of pointers to their values, and
//! the launch shapes from [`super::launch`].

use std::ffi::{c_char, c_void, CStr, CString};
use std::marker::PhantomData;

use bytemuck::Pod;

use super::launch::LaunchConfig;

mod device;
mod tests;

extern "C" {
    fn glimpse_emu_launch(
        name: *const c_char,
        grid: *const u32,
        block: *const u32,
        shared_bytes: usize,
        args: *mut *mut c_void,
        error: *mut c_char,
        error_len: usize,
    ) -> i32;
}

/// Elements on each side of a buffer's data, set to all-one bytes: NaN as f32, u32::MAX
/// as an id. A kernel that writes outside its buffer changes them (checked after every
/// launch); one that reads outside gets NaN or an invalid id into its result.
const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xff;

/// Stand-in for device memory: the kernel gets a raw pointer to it, as on a GPU, and the
/// host reads it back with [`DeviceBuffer::to_vec`].
pub(crate) struct DeviceBuffer<T: Pod> {
    /// Guard, data, guard. Owned through a raw pointer: kernels write through copies of
    /// it while the buffer is only borrowed, as device memory is.
    raw: *mut T,
    len: usize,
    _owns: PhantomData<Vec<T>>,
}

impl<T: Pod> DeviceBuffer<T> {
    pub fn from_slice(data: &[T]) -> Self {
        let mut raw = vec![T::zeroed(); GUARD + data.len() + GUARD];
        bytemuck::cast_slice_mut::<T, u8>(&mut raw).fill(GUARD_BYTE);
        raw[GUARD..GUARD + data.len()].copy_from_slice(data);
        let len = data.len();
        let raw = Box::into_raw(raw.into_boxed_slice()) as *mut T;
        DeviceBuffer {
            raw,
            len,
            _owns: PhantomData,
        }
    }

    /// A buffer of `len` elements the kernel is expected to fill: all-one bytes (NaN as
    /// f32), so an element the kernel never writes stands out.
    pub fn unwritten(len: usize) -> Self {
        let mut data = vec![T::zeroed(); len];
        bytemuck::cast_slice_mut::<T, u8>(&mut data).fill(GUARD_BYTE);
        Self::from_slice(&data)
    }

    fn whole(&self) -> &[T] {
        // SAFETY: `raw` is the live allocation of GUARD + len + GUARD elements made in
        // from_slice; no launch is running (launches borrow the buffer and are synchronous).
        unsafe { std::slice::from_raw_parts(self.raw, GUARD + self.len + GUARD) }
    }

    pub fn to_vec(&self) -> Vec<T> {
        self.whole()[GUARD..GUARD + self.len].to_vec()
    }

    fn device_ptr(&self) -> u64 {
        // SAFETY: GUARD < the allocation's length.
        unsafe { self.raw.add(GUARD) as u64 }
    }

    fn guards_intact(&self) -> bool {
        let whole = self.whole();
        let untouched = |s: &[T]| bytemuck::cast_slice::<T, u8>(s).iter().all(|&b| b == GUARD_BYTE);
        untouched(&whole[..GUARD]) && untouched(&whole[GUARD + self.len..])
    }
}

impl<T: Pod> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        let total = GUARD + self.len + GUARD;
        // SAFETY: `raw` came from Box::into_raw of a boxed slice of `total` elements.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.raw, total)) });
    }
}

/// Something whose guards a launch checks afterwards.
trait Guarded {
    fn guards_intact(&self) -> bool;
}

impl<T: Pod> Guarded for DeviceBuffer<T> {
    fn guards_intact(&self) -> bool {
        DeviceBuffer::guards_intact(self)
    }
}

/// Runs kernel `kernel` on the emulator with one 8-byte argument slot per parameter (the
/// layout `cuLaunchKernel` reads); Err holds the emulator's message.
pub(crate) fn launch_slots(kernel: &str, config: &LaunchConfig, slots: &mut [u64]) -> Result<(), String> {
    let name = CString::new(kernel).expect("kernel name");
    let mut pointers: Vec<*mut c_void> = slots.iter_mut().map(|s| s as *mut u64 as *mut c_void).collect();
    let mut error = [0 as c_char; 512];
    // SAFETY: `pointers` holds one pointer per kernel parameter to a live 8-byte slot;
    // pointer parameters hold addresses of live emulated device memory (the caller's
    // contract); grid and block are 3 elements; `error` is writable for its length.
    let status = unsafe {
        glimpse_emu_launch(
            name.as_ptr(),
            config.grid.as_ptr(),
            config.block.as_ptr(),
            config.shared_bytes as usize,
            pointers.as_mut_ptr(),
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if status != 0 {
        // SAFETY: the launcher wrote a NUL-terminated message into `error`.
        return Err(unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned());
    }
    Ok(())
}

/// One kernel launch being assembled: arguments in the kernel's parameter order.
pub(crate) struct Launch<'a> {
    kernel: &'a str,
    /// Each argument's bytes in an 8-byte slot (every parameter is at most 8 bytes).
    slots: Vec<u64>,
    buffers: Vec<(usize, &'a dyn Guarded)>,
}

impl<'a> Launch<'a> {
    pub fn new(kernel: &'a str) -> Self {
        Launch {
            kernel,
            slots: Vec::new(),
            buffers: Vec::new(),
        }
    }

    /// A scalar parameter; its Rust type must be the kernel's (i32 for `int`, u32 for
    /// `unsigned`, i64 for `long long`, f32 for `float`).
    pub fn arg<T: Pod>(mut self, value: T) -> Self {
        let bytes = bytemuck::bytes_of(&value);
        assert!(bytes.len() <= 8, "kernel parameters are at most 8 bytes");
        let mut slot = [0u8; 8];
        slot[..bytes.len()].copy_from_slice(bytes);
        self.slots.push(u64::from_ne_bytes(slot));
        self
    }

    /// A pointer parameter.
    pub fn buf<T: Pod>(mut self, buffer: &'a DeviceBuffer<T>) -> Self {
        self.buffers.push((self.slots.len(), buffer));
        self.slots.push(buffer.device_ptr());
        self
    }

    /// Runs the launch; Err holds the emulator's message (a barrier some threads never
    /// reach, say).
    pub fn try_run(mut self, config: &LaunchConfig) -> Result<(), String> {
        launch_slots(self.kernel, config, &mut self.slots)?;
        for (arg, buffer) in &self.buffers {
            assert!(
                buffer.guards_intact(),
                "{}: wrote outside the buffer passed as argument {arg}",
                self.kernel
            );
        }
        Ok(())
    }

    pub fn run(self, config: &LaunchConfig) {
        let kernel = self.kernel;
        if let Err(e) = self.try_run(config) {
            panic!("launch of {kernel} failed: {e}");
        }
    }
}
