//! Bad input reaches the caller as one clear error of the right kind, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use common::{fixtures_dir, Expected};
use glimpse_core::generate::SamplingParams;
use glimpse_core::{ContentPart, Engine, ErrorKind, GenerateRequest, LoadOptions, Message};
use safetensors::SafeTensors;

const MODEL: &str = "tiny-llava-mha";

/// A private copy of the fixture model that a test may break.
fn model_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(fixtures_dir().join("models").join(MODEL)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    (tmp, dir)
}

fn one_thread() -> LoadOptions {
    LoadOptions {
        threads: Some(1),
        ..Default::default()
    }
}

fn load_error(dir: &Path) -> glimpse_core::Error {
    match Engine::load(dir, one_thread()) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e,
    }
}

fn assert_one_line(e: &glimpse_core::Error, kind: ErrorKind, needle: &str) {
    assert_eq!(e.kind, kind, "{e}");
    assert!(e.message.contains(needle), "'{e}' does not mention '{needle}'");
    assert!(!e.message.contains('\n'), "'{e}' spans several lines");
}

/// Rewrites model.safetensors through `edit`, which may drop or replace tensors.
fn rewrite_weights(dir: &Path, edit: impl Fn(&str, Vec<usize>) -> Option<Vec<usize>>) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        match edit(&name, view.shape().to_vec()) {
            None => {}
            Some(shape) if shape == view.shape() => kept.push((name, view)),
            Some(shape) => {
                let n: usize = shape.iter().product();
                owned.push((name, shape, vec![0u8; n * 4]));
            }
        }
    }
    let owned_views: Vec<_> = owned
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let all: Vec<_> = kept.into_iter().chain(owned_views).collect();
    safetensors::serialize_to_file(all, None, &dir.join("rewritten.safetensors")).unwrap();
    std::fs::rename(dir.join("rewritten.safetensors"), &path).unwrap();
}

fn edit_json(path: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_string(&value).unwrap()).unwrap();
}

#[test]
fn missing_model_files_are_named() {
    let (_tmp, dir) = model_copy();
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    assert_one_line(&load_error(&dir), ErrorKind::Model, "tokenizer.json");

    let (_tmp, dir) = model_copy();
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert_one_line(&load_error(&dir), ErrorKind::Model, "config.json");

    assert_one_line(
        &load_error(Path::new("/nonexistent/model")),
        ErrorKind::Model,
        "/nonexistent/model",
    );
}

#[test]
fn missing_or_misshapen_tensors_are_named() {
    let q = "language_model.model.layers.1.self_attn.q_proj.weight";
    let (_tmp, dir) = model_copy();
    rewrite_weights(&dir, |name, shape| (name != q).then_some(shape));
    assert_one_line(&load_error(&dir), ErrorKind::Model, "layers.1.self_attn.q_proj.weight");

    let (_tmp, dir) = model_copy();
    rewrite_weights(&dir, |name, shape| {
        Some(if name == q { vec![shape[0], shape[1] + 1] } else { shape })
    });
    assert_one_line(&load_error(&dir), ErrorKind::Model, "shape");
}

#[test]
fn truncated_weights_file_is_reported() {
    let (_tmp, dir) = model_copy();
    let path = dir.join("model.safetensors");
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    assert_one_line(&load_error(&dir), ErrorKind::Model, "model.safetensors");
}

#[test]
fn unsupported_architecture_is_refused() {
    let (_tmp, dir) = model_copy();
    edit_json(&dir.join("config.json"), |c| {
        c["model_type"] = "qwen2_vl".into();
        c["architectures"] = serde_json::json!(["Qwen2VLForConditionalGeneration"]);
    });
    assert_one_line(&load_error(&dir), ErrorKind::Model, "unsupported");
}

fn request(messages: Vec<Message>, n_images: usize) -> GenerateRequest {
    let image = Expected::load(MODEL).images().remove(0);
    GenerateRequest {
        messages,
        images: vec![image; n_images],
        sampling: SamplingParams::default(),
        max_tokens: 4,
        stop: vec![],
        ignore_eos: false,
        reduce: Default::default(),
    }
}

fn user(parts: Vec<ContentPart>) -> Vec<Message> {
    vec![Message {
        role: "user".into(),
        content: parts,
    }]
}

fn text(t: &str) -> ContentPart {
    ContentPart::Text { text: t.into() }
}

fn generate_error(engine: &Engine, request: &GenerateRequest) -> glimpse_core::Error {
    match engine.generate(request, &AtomicBool::new(false), &mut |_| {}) {
        Ok(out) => panic!("generation succeeded: {:?}", out.text),
        Err(e) => e,
    }
}

#[test]
fn images_and_image_slots_must_match() {
    let engine = Engine::load(&fixtures_dir().join("models").join(MODEL), one_thread()).unwrap();
    let one_slot = user(vec![ContentPart::Image, text("what is this?")]);
    assert_one_line(
        &generate_error(&engine, &request(one_slot.clone(), 2)),
        ErrorKind::Usage,
        "image",
    );
    assert_one_line(
        &generate_error(&engine, &request(one_slot, 0)),
        ErrorKind::Usage,
        "image",
    );
    // an `<image>` typed into the text is a slot no image fills
    let typed = user(vec![ContentPart::Image, text("compare with <image>")]);
    assert_one_line(
        &generate_error(&engine, &request(typed, 1)),
        ErrorKind::Usage,
        "<image>",
    );
}

#[test]
fn prompt_longer_than_the_context_is_an_input_error() {
    let (_tmp, dir) = model_copy();
    edit_json(&dir.join("config.json"), |c| {
        c["text_config"]["max_position_embeddings"] = 64.into()
    });
    let engine = Engine::load(&dir, one_thread()).unwrap();
    let e = generate_error(&engine, &request(user(vec![ContentPart::Image, text("hi")]), 1));
    assert_one_line(&e, ErrorKind::Input, "context window");
}

#[test]
fn corrupt_pixel_buffer_is_an_input_error() {
    let engine = Engine::load(&fixtures_dir().join("models").join(MODEL), one_thread()).unwrap();
    let mut req = request(user(vec![ContentPart::Image, text("hi")]), 1);
    req.images[0].data.truncate(10);
    assert_eq!(generate_error(&engine, &req).kind, ErrorKind::Input);
}
