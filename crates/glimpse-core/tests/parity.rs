//! Golden parity with transformers: every fixture model must reproduce the prompt ids,
//! pixel values, next-token logits and greedy continuation that transformers' own
//! LlavaForConditionalGeneration and LlavaNextForConditionalGeneration produced
//! (tools/make_fixtures.py).

mod common;

use std::sync::atomic::AtomicBool;

use common::Expected;
use glimpse_core::model::preprocess::ImageProcessorConfig;
use glimpse_core::{Engine, LoadOptions};

const FIXTURES: [&str; 6] = [
    "tiny-llava-mha",
    "tiny-llava-gqa",
    "tiny-llava-two-images",
    "tiny-llava-bf16",
    "tiny-llava-next-mistral",
    "tiny-llava-next-vicuna",
];
/// The LLaVA-NeXT fixtures: tiles of a 1×2 grid, and of a 2×1 and a 2×2 grid in one prompt.
const NEXT_FIXTURES: [&str; 2] = ["tiny-llava-next-mistral", "tiny-llava-next-vicuna"];
/// Greedy tokens compared against transformers (as many as the fixtures hold).
const GREEDY_TOKENS: usize = 16;

fn engine(expected: &Expected) -> Engine {
    Engine::load(
        &expected.model_dir(),
        LoadOptions {
            threads: Some(2),
            ..Default::default()
        },
    )
    .expect("fixture model loads")
}

#[test]
fn prompt_ids_match_the_processor() {
    for name in FIXTURES {
        let expected = Expected::load(name);
        let engine = engine(&expected);
        let ids = engine.prompt_ids(&expected.messages(), &expected.images()).unwrap();
        assert_eq!(ids, expected.u32s("input_ids"), "{name}: prompt ids");
    }
}

#[test]
fn pixel_values_match_the_image_processor() {
    for name in FIXTURES.into_iter().filter(|name| !NEXT_FIXTURES.contains(name)) {
        let expected = Expected::load(name);
        let processor = ImageProcessorConfig::from_dir(&expected.model_dir()).unwrap();
        let want = expected.f32s(&expected.json["pixel_values"]["data"]);
        let got: Vec<f32> = expected
            .images()
            .iter()
            .flat_map(|img| processor.preprocess(img).unwrap())
            .collect();
        assert_eq!(got.len(), want.len(), "{name}: pixel count");
        let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{name}: pixel values differ by up to {worst}");
    }
}

/// A NeXT prompt's crops (~7k values each) are recorded as each crop's mean and mean
/// absolute value, base image first, in transformers' tile order.
#[test]
fn next_crops_match_the_image_processor() {
    for name in NEXT_FIXTURES {
        let expected = Expected::load(name);
        let engine = engine(&expected);
        let processor = ImageProcessorConfig::from_dir_tiled(&expected.model_dir()).unwrap();
        let (mut means, mut mean_abs) = (Vec::new(), Vec::new());
        for image in expected.images() {
            let layout = engine
                .tile_layout(&image)
                .unwrap()
                .expect("a NeXT model tiles every image");
            for crop in processor.preprocess_tiles(&image, &layout).unwrap() {
                let n = crop.len() as f64;
                means.push((crop.iter().map(|&v| v as f64).sum::<f64>() / n) as f32);
                mean_abs.push((crop.iter().map(|&v| v.abs() as f64).sum::<f64>() / n) as f32);
            }
        }
        let pixels = &expected.json["pixel_values"];
        for (got, key) in [(means, "crop_mean"), (mean_abs, "crop_mean_abs")] {
            let want = expected.f32s(&pixels[key]);
            assert_eq!(got.len(), want.len(), "{name}: crop count");
            let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-5, "{name}: {key} differs by up to {worst}");
        }
    }
}

#[test]
fn next_token_logits_match_transformers() {
    for name in FIXTURES {
        let expected = Expected::load(name);
        let engine = engine(&expected);
        let got = engine.next_token_logits(&expected.request("none", 1)).unwrap();
        let want = expected.f32s(&expected.json["last_logits"]);
        assert_eq!(got.len(), want.len(), "{name}: vocabulary size");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
        println!(
            "{name}: max |Δlogit| = {worst:.3e} (max |logit| {scale:.3e}, ratio {:.3e})",
            worst / scale
        );
        assert!(
            worst <= 1e-4 * scale,
            "{name}: logits differ by {worst} (max |logit| {scale})"
        );
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    for name in FIXTURES {
        let expected = Expected::load(name);
        let engine = engine(&expected);
        let out = engine
            .generate(
                &expected.request("none", GREEDY_TOKENS),
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(out.token_ids, expected.u32s("greedy_ids"), "{name}: greedy ids");
        assert_eq!(
            out.text,
            expected.json["greedy_text"].as_str().unwrap(),
            "{name}: greedy text"
        );
    }
}

/// transformers' repetition penalty (over every id so far, the prompt's image tokens
/// included) changes the greedy continuation; the engine's matches it token for token.
#[test]
fn repetition_penalty_matches_transformers() {
    let mut changed = 0;
    for name in FIXTURES {
        let expected = Expected::load(name);
        let (penalty, want) = expected.penalised_greedy();
        let mut request = expected.request("none", GREEDY_TOKENS);
        request.sampling.repetition_penalty = penalty;
        let out = engine(&expected)
            .generate(&request, &AtomicBool::new(false), &mut |_| {})
            .unwrap();
        assert_eq!(out.token_ids, want, "{name}: penalised greedy ids");
        changed += usize::from(want != expected.u32s("greedy_ids"));
    }
    assert!(changed > 0, "the penalty changed no fixture's greedy tokens");
}
