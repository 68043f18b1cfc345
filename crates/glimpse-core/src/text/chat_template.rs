//! Chat template from the checkpoint, rendered with minijinja.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;

/// One part of a message's content, in Hugging Face's message format.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ContentPart {
    Text { text: String },
    Image,
}

/// One chat message (`{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ".."}]}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: Vec<ContentPart>,
}

pub struct ChatTemplate {}

impl ChatTemplate {
    /// Reads the template from chat_template.jinja, chat_template.json or tokenizer_config.json.
    pub fn from_dir(_dir: &Path) -> Result<Self> {
        todo!()
    }

    /// Renders the conversation; `<image>` placeholders stay in the text.
    pub fn render(&self, _messages: &[Message], _add_generation_prompt: bool) -> Result<String> {
        todo!()
    }
}
