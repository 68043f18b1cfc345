//! Where a model runs: the `--device` choice, the backend it opens, the model loaded on
//! that backend, and whether the GPU has the memory for it.
//!
//! The engine holds a [`Loaded`] (one variant per backend compiled in) and reaches the
//! model through [`on_device!`], so everything past loading is written once, generic over
//! the backend.

use crate::backend::cpu::CpuBackend;
#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaBackend;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::config::LlavaConfig;
use crate::model::llava::Llava;
use crate::model::weights::DType;

/// `--device`: where the model runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The GPU when this build has CUDA support and a GPU is usable, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda),
            _ => Err(Error::usage(format!(
                "unknown --device '{text}': use auto, cuda or cpu"
            ))),
        }
    }
}

/// A model loaded on one backend.
pub struct OnDevice<B: Backend> {
    pub backend: B,
    pub model: Llava<B>,
}

/// The model on whichever backend it was loaded on.
pub enum Loaded {
    Cpu(Box<OnDevice<CpuBackend>>),
    #[cfg(feature = "cuda")]
    Cuda(Box<OnDevice<CudaBackend>>),
}

/// Evaluates `$body` with `$d` bound to the (boxed) `OnDevice<B>` inside a [`Loaded`],
/// whatever its backend.
macro_rules! on_device {
    ($loaded:expr, $d:ident => $body:expr) => {
        match $loaded {
            $crate::placement::Loaded::Cpu($d) => $body,
            #[cfg(feature = "cuda")]
            $crate::placement::Loaded::Cuda($d) => $body,
        }
    };
}
pub(crate) use on_device;

/// A backend opened for a model, before the model is on it.
pub enum Opened {
    Cpu(CpuBackend),
    #[cfg(feature = "cuda")]
    Cuda(Box<CudaBackend>),
}

