//! The parameter list of every kernel, written once, and the argument builder that holds
//! each launch to it: a launch whose arguments differ from the kernel's parameters in
//! number or kind panics before anything reaches the device, and a test checks each list
//! against the kernel's C signature in `kernels/*.cu`.

use super::device::Device;
use super::launch::LaunchConfig;
use super::sources::FILES;
use crate::error::Result;

/// The kind of one kernel parameter, as the C signature declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// Any pointer (`const float*`, `unsigned*`, `bf16_bits*`, ...): a device address.
    Ptr,
    /// `int`
    I32,
    /// `unsigned`
    U32,
    /// `long long`
    I64,
    /// `float`
    F32,
}

use Param::{Ptr, F32, I32, I64, U32};

/// A kernel's entry point and its parameters in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    pub name: &'static str,
    pub params: &'static [Param],
}

macro_rules! kernels {
    ($($id:ident = $name:literal [$($param:expr),* $(,)?];)*) => {
        $(pub const $id: Kernel = Kernel { name: $name, params: &[$($param),*] };)*
        /// Every kernel the backend launches.
        pub const ALL: &[Kernel] = &[$($id),*];
    };
}

kernels! {
    ACTIVATE = "activate" [Ptr, I64, I32];
    GATED_ACTIVATE = "gated_activate" [Ptr, Ptr, I64, I32];
    ADD = "add" [Ptr, Ptr, I64];
    ADD_BIAS = "add_bias" [Ptr, Ptr, I64, I32];
    ROUND_TO_F16 = "round_to_f16" [Ptr, Ptr, I64];
    ROUND_TO_BF16 = "round_to_bf16" [Ptr, Ptr, I64];
    RMS_NORM_F32 = "rms_norm_f32" [Ptr, Ptr, Ptr, I32, F32];
    RMS_NORM_F16 = "rms_norm_f16" [Ptr, Ptr, Ptr, I32, F32];
    RMS_NORM_BF16 = "rms_norm_bf16" [Ptr, Ptr, Ptr, I32, F32];
    LAYER_NORM_F32 = "layer_norm_f32" [Ptr, Ptr, Ptr, Ptr, I32, F32];
    LAYER_NORM_F16 = "layer_norm_f16" [Ptr, Ptr, Ptr, Ptr, I32, F32];
    LAYER_NORM_BF16 = "layer_norm_bf16" [Ptr, Ptr, Ptr, Ptr, I32, F32];
    ROPE = "rope" [Ptr, Ptr, I32, I32, F32];
    GATHER_ROWS_F32 = "gather_rows_f32" [Ptr, Ptr, Ptr, I32, U32];
    GATHER_ROWS_F16 = "gather_rows_f16" [Ptr, Ptr, Ptr, I32, U32];
    GATHER_ROWS_BF16 = "gather_rows_bf16" [Ptr, Ptr, Ptr, I32, U32];
    SELECT_ROWS = "select_rows" [Ptr, Ptr, Ptr, I32];
    RETAIN_ROWS = "retain_rows" [Ptr, Ptr, I32, I32];
    ATTENTION_PREFILL = "attention_prefill" [Ptr, Ptr, Ptr, Ptr, I32, I32, I32, I32, I32, I32, F32];
    ATTENTION_DECODE_SPLIT = "attention_decode_split"
        [Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, I32, I32, I32, I32, I32, I32, F32, I32];
    ATTENTION_DECODE_COMBINE = "attention_decode_combine" [Ptr, Ptr, Ptr, Ptr, I32, I32, I32];
    ATTENTION_PROBS_HEADS = "attention_probs_heads" [Ptr, Ptr, Ptr, Ptr, I32, I32, I32, I32, F32];
    ATTENTION_PROBS_REDUCE = "attention_probs_reduce" [Ptr, Ptr, I32, I32, I32];
    WINDOW_SIMILARITY = "window_similarity" [Ptr, Ptr, I32, I32];
    WINDOW_MERGE = "window_merge" [Ptr, Ptr, Ptr, I32, I32, I32];
    ACCUMULATE_ATTENTION = "accumulate_attention" [Ptr, Ptr, I32, I32, F32];
    COUNT_EVICTABLE = "count_evictable" [Ptr, Ptr, I32, F32, Ptr];
    ARGMAX_ROWS = "argmax_rows" [Ptr, Ptr, I32];
    SOFTMAX_ROWS = "softmax_rows" [Ptr, Ptr, I32];
    SAMPLE_ROW = "sample_row" [Ptr, Ptr, Ptr, I32, F32, I32, F32];
    PENALIZE_REPEATS = "penalize_repeats" [Ptr, Ptr, Ptr, I32, F32];
}

/// The file holding a kernel, for error messages and the module cache.
pub fn file_of(kernel: &str) -> &'static str {
    FILES
        .iter()
        .find(|f| f.kernels.contains(&kernel))
        .map_or("an unknown file", |f| f.name)
}

/// The arguments of one launch, one 8-byte slot each (the value in the low bytes, as
/// `cuLaunchKernel` reads a parameter through a pointer to it). Each push is checked
/// against the kernel's next parameter.
pub struct Args {
    kernel: Kernel,
    slots: Vec<u64>,
}

impl Args {
    pub fn new(kernel: Kernel) -> Self {
        Args {
            kernel,
            slots: Vec::with_capacity(kernel.params.len()),
        }
    }

