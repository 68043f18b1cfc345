//! One error type for the whole engine.
//!
//! Every failure a user can cause (bad file, bad flag, prompt too long) must reach the CLI
//! as a single readable line, so errors carry a kind (which decides the exit code) and a
//! message that already names the offending file, tensor or value.

use std::fmt;

/// What class of problem occurred; the CLI maps each kind to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is malformed (bad option value, image/placeholder mismatch).
    Usage,
    /// An input file (image, prompt) is missing, unreadable or invalid.
    Input,
    /// The model directory or its files are missing, corrupt or unsupported.
    Model,
    /// The caller cancelled the generation.
    Cancelled,
    /// A bug inside the engine (caught panic, broken invariant).
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, message)
    }
    pub fn model(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Model, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "generation cancelled")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
