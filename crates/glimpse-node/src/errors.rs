//! Getting failures from the engine to JavaScript intact.
//!
//! Every engine error becomes a JS `Error` whose `message` is the engine's one-line
//! message and whose `code` names the error kind (`GLIMPSE_INPUT`, ...), which the CLI
//! maps to an exit code. Panics must never cross the FFI boundary (that aborts Node),
//! so every call into the engine runs under [`guarded`], which turns a panic into an
//! internal error carrying the panic message.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use glimpse_core::{Error, ErrorKind, Result};
use napi::bindgen_prelude::JsObjectValue;
use napi::{Env, JsValue, Status};

/// The `code` property a JS error gets for each kind of engine error.
pub fn error_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Usage => "GLIMPSE_USAGE",
        ErrorKind::Input => "GLIMPSE_INPUT",
        ErrorKind::Model => "GLIMPSE_MODEL",
        ErrorKind::Cancelled => "GLIMPSE_CANCELLED",
        ErrorKind::Internal => "GLIMPSE_INTERNAL",
    }
}

/// Builds the JS error for `err`, wrapped so napi throws or rejects with that very object.
pub fn to_js_error(env: &Env, err: &Error) -> napi::Error {
    let build = || -> napi::Result<napi::Error> {
        let mut object = env.create_error(napi::Error::new(Status::GenericFailure, err.message.clone()))?;
        object.set_named_property("code", error_code(err.kind))?;
        Ok(napi::Error::from(object.to_unknown()))
    };
    // If even creating the error object fails, napi's own error still carries the message.
    build().unwrap_or_else(|napi_err| napi_err)
}

thread_local! {
    /// The message of the latest panic on this thread, recorded by the panic hook so
    /// that [`guarded`] can report it instead of Rust printing it to stderr.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the default panic hook (which prints several lines to stderr) with one that
/// only records the message. `GLIMPSE_DEBUG=1` brings the default report (and backtrace,
/// with `RUST_BACKTRACE`) back; `RUST_BACKTRACE` alone does not, because it is often set
/// globally and the CLI promises one line per error.
fn install_quiet_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|at| format!(" at {}:{}", at.file(), at.line()))
                .unwrap_or_default();
            let message = format!("{}{location}", panic_message(info.payload()));
            LAST_PANIC.with(|slot| *slot.borrow_mut() = Some(message));
            if std::env::var_os("GLIMPSE_DEBUG").is_some_and(|value| value != "0") {
                default_hook(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}

/// Runs an engine call, turning a panic into [`ErrorKind::Internal`].
pub fn guarded<T>(body: impl FnOnce() -> Result<T>) -> Result<T> {
    install_quiet_panic_hook();
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        let detail = LAST_PANIC
            .with(|slot| slot.borrow_mut().take())
            .unwrap_or_else(|| panic_message(payload.as_ref()));
        Err(Error::internal(format!("internal error: {detail}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_passes_results_through() {
        assert_eq!(guarded(|| Ok(7)), Ok(7));
        assert_eq!(
            guarded::<()>(|| Err(Error::input("bad file"))),
            Err(Error::input("bad file"))
        );
    }

    #[test]
    fn guarded_turns_a_panic_into_one_internal_error_line() {
        let err = guarded::<()>(|| panic!("tensor {} is missing", "x.weight")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(
            err.message
                .starts_with("internal error: tensor x.weight is missing at "),
            "{}",
            err.message
        );
        assert!(err.message.contains("errors.rs:"), "{}", err.message);
        assert!(!err.message.contains('\n'));
    }

    #[test]
    fn each_kind_has_its_own_code() {
        assert_eq!(error_code(ErrorKind::Usage), "GLIMPSE_USAGE");
        assert_eq!(error_code(ErrorKind::Input), "GLIMPSE_INPUT");
        assert_eq!(error_code(ErrorKind::Model), "GLIMPSE_MODEL");
        assert_eq!(error_code(ErrorKind::Cancelled), "GLIMPSE_CANCELLED");
        assert_eq!(error_code(ErrorKind::Internal), "GLIMPSE_INTERNAL");
    }
}
