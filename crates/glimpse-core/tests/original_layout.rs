//! The original LLaVA checkpoint layout (model_type "llava_llama", as liuhaotian/llava-v1.5-*
//! and Dynamic-LLaVA ship it) runs the same model as the llava-hf layout: an original-layout
//! copy of a fixture model, with its CLIP tower in a separate directory, must give the
//! llava-hf fixture's logits wherever the two formats' prompts and preprocessing agree.

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures_dir, Expected};
use glimpse_core::generate::SamplingParams;
use glimpse_core::model::config::SPLICED_IMAGE_TOKEN;
use glimpse_core::{ContentPart, Engine, ErrorKind, GenerateRequest, LoadOptions, Message};
use safetensors::SafeTensors;
use serde_json::{json, Value};

const MODEL: &str = "tiny-llava-mha";

/// Puts every text part, then `<image>` for each image, in one turn: the image ends the
/// prompt, so both layouts tokenize the same text before it and nothing after it.
const IMAGE_LAST_TEMPLATE: &str = "{% for message in messages %}{{ message['role'].upper() + ': ' }}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] + ' ' }}{% endif %}{% endfor %}{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endfor %}";

fn fixture_dir() -> PathBuf {
    fixtures_dir().join("models").join(MODEL)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// Writes the fixture's tensors to `path`, renamed by `rename` (`None` drops a tensor).
fn write_renamed(path: &Path, rename: impl Fn(&str) -> Option<String>) {
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let renamed: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .tensors()
        .into_iter()
        .filter_map(|(name, view)| rename(&name).map(|new| (new, view)))
        .collect();
    safetensors::serialize_to_file(renamed, None, path).unwrap();
}

/// Original LLaVA's names for the fixture's llava-hf (transformers 5) tensor names; the
/// tower goes under `tower_prefix`, or is left out when that is `None`.
fn original_name(name: &str, tower_prefix: Option<&str>) -> Option<String> {
    if let Some(rest) = name.strip_prefix("vision_tower.") {
        return tower_prefix.map(|prefix| format!("{prefix}{rest}"));
    }
    let renamed = if let Some(rest) = name.strip_prefix("multi_modal_projector.linear_1.") {
        format!("model.mm_projector.0.{rest}")
    } else if let Some(rest) = name.strip_prefix("multi_modal_projector.linear_2.") {
        format!("model.mm_projector.2.{rest}")
    } else if let Some(rest) = name.strip_prefix("language_model.model.") {
        format!("model.{rest}")
    } else if let Some(rest) = name.strip_prefix("language_model.lm_head.") {
        format!("lm_head.{rest}")
    } else {
        panic!("unexpected fixture tensor {name}")
    };
    Some(renamed)
}

/// The fixture's config rewritten as an original-format config.json: flat Llama fields
/// and the mm_* settings LLaVA-1.5 uses, for a tower glimpse does not have built in.
fn original_config() -> Value {
    let hf = read_json(&fixture_dir().join("config.json"));
    let mut config = hf["text_config"].clone();
    let fields = config.as_object_mut().unwrap();
    fields.insert("model_type".into(), json!("llava_llama"));
    fields.insert("architectures".into(), json!(["LlavaLlamaForCausalLM"]));
    fields.insert("mm_vision_tower".into(), json!("tiny/clip-vit-tiny"));
    fields.insert("mm_hidden_size".into(), hf["vision_config"]["hidden_size"].clone());
    fields.insert("mm_projector_type".into(), json!("mlp2x_gelu"));
    fields.insert("mm_vision_select_layer".into(), hf["vision_feature_layer"].clone());
    fields.insert("mm_vision_select_feature".into(), json!("patch"));
    fields.insert("mm_use_im_start_end".into(), json!(false));
    fields.insert("mm_use_im_patch_token".into(), json!(false));
    fields.insert("image_aspect_ratio".into(), json!("pad"));
    config
}

/// A temporary original-layout model directory and CLIP tower directory.
struct OriginalCopy {
    _tmp: tempfile::TempDir,
    model: PathBuf,
    clip: PathBuf,
}

impl OriginalCopy {
    /// `tower_in_checkpoint`: the tower's weights go into the model's checkpoint (as
    /// LLaVA's own training saves them) instead of the CLIP directory. `template`: a chat
    /// template for the model directory (none: the built-in vicuna_v1 applies).
    fn new(tower_in_checkpoint: bool, template: Option<&str>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (model, clip) = (tmp.path().join("llava"), tmp.path().join("clip"));
        std::fs::create_dir(&model).unwrap();
        std::fs::create_dir(&clip).unwrap();

        write_json(&model.join("config.json"), &original_config());
        for file in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            std::fs::copy(fixture_dir().join(file), model.join(file)).unwrap();
        }
        if let Some(template) = template {
            write_json(&model.join("chat_template.json"), &json!({ "chat_template": template }));
        }
        let in_checkpoint = "model.vision_tower.vision_tower.vision_model.";
        write_renamed(&model.join("model.safetensors"), |name| {
            original_name(name, tower_in_checkpoint.then_some(in_checkpoint))
        });

        // The CLIP directory as openai/clip-vit-* has it: a CLIPConfig, the CLIP image
        // processor, and (unless the checkpoint has the tower) `vision_model.*` weights.
        let hf = read_json(&fixture_dir().join("config.json"));
        write_json(
            &clip.join("config.json"),
            &json!({"model_type": "clip", "vision_config": hf["vision_config"]}),
        );
        std::fs::copy(
            fixture_dir().join("preprocessor_config.json"),
            clip.join("preprocessor_config.json"),
        )
        .unwrap();
        if !tower_in_checkpoint {
            write_renamed(&clip.join("model.safetensors"), |name| {
                name.strip_prefix("vision_tower.")
                    .map(|rest| format!("vision_model.{rest}"))
            });
        }
        OriginalCopy { _tmp: tmp, model, clip }
    }

    fn load(&self) -> glimpse_core::Result<Engine> {
        Engine::load(
            &self.model,
            LoadOptions {
                threads: Some(1),
                vision_tower: Some(self.clip.clone()),
                ..Default::default()
            },
        )
    }
}

