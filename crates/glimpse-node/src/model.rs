//! `loadModel()` and the `Model` class.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use glimpse_core::model::weights::DType;
use glimpse_core::{DeviceChoice, Engine, Error, LoadOptions, Result};
use napi::bindgen_prelude::{AbortSignal, AsyncTask, Unknown};
use napi::{Env, Task};
use napi_derive::napi;

use crate::batch::GenerateBatchTask;
use crate::errors::{guarded, to_js_error};
use crate::generate::{GenerateTask, TokenCallback};
use crate::json::to_js_value;
use crate::request::GenerateRequestInput;

#[napi(object, object_to_js = false)]
pub struct LoadModelOptions {
    /// Worker threads for the CPU backend; all cores when left out.
    pub threads: Option<u32>,
    /// A CLIP model directory holding the vision tower of an original-layout LLaVA
    /// checkpoint released without it.
    pub vision_tower: Option<String>,
    /// `auto` (default: the GPU when one is usable, else the CPU), `cuda` or `cpu`.
    pub device: Option<String>,
    /// Storage type of the weights: `auto` (default: the checkpoint's), `f32`, `f16`, `bf16`.
    pub dtype: Option<String>,
    /// The most tokens one image may take before reduction; a tiling model (LLaVA-NeXT)
    /// picks smaller tile grids to stay within it.
    pub max_image_tokens: Option<u32>,
}

impl LoadModelOptions {
    fn into_engine_options(self) -> Result<LoadOptions> {
        if self.threads == Some(0) {
            return Err(Error::usage("threads must be at least 1"));
        }
        if self.max_image_tokens == Some(0) {
            return Err(Error::usage("--max-image-tokens must be at least 1"));
        }
        Ok(LoadOptions {
            threads: self.threads.map(|n| n as usize),
            vision_tower: self.vision_tower.map(PathBuf::from),
            device: self
                .device
                .as_deref()
                .map_or(Ok(DeviceChoice::Auto), DeviceChoice::parse)?,
            dtype: self.dtype.as_deref().map_or(Ok(None), DType::parse_choice)?,
            max_image_tokens: self.max_image_tokens.map(|n| n as usize),
        })
    }
}

/// Loads the model in `dir` on a worker thread.
#[napi(ts_return_type = "Promise<Model>")]
pub fn load_model(dir: String, options: Option<LoadModelOptions>) -> AsyncTask<LoadTask> {
    let options = options.map_or_else(|| Ok(LoadOptions::default()), LoadModelOptions::into_engine_options);
    AsyncTask::new(LoadTask {
        dir: PathBuf::from(dir),
        options,
    })
}

pub struct LoadTask {
    dir: PathBuf,
    options: Result<LoadOptions>,
}

impl Task for LoadTask {
    type Output = Result<Engine>;
    type JsValue = Model;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let options = self.options.clone();
        Ok(guarded(|| Engine::load(&self.dir, options?)))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Model> {
        match output {
            Ok(engine) => Ok(Model {
                engine: Arc::new(engine),
            }),
            Err(err) => Err(to_js_error(&env, &err)),
        }
    }
}

/// A loaded model; any number of generations can run on it.
#[napi]
pub struct Model {
    engine: Arc<Engine>,
}

#[napi]
impl Model {
    /// Architecture, sizes and memory needs (the engine's `ModelInfo`, snake_case keys).
    #[napi(ts_return_type = "Record<string, unknown>")]
    pub fn info<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        match guarded(|| Ok(self.engine.info())) {
            Ok(info) => to_js_value(env, &info),
            Err(err) => Err(to_js_error(env, &err)),
        }
    }

    /// Runs one generation on a worker thread. `onEvent` sees every token before the
    /// promise resolves with the engine's `GenerateOutput` (snake_case keys). Aborting
    /// `signal` stops generation at the next token.
    #[napi(ts_return_type = "Promise<Record<string, unknown>>")]
    pub fn generate(
        &self,
        request: GenerateRequestInput,
        #[napi(ts_arg_type = "(event: TokenEvent) => unknown")] on_event: TokenCallback,
        signal: Option<AbortSignal>,
    ) -> AsyncTask<GenerateTask> {
        let cancel = cancel_flag(signal);
        let request = request.into_engine_request();
        AsyncTask::new(GenerateTask::new(Arc::clone(&self.engine), request, cancel, on_event))
    }

    /// Runs several generations together on one worker thread (see `Engine::generate_batch`),
    /// streaming nothing. Resolves with one item per request, in order: `{output}` with the
    /// engine's `GenerateOutput`, or `{error: {message, code}}` when that request failed on
    /// its own. Aborting `signal` stops every unfinished generation at its next token.
    #[napi(ts_return_type = "Promise<Array<Record<string, unknown>>>")]
    pub fn generate_batch(
        &self,
        requests: Vec<GenerateRequestInput>,
        signal: Option<AbortSignal>,
    ) -> AsyncTask<GenerateBatchTask> {
        let cancel = cancel_flag(signal);
        let requests = requests
            .into_iter()
            .map(GenerateRequestInput::into_engine_request)
            .collect();
        AsyncTask::new(GenerateBatchTask::new(Arc::clone(&self.engine), requests, cancel))
    }
}

/// A flag that `signal` aborting sets.
fn cancel_flag(signal: Option<AbortSignal>) -> Arc<AtomicBool> {
    let cancel = Arc::new(AtomicBool::new(false));
    if let Some(signal) = signal {
        let flag = Arc::clone(&cancel);
        signal.on_abort(move || flag.store(true, Ordering::SeqCst));
    }
    cancel
}
