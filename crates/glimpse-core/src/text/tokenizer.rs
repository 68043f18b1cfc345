//! tokenizer.json through the `tokenizers` crate, plus the special-token facts from
//! tokenizer_config.json.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

pub struct TextTokenizer {
    inner: Tokenizer,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_token_ids: Vec<u32>,
}

impl TextTokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::model(format!("{} has no tokenizer.json", dir.display())));
        }
        let inner =
            Tokenizer::from_file(&path).map_err(|e| Error::model(format!("cannot load {}: {e}", path.display())))?;

        let config = read_optional_json(dir, "tokenizer_config.json")?;
        let config = config.as_ref();
        let bos_token = config.and_then(|c| special_token(c, "bos_token"));
        let eos_token = config.and_then(|c| special_token(c, "eos_token"));
        let added_tokens = config.map(added_tokens_by_content).unwrap_or_default();

        let mut eos_token_ids = Vec::new();
        if let Some(eos) = &eos_token {
            let id = inner
                .token_to_id(eos)
                .or_else(|| added_tokens.get(eos.as_str()).copied());
            eos_token_ids.extend(id);
        }
        for id in model_eos_token_ids(dir)? {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }

        Ok(TextTokenizer {
            inner,
            bos_token,
            eos_token,
            eos_token_ids,
        })
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::input(format!("cannot tokenize the prompt: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::internal(format!("cannot decode token ids: {e}")))
    }

    /// Whether `id` is a byte-fallback token (`<0xE2>`): decoders turn a run of them into
    /// text only as a whole (a run that is not valid UTF-8 becomes one replacement
    /// character per byte, even where a byte alone would be a character).
    pub fn is_byte_token(&self, id: u32) -> bool {
        self.inner.id_to_token(id).is_some_and(|token| {
            let bytes = token.as_bytes();
            bytes.len() == 6
                && token.starts_with("<0x")
                && token.ends_with('>')
                && bytes[3..5].iter().all(u8::is_ascii_hexdigit)
        })
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Ids that end generation (eos from tokenizer_config.json and generation_config.json).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }
}

/// Parses `dir/name` if it exists; a file that exists but is not valid JSON is an error.
pub(crate) fn read_optional_json(dir: &Path, name: &str) -> Result<Option<Value>> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::model(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::model(format!("{} is not valid JSON: {e}", path.display())))
}