/// A llava-hf copy of the fixture with the given template, whose image processor pads to
/// a square with the mean colour as original LLaVA's `image_aspect_ratio: "pad"` does.
fn llava_hf_copy(template: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llava-hf");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    write_json(&dir.join("chat_template.json"), &json!({ "chat_template": template }));
    std::fs::remove_file(dir.join("processor_config.json")).unwrap();
    let mut processor = read_json(&dir.join("preprocessor_config.json"));
    processor["image_processor_type"] = json!("LlavaImageProcessor");
    processor["do_pad"] = json!(true);
    write_json(&dir.join("preprocessor_config.json"), &processor);
    (tmp, dir)
}

/// The fixture's question and its 64×40 image, image after the text.
fn request() -> GenerateRequest {
    let expected = Expected::load(MODEL);
    GenerateRequest {
        messages: vec![Message {
            role: "user".into(),
            content: vec![
                ContentPart::Text {
                    text: "What is shown in this image?".into(),
                },
                ContentPart::Image,
            ],
        }],
        images: expected.images(),
        sampling: SamplingParams::default(),
        max_tokens: 1,
        stop: vec![],
        ignore_eos: true,
        reduce: Default::default(),
    }
}

fn assert_same_logits(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "vocabulary size");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-6 * scale, "logits differ by {worst} (max |logit| {scale})");
}

