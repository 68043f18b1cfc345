//! The whole engine on the emulated GPU against the CPU backend: every fixture model's
//! logits and greedy tokens, and every reduction fixture's decisions, with the checks of
//! `parity` that tests/gpu_parity.rs applies to a real GPU. Here the device backend's
//! host code meets the real model: prompts with images, stage-1 merging, filters between
//! layers, cache compaction and decode-time admission.

#[path = "../../../../../tests/common/mod.rs"]
mod common;

use std::sync::atomic::AtomicBool;

use common::Expected;

use crate::backend::cuda::emu::device::EmuDevice;
use crate::backend::cuda::GpuBackend;
use crate::engine::{Checkpoint, Engine, GenerateRequest, LoadOptions};
use crate::generate::SamplingParams;
use crate::model::config::LlavaConfig;
use crate::model::weights::{DType, Weights};
use crate::parity::{differences, Run, Tolerance};
use crate::placement::{DeviceChoice, OnDevice};
use crate::reduce::ReduceSpec;

type Emulated = OnDevice<GpuBackend<EmuDevice>>;

/// f32 weights: only the summation order differs from the CPU backend.
const LOGITS_F32: Tolerance = Tolerance { logits: Some(1e-4) };

fn cpu_engine(expected: &Expected, dtype: Option<DType>) -> Engine {
    let options = LoadOptions {
        threads: Some(2),
        device: DeviceChoice::Cpu,
        dtype,
        ..Default::default()
    };
    Engine::load(&expected.model_dir(), options).expect("fixture loads on the CPU")
}

fn emulated(expected: &Expected, dtype: Option<DType>) -> Emulated {
    let dir = expected.model_dir();
    let weights = Weights::open(&dir).unwrap();
    let checkpoint = Checkpoint {
        dir: &dir,
        config: LlavaConfig::from_dir(&dir).unwrap(),
        weights: &weights,
        tower_weights: None,
    };
    checkpoint
        .load(GpuBackend::new(EmuDevice::new(4), dtype), dtype)
        .expect("fixture loads on the emulated GPU")
}

fn request(expected: &Expected, spec: &str, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        messages: expected.messages(),
        images: expected.images(),
        sampling: SamplingParams::default(),
        max_tokens,
        stop: vec![],
        ignore_eos: true,
        reduce: ReduceSpec::parse(spec).unwrap(),
    }
}

fn on_cpu(engine: &Engine, request: &GenerateRequest) -> Run {
    Run {
        logits: engine.next_token_logits(request).unwrap(),
        output: engine.generate(request, &AtomicBool::new(false), &mut |_| {}).unwrap(),
    }
}

fn on_emulator(engine: &Engine, device: &Emulated, request: &GenerateRequest) -> Run {
    Run {
        logits: engine.next_token_logits_on(device, request).unwrap(),
        output: engine
            .generate_on(device, request, &AtomicBool::new(false), &mut |_| {})
            .unwrap(),
    }
}

fn assert_agree(name: &str, cpu: &Run, gpu: &Run, tolerance: Tolerance) {
    let found = differences(cpu, gpu, tolerance);
    assert!(found.is_empty(), "{name}:\n{}", found.join("\n"));
}

#[test]
fn fixture_models_agree_with_the_cpu_backend() {
    for name in [
        "tiny-llava-mha",
        "tiny-llava-gqa",
        "tiny-llava-two-images",
        "tiny-llava-bf16",
    ] {
        let expected = Expected::load(name);
        // f32 on the device (a bf16 fixture's weights widened exactly), as the CPU computes.
        let engine = cpu_engine(&expected, None);
        let device = emulated(&expected, Some(DType::F32));
        let request = request(&expected, "none", 8);
        let (cpu, gpu) = (on_cpu(&engine, &request), on_emulator(&engine, &device, &request));
        assert_agree(name, &cpu, &gpu, LOGITS_F32);
        assert!(
            gpu.output.stats.backend.starts_with("cuda (emulated GPU"),
            "{}",
            gpu.output.stats.backend
        );
    }
}

/// LLaVA-NeXT: the crops, their packing with the newline rows, and a reduction over them
/// (MustDrop merging within each crop, its budget over the whole image).
#[test]
fn tiled_images_agree_with_the_cpu_backend() {
    let expected = Expected::load("tiny-llava-next-mistral");
    let engine = cpu_engine(&expected, None);
    let device = emulated(&expected, Some(DType::F32));
    for spec in ["none", "mustdrop:keep=120,layers=1,tau=0.5,evict=0"] {
        let request = request(&expected, spec, 4);
        let (cpu, gpu) = (on_cpu(&engine, &request), on_emulator(&engine, &device, &request));
        assert_agree(spec, &cpu, &gpu, LOGITS_F32);
    }
}

