//! Several generations together on one libuv worker thread (`caption --batch`).
//!
//! Nothing is streamed: the promise resolves once every generation has ended, with one
//! item per request, in order: `{output}` (the engine's `GenerateOutput`) or `{error:
//! {message, code}}` for a request that failed on its own, so that one bad request does
//! not take the others with it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use glimpse_core::engine::GenerateOutput;
use glimpse_core::{Engine, Error, GenerateRequest, Result};
use napi::bindgen_prelude::Unknown;
use napi::{Env, ScopedTask};
use serde::Serialize;

use crate::errors::{error_code, guarded, to_js_error};
use crate::json::to_js_value;

pub struct GenerateBatchTask {
    engine: Arc<Engine>,
    /// The requests the binding could convert, in order.
    requests: Vec<GenerateRequest>,
    /// For each request, whether it is in `requests` or the error its conversion gave.
    converted: Vec<Result<()>>,
    cancel: Arc<AtomicBool>,
}

impl GenerateBatchTask {
    pub fn new(engine: Arc<Engine>, requests: Vec<Result<GenerateRequest>>, cancel: Arc<AtomicBool>) -> Self {
        let mut valid = Vec::with_capacity(requests.len());
        let converted = requests
            .into_iter()
            .map(|request| request.map(|request| valid.push(request)))
            .collect();
        GenerateBatchTask {
            engine,
            requests: valid,
            converted,
            cancel,
        }
    }

    /// One result per request, in order: those that could not be converted keep their
    /// error and the rest run together.
    fn run(&self) -> Vec<Result<GenerateOutput>> {
        let mut outputs = self.engine.generate_batch(&self.requests, &self.cancel).into_iter();
        self.converted
            .iter()
            .map(|converted| match converted {
                Ok(()) => outputs
                    .next()
                    .unwrap_or_else(|| Err(Error::internal("the engine returned fewer outputs than requests"))),
                Err(err) => Err(err.clone()),
            })
            .collect()
    }
}

/// One request's result as JavaScript receives it.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum BatchItem<'a> {
    Output(&'a GenerateOutput),
    Error { message: &'a str, code: &'static str },
}

impl<'a> BatchItem<'a> {
    fn of(result: &'a Result<GenerateOutput>) -> Self {
        match result {
            Ok(output) => BatchItem::Output(output),
            Err(err) => BatchItem::Error {
                message: &err.message,
                code: error_code(err.kind),
            },
        }
    }
}

impl<'env> ScopedTask<'env> for GenerateBatchTask {
    type Output = Result<Vec<Result<GenerateOutput>>>;
    type JsValue = Unknown<'env>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guarded(|| Ok(self.run())))
    }

    fn resolve(&mut self, env: &'env Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        match output {
            Ok(results) => to_js_value(env, &results.iter().map(BatchItem::of).collect::<Vec<_>>()),
            Err(err) => Err(to_js_error(env, &err)),
        }
    }
}
