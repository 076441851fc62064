//! Load-time errors and warnings.

use std::fmt;
use std::path::PathBuf;

use crate::decision::Role;

/// A policy script that cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{}: cannot read policy: {source}", path.display())]
    Read {
        /// The script's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`crate::Limits::max_source_size`].
    #[error("{}: policy is {size} bytes, more than the {max} allowed", path.display())]
    TooLarge {
        /// The script's path.
        path: PathBuf,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The script does not compile.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        /// The script's path.
        path: PathBuf,
        /// Line, from 1 (0 when Rhai gives none).
        line: usize,
        /// Column, from 1 (0 when Rhai gives none).
        column: usize,
        /// Rhai's message, lower-cased first letter, without the position.
        message: String,
    },
}

impl PolicyError {
    /// The script this error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            PolicyError::Read { path, .. }
            | PolicyError::TooLarge { path, .. }
            | PolicyError::Syntax { path, .. } => path,
        }
    }
}

/// A script that loads but will not be asked: the role falls back to its safe
/// default on every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadWarning {
    /// The script's path.
    pub path: PathBuf,
    /// The role it was loaded for.
    pub role: Role,
    /// Parameter counts of functions that have the entry point's name but
    /// the wrong arity (empty when the name is absent).
    pub other_arities: Vec<usize>,
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, params) = self.role.entry_point();
        write!(
            f,
            "{}: no fn {name}({})",
            self.path.display(),
            params.join(", ")
        )?;
        if let Some(n) = self.other_arities.first() {
            write!(f, " (found {name} with {n} parameters)")?;
        }
        write!(
            f,
            "; the {} policy falls back to its safe default",
            self.role
        )
    }
}

/// Lower-cases the first letter of a message from a library, to match our
/// style (messages lowercase, no final period).
pub(crate) fn lowercase_first(message: &str) -> String {
    let trimmed = message.trim_end_matches('.');
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_error_reads_as_path_line_column_message() {
        let e = PolicyError::Syntax {
            path: "policies/retry.rhai".into(),
            line: 2,
            column: 11,
            message: "unexpected ';'".into(),
        };
        assert_eq!(e.to_string(), "policies/retry.rhai:2:11: unexpected ';'");
    }

    #[test]
    fn lowercase_first_drops_the_period() {
        assert_eq!(
            lowercase_first("Too many operations."),
            "too many operations"
        );
        assert_eq!(lowercase_first(""), "");
    }
}
