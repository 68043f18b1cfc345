//! Streams text for one token at a time without ever splitting a multi-byte character.
//!
//! Decoding tokens one by one is wrong for two reasons: SentencePiece decoders drop the
//! leading space of the first token they see, and byte-fallback tokens (`<0xE2>`) only
//! form text together: a run of them is decoded as a whole, and a run that is not valid
//! UTF-8 becomes one replacement character per byte, even bytes that alone would be
//! characters. So each step decodes a short window of recent tokens twice, with and
//! without the new ones, and emits the difference once the window no longer ends inside a
//! run of byte tokens or a partial character. The window starts at the token after the last-but-one emission, so it
//! holds a little context and stays short: no step re-decodes the whole history.

use crate::error::Result;
use crate::text::TextTokenizer;

/// What a decoder produces for bytes that do not (yet) form a valid character.
const REPLACEMENT: char = '\u{FFFD}';

pub struct IncrementalDetokenizer<'a> {
    tokenizer: &'a TextTokenizer,
    ids: Vec<u32>,
    /// Start of the decode window: context whose text was already emitted.
    prefix_offset: usize,
    /// Tokens from here on have not been emitted yet.
    read_offset: usize,
}

impl<'a> IncrementalDetokenizer<'a> {
    pub fn new(tokenizer: &'a TextTokenizer) -> Self {
        IncrementalDetokenizer {
            tokenizer,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// Adds one generated token; returns the newly completed text (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        if self.tokenizer.is_byte_token(id) {
            // The run may go on, and what it decodes to depends on all of it.
            return Ok(String::new());
        }
        let (emitted, full) = self.decode_window()?;
        if full.len() <= emitted.len() || full.ends_with(REPLACEMENT) {
            // Nothing new, or the new tokens end inside a character: wait for more.
            return Ok(String::new());
        }
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(new_text(&emitted, full))
    }

    /// End of the stream: returns whatever was held back, including the replacement
    /// characters of a multi-byte character that never completed.
    pub fn finish(&mut self) -> Result<String> {
        let (emitted, full) = self.decode_window()?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(new_text(&emitted, full))
    }

    /// Text of the window's already-emitted part, and of the whole window.
    fn decode_window(&self) -> Result<(String, String)> {
        let emitted = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..self.read_offset], true)?;
        let full = self.tokenizer.decode(&self.ids[self.prefix_offset..], true)?;
        Ok((emitted, full))
    }
}

