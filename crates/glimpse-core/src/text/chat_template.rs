//! Chat template from the checkpoint, rendered with minijinja.
//!
//! The environment mirrors the one transformers renders templates with, so prompts come out
//! byte-identical: `trim_blocks` and `lstrip_blocks`, Python string/dict methods, the
//! `raise_exception` and `strftime_now` globals, a `tojson` that writes like Python's
//! `json.dumps`, and the special tokens from tokenizer_config.json in the context.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::Path;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind as JinjaErrorKind};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::text::strftime::DateTime;
use crate::text::tokenizer::{read_optional_json, special_token};

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

const TEMPLATE_NAME: &str = "chat";

/// The special tokens transformers hands to every template (its `special_tokens_map`).
const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

pub struct ChatTemplate {
    env: Environment<'static>,
    /// The file the template came from, for error messages.
    source_file: String,
    /// Special tokens defined in tokenizer_config.json; absent ones stay undefined in the
    /// template, as in transformers.
    special_tokens: BTreeMap<&'static str, String>,
}

impl ChatTemplate {
    /// Reads the template from chat_template.jinja, chat_template.json or tokenizer_config.json.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_dir_or(dir, None)
    }

    /// Like [`ChatTemplate::from_dir`], falling back to LLaVA's `vicuna_v1` conversation
    /// when the directory has no template: original LLaVA checkpoints ship none, and this
    /// is the format they were trained and evaluated with.
    pub fn from_dir_or_vicuna_v1(dir: &Path) -> Result<Self> {
        Self::from_dir_or(dir, Some(VICUNA_V1))
    }

    fn from_dir_or(dir: &Path, builtin: Option<&str>) -> Result<Self> {
        let tokenizer_config = read_optional_json(dir, "tokenizer_config.json")?;
        let (source, source_file) = match (find_template(dir, tokenizer_config.as_ref())?, builtin) {
            (Some(found), _) => found,
            (None, Some(builtin)) => (builtin.to_owned(), "the built-in vicuna_v1 template".to_owned()),
            (None, None) => {
                return Err(Error::model(format!(
                    "{} has no chat template (looked in chat_template.jinja, chat_template.json and \
                     tokenizer_config.json)",
                    dir.display()
                )))
            }
        };
        let special_tokens = tokenizer_config
            .as_ref()
            .map(|config| {
                SPECIAL_TOKEN_NAMES
                    .iter()
                    .filter_map(|&name| Some((name, special_token(config, name)?)))
                    .collect()
            })
            .unwrap_or_default();
        Self::from_source(&source, source_file, special_tokens)
    }

    fn from_source(source: &str, source_file: String, special_tokens: BTreeMap<&'static str, String>) -> Result<Self> {
        let mut env = transformers_environment();
        env.add_template_owned(TEMPLATE_NAME, without_generation_tags(source))
            .map_err(|e| {
                Error::model(format!(
                    "the chat template in {source_file} does not parse: {}",
                    one_line(&e)
                ))
            })?;
        Ok(ChatTemplate {
            env,
            source_file,
            special_tokens,
        })
    }

    /// Renders the conversation; `<image>` placeholders stay in the text.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut context: BTreeMap<&str, Value> = self
            .special_tokens
            .iter()
            .map(|(&name, token)| (name, Value::from(token.as_str())))
            .collect();
        context.insert("messages", Value::from_serialize(messages));
        context.insert("add_generation_prompt", Value::from(add_generation_prompt));

        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::internal(format!("chat template went missing: {e}")))?;
        template.render(&context).map_err(|e| match raised_message(&e) {
            // The template itself rejected the conversation (e.g. roles must alternate).
            Some(message) => Error::usage(format!("the chat template rejected the conversation: {message}")),
            None => Error::model(format!(
                "the chat template in {} failed to render: {}",
                self.source_file,
                one_line(&e)
            )),
        })
    }
}

