//! The generation request as JavaScript sends it, and its conversion to the engine's.

use glimpse_core::engine::{ContentPart, GenerateRequest, Message, RgbImage};
use glimpse_core::generate::SamplingParams;
use glimpse_core::reduce::ReduceSpec;
use glimpse_core::{Error, Result};
use napi::bindgen_prelude::{Either, Uint8Array};
use napi_derive::napi;

/// Used when the request leaves `maxTokens` out.
pub const DEFAULT_MAX_TOKENS: u32 = 256;

/// One part of a message in Hugging Face's format: `{type: 'image'}` or `{type: 'text', text}`.
#[napi(object, object_to_js = false)]
pub struct ContentPartInput {
    #[napi(js_name = "type", ts_type = "'image' | 'text'")]
    pub kind: String,
    pub text: Option<String>,
}

/// A chat message; a plain string content is shorthand for one text part.
#[napi(object, object_to_js = false)]
pub struct MessageInput {
    pub role: String,
    pub content: Either<String, Vec<ContentPartInput>>,
}

/// A decoded image: 8-bit RGB, row-major, `width * height * 3` bytes.
#[napi(object, object_to_js = false)]
pub struct ImageInput {
    pub width: u32,
    pub height: u32,
    pub data: Uint8Array,
}

/// One generation. Image parts in `messages` are filled, in order, by `images`.
/// Sampling fields left out keep their neutral value (greedy decoding).
#[napi(object, object_to_js = false)]
pub struct GenerateRequestInput {
    pub messages: Vec<MessageInput>,
    pub images: Option<Vec<ImageInput>>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_k: Option<u32>,
    pub top_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub seed: Option<f64>,
    pub stop: Option<Vec<String>>,
    /// Keep generating through end-of-sequence tokens (for benchmarks); off by default.
    pub ignore_eos: Option<bool>,
    /// Visual-token reduction spec (`mustdrop:keep=64`); none by default.
    pub reduce: Option<String>,
}

impl GenerateRequestInput {
    /// Copies the request out of JS memory (so the worker thread owns everything it reads)
    /// and checks what only the binding can check; value ranges are the engine's business.
    pub fn into_engine_request(self) -> Result<GenerateRequest> {
        let messages = self.messages.into_iter().map(convert_message).collect::<Result<_>>()?;
        let images = self
            .images
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, image)| convert_image(index, image))
            .collect::<Result<_>>()?;
        let neutral = SamplingParams::default();
        let sampling = SamplingParams {
            temperature: self.temperature.map_or(neutral.temperature, |t| t as f32),
            top_k: self.top_k.map_or(neutral.top_k, |k| k as usize),
            top_p: self.top_p.map_or(neutral.top_p, |p| p as f32),
            repetition_penalty: self.repetition_penalty.map_or(neutral.repetition_penalty, |r| r as f32),
            seed: self.seed.map_or(Ok(neutral.seed), convert_seed)?,
        };
        Ok(GenerateRequest {
            messages,
            images,
            sampling,
            max_tokens: self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as usize,
            stop: self.stop.unwrap_or_default(),
            ignore_eos: self.ignore_eos.unwrap_or(false),
            reduce: self
                .reduce
                .as_deref()
                .map_or(Ok(ReduceSpec::default()), ReduceSpec::parse)?,
        })
    }
}

fn convert_message(message: MessageInput) -> Result<Message> {
    let content = match message.content {
        Either::A(text) => vec![ContentPart::Text { text }],
        Either::B(parts) => parts.into_iter().map(convert_part).collect::<Result<_>>()?,
    };
    Ok(Message {
        role: message.role,
        content,
    })
}

fn convert_part(part: ContentPartInput) -> Result<ContentPart> {
    match (part.kind.as_str(), part.text) {
        ("image", _) => Ok(ContentPart::Image),
        ("text", Some(text)) => Ok(ContentPart::Text { text }),
        ("text", None) => Err(Error::usage("a text content part has no 'text' field")),
        (other, _) => Err(Error::usage(format!(
            "unknown content part type '{other}' (expected 'image' or 'text')"
        ))),
    }
}

fn convert_image(index: usize, image: &ImageInput) -> Result<RgbImage> {
    let expected = image.width as u64 * image.height as u64 * 3;
    if image.width == 0 || image.height == 0 || image.data.len() as u64 != expected {
        return Err(Error::usage(format!(
            "image {}: {}x{} RGB needs {expected} bytes, got {}",
            index + 1,
            image.width,
            image.height,
            image.data.len()
        )));
    }
    Ok(RgbImage {
        width: image.width,
        height: image.height,
        data: image.data.to_vec(),
    })
}

