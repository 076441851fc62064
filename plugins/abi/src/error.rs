//! The error a Rust plugin returns; the glue turns it into a status code and
//! a message in the host's [`ErrorBuf`](crate::ErrorBuf).

use std::fmt;

use crate::raw::{Status, status};

/// A status code with a human-readable, lowercase message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    /// An error with an explicit status code. A non-negative `status` is
    /// turned into [`status::INTERNAL`] so an error never reads as success.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        let status = if status >= 0 {
            status::INTERNAL
        } else {
            status
        };
        Self {
            status,
            message: message.into(),
        }
    }

    /// [`status::INVALID_ARGUMENT`]: bad configuration, address or argument.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(status::INVALID_ARGUMENT, message)
    }

    /// [`status::IO`]: an operating-system or network error.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(status::IO, message)
    }

    /// [`status::TIMEOUT`].
    pub fn timeout() -> Self {
        Self::new(status::TIMEOUT, "timed out")
    }

    /// [`status::CLOSED`].
    pub fn closed(message: impl Into<String>) -> Self {
        Self::new(status::CLOSED, message)
    }

    /// [`status::DENIED`]: an identity was refused.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(status::DENIED, message)
    }

    /// [`status::TOO_LARGE`]: a message over the size limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(status::TOO_LARGE, message)
    }

    /// [`status::UNSUPPORTED`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(status::UNSUPPORTED, message)
    }

    /// [`status::INTERNAL`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(status::INTERNAL, message)
    }

    /// The status code (always negative).
    pub fn status(&self) -> Status {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Self::timeout(),
            _ => Self::io(e.to_string()),
        }
    }
}
