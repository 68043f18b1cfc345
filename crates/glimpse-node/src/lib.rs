//! Node binding for glimpse-core.
//!
//! Deliberately thin: it converts JS requests into engine requests, runs every engine
//! call on a libuv worker thread (never on the JS thread), streams token events back
//! through a thread-safe function, and maps engine errors to JS errors with a `code`.
//! All behaviour worth testing lives in glimpse-core.

mod batch;
mod errors;
mod generate;
mod json;
mod model;
mod reduce;
mod request;

pub use generate::TokenEvent;
pub use model::{load_model, LoadModelOptions, Model};
pub use reduce::{check_reduce_spec, reduction_methods, ReductionMethod};
pub use request::{ContentPartInput, GenerateRequestInput, ImageInput, MessageInput};