#[test]
fn separate_clip_directory_gives_the_llava_hf_logits() {
    let original = OriginalCopy::new(false, Some(IMAGE_LAST_TEMPLATE)).load().unwrap();
    let (_tmp, hf_dir) = llava_hf_copy(IMAGE_LAST_TEMPLATE);
    let hf = Engine::load(
        &hf_dir,
        LoadOptions {
            threads: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let request = request();

    // The same prompt, the image slots aside.
    let hf_image = Expected::load(MODEL).json["image_token_index"].as_u64().unwrap() as u32;
    let hf_ids = hf.prompt_ids(&request.messages, &request.images).unwrap();
    let ids = original.prompt_ids(&request.messages, &request.images).unwrap();
    let as_hf: Vec<u32> = ids
        .iter()
        .map(|&id| if id == SPLICED_IMAGE_TOKEN { hf_image } else { id })
        .collect();
    assert_eq!(as_hf, hf_ids);
    assert_eq!(ids.iter().filter(|&&id| id == SPLICED_IMAGE_TOKEN).count(), 144);

    let want = hf.next_token_logits(&request).unwrap();
    assert_same_logits(&original.next_token_logits(&request).unwrap(), &want);
    assert_eq!(original.info().architecture, "LlavaLlamaForCausalLM");
}

#[test]
fn a_tower_inside_the_checkpoint_wins_over_the_clip_directory() {
    // The CLIP directory has no weights here, so loading only works from the checkpoint.
    let copy = OriginalCopy::new(true, Some(IMAGE_LAST_TEMPLATE));
    assert!(!copy.clip.join("model.safetensors").exists());
    let original = copy.load().unwrap();
    let (_tmp, hf_dir) = llava_hf_copy(IMAGE_LAST_TEMPLATE);
    let hf = Engine::load(
        &hf_dir,
        LoadOptions {
            threads: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let request = request();
    assert_same_logits(
        &original.next_token_logits(&request).unwrap(),
        &hf.next_token_logits(&request).unwrap(),
    );
}

/// With no template of its own the model gets LLaVA's vicuna_v1 prompt, tokenized as
/// LLaVA's `tokenizer_image_token` does. The ids were computed with the Python
/// `tokenizers` library on the fixture's tokenizer.json and LLaVA's function (the text
/// after `<image>` is tokenized on its own, so it starts with its own "▁", id 353).
#[test]
fn prompt_ids_follow_tokenizer_image_token_with_the_vicuna_v1_prompt() {
    let engine = OriginalCopy::new(false, None).load().unwrap();
    let expected = Expected::load(MODEL);
    let messages = expected.messages();
    let reference: [i64; 124] = [
        1, 376, 373, 375, 368, 327, 342, 345, 414, 336, 357, 373, 343, 362, 370, 341, 353, 343, 341, 508, 391, 357,
        336, 357, 340, 342, 331, 328, 331, 325, 331, 323, 334, 388, 489, 462, 331, 366, 336, 325, 327, 357, 341, 341,
        331, 341, 342, 372, 342, 272, 396, 357, 341, 341, 331, 341, 342, 372, 342, 353, 329, 331, 344, 361, 353, 356,
        334, 338, 328, 343, 334, 270, 387, 327, 342, 323, 331, 369, 326, 270, 391, 385, 337, 334, 434, 327, 357, 336,
        341, 345, 508, 341, 473, 359, 353, 343, 341, 508, 265, 341, 353, 425, 361, 342, 509, 336, 341, 272, 404, 284,
        353, -200, 353, 13, 389, 363, 455, 433, 388, 441, 371, 289, 408, 284,
    ];
    // LLaVA's -200 sentinel becomes one slot per image token.
    let want: Vec<u32> = reference
        .iter()
        .flat_map(|&id| match id {
            -200 => vec![SPLICED_IMAGE_TOKEN; 144],
            id => vec![id as u32],
        })
        .collect();
    assert_eq!(engine.prompt_ids(&messages, &expected.images()).unwrap(), want);
}

#[test]
fn a_missing_tower_asks_for_vision_tower() {
    let copy = OriginalCopy::new(false, None);
    let err = Engine::load(&copy.model, LoadOptions::default()).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Model);
    assert_eq!(
        err.message,
        format!(
            "{}: the vision tower 'tiny/clip-vit-tiny' is not built into glimpse; pass --vision-tower DIR with a local copy of it",
            copy.model.join("config.json").display()
        )
    );

    // A tower glimpse knows the shape of, but whose weights are nowhere.
    let mut config = original_config();
    config["mm_vision_tower"] = json!("openai/clip-vit-large-patch14-336");
    config["mm_hidden_size"] = json!(1024);
    write_json(&copy.model.join("config.json"), &config);
    let err = Engine::load(&copy.model, LoadOptions::default()).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Model);
    assert_eq!(
        err.message,
        format!(
            "{}: the checkpoint has no vision tower (config.json names 'openai/clip-vit-large-patch14-336'); pass --vision-tower DIR with a local copy of it",
            copy.model.display()
        )
    );

    let err = Engine::load(
        &copy.model,
        LoadOptions {
            threads: Some(1),
            vision_tower: Some(copy.model.join("nowhere")),
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.kind, ErrorKind::Usage);
    assert_eq!(
        err.message,
        format!(
            "vision tower directory {} does not exist",
            copy.model.join("nowhere").display()
        )
    );
}
