//! The CUDA backend against the CPU backend on a real GPU (feature `cuda`): every
//! fixture model's f32 logits within 1e-4 of the largest and the same greedy tokens (also
//! under transformers' repetition penalty), the
//! same decisions for every reduction fixture, and the same greedy tokens with weights
//! kept in f16 and bf16. The emulated-GPU tests run the same checks (`parity`) in CI.
//!
//! They are ignored in an ordinary `cargo test` (where they would have no GPU to check);
//! scripts/test-gpu.sh runs them with `--include-ignored`, and without a usable GPU each
//! one fails, so a run that did not use a GPU never passes.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use common::{fixtures_dir, Expected};
use glimpse_core::model::weights::DType;
use glimpse_core::parity::{differences, Run, Tolerance};
use glimpse_core::{DeviceChoice, Engine, GenerateRequest, LoadOptions};

const LOGITS_F32: Tolerance = Tolerance { logits: Some(1e-4) };
const GREEDY_TOKENS: usize = 16;

fn load(dir: &Path, device: DeviceChoice, dtype: Option<DType>) -> glimpse_core::Result<Engine> {
    let options = LoadOptions {
        device,
        dtype,
        ..Default::default()
    };
    Engine::load(dir, options)
}

/// The model on the GPU; fails the test when no GPU is usable.
fn on_gpu(dir: &Path, dtype: Option<DType>) -> Engine {
    let engine = load(dir, DeviceChoice::Cuda, dtype)
        .unwrap_or_else(|e| panic!("loading {} on the GPU failed: {}", dir.display(), e.message));
    assert!(engine.backend().starts_with("cuda ("), "{}", engine.backend());
    engine
}

fn on_cpu(dir: &Path, dtype: Option<DType>) -> Engine {
    load(dir, DeviceChoice::Cpu, dtype).expect("fixture loads on the CPU")
}

fn run(engine: &Engine, request: &GenerateRequest) -> Run {
    Run {
        logits: engine.next_token_logits(request).unwrap(),
        output: engine.generate(request, &AtomicBool::new(false), &mut |_| {}).unwrap(),
    }
}

fn assert_agree(name: &str, cpu: &Run, gpu: &Run, tolerance: Tolerance) {
    let found = differences(cpu, gpu, tolerance);
    assert!(found.is_empty(), "{name}:\n{}", found.join("\n"));
}

#[test]
#[ignore = "needs a GPU: scripts/test-gpu.sh"]
fn fixture_models_match_the_cpu_backend_and_transformers() {
    for name in [
        "tiny-llava-mha",
        "tiny-llava-gqa",
        "tiny-llava-two-images",
        "tiny-llava-bf16",
        "tiny-llava-next-mistral",
        "tiny-llava-next-vicuna",
    ] {
        let expected = Expected::load(name);
        // f32 on the GPU (the bf16 fixture's weights widened exactly), as the CPU computes.
        let gpu = on_gpu(&expected.model_dir(), Some(DType::F32));
        let cpu = on_cpu(&expected.model_dir(), None);
        let request = expected.request("none", GREEDY_TOKENS);
        let (on_cpu, on_gpu) = (run(&cpu, &request), run(&gpu, &request));
        assert_agree(name, &on_cpu, &on_gpu, LOGITS_F32);
        assert_eq!(
            on_gpu.output.token_ids,
            expected.u32s("greedy_ids"),
            "{name}: greedy ids vs transformers"
        );
        let want = expected.f32s(&expected.json["last_logits"]);
        let diff = glimpse_core::parity::relative_difference(&want, &on_gpu.logits);
        println!(
            "{name}: GPU logits vs transformers {diff:.2e}, vs CPU {:.2e}",
            glimpse_core::parity::relative_difference(&on_cpu.logits, &on_gpu.logits)
        );
        assert!(
            diff <= 1e-4,
            "{name}: GPU logits differ from transformers' by {diff:.2e}"
        );
        assert!(on_gpu.output.stats.backend.starts_with("cuda ("));

        // The repetition penalty, applied on the GPU, gives transformers' tokens.
        let (penalty, want) = expected.penalised_greedy();
        let mut penalised = request.clone();
        penalised.sampling.repetition_penalty = penalty;
        assert_eq!(
            run(&gpu, &penalised).output.token_ids,
            want,
            "{name}: penalised greedy ids"
        );
    }
}

#[test]
#[ignore = "needs a GPU: scripts/test-gpu.sh"]
fn every_reduction_method_keeps_the_same_tokens() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir().join("expected"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json")
                .filter(|n| n.starts_with("reduce-"))
                .map(String::from)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 13, "reduction fixtures missing: {names:?}");
    let dir = Expected::load(&names[0]).model_dir();
    let gpu = on_gpu(&dir, Some(DType::F32));
    let cpu = on_cpu(&dir, None);
    for name in &names {
        let expected = Expected::load(name);
        let spec = expected.json["spec"].as_str().unwrap();
        let tokens = expected.json["greedy_ids"].as_array().unwrap().len();
        let request = expected.request(spec, tokens);
        assert_agree(name, &run(&cpu, &request), &run(&gpu, &request), LOGITS_F32);
    }
}

/// The GPU multiplies 16-bit weights with inputs rounded to 16 bits, the CPU with f32
/// inputs, so logits differ slightly and only the greedy tokens are held equal.
#[test]
#[ignore = "needs a GPU: scripts/test-gpu.sh"]
fn sixteen_bit_weights_give_the_same_greedy_tokens() {
    for name in ["tiny-llava-mha", "tiny-llava-gqa", "tiny-llava-two-images"] {
        let expected = Expected::load(name);
        for dtype in [DType::F16, DType::BF16] {
            let gpu = on_gpu(&expected.model_dir(), Some(dtype));
            assert!(
                gpu.backend().ends_with(&format!("{} weights)", dtype.name())),
                "{}",
                gpu.backend()
            );
            let cpu = on_cpu(&expected.model_dir(), Some(dtype));
            let request = expected.request("none", GREEDY_TOKENS);
            let (on_cpu, on_gpu) = (run(&cpu, &request), run(&gpu, &request));
            println!(
                "{name} {dtype:?}: GPU logits vs CPU {:.2e}",
                glimpse_core::parity::relative_difference(&on_cpu.logits, &on_gpu.logits)
            );
            assert_agree(
                &format!("{name} {dtype:?}"),
                &on_cpu,
                &on_gpu,
                Tolerance { logits: None },
            );
        }
    }
}
