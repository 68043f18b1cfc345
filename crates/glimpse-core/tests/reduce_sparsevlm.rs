//! SparseVLM against the torch reference (tools/make_reduce_fixtures.py) on the
//! tiny-llava-reduce model: the visual tokens each filter layer keeps, the tokens it
//! recycles (members and the layer that made them), the vision rows every layer
//! processes, the prefill logits and the greedy continuation.

mod common;

use std::sync::atomic::AtomicBool;

use common::Expected;
use glimpse_core::generate::SamplingParams;
use glimpse_core::reduce::report::ReductionReport;
use glimpse_core::reduce::ReduceSpec;
use glimpse_core::{Engine, GenerateRequest, LoadOptions};
use serde_json::Value;

const FIXTURES: [&str; 3] = [
    "reduce-sparsevlm-budget",
    "reduce-sparsevlm-reference",
    "reduce-sparsevlm-compact-no-recycle",
];

fn request(expected: &Expected, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        messages: expected.messages(),
        images: expected.images(),
        sampling: SamplingParams::default(),
        max_tokens,
        stop: vec![],
        ignore_eos: true,
        reduce: ReduceSpec::parse(expected.json["spec"].as_str().unwrap()).unwrap(),
    }
}

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

fn u32s(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// One filter layer's outcome for one image, in the fixture's terms.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Encoder tokens still present, in sequence order.
    kept: Vec<u32>,
    /// Recycled tokens present, in sequence order: (patches covered, layer that made it).
    recycled: Vec<(Vec<u32>, usize)>,
}

/// The fixture's outcomes, members translated from encoder tokens to the patches they
/// cover.
fn expected_outcomes(expected: &Expected) -> Vec<(usize, Vec<Outcome>)> {
    let stage1: Vec<Vec<Vec<u32>>> = expected.json["stage1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["tokens"].as_array().unwrap().iter().map(u32s).collect())
        .collect();
    expected.json["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|filter| {
            let images = filter["images"].as_array().unwrap().iter().enumerate();
            let outcomes = images
                .map(|(i, image)| {
                    let recycled = image["recycled"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| {
                            let mut patches: Vec<u32> = u32s(&r["members"])
                                .iter()
                                .flat_map(|&m| stage1[i][m as usize].clone())
                                .collect();
                            patches.sort_unstable();
                            (patches, r["created_at"].as_u64().unwrap() as usize)
                        })
                        .collect();
                    let outcome = Outcome {
                        kept: u32s(&image["kept"]),
                        recycled,
                    };
                    let rows = image["vision_rows"].as_u64().unwrap() as usize;
                    assert_eq!(rows, outcome.kept.len() + outcome.recycled.len());
                    outcome
                })
                .collect();
            (filter["layer"].as_u64().unwrap() as usize, outcomes)
        })
        .collect()
}

/// The engine's outcomes from its reduction report.
fn engine_outcomes(report: &ReductionReport) -> Vec<(usize, Vec<Outcome>)> {
    report
        .filters
        .iter()
        .map(|filter| {
            let outcomes = filter
                .kept
                .iter()
                .enumerate()
                .map(|(i, tokens)| {
                    let image = &report.images[i];
                    let (recycled, kept): (Vec<u32>, Vec<u32>) =
                        tokens.iter().partition(|&&t| image.tokens[t as usize].recycled);
                    let recycled = recycled
                        .iter()
                        .map(|&t| {
                            // Made by the first filter whose survivors include it.
                            let created = report
                                .filters
                                .iter()
                                .find(|f| f.kept[i].contains(&t))
                                .map(|f| f.layer)
                                .unwrap();
                            (image.tokens[t as usize].patches.clone(), created)
                        })
                        .collect();
                    Outcome { kept, recycled }
                })
                .collect();
            (filter.layer, outcomes)
        })
        .collect()
}

#[test]
fn kept_and_recycled_tokens_match_the_reference() {
    for name in FIXTURES {
        let expected = Expected::load(name);
        let engine = engine(&expected);
        let greedy = expected.u32s("greedy_ids");
        let out = engine
            .generate(&request(&expected, greedy.len()), &AtomicBool::new(false), &mut |_| {})
            .unwrap();
        let want = expected_outcomes(&expected);
        let got = engine_outcomes(&out.reduction);
        assert_eq!(got.len(), want.len(), "{name}: filter layers");
        for ((layer, got), (want_layer, want)) in got.iter().zip(&want) {
            assert_eq!(layer, want_layer, "{name}: filter layer");
            assert_eq!(got, want, "{name}: layer {layer}");
        }
        let stats = &expected.json["stats"];
        let layer_rows: Vec<usize> = u32s(&stats["layer_vision_tokens"])
            .iter()
            .map(|&n| n as usize)
            .collect();
        assert_eq!(
            out.stats.layer_vision_tokens, layer_rows,
            "{name}: vision rows per layer"
        );
        assert_eq!(
            out.stats.after_prefill as u64,
            stats["after_prefill"].as_u64().unwrap(),
            "{name}: after prefill"
        );
        assert_eq!(out.token_ids, greedy, "{name}: greedy ids");
    }
}

#[test]
fn prefill_logits_match_the_reference() {
    for name in FIXTURES {
        let expected = Expected::load(name);
        let engine = engine(&expected);
        let got = engine.next_token_logits(&request(&expected, 1)).unwrap();
        let want = expected.f32s(&expected.json["prefill_logits"]);
        assert_eq!(got.len(), want.len(), "{name}: vocabulary size");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
        println!("{name}: max |Δlogit| = {worst:.3e} (max |logit| {scale:.3e})");
        assert!(
            worst <= 1e-4 * scale,
            "{name}: logits differ by {worst} (max |logit| {scale})"
        );
    }
}

#[test]
fn specs_that_do_not_fit_the_model_are_usage_errors() {
    let expected = Expected::load(FIXTURES[0]);
    let engine = engine(&expected);
    let fails = |spec: &str| {
        let mut request = request(&expected, 1);
        request.reduce = ReduceSpec::parse(spec).unwrap();
        engine.next_token_logits(&request).unwrap_err().message
    };
    // 144 tokens to 4 in one step: deleting all 144 would still recycle 5.
    let e = fails("sparsevlm:keep=4,layers=2");
    assert!(e.contains("keep=4 leaves no room for the 5 recycled tokens"), "{e}");
    let e = fails("sparsevlm:keep=145");
    assert!(e.contains("keep=145 must be between 1 and the 144 tokens"), "{e}");
    let e = fails("sparsevlm:scale=8,bias=0,layers=2/20");
    assert!(e.contains("layer 20 does not exist"), "{e}");
}