/// JS numbers are doubles: only integers up to 2^53 survive the trip exactly.
fn convert_seed(seed: f64) -> Result<u64> {
    const MAX_EXACT: f64 = 9_007_199_254_740_991.0;
    if seed.fract() == 0.0 && (0.0..=MAX_EXACT).contains(&seed) {
        Ok(seed as u64)
    } else {
        Err(Error::usage(format!(
            "seed must be a whole number from 0 to 2^53-1, got {seed}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glimpse_core::ErrorKind;

    fn text_part(text: &str) -> ContentPartInput {
        ContentPartInput {
            kind: "text".into(),
            text: Some(text.into()),
        }
    }

    fn request(messages: Vec<MessageInput>, images: Vec<ImageInput>) -> GenerateRequestInput {
        GenerateRequestInput {
            messages,
            images: Some(images),
            max_tokens: None,
            temperature: None,
            top_k: None,
            top_p: None,
            repetition_penalty: None,
            seed: None,
            stop: None,
            ignore_eos: None,
            reduce: None,
        }
    }

    fn image(width: u32, height: u32, bytes: usize) -> ImageInput {
        ImageInput {
            width,
            height,
            data: Uint8Array::new((0..bytes).map(|i| i as u8).collect()),
        }
    }

    #[test]
    fn converts_messages_images_and_defaults() {
        let input = request(
            vec![
                MessageInput {
                    role: "system".into(),
                    content: Either::A("Be brief.".into()),
                },
                MessageInput {
                    role: "user".into(),
                    content: Either::B(vec![
                        ContentPartInput {
                            kind: "image".into(),
                            text: None,
                        },
                        text_part("What is this?"),
                    ]),
                },
            ],
            vec![image(2, 1, 6)],
        );
        let converted = input.into_engine_request().unwrap();
        assert_eq!(
            converted.messages,
            vec![
                Message {
                    role: "system".into(),
                    content: vec![ContentPart::Text {
                        text: "Be brief.".into()
                    }]
                },
                Message {
                    role: "user".into(),
                    content: vec![
                        ContentPart::Image,
                        ContentPart::Text {
                            text: "What is this?".into()
                        }
                    ]
                },
            ]
        );
        assert_eq!(
            converted.images,
            vec![RgbImage {
                width: 2,
                height: 1,
                data: vec![0, 1, 2, 3, 4, 5]
            }]
        );
        assert_eq!(converted.max_tokens, DEFAULT_MAX_TOKENS as usize);
        assert_eq!(converted.sampling, SamplingParams::default());
        assert!(converted.stop.is_empty());
        assert!(!converted.ignore_eos);
    }

    #[test]
    fn passes_sampling_settings_through() {
        let mut input = request(vec![], vec![]);
        input.max_tokens = Some(16);
        input.temperature = Some(0.5);
        input.top_k = Some(40);
        input.top_p = Some(0.75);
        input.repetition_penalty = Some(1.25);
        input.seed = Some(42.0);
        input.stop = Some(vec!["\n\n".into()]);
        input.ignore_eos = Some(true);
        let converted = input.into_engine_request().unwrap();
        assert_eq!(
            converted.sampling,
            SamplingParams {
                temperature: 0.5,
                top_k: 40,
                top_p: 0.75,
                repetition_penalty: 1.25,
                seed: 42
            }
        );
        assert_eq!(converted.max_tokens, 16);
        assert_eq!(converted.stop, vec!["\n\n".to_string()]);
        assert!(converted.ignore_eos);
    }

    #[test]
    fn rejects_image_bytes_that_do_not_match_the_size() {
        let err = request(vec![], vec![image(2, 2, 12), image(2, 2, 11)])
            .into_engine_request()
            .unwrap_err();
        assert_eq!(err, Error::usage("image 2: 2x2 RGB needs 12 bytes, got 11"));
    }

    #[test]
    fn rejects_unknown_part_types_and_text_parts_without_text() {
        let message = |part| MessageInput {
            role: "user".into(),
            content: Either::B(vec![part]),
        };
        let err = request(
            vec![message(ContentPartInput {
                kind: "video".into(),
                text: None,
            })],
            vec![],
        )
        .into_engine_request()
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage);
        assert!(err.message.contains("'video'"), "{}", err.message);

        let err = request(
            vec![message(ContentPartInput {
                kind: "text".into(),
                text: None,
            })],
            vec![],
        )
        .into_engine_request()
        .unwrap_err();
        assert_eq!(err, Error::usage("a text content part has no 'text' field"));
    }

    #[test]
    fn seeds_must_be_exact_whole_numbers() {
        assert_eq!(convert_seed(0.0), Ok(0));
        assert_eq!(convert_seed(9_007_199_254_740_991.0), Ok(9_007_199_254_740_991));
        for bad in [-1.0, 1.5, f64::NAN, 1e300] {
            assert_eq!(convert_seed(bad).unwrap_err().kind, ErrorKind::Usage, "{bad}");
        }
    }
}