/// A special token from tokenizer_config.json, written either as a plain string or as an
/// AddedToken object `{"content": "</s>", ...}`.
pub(crate) fn special_token(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(token) => Some(token.clone()),
        Value::Object(object) => object.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `added_tokens_decoder` maps ids (as strings) to tokens; turned around for lookups.
fn added_tokens_by_content(config: &Value) -> HashMap<String, u32> {
    let Some(Value::Object(decoder)) = config.get("added_tokens_decoder") else {
        return HashMap::new();
    };
    decoder
        .iter()
        .filter_map(|(id, token)| {
            let content = token.get("content")?.as_str()?;
            Some((content.to_owned(), id.parse().ok()?))
        })
        .collect()
}

/// eos_token_id from generation_config.json, else from config.json (top level or, for
/// multimodal checkpoints, its text_config); an int or a list of ints.
fn model_eos_token_ids(dir: &Path) -> Result<Vec<u32>> {
    if let Some(ids) =
        read_optional_json(dir, "generation_config.json")?.and_then(|config| token_ids(config.get("eos_token_id")?))
    {
        return Ok(ids);
    }
    let Some(config) = read_optional_json(dir, "config.json")? else {
        return Ok(Vec::new());
    };
    let ids = config
        .get("eos_token_id")
        .or_else(|| config.get("text_config")?.get("eos_token_id"))
        .and_then(token_ids);
    Ok(ids.unwrap_or_default())
}

fn token_ids(value: &Value) -> Option<Vec<u32>> {
    let as_id = |v: &Value| v.as_u64().and_then(|id| u32::try_from(id).ok());
    match value {
        Value::Array(items) => Some(items.iter().filter_map(as_id).collect()),
        other => as_id(other).map(|id| vec![id]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::text::test_support::{fixture_json, fixtures_dir, ids, ScratchDir};

    /// A word-level tokenizer small enough to write by hand; `</s>` is a special token.
    const WORD_TOKENIZER: &str = r#"{"version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [
            {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "<|end|>": 5}, "unk_token": "<unk>"}}"#;

    fn model_dir(name: &str) -> ScratchDir {
        let dir = ScratchDir::new(name);
        dir.write("tokenizer.json", WORD_TOKENIZER);
        dir
    }

    #[test]
    fn encodes_and_decodes_through_tokenizer_json() {
        let dir = model_dir("tok-roundtrip");
        let tokenizer = TextTokenizer::from_dir(dir.path()).unwrap();
        // Values from the Python `tokenizers` library on the same tokenizer.json.
        let ids = tokenizer.encode("hello there world</s>", true).unwrap();
        assert_eq!(ids, vec![3, 0, 4, 2]);
        assert_eq!(tokenizer.decode(&ids, true).unwrap(), "hello <unk> world");
        assert_eq!(tokenizer.decode(&ids, false).unwrap(), "hello <unk> world </s>");
        assert_eq!(tokenizer.token_id("world"), Some(4));
        assert_eq!(tokenizer.token_id("nope"), None);
        // No tokenizer_config.json and no model config: nothing special is known.
        assert_eq!(tokenizer.bos_token(), None);
        assert_eq!(tokenizer.eos_token(), None);
        assert!(tokenizer.eos_token_ids().is_empty());
    }

    #[test]
    fn special_tokens_accept_strings_and_objects() {
        let dir = model_dir("tok-special");
        dir.write(
            "tokenizer_config.json",
            r#"{"bos_token": {"__type": "AddedToken", "content": "<s>", "special": true}, "eos_token": "</s>"}"#,
        );
        let tokenizer = TextTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tokenizer.bos_token(), Some("<s>"));
        assert_eq!(tokenizer.eos_token(), Some("</s>"));
        assert_eq!(tokenizer.eos_token_ids(), &[2]);
    }

    #[test]
    fn eos_ids_merge_tokenizer_and_generation_config() {
        let dir = model_dir("tok-eos-generation");
        dir.write("tokenizer_config.json", r#"{"eos_token": "</s>"}"#);
        dir.write("generation_config.json", r#"{"eos_token_id": [5, 2]}"#);
        // generation_config.json wins over config.json.
        dir.write("config.json", r#"{"eos_token_id": 4}"#);
        let tokenizer = TextTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tokenizer.eos_token_ids(), &[2, 5]);
    }

    #[test]
    fn eos_ids_fall_back_to_config_json() {
        let dir = model_dir("tok-eos-config");
        dir.write("generation_config.json", r#"{"bos_token_id": 1}"#);
        dir.write("config.json", r#"{"text_config": {"eos_token_id": 5}}"#);
        assert_eq!(TextTokenizer::from_dir(dir.path()).unwrap().eos_token_ids(), &[5]);
        dir.write(
            "config.json",
            r#"{"eos_token_id": 4, "text_config": {"eos_token_id": 5}}"#,
        );
        assert_eq!(TextTokenizer::from_dir(dir.path()).unwrap().eos_token_ids(), &[4]);
    }

    #[test]
    fn eos_token_missing_from_vocab_resolves_through_added_tokens_decoder() {
        let dir = model_dir("tok-eos-decoder");
        dir.write(
            "tokenizer_config.json",
            r#"{"eos_token": "<|eot|>", "added_tokens_decoder": {"7": {"content": "<|eot|>", "special": true}}}"#,
        );
        assert_eq!(TextTokenizer::from_dir(dir.path()).unwrap().eos_token_ids(), &[7]);
    }

    #[test]
    fn missing_tokenizer_json_names_the_directory() {
        let dir = ScratchDir::new("tok-missing");
        let err = TextTokenizer::from_dir(dir.path()).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Model);
        assert_eq!(err.message, format!("{} has no tokenizer.json", dir.path().display()));
    }

    #[test]
    fn broken_files_are_model_errors_naming_the_file() {
        let dir = ScratchDir::new("tok-broken");
        dir.write("tokenizer.json", "{\"model\": ");
        let err = TextTokenizer::from_dir(dir.path()).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Model);
        assert!(err
            .message
            .starts_with(&format!("cannot load {}", dir.path().join("tokenizer.json").display())));
        assert!(!err.message.contains('\n'));

        dir.write("tokenizer.json", WORD_TOKENIZER);
        dir.write("tokenizer_config.json", "{not json");
        let err = TextTokenizer::from_dir(dir.path()).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Model);
        let path = dir.path().join("tokenizer_config.json");
        assert!(
            err.message
                .starts_with(&format!("{} is not valid JSON", path.display())),
            "{}",
            err.message
        );
    }

    /// The fixture tokenizer's directory and its cases, made with transformers.
    fn golden_cases() -> (TextTokenizer, serde_json::Value) {
        let cases = fixture_json("expected/tokenizer-cases.json");
        let tokenizer_json = fixtures_dir().join(cases["tokenizer"].as_str().unwrap());
        let tokenizer = TextTokenizer::from_dir(tokenizer_json.parent().unwrap()).unwrap();
        (tokenizer, cases)
    }

    #[test]
    fn golden_encode_matches_transformers() {
        let (tokenizer, cases) = golden_cases();
        let cases = cases["cases"].as_array().unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            let text = case["text"].as_str().unwrap();
            assert_eq!(tokenizer.encode(text, true).unwrap(), ids(&case["ids"]), "{text:?}");
            assert_eq!(
                tokenizer.encode(text, false).unwrap(),
                ids(&case["ids_no_special"]),
                "{text:?}"
            );
        }
    }

    #[test]
    fn golden_decode_matches_transformers() {
        let (tokenizer, cases) = golden_cases();
        for case in cases["cases"].as_array().unwrap() {
            let ids = ids(&case["ids"]);
            assert_eq!(
                tokenizer.decode(&ids, false).unwrap(),
                case["decoded"].as_str().unwrap()
            );
            assert_eq!(
                tokenizer.decode(&ids, true).unwrap(),
                case["decoded_skip_special"].as_str().unwrap()
            );
        }
    }

    #[test]
    fn golden_special_tokens() {
        let (tokenizer, cases) = golden_cases();
        let id = |key: &str| cases[key].as_u64().map(|id| id as u32);
        assert_eq!(tokenizer.bos_token(), Some("<s>"));
        assert_eq!(tokenizer.token_id("<s>"), id("bos_token_id"));
        assert_eq!(tokenizer.eos_token(), Some("</s>"));
        assert_eq!(tokenizer.eos_token_ids(), &[id("eos_token_id").unwrap()]);
        assert_eq!(tokenizer.token_id("<image>"), id("image_token_id"));
        assert_eq!(tokenizer.token_id("<pad>"), id("pad_token_id"));
        assert_eq!(tokenizer.token_id("<unk>"), id("unk_token_id"));
    }
}
