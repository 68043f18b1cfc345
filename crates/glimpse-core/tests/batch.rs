//! `Engine::generate_batch` against `Engine::generate`: every request of a batch gets the
//! output it gets alone (text, tokens, finish reason, reduction report, statistics other
//! than timings), whatever else is in the batch and whenever the others finish.

mod common;

use std::sync::atomic::AtomicBool;

use common::{fixtures_dir, load_png};
use glimpse_core::engine::{FinishReason, GenerateOutput};
use glimpse_core::generate::SamplingParams;
use glimpse_core::reduce::ReduceSpec;
use glimpse_core::{ContentPart, Engine, ErrorKind, GenerateRequest, LoadOptions, Message, Result};
use serde_json::Value;

fn engine(model: &str) -> Engine {
    let options = LoadOptions {
        threads: Some(2),
        ..Default::default()
    };
    Engine::load(&fixtures_dir().join("models").join(model), options).unwrap()
}

const IMAGES: [&str; 3] = ["rings-90x72.png", "shapes-64x40.png", "stripes-45x70.png"];

/// A one-image question: `image` picks the fixture image, `prompt` the text (so prompts of
/// different lengths sit in one batch).
fn request(image: usize, prompt: &str, max_tokens: usize, reduce: &str) -> GenerateRequest {
    GenerateRequest {
        messages: vec![Message {
            role: "user".into(),
            content: vec![
                ContentPart::Image,
                ContentPart::Text {
                    text: prompt.to_string(),
                },
            ],
        }],
        images: vec![load_png(
            &fixtures_dir().join("images").join(IMAGES[image % IMAGES.len()]),
        )],
        sampling: SamplingParams::default(),
        max_tokens,
        stop: vec![],
        ignore_eos: true,
        reduce: ReduceSpec::parse(reduce).unwrap(),
    }
}

fn alone(engine: &Engine, request: &GenerateRequest) -> Result<GenerateOutput> {
    engine.generate(request, &AtomicBool::new(false), &mut |_| {})
}

fn together(engine: &Engine, requests: &[GenerateRequest]) -> Vec<Result<GenerateOutput>> {
    engine.generate_batch(requests, &AtomicBool::new(false))
}

/// The output as JSON without what depends on timing.
fn comparable(output: &GenerateOutput) -> Value {
    let mut value = serde_json::to_value(output).unwrap();
    let stats = value["stats"].as_object_mut().unwrap();
    for timing in [
        "ms_encode",
        "ms_prefill",
        "ms_decode",
        "tokens_per_s",
        "prefill_tokens_per_s",
    ] {
        assert!(stats.remove(timing).is_some(), "no {timing} in the stats");
    }
    value
}

/// Each request of `requests` gets the same result in a batch of the first 1, 2, ... of them
/// as alone.
fn assert_batches_match(engine: &Engine, requests: &[GenerateRequest], what: &str) {
    let expected: Vec<Result<Value>> = requests
        .iter()
        .map(|request| alone(engine, request).map(|output| comparable(&output)))
        .collect();
    for n in 1..=requests.len() {
        let outputs = together(engine, &requests[..n]);
        assert_eq!(outputs.len(), n);
        for (r, (got, want)) in outputs.iter().zip(&expected).enumerate() {
            let got = got.as_ref().map(comparable).map_err(Clone::clone);
            assert_eq!(&got, want, "{what}: request {r} in a batch of {n}");
        }
    }
}

#[test]
fn a_batch_gives_each_request_its_own_output() {
    let engine = engine("tiny-llava-mha");
    let requests = [
        request(0, "What is this?", 6, "none"),
        request(1, "Describe the shapes in this picture, one by one.", 9, "none"),
        request(2, "Colours?", 4, "none"),
        request(1, "What is in the middle of the picture?", 7, "none"),
    ];
    assert_batches_match(&engine, &requests, "greedy");

    // Sampling is per request, from its own seed: the batch does not change the draws.
    let sampled: Vec<GenerateRequest> = requests
        .iter()
        .enumerate()
        .map(|(i, request)| GenerateRequest {
            sampling: SamplingParams {
                temperature: 0.9,
                top_p: 0.95,
                seed: 7 + i as u64,
                ..Default::default()
            },
            ..request.clone()
        })
        .collect();
    assert_batches_match(&engine, &sampled, "sampled");
}