    fn push(mut self, kind: Param, slot: u64) -> Self {
        let at = self.slots.len();
        let want = self.kernel.params.get(at);
        assert_eq!(
            want,
            Some(&kind),
            "{}: argument {at} is {kind:?}, the kernel takes {want:?}",
            self.kernel.name
        );
        self.slots.push(slot);
        self
    }

    pub fn ptr(self, address: u64) -> Self {
        self.push(Ptr, address)
    }

    /// An `int`; panics on values beyond i32 (shapes are checked to fit first).
    pub fn i32(self, value: usize) -> Self {
        let v = i32::try_from(value).unwrap_or_else(|_| panic!("{}: {value} exceeds int", self.kernel.name));
        self.push(I32, v as u32 as u64)
    }

    pub fn i32_signed(self, value: i32) -> Self {
        self.push(I32, value as u32 as u64)
    }

    pub fn u32(self, value: usize) -> Self {
        let v = u32::try_from(value).unwrap_or_else(|_| panic!("{}: {value} exceeds unsigned", self.kernel.name));
        self.push(U32, v as u64)
    }

    pub fn i64(self, value: usize) -> Self {
        self.push(I64, value as u64)
    }

    pub fn f32(self, value: f32) -> Self {
        self.push(F32, value.to_bits() as u64)
    }

    /// The kernel's name and its slots; panics if an argument is missing.
    pub fn finish(self) -> (&'static str, Vec<u64>) {
        assert_eq!(
            self.slots.len(),
            self.kernel.params.len(),
            "{}: {} arguments for {} parameters",
            self.kernel.name,
            self.slots.len(),
            self.kernel.params.len()
        );
        (self.kernel.name, self.slots)
    }

    /// Queues the launch, unless its grid is empty (nothing to do, and CUDA rejects an
    /// empty grid).
    pub fn launch<D: Device>(self, device: &D, config: LaunchConfig) -> Result<()> {
        let (name, mut slots) = self.finish();
        if config.is_empty() {
            return Ok(());
        }
        device.launch(name, &config, &mut slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::sources::FILES;

    /// The parameter kinds of `kernel` as its C signature declares them.
    fn declared_params(source: &str, kernel: &str) -> Vec<Param> {
        let mark = format!("extern \"C\" __global__ void {kernel}(");
        let start = source.find(&mark).unwrap_or_else(|| panic!("{kernel} not declared")) + mark.len();
        let list = &source[start..start + source[start..].find(')').unwrap()];
        list.split(',')
            .map(|param| {
                let words: Vec<&str> = param.split_whitespace().collect();
                let type_words: Vec<&str> = words[..words.len() - 1]
                    .iter()
                    .copied()
                    .filter(|w| *w != "const" && *w != "__restrict__")
                    .collect();
                if param.contains('*') {
                    Ptr
                } else {
                    match type_words.join(" ").as_str() {
                        "int" => I32,
                        "unsigned" => U32,
                        "long long" => I64,
                        "float" => F32,
                        other => panic!("{kernel}: unexpected parameter type '{other}'"),
                    }
                }
            })
            .collect()
    }

    #[test]
    fn every_kernel_is_declared_with_its_c_parameters() {
        let mut listed: Vec<&str> = ALL.iter().map(|k| k.name).collect();
        let mut in_sources: Vec<&str> = FILES.iter().flat_map(|f| f.kernels.iter().copied()).collect();
        listed.sort();
        in_sources.sort();
        assert_eq!(listed, in_sources, "kernels.rs and sources.rs list different kernels");
        for kernel in ALL {
            let file = FILES.iter().find(|f| f.kernels.contains(&kernel.name)).unwrap();
            assert_eq!(
                declared_params(file.source, kernel.name),
                kernel.params,
                "{} in {}",
                kernel.name,
                file.name
            );
        }
    }

    #[test]
    fn arguments_are_held_to_the_parameter_list() {
        let (name, slots) = Args::new(ADD).ptr(16).ptr(32).i64(5).finish();
        assert_eq!((name, slots), ("add", vec![16, 32, 5]));
        let (_, slots) = Args::new(SELECT_ROWS).ptr(1).ptr(2).ptr(3).i32(7).finish();
        assert_eq!(slots[3], 7);
        let negative = Args::new(RETAIN_ROWS).ptr(0).ptr(0).i32_signed(-1).i32(1).finish().1;
        assert_eq!(negative[2] as u32 as i32, -1, "an int reads its low 4 bytes");
        let (_, slots) = Args::new(ROPE).ptr(0).ptr(0).i32(2).i32(8).f32(1.5).finish();
        assert_eq!(f32::from_bits(slots[4] as u32), 1.5);
        assert_eq!(file_of("attention_prefill"), "attention_prefill.cu");
    }

    #[test]
    #[should_panic(expected = "add: argument 2 is F32, the kernel takes Some(I64)")]
    fn a_wrong_kind_is_refused() {
        let _ = Args::new(ADD).ptr(0).ptr(0).f32(1.0);
    }

    #[test]
    #[should_panic(expected = "add: 2 arguments for 3 parameters")]
    fn a_missing_argument_is_refused() {
        let _ = Args::new(ADD).ptr(0).ptr(0).finish();
    }
}
