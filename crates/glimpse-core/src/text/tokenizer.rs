//! tokenizer.json through the `tokenizers` crate, plus the special-token facts from
//! tokenizer_config.json.

use std::path::Path;

use crate::error::Result;

pub struct TextTokenizer {}

impl TextTokenizer {
    pub fn from_dir(_dir: &Path) -> Result<Self> {
        todo!()
    }
    pub fn encode(&self, _text: &str, _add_special_tokens: bool) -> Result<Vec<u32>> {
        todo!()
    }
    pub fn decode(&self, _ids: &[u32], _skip_special_tokens: bool) -> Result<String> {
        todo!()
    }
    pub fn token_id(&self, _token: &str) -> Option<u32> {
        todo!()
    }
    pub fn bos_token(&self) -> Option<&str> {
        todo!()
    }
    pub fn eos_token(&self) -> Option<&str> {
        todo!()
    }
    /// Ids that end generation (eos from tokenizer_config.json and generation_config.json).
    pub fn eos_token_ids(&self) -> &[u32] {
        todo!()
    }
}