#[test]
fn reductions_and_their_cache_policies_act_per_request_in_a_batch() {
    let engine = engine("tiny-llava-reduce");
    let evict = "mustdrop:keep=32,tau=0.58,evict=0.3,warmup=2";
    let requests = [
        request(1, "What colour is the circle? Describe the shapes.", 8, evict),
        request(1, "What colour is the circle? Describe the shapes.", 8, "dynamic"),
        request(2, "Describe the picture.", 5, "mustdrop:keep=16"),
        request(1, "What colour is the circle?", 6, evict),
    ];
    assert_batches_match(&engine, &requests, "reduced");
    // The policies did act while decoding, so the comparison covered them.
    let evicting = alone(&engine, &requests[0]).unwrap();
    assert!(evicting.stats.decode_evicted > 0, "MustDrop evicted nothing");
    let admitting = alone(&engine, &requests[1]).unwrap();
    assert!(admitting.stats.decode_kv_rejected > 0, "Dynamic-LLaVA refused no token");
}

#[test]
fn a_batch_of_a_bf16_model_gives_each_request_its_own_output() {
    let engine = engine("tiny-llava-bf16");
    let requests = [
        request(2, "What is this?", 5, "none"),
        request(0, "Describe it.", 3, "none"),
        request(1, "Which shapes are there, and where are they?", 6, "none"),
    ];
    assert_batches_match(&engine, &requests, "bf16");
}

/// Requests that end at different steps, for every reason, and requests that cannot run at
/// all, in one batch: the others are unaffected.
#[test]
fn requests_that_end_early_or_fail_leave_the_others_unaffected() {
    let engine = engine("tiny-llava-mha");
    let long = request(0, "What is this?", 12, "none");
    // A stop string from the middle of the unstopped answer.
    let text = alone(&engine, &long).unwrap().text;
    let stop: String = text.chars().skip(text.chars().count() / 2).take(2).collect();
    let stopped = GenerateRequest {
        stop: vec![stop.clone()],
        ..request(0, "What is this?", 12, "none")
    };
    let with_eos = GenerateRequest {
        ignore_eos: false,
        ..request(2, "Colours?", 30, "none")
    };
    let too_long = request(1, &"many words ".repeat(600), 4, "none");
    let bad_sampling = GenerateRequest {
        sampling: SamplingParams {
            temperature: -1.0,
            ..Default::default()
        },
        ..request(1, "What is this?", 4, "none")
    };
    let requests = [
        long,
        request(1, "Describe the shapes.", 1, "none"),
        too_long,
        stopped,
        with_eos,
        bad_sampling,
        request(2, "What is in the picture?", 7, "none"),
    ];
    assert_batches_match(&engine, &requests, "mixed");

    let outputs = together(&engine, &requests);
    let ends: Vec<_> = outputs
        .iter()
        .map(|o| {
            o.as_ref()
                .map(|o| (o.finish_reason, o.token_ids.len()))
                .map_err(|e| e.kind)
        })
        .collect();
    assert_eq!(ends[0], Ok((FinishReason::Length, 12)));
    assert_eq!(ends[1], Ok((FinishReason::Length, 1)));
    assert_eq!(ends[2], Err(ErrorKind::Input), "the prompt does not fit the context");
    let (reason, tokens) = ends[3].unwrap();
    assert_eq!(reason, FinishReason::Stop, "stop string {stop:?}");
    assert!(tokens < 12, "stopped after {tokens} tokens");
    assert!(ends[4].is_ok());
    assert_eq!(ends[5], Err(ErrorKind::Usage), "a negative temperature");
    assert_eq!(ends[6], Ok((FinishReason::Length, 7)));
}

#[test]
fn a_cancelled_batch_runs_nothing() {
    let engine = engine("tiny-llava-mha");
    let requests = [
        request(0, "What is this?", 4, "none"),
        request(1, "And this?", 4, "none"),
    ];
    let outputs = engine.generate_batch(&requests, &AtomicBool::new(true));
    for output in outputs {
        assert_eq!(output.unwrap_err().kind, ErrorKind::Cancelled);
    }
    assert!(engine.generate_batch(&[], &AtomicBool::new(false)).is_empty());
}
