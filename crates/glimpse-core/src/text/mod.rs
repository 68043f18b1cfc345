//! Everything between strings and token ids: the tokenizer, the chat template, the
//! streaming detokenizer and stop-string matching.

pub mod chat_template;
pub mod detokenizer;
pub mod stop;
mod strftime;
pub mod tokenizer;

pub use chat_template::{ChatTemplate, ContentPart, Message};
pub use detokenizer::IncrementalDetokenizer;
pub use stop::StopMatcher;
pub use tokenizer::TextTokenizer;

#[cfg(test)]
pub(crate) mod test_support;
