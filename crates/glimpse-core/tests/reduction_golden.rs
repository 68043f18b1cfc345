//! Exactness against the committed Python reference of every reduction method
//! (tools/make_reduce_fixtures.py, run on the tiny-llava-reduce fixture): the same merged
//! windows, key tokens, per-layer survivors, recycled clusters, cache sizes, decode-time
//! admissions and evictions, and the same logits and greedy tokens.

mod common;

use std::sync::atomic::AtomicBool;

use common::{fixtures_dir, Expected};
use glimpse_core::engine::GenerateOutput;
use glimpse_core::generate::SamplingParams;
use glimpse_core::reduce::ReduceSpec;
use glimpse_core::{Engine, GenerateRequest, LoadOptions};
use serde_json::Value;

/// Bytes one token's keys and values take in one layer of the fixture (2 KV heads × 16
/// features, f32 keys and values).
const ROW_BYTES: usize = 2 * 16 * 2 * 4;

fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir().join("expected"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("reduce-")
                .and_then(|n| n.strip_suffix(".json"))
                .map(|n| format!("reduce-{n}"))
        })
        .collect();
    names.sort();
    assert!(names.len() >= 13, "reduce fixtures missing: {names:?}");
    names
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn run(engine: &Engine, expected: &Expected) -> (GenerateOutput, Vec<f32>) {
    let request = GenerateRequest {
        messages: expected.messages(),
        images: expected.images(),
        sampling: SamplingParams::default(),
        max_tokens: expected.json["greedy_ids"].as_array().unwrap().len(),
        stop: vec![],
        ignore_eos: true,
        reduce: ReduceSpec::parse(expected.json["spec"].as_str().unwrap()).unwrap(),
    };
    let logits = engine.next_token_logits(&request).unwrap();
    let output = engine.generate(&request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    (output, logits)
}

fn assert_close(name: &str, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: {what} length");
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{name}: {what} differ by {worst} (scale {scale})"
    );
}

fn check(name: &str, engine: &Engine) {
    let expected = Expected::load(name);
    eprintln!("checking {name}: {}", expected.json["spec"]);
    let (out, logits) = run(engine, &expected);
    let json = &expected.json;
    let report = &out.reduction;

    // Stage 1: tokens, window similarities, key tokens.
    let stage1 = &json["stage1"][0];
    let image = &report.images[0];
    let tokens: Vec<Vec<u32>> = stage1["tokens"].as_array().unwrap().iter().map(u32s).collect();
    let first_recycled = tokens.len();
    let got_tokens: Vec<Vec<u32>> = image.tokens[..first_recycled.min(image.tokens.len())]
        .iter()
        .map(|t| t.patches.clone())
        .collect();
    assert_eq!(got_tokens, tokens, "{name}: stage-1 tokens");
    let windows = stage1["windows"].as_array().map_or(&[][..], |w| w.as_slice());
    if windows.is_empty() {
        assert!(image.window_similarity.is_empty(), "{name}: no merge expected");
    } else {
        let want: Vec<f32> = windows
            .iter()
            .map(|w| w["similarity"].as_f64().unwrap() as f32)
            .collect();
        assert_eq!(image.window_similarity.len(), want.len(), "{name}: windows");
        for (w, (got, want)) in image.window_similarity.iter().zip(&want).enumerate() {
            assert!(
                (got - want).abs() < 1e-4,
                "{name}: window {w} similarity {got} vs {want}"
            );
        }
    }
    let keys = stage1
        .get("key_tokens")
        .filter(|k| !k.is_null())
        .map_or(Vec::new(), u32s);
    assert_eq!(image.keys, keys, "{name}: key tokens");

    // Stage 2: the survivors of every filter layer, recycled clusters by the patches
    // they cover.
    let filters = json["filters"].as_array().unwrap();
    assert_eq!(report.filters.len(), filters.len(), "{name}: filter layers");
    for (got, want) in report.filters.iter().zip(filters) {
        let layer = want["layer"].as_u64().unwrap() as usize;
        assert_eq!(got.layer, layer, "{name}: filter layer");
        let want_image = &want["images"][0];
        let kept: Vec<u32> = got.kept[0]
            .iter()
            .copied()
            .filter(|&t| (t as usize) < first_recycled)
            .collect();
        assert_eq!(kept, u32s(&want_image["kept"]), "{name}: kept after layer {layer}");
        let mut got_recycled: Vec<Vec<u32>> = got.kept[0]
            .iter()
            .filter(|&&t| t as usize >= first_recycled)
            .map(|&t| image.tokens[t as usize].patches.clone())
            .collect();
        let mut want_recycled: Vec<Vec<u32>> = want_image["recycled"].as_array().map_or(Vec::new(), |r| {
            r.iter().map(|c| cluster_patches(&tokens, &c["members"])).collect()
        });
        got_recycled.sort();
        want_recycled.sort();
        assert_eq!(got_recycled, want_recycled, "{name}: recycled after layer {layer}");
    }

    // Statistics and cache sizes.
    let stats = &json["stats"];
    assert_eq!(
        out.stats.vision_tokens_in as u64,
        stats["vision_tokens_in"].as_u64().unwrap()
    );
    assert_eq!(
        out.stats.after_encoder as u64,
        stats["after_encoder"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(
        out.stats.after_prefill as u64,
        stats["after_prefill"].as_u64().unwrap(),
        "{name}"
    );
    let layers: Vec<usize> = u32s(&stats["layer_vision_tokens"])
        .iter()
        .map(|&n| n as usize)
        .collect();
    assert_eq!(out.stats.layer_vision_tokens, layers, "{name}: vision tokens per layer");
    assert!((out.stats.equal_tokens - stats["equal_tokens"].as_f64().unwrap()).abs() < 1e-9);
    let rows = |key: &str| u32s(&json[key]).iter().map(|&n| n as usize).sum::<usize>() * ROW_BYTES;
    assert_eq!(
        out.stats.kv_bytes_after_prefill,
        rows("cache_rows_after_prefill"),
        "{name}: KV after prefill"
    );
    assert_eq!(
        out.stats.kv_bytes_final,
        rows("cache_rows_after_decode"),
        "{name}: KV after decoding"
    );

    // Logits after prefill, greedy tokens, and what the cache policy did at each step.
    assert_close(name, "prefill logits", &logits, &expected.f32s(&json["prefill_logits"]));
    assert_eq!(out.token_ids, u32s(&json["greedy_ids"]), "{name}: greedy tokens");
    let steps = json["steps"].as_array().unwrap();
    let admitted: Vec<bool> = steps.iter().filter_map(|s| s["admitted"].as_bool()).collect();
    assert_eq!(report.decode_admitted, admitted, "{name}: admissions");
    for (step, want) in steps.iter().enumerate() {
        let got: Vec<u32> = report
            .decode_evicted
            .iter()
            .filter(|e| e.step == step)
            .map(|e| e.token)
            .collect();
        let want = want.get("evicted").map_or(Vec::new(), u32s);
        assert_eq!(got, want, "{name}: evicted at step {step}");
    }
}

/// The patches a recycled cluster covers, from its members' stage-1 token indices.
fn cluster_patches(tokens: &[Vec<u32>], members: &Value) -> Vec<u32> {
    let mut patches: Vec<u32> = u32s(members).iter().flat_map(|&m| tokens[m as usize].clone()).collect();
    patches.sort_unstable();
    patches
}

#[test]
fn every_method_matches_the_reference() {
    let engine = Engine::load(
        &fixtures_dir().join("models/tiny-llava-reduce"),
        LoadOptions {
            threads: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    for name in cases() {
        check(&name, &engine);
    }
}