/// LLaVA's `conv_vicuna_v1` (separator style TWO): the system line and a space, then
/// `USER: {message} ` and `ASSISTANT: {message}</s>` turns, then `ASSISTANT:` to prompt the
/// reply. A message's images come first as `<image>\n` each (LLaVA puts its one image
/// before the question that way); its text parts are joined by spaces. A leading system
/// message replaces the default system line.
const VICUNA_V1: &str = r#"
{%- set ns = namespace(system="A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.", start=0) -%}
{%- if messages and messages[0]['role'] == 'system' -%}
  {%- set ns.system = messages[0]['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}
  {%- set ns.start = 1 -%}
{%- endif -%}
{{- ns.system + ' ' -}}
{%- for message in messages[ns.start:] -%}
  {%- if message['role'] == 'user' -%}
    {%- set role = 'USER' -%}{%- set sep = ' ' -%}
  {%- elif message['role'] == 'assistant' -%}
    {%- set role = 'ASSISTANT' -%}{%- set sep = '</s>' -%}
  {%- else -%}
    {{- raise_exception("the vicuna_v1 conversation has user and assistant turns after an optional first system message, not '" + message['role'] + "'") -}}
  {%- endif -%}
  {%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}
  {%- set images = message['content'] | selectattr('type', 'equalto', 'image') | list | length -%}
  {%- if images == 0 and not text -%}
    {{- role + ':' -}}
  {%- else -%}
    {{- role + ': ' -}}
    {%- for _ in range(images) -%}{{- '<image>\n' -}}{%- endfor -%}
    {{- text + sep -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}
"#;

/// Locates the template text: chat_template.jinja, then chat_template.json, then
/// tokenizer_config.json. Returns the text and the name of the file it came from, or
/// `None` when there is no template at all.
fn find_template(dir: &Path, tokenizer_config: Option<&serde_json::Value>) -> Result<Option<(String, String)>> {
    let jinja_path = dir.join("chat_template.jinja");
    if jinja_path.is_file() {
        let text = std::fs::read_to_string(&jinja_path)
            .map_err(|e| Error::model(format!("cannot read {}: {e}", jinja_path.display())))?;
        return Ok(Some((text, jinja_path.display().to_string())));
    }
    if let Some(config) = read_optional_json(dir, "chat_template.json")? {
        let path = dir.join("chat_template.json").display().to_string();
        return match config.get("chat_template").and_then(|t| t.as_str()) {
            Some(text) => Ok(Some((text.to_owned(), path))),
            None => Err(Error::model(format!("{path} has no \"chat_template\" string"))),
        };
    }
    let path = dir.join("tokenizer_config.json").display().to_string();
    match tokenizer_config.and_then(|config| config.get("chat_template")) {
        Some(serde_json::Value::String(text)) => Ok(Some((text.clone(), path))),
        Some(serde_json::Value::Array(named)) => default_of_named_templates(named, &path).map(Some),
        Some(_) => Err(Error::model(format!(
            "\"chat_template\" in {path} is neither a string nor a list"
        ))),
        None => Ok(None),
    }
}

/// tokenizer_config.json may hold several templates as `[{"name": .., "template": ..}]`;
/// plain chat uses the one named "default".
fn default_of_named_templates(named: &[serde_json::Value], path: &str) -> Result<(String, String)> {
    let template_named = |wanted: &str| {
        named
            .iter()
            .find_map(|entry| (entry.get("name")?.as_str()? == wanted).then(|| entry.get("template")?.as_str())?)
    };
    match template_named("default") {
        Some(text) => Ok((text.to_owned(), format!("{path} (template \"default\")"))),
        None => {
            let names: Vec<&str> = named.iter().filter_map(|entry| entry.get("name")?.as_str()).collect();
            Err(Error::model(format!(
                "{path} has named chat templates ({}) but none called \"default\"",
                names.join(", ")
            )))
        }
    }
}

fn transformers_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", |format: String| DateTime::now_utc().format(&format));
    env.add_filter("tojson", tojson);
    env
}

/// Marks an error raised on purpose by the template, so `render` can tell it from a bug.
#[derive(Debug)]
struct RaisedByTemplate(String);

impl fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

fn raise_exception(message: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(JinjaErrorKind::InvalidOperation, message.clone()).with_source(RaisedByTemplate(message)))
}

fn raised_message(error: &minijinja::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(raised) = current.downcast_ref::<RaisedByTemplate>() {
            return Some(raised.0.clone());
        }
        source = current.source();
    }
    None
}

/// A minijinja error (which may carry its cause chain) as one line.
fn one_line(error: &minijinja::Error) -> String {
    error.to_string().replace('\n', " ")
}

/// `tojson` as transformers defines it: Python's `json.dumps` with non-ASCII kept and no
/// HTML escaping (minijinja's own filter escapes `<`, `>`, `&` and `'`, which would change
/// prompts). `indent` (a number of spaces or a string) switches to multi-line output.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(text) => text.to_owned(),
            None => {
                let spaces = usize::try_from(v.clone()).map_err(|_| {
                    minijinja::Error::new(
                        JinjaErrorKind::InvalidOperation,
                        format!("tojson indent must be a number or a string, got {v}"),
                    )
                })?;
                " ".repeat(spaces)
            }
        }),
    };
    let mut out = Vec::new();
    let written = match &indent {
        None => value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, PythonCompact)),
        Some(indent) => value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes()),
        )),
    };
    written.map_err(|e| {
        minijinja::Error::new(JinjaErrorKind::InvalidOperation, "tojson cannot serialise the value").with_source(e)
    })?;
    // serde_json writes only valid UTF-8.
    Ok(Value::from(String::from_utf8_lossy(&out).into_owned()))
}

