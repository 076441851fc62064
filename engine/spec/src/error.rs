//! Errors and warnings, each naming `FILE:LINE:COLUMN`.

use std::fmt;
use std::path::PathBuf;

use crate::pos::Pos;

/// One problem in a workflow (or in a policy script it names), on one line:
/// `workflows/pos.yaml:12:5: unknown step "brodcast" (did you mean "broadcast"?)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{pos}: {kind}", file.display())]
pub struct SpecError {
    /// The file at fault: the workflow, or a policy script it names.
    pub file: PathBuf,
    /// Where in that file.
    pub pos: Pos,
    /// What is wrong.
    pub kind: ErrorKind,
}

fn hint(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}

fn within(section: &str) -> String {
    if section.is_empty() {
        String::new()
    } else {
        format!(" in {section}")
    }
}

/// What is wrong, without the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The file is not valid YAML.
    #[error("invalid YAML: {0}")]
    Yaml(String),
    /// The file holds no workflow.
    #[error("the workflow is empty")]
    Empty,
    /// A key the schema does not know.
    #[error("unknown key {key:?}{}{}", within(section), hint(suggestion))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The section it is in (`schedule`, `steps[2].broadcast`), empty at the top.
        section: String,
        /// A known key within two edits.
        suggestion: Option<String>,
    },
    /// A step the engine does not have.
    #[error("unknown step {name:?}{}", hint(suggestion))]
    UnknownStep {
        /// The step as written.
        name: String,
        /// A known step within two edits.
        suggestion: Option<String>,
    },
    /// A value of the wrong YAML type.
    #[error("{key}: expected {expected}, found {found}")]
    WrongType {
        /// The dotted key (`schedule.start`).
        key: String,
        /// What the schema wants.
        expected: &'static str,
        /// What was there.
        found: &'static str,
    },
    /// A required key is absent.
    #[error("missing required key {key:?}{}", within(section))]
    MissingKey {
        /// The key.
        key: &'static str,
        /// The section it belongs in, empty at the top.
        section: String,
    },
    /// The same key twice in one mapping.
    #[error("duplicate key {key:?} (first at {first})")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where it first appeared.
        first: Pos,
    },
    /// `broadcast: { rounds: 0 }`.
    #[error("broadcast needs at least 1 round, found 0")]
    ZeroRounds,
    /// A date-time that does not parse or lacks an offset.
    #[error("{key}: invalid date-time {text:?}: {reason}")]
    BadDateTime {
        /// The dotted key.
        key: String,
        /// The text as written.
        text: String,
        /// Why.
        reason: String,
    },
    /// A duration that does not parse.
    #[error(
        "{key}: invalid duration {text:?} (expected a number and a unit, e.g. 72h, 30m, 2d, 1h30m)"
    )]
    BadDuration {
        /// The dotted key.
        key: String,
        /// The text as written.
        text: String,
    },
    /// Any other value the schema refuses.
    #[error("{key}: {message}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// Why.
        message: String,
    },
    /// A transport names no plugin the daemons would load, a plugin of the
    /// wrong shape, or one that fails to load.
    #[error("{key}: {message}{}", hint(suggestion))]
    Transport {
        /// `transports.broadcast` or `transports.unicast`.
        key: &'static str,
        /// What is wrong, naming the plugin and the folder.
        message: String,
        /// A plugin there within two edits.
        suggestion: Option<String>,
    },
    /// A file the workflow names does not exist (relative to the workflow).
    #[error("{what} not found: {}", path.display())]
    MissingFile {
        /// `artifact` or `retry policy`, …
        what: String,
        /// The path, resolved against the workflow's folder.
        path: PathBuf,
    },
    /// A policy script that does not compile; the error's file and position
    /// are the script's own.
    #[error("{message} ({role} policy named at {named_at})")]
    PolicySyntax {
        /// `retry`, `restrict`, `disconnect` or `broadcast`.
        role: &'static str,
        /// Rhai's message.
        message: String,
        /// `workflows/x.yaml:8:10`, where the workflow names the script.
        named_at: String,
    },
    /// A step the engine already has in this workflow.
    #[error("duplicate step {name:?} (first at {first})")]
    DuplicateStep {
        /// The step.
        name: &'static str,
        /// Where it first appeared.
        first: Pos,
    },
    /// Steps in an order the engine cannot run.
    #[error("{0}")]
    StepOrder(String),
}

/// Something that will work but probably not as meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecWarning {
    /// The file concerned.
    pub file: PathBuf,
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

impl fmt::Display for SpecWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: warning: {}",
            self.file.display(),
            self.pos,
            self.message
        )
    }
}

impl ErrorKind {
    /// The replacement a typo most likely meant, if there is one.
    pub fn suggestion(&self) -> Option<&str> {
        match self {
            Self::UnknownKey { suggestion, .. }
            | Self::UnknownStep { suggestion, .. }
            | Self::Transport { suggestion, .. } => suggestion.as_deref(),
            _ => None,
        }
    }
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The workflow cannot run.
    Error,
    /// It runs, probably not as meant.
    Warning,
}

/// An error or warning as editors and CI read it (`haifu check --format
/// json`): the same file and position as the one-line text form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The file at fault.
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// The likely fix of a typo (`broadcast` for `brodcast`).
    pub suggestion: Option<String>,
}

impl From<&SpecError> for Diagnostic {
    fn from(e: &SpecError) -> Self {
        Self {
            file: e.file.display().to_string(),
            line: e.pos.line,
            column: e.pos.column,
            severity: Severity::Error,
            message: e.kind.to_string(),
            suggestion: e.kind.suggestion().map(str::to_owned),
        }
    }
}

impl From<&SpecWarning> for Diagnostic {
    fn from(w: &SpecWarning) -> Self {
        Self {
            file: w.file.display().to_string(),
            line: w.pos.line,
            column: w.pos.column,
            severity: Severity::Warning,
            message: w.message.clone(),
            suggestion: None,
        }
    }
}
