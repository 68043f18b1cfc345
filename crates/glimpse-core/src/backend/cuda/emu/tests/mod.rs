//! Every kernel, run on the CPU by the emulation with the launch shapes of `launch.rs`,
//! against the CPU backend's op (or, for kernels without one, a plain reference).
//! Shapes include ragged edges: widths that are not multiples of a warp, a block or a
//! tile, more columns than threads, partial key tiles and splits.

mod arith;
mod attention;
mod attention_probs;
mod backend;
mod elementwise;
mod emulator;
mod model;
mod mustdrop;
mod norms;
mod rows;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DeviceBuffer, Launch};
use crate::backend::cpu::{CpuBackend, CpuTensor, CpuWeight};
use crate::backend::Backend;
use crate::model::weights::{DType, TensorView};

fn cpu() -> CpuBackend {
    CpuBackend::new(Some(1)).unwrap()
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random(rng: &mut ChaCha8Rng, n: usize, range: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-range..range)).collect()
}

fn tensor(b: &CpuBackend, data: &[f32], rows: usize, cols: usize) -> CpuTensor {
    let mut t = b.new_tensor();
    b.upload(data, rows, cols, &mut t);
    t
}

/// A weight in each storage type: the CPU backend's, and the raw element bits the
/// kernel reads (f32 bits, or the 16-bit patterns), from the same `values` rounded to
/// the type.
struct TestWeight {
    cpu: CpuWeight,
    bits: WeightBits,
}

enum WeightBits {
    F32(Vec<f32>),
    Half(Vec<u16>),
}

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn weight(b: &CpuBackend, dtype: DType, shape: &[usize], values: &[f32]) -> TestWeight {
    let bits = match dtype {
        DType::F32 => WeightBits::F32(values.to_vec()),
        DType::F16 => WeightBits::Half(values.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect()),
        DType::BF16 => WeightBits::Half(values.iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect()),
    };
    let bytes: Vec<u8> = match &bits {
        WeightBits::F32(v) => bytemuck::cast_slice(v).to_vec(),
        WeightBits::Half(v) => bytemuck::cast_slice(v).to_vec(),
    };
    let view = TensorView {
        name: "test",
        dtype,
        shape,
        bytes: &bytes,
    };
    TestWeight {
        cpu: b.load_weight(&view).unwrap(),
        bits,
    }
}

/// The weight's bits in a device buffer of its element size.
fn weight_buffer(w: &TestWeight) -> WeightBuffer {
    match &w.bits {
        WeightBits::F32(v) => WeightBuffer::F32(DeviceBuffer::from_slice(v)),
        WeightBits::Half(v) => WeightBuffer::Half(DeviceBuffer::from_slice(v)),
    }
}

enum WeightBuffer {
    F32(DeviceBuffer<f32>),
    Half(DeviceBuffer<u16>),
}

impl WeightBuffer {
    /// Adds the buffer as the launch's next argument.
    fn pass<'a>(&'a self, launch: Launch<'a>) -> Launch<'a> {
        match self {
            WeightBuffer::F32(b) => launch.buf(b),
            WeightBuffer::Half(b) => launch.buf(b),
        }
    }
}

/// The kernel name suffix for a weight type (`rms_norm_bf16`, ...).
fn suffix(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
    }
}

/// |got − want| ≤ tol · (1 + |want|) everywhere; NaN never passes.
fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

/// Bit-for-bit equality (NaN patterns and signed zeros included).
fn assert_same_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}: element {i}: got {g}, want {w}");
    }
}