/// One fixture per kind of decision (the emulator is slow; tests/gpu_parity.rs runs all
/// of them on a GPU): stage-1 merging with prefill filtering and decode-time eviction,
/// the reference order with compact positions, SparseVLM's recycling, FastV, and
/// Dynamic-LLaVA's image predictor with decode-time admission.
const REDUCTION_CASES: [&str; 5] = [
    "reduce-mustdrop-evict",
    "reduce-mustdrop-reference-compact",
    "reduce-sparsevlm-reference",
    "reduce-fastv",
    "reduce-dynamic",
];

#[test]
fn every_kind_of_reduction_keeps_the_same_tokens() {
    let first = Expected::load(REDUCTION_CASES[0]);
    let engine = cpu_engine(&first, None);
    let device = emulated(&first, Some(DType::F32));
    for name in REDUCTION_CASES {
        let expected = Expected::load(name);
        assert_eq!(
            expected.model_dir(),
            first.model_dir(),
            "{name}: one model for every case"
        );
        let spec = expected.json["spec"].as_str().unwrap();
        let tokens = expected.json["greedy_ids"].as_array().unwrap().len();
        let request = request(&expected, spec, tokens);
        let (cpu, gpu) = (on_cpu(&engine, &request), on_emulator(&engine, &device, &request));
        assert_agree(name, &cpu, &gpu, LOGITS_F32);
    }
}

/// Weights stored in 16 bits: the device also rounds each matrix input to 16 bits, the
/// CPU does not, so only the greedy tokens are held equal.
#[test]
fn sixteen_bit_weights_give_the_same_greedy_tokens() {
    let expected = Expected::load("tiny-llava-mha");
    for dtype in [DType::F16, DType::BF16] {
        let engine = cpu_engine(&expected, Some(dtype));
        let device = emulated(&expected, Some(dtype));
        let request = request(&expected, "none", 8);
        let (cpu, gpu) = (on_cpu(&engine, &request), on_emulator(&engine, &device, &request));
        assert_agree(&format!("{dtype:?}"), &cpu, &gpu, Tolerance { logits: None });
    }
}

/// Sampling on the device: with the same seed, temperature, top-k and top-p, the device's
/// draws (kernels/sample.cu, given the sampler's uniform numbers) pick the CPU's tokens,
/// and they are real draws, not the greedy tokens.
#[test]
fn seeded_sampling_draws_the_same_tokens() {
    let expected = Expected::load("tiny-llava-mha");
    let engine = cpu_engine(&expected, None);
    let device = emulated(&expected, Some(DType::F32));
    let greedy = on_cpu(&engine, &request(&expected, "none", 12)).output.token_ids;
    let mut sampled = Vec::new();
    for (temperature, top_k, top_p) in [(1.3, 0, 1.0), (0.8, 12, 1.0), (1.0, 0, 0.9), (2.0, 40, 0.7)] {
        let mut request = request(&expected, "none", 12);
        request.sampling = SamplingParams {
            temperature,
            top_k,
            top_p,
            seed: 5,
            ..Default::default()
        };
        let (cpu, gpu) = (on_cpu(&engine, &request), on_emulator(&engine, &device, &request));
        assert_agree(&format!("{:?}", request.sampling), &cpu, &gpu, LOGITS_F32);
        sampled.push(cpu.output.token_ids);
    }
    assert!(
        sampled.iter().any(|ids| *ids != greedy),
        "every setting drew the greedy tokens"
    );
}

/// The repetition penalty on the device (kernels/sample.cu `penalize_repeats` over the
/// sequence's ids, kept as a device row): greedy and sampled, the device picks the CPU's
/// tokens, and the penalty changes the greedy ones.
#[test]
fn repetition_penalty_picks_the_same_tokens() {
    let expected = Expected::load("tiny-llava-mha");
    let engine = cpu_engine(&expected, None);
    let device = emulated(&expected, Some(DType::F32));
    let greedy = on_cpu(&engine, &request(&expected, "none", 12)).output.token_ids;
    let mut penalised = Vec::new();
    for (temperature, repetition_penalty) in [(0.0, 1.5), (0.0, 0.6), (1.1, 1.3)] {
        let mut request = request(&expected, "none", 12);
        request.sampling = SamplingParams {
            temperature,
            repetition_penalty,
            seed: 9,
            ..Default::default()
        };
        let (cpu, gpu) = (on_cpu(&engine, &request), on_emulator(&engine, &device, &request));
        assert_agree(&format!("{:?}", request.sampling), &cpu, &gpu, LOGITS_F32);
        penalised.push(cpu.output.token_ids);
    }
    assert_ne!(
        penalised[0], greedy,
        "a penalty of 1.5 left the greedy tokens as they were"
    );
}
