//! Shared helpers for tests that read the committed golden fixtures.

// Each test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

use std::path::PathBuf;

use glimpse_core::engine::RgbImage;
use glimpse_core::generate::SamplingParams;
use glimpse_core::reduce::ReduceSpec;
use glimpse_core::{ContentPart, GenerateRequest, Message};
use serde_json::Value;

/// The fixtures in this checkout, or under `GLIMPSE_FIXTURES` when set: the GPU checks
/// run as prebuilt binaries on machines where this checkout's path does not exist.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("GLIMPSE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test/fixtures"))
}

/// Golden outputs recorded from transformers for one fixture model.
pub struct Expected {
    pub json: Value,
}

impl Expected {
    pub fn load(model: &str) -> Expected {
        let path = fixtures_dir().join("expected").join(format!("{model}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Expected {
            json: serde_json::from_str(&text).unwrap(),
        }
    }

    pub fn model_dir(&self) -> PathBuf {
        fixtures_dir().join("models").join(self.json["model"].as_str().unwrap())
    }

    pub fn u32s(&self, key: &str) -> Vec<u32> {
        self.json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    }

    pub fn f32s(&self, value: &Value) -> Vec<f32> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    }

    pub fn messages(&self) -> Vec<Message> {
        self.json["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(message_from_json)
            .collect()
    }

    /// transformers' penalised greedy run: the repetition penalty and the tokens it gave.
    pub fn penalised_greedy(&self) -> (f32, Vec<u32>) {
        let golden = &self.json["repetition_penalty"];
        let ids = golden["greedy_ids"]
            .as_array()
            .expect("repetition_penalty.greedy_ids")
            .iter()
            .map(|id| id.as_u64().expect("token id") as u32)
            .collect();
        (
            golden["penalty"].as_f64().expect("repetition_penalty.penalty") as f32,
            ids,
        )
    }

    /// The fixture's prompt, greedy, `max_tokens` long whatever the end-of-sequence token
    /// says, reduced by `reduce`.
    pub fn request(&self, reduce: &str, max_tokens: usize) -> GenerateRequest {
        GenerateRequest {
            messages: self.messages(),
            images: self.images(),
            sampling: SamplingParams::default(),
            max_tokens,
            stop: vec![],
            ignore_eos: true,
            reduce: ReduceSpec::parse(reduce).unwrap(),
        }
    }

    pub fn images(&self) -> Vec<RgbImage> {
        let images = self.json["images"].as_array().unwrap();
        images
            .iter()
            .map(|p| load_png(&fixtures_dir().join(p.as_str().unwrap())))
            .collect()
    }
}

fn message_from_json(m: &Value) -> Message {
    let content = match &m["content"] {
        Value::String(text) => vec![ContentPart::Text { text: text.clone() }],
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p["type"].as_str().unwrap() {
                "image" => ContentPart::Image,
                "text" => ContentPart::Text {
                    text: p["text"].as_str().unwrap().to_string(),
                },
                other => panic!("unknown content part {other}"),
            })
            .collect(),
        other => panic!("unexpected content {other}"),
    };
    Message {
        role: m["role"].as_str().unwrap().to_string(),
        content,
    }
}

/// Decodes a fixture PNG to 8-bit RGB (the CLI does this with sharp).
pub fn load_png(path: &std::path::Path) -> RgbImage {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let data: Vec<u8> = buf[..info.buffer_size()]
        .chunks(channels)
        .flat_map(|px| match channels {
            1 | 2 => [px[0], px[0], px[0]],
            _ => [px[0], px[1], px[2]],
        })
        .collect();
    RgbImage {
        width: info.width,
        height: info.height,
        data,
    }
}
