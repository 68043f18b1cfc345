//! One generation on a libuv worker thread, streaming tokens to a JS callback.
//!
//! Ordering: a token callback and the promise settling travel through different libuv
//! handles, so without care the promise could resolve before the last tokens arrive.
//! The worker therefore waits for JS to acknowledge each token before computing the
//! next; when the engine returns, every token has been seen. The wait also gives
//! backpressure and makes a Ctrl-C handled on the JS thread take effect at the next token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use glimpse_core::engine::GenerateOutput;
use glimpse_core::{Engine, Error, Event, GenerateRequest, Result};
use napi::bindgen_prelude::Unknown;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue};
use napi::{Env, ScopedTask, Status};
use napi_derive::napi;

use crate::errors::{guarded, to_js_error};
use crate::json::to_js_value;

/// Streamed while generating: the text completed by the latest token (empty while a
/// multi-byte character is still incomplete) and that token's id. The last event may have
/// no id: it releases text held back at the end (an unfinished character, or text that
/// could have begun a stop string). Concatenating every event's text gives the answer.
#[napi(object)]
pub struct TokenEvent {
    pub id: Option<u32>,
    pub text: String,
}

/// `(event: TokenEvent) => unknown`, callable from the worker thread.
pub type TokenCallback = ThreadsafeFunction<TokenEvent, UnknownReturnValue, TokenEvent, Status, false>;

pub struct GenerateTask {
    engine: Arc<Engine>,
    /// A request the binding could not convert fails here, through the promise like
    /// every other engine error, rather than as a synchronous throw.
    request: Result<GenerateRequest>,
    cancel: Arc<AtomicBool>,
    on_event: TokenCallback,
}

impl GenerateTask {
    pub fn new(
        engine: Arc<Engine>,
        request: Result<GenerateRequest>,
        cancel: Arc<AtomicBool>,
        on_event: TokenCallback,
    ) -> Self {
        GenerateTask {
            engine,
            request,
            cancel,
            on_event,
        }
    }

    fn run(&self) -> Result<GenerateOutput> {
        let request = self.request.as_ref().map_err(Clone::clone)?;
        let mut callback_failure = None;
        let output = self.engine.generate(request, &self.cancel, &mut |event| {
            let event = match event {
                Event::Token { id, text } => TokenEvent { id: Some(id), text },
                Event::Flush { text } => TokenEvent { id: None, text },
            };
            if let Err(failure) = self.deliver(event) {
                callback_failure.get_or_insert(failure);
                self.cancel.store(true, Ordering::SeqCst);
            }
        });
        match callback_failure {
            Some(failure) => Err(failure),
            None => output,
        }
    }

    /// Hands one event to JS and blocks until the callback has run.
    fn deliver(&self, event: TokenEvent) -> Result<()> {
        let (ack, acked) = sync_channel::<std::result::Result<(), String>>(1);
        let status =
            self.on_event
                .call_with_return_value(event, ThreadsafeFunctionCallMode::Blocking, move |returned, _env| {
                    // The receiver only goes away if the worker stopped waiting; nothing to do then.
                    let _ = ack.send(returned.map(drop).map_err(|thrown| thrown.reason));
                    Ok(())
                });
        if status != Status::Ok {
            return Err(Error::internal(format!("token callback unavailable ({status})")));
        }
        match acked.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(thrown)) => Err(Error::internal(format!("token callback threw: {thrown}"))),
            // The queued call was dropped without running: Node is shutting down.
            Err(_) => Err(Error::cancelled()),
        }
    }
}

impl<'env> ScopedTask<'env> for GenerateTask {
    type Output = Result<GenerateOutput>;
    type JsValue = Unknown<'env>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guarded(|| self.run()))
    }

    fn resolve(&mut self, env: &'env Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        match output {
            Ok(output) => to_js_value(env, &output),
            Err(err) => Err(to_js_error(env, &err)),
        }
    }
}
