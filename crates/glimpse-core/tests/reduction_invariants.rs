//! Properties every reduction must have, whatever its scores: a plan that keeps every
//! token changes nothing, budgets are met exactly, key tokens survive, survivors keep
//! their positions, and cache policies only ever remove what they report.

mod common;

use std::sync::atomic::AtomicBool;

use common::Expected;
use glimpse_core::engine::GenerateOutput;
use glimpse_core::{Engine, GenerateRequest, LoadOptions};

fn engine(expected: &Expected) -> Engine {
    Engine::load(
        &expected.model_dir(),
        LoadOptions {
            threads: Some(2),
            ..Default::default()
        },
    )
    .unwrap()
}

fn generate(engine: &Engine, request: &GenerateRequest) -> GenerateOutput {
    engine.generate(request, &AtomicBool::new(false), &mut |_| {}).unwrap()
}

#[test]
fn plans_that_keep_everything_give_the_unreduced_logits() {
    let expected = Expected::load("tiny-llava-mha");
    let engine = engine(&expected);
    let none = engine.next_token_logits(&expected.request("none", 1)).unwrap();
    for spec in [
        "fastv:k=1,keep=144",
        "fastv:k=2,r=0",
        "mustdrop:keep=144,merge=off,layers=0/1,evict=0",
        "mustdrop:g=0,i=0,merge=off,layers=0",
    ] {
        let logits = engine.next_token_logits(&expected.request(spec, 1)).unwrap();
        assert_eq!(logits, none, "{spec}: logits differ from the unreduced run");
    }
    // Greedy decoding through the policies too.
    let plain = generate(&engine, &expected.request("none", 8));
    let kept = generate(
        &engine,
        &expected.request("mustdrop:keep=144,merge=off,layers=0/1,evict=0", 8),
    );
    assert_eq!(kept.token_ids, plain.token_ids);
}

#[test]
fn budgets_are_met_and_key_tokens_survive() {
    let expected = Expected::load("tiny-llava-mha");
    let engine = engine(&expected);
    for (spec, keep) in [
        ("fastv:k=1,keep=20", 20),
        ("fastv:k=2,r=0.75", 36),
        ("mustdrop:keep=30,layers=0/1,tau=0.5,evict=0", 30),
        ("mustdrop:keep=12,merge=off,layers=0/1,evict=0", 12),
    ] {
        let out = generate(&engine, &expected.request(spec, 2));
        assert_eq!(out.stats.after_prefill, keep, "{spec}");
        let last = out.reduction.filters.last().unwrap();
        assert_eq!(last.kept[0].len(), keep, "{spec}");
        let image = &out.reduction.images[0];
        for key in &image.keys {
            assert!(last.kept[0].contains(key), "{spec}: key token {key} was dropped");
            assert_eq!(image.tokens[*key as usize].dropped_after_layer, None);
        }
        // Every token is either kept by the last filter or reported dropped.
        for (i, token) in image.tokens.iter().enumerate() {
            assert_eq!(
                token.dropped_after_layer.is_none(),
                last.kept[0].contains(&(i as u32)),
                "{spec}: token {i}"
            );
        }
    }
}

#[test]
fn merging_covers_every_patch_once_and_reports_equal_tokens() {
    let expected = Expected::load("tiny-llava-mha");
    let engine = engine(&expected);
    let out = generate(
        &engine,
        &expected.request("mustdrop:keep=30,layers=1,tau=0.5,evict=0", 1),
    );
    let image = &out.reduction.images[0];
    let mut patches: Vec<u32> = image.tokens.iter().flat_map(|t| t.patches.clone()).collect();
    patches.sort_unstable();
    assert_eq!(patches, (0..144).collect::<Vec<u32>>());
    let merged = image.tokens.iter().filter(|t| t.patches.len() == 9).count();
    let over = image.window_similarity.iter().filter(|&&s| s >= 0.5).count();
    assert_eq!(merged, over);
    assert!(
        merged > 0,
        "the fixture image should merge some windows at tau=0.5: {:?}",
        image.window_similarity
    );
    assert_eq!(out.stats.after_encoder, 144 - 8 * merged);
    // Layers 0 and 1 processed every stage-1 token; the filter ran after layer 1.
    assert_eq!(out.stats.layer_vision_tokens, vec![out.stats.after_encoder; 2]);
    assert_eq!(out.stats.vision_tokens_in, 144);
}

#[test]
fn bad_budgets_are_usage_errors() {
    let expected = Expected::load("tiny-llava-mha");
    let engine = engine(&expected);
    let err = engine
        .next_token_logits(&expected.request("fastv:k=1,keep=145", 1))
        .unwrap_err();
    assert!(err.message.contains("keep=145"), "{}", err.message);
    let err = engine
        .next_token_logits(&expected.request("mustdrop:keep=8,layers=2", 1))
        .unwrap_err();
    assert!(err.message.contains("layer 2 does not exist"), "{}", err.message);
    let err = engine
        .next_token_logits(&expected.request("mustdrop:keep=2,layers=0,merge=off", 1))
        .unwrap_err();
    assert!(err.message.contains("below the 12 key tokens"), "{}", err.message);
    let err = engine.next_token_logits(&expected.request("dynamic", 1)).unwrap_err();
    assert!(
        err.message.contains("needs Dynamic-LLaVA's trained predictors"),
        "{}",
        err.message
    );
    assert_eq!(err.kind, glimpse_core::ErrorKind::Usage);
}

#[test]
fn sparsevlm_specs_that_do_not_fit_the_model_are_usage_errors() {
    let expected = Expected::load("reduce-sparsevlm-budget");
    let engine = engine(&expected);
    let fails = |spec: &str| {
        engine
            .next_token_logits(&expected.request(spec, 1))
            .unwrap_err()
            .message
    };
    // 144 tokens to 4 in one step: deleting all 144 would still recycle 5.
    let e = fails("sparsevlm:keep=4,layers=2");
    assert!(e.contains("keep=4 leaves no room for the 5 recycled tokens"), "{e}");
    let e = fails("sparsevlm:keep=145");
    assert!(e.contains("keep=145 must be between 1 and the 144 tokens"), "{e}");
    let e = fails("sparsevlm:scale=8,bias=0,layers=2/20");
    assert!(e.contains("layer 20 does not exist"), "{e}");
}
