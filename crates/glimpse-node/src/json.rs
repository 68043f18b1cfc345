//! Engine results (`ModelInfo`, `GenerateOutput` with its stats) cross to JS as JSON.
//!
//! Passing the core's `Serialize` types through JSON keeps one vocabulary for every
//! consumer (the CLI's `--json` output shows exactly these names) and means a new stats
//! field needs no change here. JSON text rather than napi's serde bridge because the
//! bridge rejects integers above `u32::MAX` (parameter counts, byte sizes) unless they
//! become BigInts, and serde_json keeps the fields in declaration order.

use napi::bindgen_prelude::{Function, JsObjectValue, Unknown};
use napi::{Env, JSON};
use serde::Serialize;

pub fn to_js_value<'env>(env: &'env Env, value: &impl Serialize) -> napi::Result<Unknown<'env>> {
    let text = serde_json::to_string(value)
        .map_err(|err| napi::Error::from_reason(format!("cannot serialize engine output: {err}")))?;
    let json: JSON<'env> = env.get_global()?.get_named_property_unchecked("JSON")?;
    let parse: Function<'env, String, Unknown<'env>> = json.get_named_property_unchecked("parse")?;
    parse.call(text)
}