/// Python's default `json.dumps` layout on one line: `", "` between items and `": "`
/// after keys.
struct PythonCompact;

impl serde_json::ser::Formatter for PythonCompact {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

/// transformers' `{% generation %}…{% endgeneration %}` tag (it marks assistant text for
/// training masks) renders its body unchanged. minijinja has no such tag, so it becomes an
/// always-true `if` block: same output, same whitespace control (`{%-`, `-%}`, and the
/// trim/lstrip rules that apply to every block tag).
fn without_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(open) = rest.find("{%") {
        let (before, tag_and_after) = rest.split_at(open);
        out.push_str(before);
        let Some(close) = tag_and_after.find("%}") else {
            rest = tag_and_after;
            break;
        };
        let tag = &tag_and_after[..close + 2];
        out.push_str(&rewrite_generation_tag(tag).unwrap_or_else(|| tag.to_owned()));
        rest = &tag_and_after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// `{%- generation %}` → `{%- if true %}`, `{% endgeneration -%}` → `{% endif -%}`; None for
/// any other tag.
fn rewrite_generation_tag(tag: &str) -> Option<String> {
    let inner = &tag[2..tag.len() - 2];
    let (open_modifier, inner) = split_modifier_prefix(inner);
    let (inner, close_modifier) = split_modifier_suffix(inner);
    let replacement = match inner.trim() {
        "generation" => "if true",
        "endgeneration" => "endif",
        _ => return None,
    };
    Some(format!("{{%{open_modifier} {replacement} {close_modifier}%}}"))
}

fn split_modifier_prefix(inner: &str) -> (&str, &str) {
    match inner.chars().next() {
        Some('-' | '+') => inner.split_at(1),
        _ => ("", inner),
    }
}

fn split_modifier_suffix(inner: &str) -> (&str, &str) {
    match inner.chars().last() {
        Some('-' | '+') => inner.split_at(inner.len() - 1),
        _ => (inner, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::text::test_support::{fixture_json, fixtures_dir, ScratchDir};

    fn text(text: &str) -> ContentPart {
        ContentPart::Text { text: text.to_owned() }
    }

    fn message(role: &str, content: Vec<ContentPart>) -> Message {
        Message {
            role: role.to_owned(),
            content,
        }
    }

    fn template(source: &str, tokens: &[(&'static str, &str)]) -> ChatTemplate {
        let tokens = tokens.iter().map(|&(name, token)| (name, token.to_owned())).collect();
        ChatTemplate::from_source(source, "test template".to_owned(), tokens).unwrap()
    }

    /// A LLaVA-style template exercising trim/lstrip, `{%- generation -%}`, selectattr and
    /// Python string methods. Expected output rendered by transformers 5.
    #[test]
    fn renders_a_multi_turn_conversation_like_transformers() {
        let source = "{% for message in messages %}\n{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}\n{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}\n{% if message['role'] == 'assistant' %}\n  {%- generation -%}\n    {% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] + ' ' }}{% endfor %}\n  {%- endgeneration %}\n{{ eos_token }}\n{% else %}\n    {% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'].strip() + ' ' }}{% endfor %}\n{% endif %}\n{% endfor %}\n{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}\n";
        let messages = [
            message("system", vec![text("Be brief.")]),
            message("user", vec![ContentPart::Image, text("  What is shown?  ")]),
            message("assistant", vec![text("A cat.")]),
            message(
                "user",
                vec![text("And the colour?"), ContentPart::Image, ContentPart::Image],
            ),
        ];
        let t = template(source, &[("bos_token", "<s>"), ("eos_token", "</s>")]);
        assert_eq!(
            t.render(&messages, true).unwrap(),
            "Be brief. USER: <image>\nWhat is shown? ASSISTANT: A cat. </s>\nUSER: <image>\n<image>\nAnd the colour? ASSISTANT:"
        );
    }

    /// tojson writes like Python's json.dumps (no HTML escaping, `, ` and `: `), dict
    /// methods work, absent special tokens are undefined. Expected output from transformers 5.
    #[test]
    fn python_compatible_filters_and_methods() {
        let source = "{{ bos_token }}[{{ messages | tojson }}]\n{{ {'k': '<b>&\u{e9}', 'n': [1, 2.5, none, true]} | tojson(indent=2) }}\n{% for k, v in {'a': 1, 'b': 'x'}.items() %}{{ k }}={{ v }};{% endfor %}{{ 'Hi'.lower() }}{{ unk_token }}|{{ ' x '.strip() }}|{{ 'a,b'.split(',') | length }}";
        let messages = [message("user", vec![ContentPart::Image, text("Say \"hi\" <ok>")])];
        let t = template(source, &[("bos_token", "<s>")]);
        assert_eq!(
            t.render(&messages, false).unwrap(),
            "<s>[[{\"role\": \"user\", \"content\": [{\"type\": \"image\"}, {\"type\": \"text\", \"text\": \"Say \\\"hi\\\" <ok>\"}]}]]\n{\n  \"k\": \"<b>&\u{e9}\",\n  \"n\": [\n    1,\n    2.5,\n    null,\n    true\n  ]\n}\na=1;b=x;hi|x|2"
        );
    }

    #[test]
    fn raise_exception_is_a_usage_error_with_the_template_message() {
        let source = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must start with user') }}{% endif %}ok";
        let t = template(source, &[]);
        assert_eq!(t.render(&[message("user", vec![text("hi")])], false).unwrap(), "ok");
        let err = t.render(&[message("assistant", vec![text("hi")])], false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage);
        assert_eq!(
            err.message,
            "the chat template rejected the conversation: Conversation roles must start with user"
        );
    }

    #[test]
    fn other_render_failures_are_model_errors_naming_the_file() {
        let t = template("{{ messages[0].content.nope() }}", &[]);
        let err = t.render(&[message("user", vec![])], false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Model);
        assert!(
            err.message
                .starts_with("the chat template in test template failed to render: "),
            "{}",
            err.message
        );
        assert!(!err.message.contains('\n'));
    }

    #[test]
    fn strftime_now_formats_the_current_date() {
        let t = template("{{ strftime_now('%d %b %Y') }}", &[]);
        let before = DateTime::now_utc().format("%d %b %Y");
        let rendered = t.render(&[], false).unwrap();
        let after = DateTime::now_utc().format("%d %b %Y");
        assert!(rendered == before || rendered == after, "{rendered}");
    }

    #[test]
    fn generation_tags_keep_their_whitespace_control() {
        assert_eq!(
            without_generation_tags("a {%- generation -%} b {% endgeneration %}{%+generation%}{% if x %}"),
            "a {%- if true -%} b {% endif %}{%+ if true %}{% if x %}"
        );
        assert_eq!(without_generation_tags("tail {% unclosed"), "tail {% unclosed");
    }

    const TEMPLATE_A: &str = "A{{ messages | length }}";

    fn only_template(dir: &ScratchDir) -> String {
        ChatTemplate::from_dir(dir.path()).unwrap().render(&[], false).unwrap()
    }

    #[test]
    fn template_file_precedence() {
        let dir = ScratchDir::new("template-precedence");
        dir.write("tokenizer_config.json", r#"{"chat_template": "from tokenizer_config"}"#);
        assert_eq!(only_template(&dir), "from tokenizer_config");
        dir.write("chat_template.json", r#"{"chat_template": "from chat_template.json"}"#);
        assert_eq!(only_template(&dir), "from chat_template.json");
        dir.write("chat_template.jinja", TEMPLATE_A);
        assert_eq!(only_template(&dir), "A0");
    }

    #[test]
    fn named_templates_use_default() {
        let dir = ScratchDir::new("template-named");
        dir.write(
            "tokenizer_config.json",
            r#"{"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "plain"}]}"#,
        );
        assert_eq!(only_template(&dir), "plain");
        dir.write(
            "tokenizer_config.json",
            r#"{"chat_template": [{"name": "tool_use", "template": "tools"}]}"#,
        );
        let err = ChatTemplate::from_dir(dir.path()).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Model);
        assert!(
            err.message
                .ends_with("has named chat templates (tool_use) but none called \"default\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn special_tokens_come_from_tokenizer_config() {
        let dir = ScratchDir::new("template-tokens");
        dir.write(
            "tokenizer_config.json",
            r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null,
                "chat_template": "{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{% if unk_token is defined %}unk{% endif %}"}"#,
        );
        assert_eq!(only_template(&dir), "<s>|</s>||");
    }

    /// Expected prompts are what LLaVA's `conv_vicuna_v1.get_prompt()` returns for the same
    /// turns (with `<image>\n` put before the first question, as its eval scripts do).
    #[test]
    fn builtin_vicuna_v1_renders_like_llavas_conversation() {
        let dir = ScratchDir::new("template-vicuna");
        let vicuna = ChatTemplate::from_dir_or_vicuna_v1(dir.path()).unwrap();
        let system = "A chat between a curious user and an artificial intelligence assistant. \
                      The assistant gives helpful, detailed, and polite answers to the user's questions.";
        let first = message("user", vec![ContentPart::Image, text("What is shown?")]);
        assert_eq!(
            vicuna.render(std::slice::from_ref(&first), true).unwrap(),
            format!("{system} USER: <image>\nWhat is shown? ASSISTANT:")
        );
        let turns = [
            first,
            message("assistant", vec![text("A cat.")]),
            message("user", vec![text("And the colour?")]),
        ];
        assert_eq!(
            vicuna.render(&turns, true).unwrap(),
            format!("{system} USER: <image>\nWhat is shown? ASSISTANT: A cat.</s>USER: And the colour? ASSISTANT:")
        );
        let with_system = [
            message("system", vec![text("Be brief.")]),
            message("user", vec![text("Hi")]),
        ];
        assert_eq!(vicuna.render(&with_system, false).unwrap(), "Be brief. USER: Hi ");
        let err = vicuna.render(&[message("tool", vec![text("x")])], true).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage);
        assert_eq!(
            err.message,
            "the chat template rejected the conversation: the vicuna_v1 conversation has user and assistant turns after an optional first system message, not 'tool'"
        );

        // A template in the directory wins over the built-in one.
        dir.write("chat_template.jinja", "own");
        let own = ChatTemplate::from_dir_or_vicuna_v1(dir.path()).unwrap();
        assert_eq!(own.render(&turns, true).unwrap(), "own");
    }

    #[test]
    fn missing_or_broken_templates_are_model_errors() {
        let dir = ScratchDir::new("template-missing");
        let err = ChatTemplate::from_dir(dir.path()).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Model);
        assert_eq!(
            err.message,
            format!(
                "{} has no chat template (looked in chat_template.jinja, chat_template.json and tokenizer_config.json)",
                dir.path().display()
            )
        );

        dir.write("chat_template.json", r#"{"template": "x"}"#);
        let err = ChatTemplate::from_dir(dir.path()).err().unwrap();
        assert!(
            err.message
                .ends_with("chat_template.json has no \"chat_template\" string"),
            "{}",
            err.message
        );

        dir.write("chat_template.jinja", "{% for m in messages %}unclosed");
        let err = ChatTemplate::from_dir(dir.path()).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Model);
        assert!(
            err.message.contains("chat_template.jinja does not parse: "),
            "{}",
            err.message
        );
        assert!(!err.message.contains('\n'));
    }

    /// A fixture message. A plain-string content becomes one text part: the only fixture
    /// template given one turns it into exactly that part before rendering.
    fn fixture_message(value: &serde_json::Value) -> Message {
        let content = match &value["content"] {
            serde_json::Value::String(s) => vec![text(s)],
            serde_json::Value::Array(parts) => parts
                .iter()
                .map(|part| match part["type"].as_str() {
                    Some("image") => ContentPart::Image,
                    Some("text") => text(part["text"].as_str().unwrap()),
                    other => panic!("unexpected content part type {other:?}"),
                })
                .collect(),
            other => panic!("unexpected message content {other}"),
        };
        message(value["role"].as_str().unwrap(), content)
    }

    /// Each fixture model keeps its template in a different place; the prompt transformers
    /// rendered from the same messages must come out byte for byte.
    #[test]
    fn golden_prompts_match_transformers() {
        let mut template_files = Vec::new();
        for model in [
            "tiny-llava-mha",
            "tiny-llava-gqa",
            "tiny-llava-bf16",
            "tiny-llava-two-images",
        ] {
            let expected = fixture_json(&format!("expected/{model}.json"));
            let template = ChatTemplate::from_dir(&fixtures_dir().join("models").join(model)).unwrap();
            let template_file = expected["chat_template_file"].as_str().unwrap();
            assert!(
                template.source_file.ends_with(template_file),
                "{model}: read {}",
                template.source_file
            );
            template_files.push(template_file.to_owned());

            let messages: Vec<Message> = expected["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(fixture_message)
                .collect();
            let prompt = template.render(&messages, true).unwrap();
            assert_eq!(prompt, expected["prompt_text"].as_str().unwrap(), "{model}");
        }
        template_files.sort();
        template_files.dedup();
        assert_eq!(
            template_files,
            ["chat_template.jinja", "chat_template.json", "tokenizer_config.json"]
        );
    }
}