/// The part of `full` after the already-emitted `emitted`. Both decode the same leading
/// tokens, so `emitted` is a prefix of `full` except when a decoder rewrites earlier text
/// because of later tokens; then the bytes are cut at the nearest character boundary
/// rather than panicking.
fn new_text(emitted: &str, mut full: String) -> String {
    let mut start = emitted.len().min(full.len());
    while !full.is_char_boundary(start) {
        start += 1;
    }
    full.split_off(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_support::{fixture_json, fixtures_dir, ids, strings, ScratchDir};

    /// A SentencePiece-style BPE with byte fallback and Llama's decoder chain (▁ → space,
    /// byte fallback, fuse, strip one leading space). Ids: <unk> 0, <s> 1, </s> 2, ▁Hello 3,
    /// ▁w 4, <0xC3> 5, <0xB6> 6 (ö), <0xE2> 7, <0x82> 8, <0xAC> 9 (€), rld 10, ▁ 11, ! 12.
    const LLAMA_STYLE_TOKENIZER: &str = r#"{"version": "1.0", "truncation": null, "padding": null,
 "added_tokens": [
  {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
  {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
  {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
 "normalizer": null, "pre_tokenizer": null, "post_processor": null,
 "decoder": {"type": "Sequence", "decoders": [
  {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
  {"type": "ByteFallback"}, {"type": "Fuse"},
  {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
 "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
  "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581Hello": 3, "\u2581w": 4, "<0xC3>": 5, "<0xB6>": 6,
            "<0xE2>": 7, "<0x82>": 8, "<0xAC>": 9, "rld": 10, "\u2581": 11, "!": 12},
  "merges": []}}"#;

    fn tokenizer(name: &str) -> (ScratchDir, TextTokenizer) {
        let dir = ScratchDir::new(name);
        dir.write("tokenizer.json", LLAMA_STYLE_TOKENIZER);
        let tokenizer = TextTokenizer::from_dir(dir.path()).unwrap();
        (dir, tokenizer)
    }

    fn push_all(detokenizer: &mut IncrementalDetokenizer, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&id| detokenizer.push(id).unwrap()).collect()
    }

    #[test]
    fn streams_characters_only_when_complete() {
        let (_dir, tokenizer) = tokenizer("detok-stream");
        let ids = [1, 3, 4, 5, 6, 10, 11, 7, 8, 9, 12, 2];
        let mut detokenizer = IncrementalDetokenizer::new(&tokenizer);
        let pieces = push_all(&mut detokenizer, &ids);
        assert_eq!(pieces, ["", "Hello", " w", "", "", "örld", " ", "", "", "", "€!", ""]);
        assert_eq!(detokenizer.finish().unwrap(), "");
        // The Python `tokenizers` library decodes the same ids to this text.
        assert_eq!(pieces.concat(), "Hello wörld €!");
        assert_eq!(pieces.concat(), tokenizer.decode(&ids, true).unwrap());
    }

    #[test]
    fn leading_space_is_kept_after_skipped_special_tokens() {
        let (_dir, tokenizer) = tokenizer("detok-special");
        let ids = [2, 3, 2, 4];
        let mut detokenizer = IncrementalDetokenizer::new(&tokenizer);
        let pieces = push_all(&mut detokenizer, &ids);
        assert_eq!(pieces, ["", "Hello", "", " w"]);
        assert_eq!(pieces.concat(), tokenizer.decode(&ids, true).unwrap());
    }

    /// `<0xC3> <0xB6>` alone is "ö", but in a run that is not valid UTF-8 each byte is a
    /// replacement character: the stream waits for the run to end.
    #[test]
    fn a_byte_run_is_decoded_as_a_whole() {
        let (_dir, tokenizer) = tokenizer("detok-run");
        // <0xC3> <0xB6> <0xAC> "!": ö then a stray continuation byte.
        let ids = [3, 5, 6, 9, 12];
        let mut detokenizer = IncrementalDetokenizer::new(&tokenizer);
        let pieces = push_all(&mut detokenizer, &ids);
        assert_eq!(pieces, ["Hello", "", "", "", "\u{FFFD}\u{FFFD}\u{FFFD}!"]);
        assert_eq!(pieces.concat(), tokenizer.decode(&ids, true).unwrap());
    }

    #[test]
    fn finish_releases_an_unfinished_character() {
        let (_dir, tokenizer) = tokenizer("detok-finish");
        let mut detokenizer = IncrementalDetokenizer::new(&tokenizer);
        assert_eq!(push_all(&mut detokenizer, &[3, 7, 8]), ["Hello", "", ""]);
        // Same as decoding the ids at once: one replacement character per dangling byte.
        assert_eq!(detokenizer.finish().unwrap(), "\u{FFFD}\u{FFFD}");
        assert_eq!(detokenizer.finish().unwrap(), "");
    }

    #[test]
    fn decode_window_stays_short() {
        let (_dir, tokenizer) = tokenizer("detok-window");
        let mut detokenizer = IncrementalDetokenizer::new(&tokenizer);
        let mut text = String::new();
        for _ in 0..500 {
            for id in [4, 5, 6, 10] {
                text.push_str(&detokenizer.push(id).unwrap());
                assert!(detokenizer.ids.len() - detokenizer.prefix_offset <= 4);
            }
        }
        assert_eq!(text, " wörld".repeat(500)[1..]);
    }

    fn golden_tokenizer(cases: &serde_json::Value) -> TextTokenizer {
        let tokenizer_json = fixtures_dir().join(cases["tokenizer"].as_str().unwrap());
        TextTokenizer::from_dir(tokenizer_json.parent().unwrap()).unwrap()
    }

    /// After each token, the text streamed so far is what transformers decodes for that
    /// prefix, minus the replacement characters of a character still in progress.
    #[test]
    fn golden_stream_follows_prefix_decodes() {
        let cases = fixture_json("expected/tokenizer-cases.json");
        let tokenizer = golden_tokenizer(&cases);
        let stream = &cases["stream"];
        let ids = ids(&stream["ids"]);
        let prefix_decodes = strings(&stream["prefix_decodes"]);
        assert_eq!(ids.len(), prefix_decodes.len());

        let mut detokenizer = IncrementalDetokenizer::new(&tokenizer);
        let mut streamed = String::new();
        for (id, expected) in ids.iter().zip(&prefix_decodes) {
            let piece = detokenizer.push(*id).unwrap();
            assert!(!piece.contains(REPLACEMENT), "half a character streamed: {piece:?}");
            streamed.push_str(&piece);
            if tokenizer.is_byte_token(*id) {
                // Inside a run of byte tokens the text waits for the run to end.
                assert!(
                    expected.starts_with(&streamed),
                    "{streamed:?} runs ahead of {expected:?}"
                );
            } else {
                assert_eq!(streamed, expected.trim_end_matches(REPLACEMENT));
            }
        }
        streamed.push_str(&detokenizer.finish().unwrap());
        assert_eq!(streamed, stream["decoded"].as_str().unwrap());
    }

    /// Every tokenizer case, streamed token by token (special tokens included), reassembles
    /// to transformers' decode with special tokens skipped.
    #[test]
    fn golden_cases_reassemble_exactly() {
        let cases = fixture_json("expected/tokenizer-cases.json");
        let tokenizer = golden_tokenizer(&cases);
        for case in cases["cases"].as_array().unwrap() {
            let mut detokenizer = IncrementalDetokenizer::new(&tokenizer);
            let mut streamed: String = push_all(&mut detokenizer, &ids(&case["ids"])).concat();
            streamed.push_str(&detokenizer.finish().unwrap());
            assert_eq!(streamed, case["decoded_skip_special"].as_str().unwrap());
        }
    }
}