/// Opens the backend `device` asks for. `Auto` takes the GPU when one is usable (the
/// driver, a GPU, NVRTC and cuBLAS all present) and quietly falls back to the CPU
/// otherwise; `Cuda` fails with one line saying what is missing.
pub fn open(device: DeviceChoice, threads: Option<usize>, dtype: Option<DType>) -> Result<Opened> {
    let cpu = || Ok(Opened::Cpu(CpuBackend::new(threads)?.with_weight_dtype(dtype)));
    match device {
        DeviceChoice::Cpu => cpu(),
        DeviceChoice::Cuda => open_cuda(dtype).map_err(|e| Error::new(e.kind, format!("--device cuda: {}", e.message))),
        DeviceChoice::Auto => open_cuda(dtype).or_else(|_| cpu()),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(dtype: Option<DType>) -> Result<Opened> {
    CudaBackend::open(0, dtype).map(|backend| Opened::Cuda(Box::new(backend)))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_dtype: Option<DType>) -> Result<Opened> {
    Err(Error::usage(
        "this build of glimpse has no CUDA support (it was built without the `cuda` feature); use --device cpu",
    ))
}

/// Bytes as GiB with one decimal, for memory messages.
pub(crate) fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Tokens of KV cache the load-time check reserves room for besides the weights: a
/// prompt with an image or two and a long answer.
pub(crate) const LOAD_KV_TOKENS: usize = 2048;
/// Room for activations, attention partials and cuBLAS's workspace while running.
pub(crate) const WORKING_BYTES: u64 = 512 << 20;

/// What loading a model onto a GPU will take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeed {
    pub weights: u64,
    pub kv_tokens: usize,
    pub kv_bytes: u64,
    pub working: u64,
}

impl MemoryNeed {
    /// The weights of `parameters` in `dtype` (or `checkpoint_bytes` as stored), plus the
    /// KV cache of [`LOAD_KV_TOKENS`] tokens (fewer if the context window is shorter) and
    /// working memory.
    pub fn for_model(config: &LlavaConfig, parameters: u64, checkpoint_bytes: u64, dtype: Option<DType>) -> Self {
        let weights = dtype.map_or(checkpoint_bytes, |d| parameters * d.size() as u64);
        let kv_tokens = LOAD_KV_TOKENS.min(config.text.max_position_embeddings);
        MemoryNeed {
            weights,
            kv_tokens,
            kv_bytes: kv_bytes_per_token(config) * kv_tokens as u64,
            working: WORKING_BYTES,
        }
    }

    pub fn total(&self) -> u64 {
        self.weights + self.kv_bytes + self.working
    }

    /// Fails when `free` device bytes cannot hold this, with the numbers and what to try.
    pub fn check(&self, free: u64) -> Result<()> {
        if self.total() <= free {
            return Ok(());
        }
        Err(Error::usage(format!(
            "not enough GPU memory: the model needs {} (weights {}, KV cache for {} tokens {}, working memory {}) \
             but {} is free; use --device cpu, --dtype f16 for an f32 checkpoint, or a smaller model",
            gib(self.total()),
            gib(self.weights),
            self.kv_tokens,
            gib(self.kv_bytes),
            gib(self.working),
            gib(free)
        )))
    }
}

/// Bytes one token's keys and values take over all layers (f32, as the cache holds them).
pub fn kv_bytes_per_token(config: &LlavaConfig) -> u64 {
    let t = &config.text;
    (t.num_hidden_layers * t.num_key_value_heads * t.head_dim * 2 * size_of::<f32>()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> LlavaConfig {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test/fixtures/models/tiny-llava-mha");
        LlavaConfig::from_dir(&dir).unwrap()
    }

    #[test]
    fn device_and_dtype_choices_parse() {
        assert_eq!(DeviceChoice::parse("CUDA").unwrap(), DeviceChoice::Cuda);
        assert_eq!(DeviceChoice::parse("cpu").unwrap(), DeviceChoice::Cpu);
        assert_eq!(DeviceChoice::parse("auto").unwrap(), DeviceChoice::Auto);
        let e = DeviceChoice::parse("tpu").unwrap_err();
        assert_eq!(e.message, "unknown --device 'tpu': use auto, cuda or cpu");
        assert_eq!(DType::parse_choice("auto").unwrap(), None);
        assert_eq!(DType::parse_choice("fp16").unwrap(), Some(DType::F16));
        assert_eq!(DType::parse_choice("bfloat16").unwrap(), Some(DType::BF16));
        assert!(DType::parse_choice("int8").is_err());
    }

    /// The fixture: 2 layers × 4 KV heads × 16 dims × (K and V) × 4 bytes = 1 KiB a
    /// token; its context is 1024 tokens, fewer than LOAD_KV_TOKENS.
    #[test]
    fn the_load_check_counts_weights_kv_and_working_memory() {
        let cfg = config();
        assert_eq!(kv_bytes_per_token(&cfg), 1024);
        let need = MemoryNeed::for_model(&cfg, 1000, 4000, Some(DType::F16));
        assert_eq!((need.weights, need.kv_tokens, need.kv_bytes), (2000, 1024, 1024 * 1024));
        assert_eq!(MemoryNeed::for_model(&cfg, 1000, 4000, None).weights, 4000);
        need.check(need.total()).unwrap();
        let e = need.check(need.total() - 1).unwrap_err();
        assert!(
            e.message.starts_with(
                "not enough GPU memory: the model needs 0.5 GiB (weights 0.0 GiB, KV cache for 1024 tokens"
            ),
            "{}",
            e.message
        );
        assert!(e.message.contains("use --device cpu"), "{}", e.message);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_one_clear_error_and_auto_falls_back() {
        let e = open(DeviceChoice::Cuda, Some(1), None).err().unwrap();
        assert_eq!(
            e.message,
            "--device cuda: this build of glimpse has no CUDA support (it was built without the `cuda` feature); use \
             --device cpu"
        );
        assert!(matches!(
            open(DeviceChoice::Auto, Some(1), None).unwrap(),
            Opened::Cpu(_)
        ));
    }

    /// Built with CUDA support but run where some part of a GPU setup is missing (as on
    /// the build machines): `cuda` is one line naming what is missing, `auto` runs on the
    /// CPU. On a machine with a usable GPU both open it.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_without_a_usable_gpu_is_one_clear_error_and_auto_falls_back() {
        match open(DeviceChoice::Cuda, Some(1), None) {
            Ok(Opened::Cuda(_)) => assert!(matches!(open(DeviceChoice::Auto, Some(1), None), Ok(Opened::Cuda(_)))),
            Ok(Opened::Cpu(_)) => panic!("--device cuda opened the CPU"),
            Err(e) => {
                assert!(
                    e.message.starts_with("--device cuda: no usable CUDA GPU"),
                    "{}",
                    e.message
                );
                assert!(!e.message.contains('\n'), "{}", e.message);
                assert!(matches!(open(DeviceChoice::Auto, Some(1), None), Ok(Opened::Cpu(_))));
            }
        }
    }
}
