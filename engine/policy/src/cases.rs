//! Table-driven policy tests: facts in, expected decision out.
//!
//! A cases file (`policies/tests/retry.yaml`) lists cases; each calls one
//! entry point (`next_round`, `allow`, `disconnect` or `round_budget`) with
//! facts written in
//! YAML (unspecified facts get the documented defaults, see [`Call`]) and
//! states the decision it expects. [`PolicyUnderTest::run`] answers a case
//! through the same [`crate::PolicySet`] the engine uses and reports what differs.
//!
//! A case fails when the decision or the reason differs from `expect`, and
//! also when the script did not answer (the safe default was used), unless
//! the case says `fallback: true`: a test must not pass because a typo made
//! the script fall back to a default that happens to match.
//!
//! This module reads the cases file (bounded, positioned) and runs cases; it
//! prints nothing: `haifu policy test` and `haifu policy eval` format the
//! reports, and the simulator can reuse [`Call`] to build facts.

mod call;
mod read;
mod run;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use call::{Call, DEFAULT_NOW, FactError};
pub use run::{Answer, CaseReport, PolicyUnderTest};
pub use schema::schema;

/// The largest cases file read (1 MiB): a cases file is a few KiB; the cap
/// bounds memory and parse time for a hostile or mistaken file.
pub const MAX_CASES_FILE_SIZE: u64 = 1024 * 1024;

/// A line and column in a cases file, both from 1.
pub use haifu_yaml::Pos;

/// A cases file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The file could not be opened or read (or is not UTF-8).
    #[error("{}: cannot read cases: {source}", path.display())]
    Read {
        /// The cases file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path names a directory, a device, a FIFO…
    #[error("{}: not a regular file", path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_CASES_FILE_SIZE`].
    #[error("{}: cases file is larger than the {max} bytes allowed", path.display())]
    TooLarge {
        /// The cases file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// A YAML syntax error, an unknown key, a bad value: one per problem.
    #[error("{}:{pos}: {message}", path.display())]
    Invalid {
        /// The cases file.
        path: PathBuf,
        /// Where the problem is.
        pos: Pos,
        /// What is wrong.
        message: String,
    },
}

/// The cases of one file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFile {
    /// The file, as named by the caller (messages name it so).
    pub path: PathBuf,
    /// The cases.
    pub cases: Vec<Case>,
}

/// One case: a call and the decision it expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The case's `name`, unique in its file.
    pub name: String,
    /// Where the case starts in its file.
    pub pos: Pos,
    /// The entry point and its facts.
    pub call: Call,
    /// What the policy must answer.
    pub expect: Expect,
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// The decision.
    pub decision: Expected,
    /// The reason, if the case checks it.
    pub reason: Option<ReasonMatch>,
    /// Whether the script must fall back to the safe default (`fallback:
    /// true`): only then is a fallback not a failure.
    pub fallback: bool,
}

/// The decision a case expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// `next_round` stops (`stop: true`).
    Stop,
    /// `next_round` waits: this long (`wait: 120`, `wait: 20m`), or any
    /// time (`stop: false`).
    Wait(Option<Duration>),
    /// `allow` answers this.
    Allow(bool),
    /// `disconnect` answers this.
    Cut(bool),
    /// `round_budget` answers these (the keys the case states).
    Budget(ExpectedBudget),
    /// `advance` answers this word, with this wait and rollback when the
    /// case states them.
    Advance {
        /// `proceed`, `wait`, `pause` or `abort`.
        decide: String,
        /// The wait, checked when given.
        wait: Option<Duration>,
        /// Whether an abort rolls back, checked when given.
        rollback: Option<bool>,
    },
}

/// The parts of a round budget a case checks; `None` is not checked.
///
/// Fractions compare to within [`ExpectedBudget::FRACTION_TOLERANCE`] (a
/// script's arithmetic rounds in the last bits), times to the millisecond
/// (what the engine sends).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectedBudget {
    /// `proactive`.
    pub proactive: Option<f64>,
    /// `budget`, the multiple of the artifact.
    pub bytes: Option<f64>,
    /// `time`.
    pub time: Option<Duration>,
    /// `silence`.
    pub silence: Option<Duration>,
}

impl ExpectedBudget {
    /// How far `proactive` and `budget` may be from the expected value.
    pub const FRACTION_TOLERANCE: f64 = 1e-9;

    /// Each stated key that `got` does not match, as `(key, expected,
    /// got)` in words.
    pub fn mismatches(&self, got: &crate::Budget) -> Vec<(&'static str, String, String)> {
        let mut out = Vec::new();
        let near = |a: f64, b: f64| (a - b).abs() <= Self::FRACTION_TOLERANCE;
        let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_millis(1);
        if let Some(want) = self.proactive
            && !near(want, got.proactive)
        {
            out.push(("proactive", want.to_string(), got.proactive.to_string()));
        }
        if let Some(want) = self.bytes
            && !near(want, got.bytes)
        {
            out.push(("budget", want.to_string(), got.bytes.to_string()));
        }
        if let Some(want) = self.time
            && !close(want, got.time)
        {
            out.push(("time", run::seconds(want), run::seconds(got.time)));
        }
        if let Some(want) = self.silence
            && !close(want, got.silence)
        {
            out.push(("silence", run::seconds(want), run::seconds(got.silence)));
        }
        out
    }
}

/// How a case checks the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasonMatch {
    /// `reason: "…"`: exactly this text.
    Exact(String),
    /// `reason_contains: "…"`: this text somewhere in it.
    Contains(String),
}

impl ReasonMatch {
    /// Whether `reason` matches.
    pub fn matches(&self, reason: &str) -> bool {
        match self {
            ReasonMatch::Exact(want) => reason == want,
            ReasonMatch::Contains(part) => reason.contains(part.as_str()),
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Stop => f.write_str("stop"),
            Expected::Wait(None) => f.write_str("wait (any time)"),
            Expected::Wait(Some(d)) => write!(f, "wait {}", run::seconds(*d)),
            Expected::Allow(true) => f.write_str("allow"),
            Expected::Allow(false) => f.write_str("deny"),
            Expected::Cut(true) => f.write_str("cut off"),
            Expected::Cut(false) => f.write_str("keep connected"),
            Expected::Budget(b) => {
                let mut parts = Vec::new();
                if let Some(p) = b.proactive {
                    parts.push(format!("proactive {p}"));
                }
                if let Some(x) = b.bytes {
                    parts.push(format!("budget {x}"));
                }
                if let Some(t) = b.time {
                    parts.push(format!("time {}", run::seconds(t)));
                }
                if let Some(t) = b.silence {
                    parts.push(format!("silence {}", run::seconds(t)));
                }
                f.write_str(&parts.join(", "))
            }
            Expected::Advance {
                decide,
                wait,
                rollback,
            } => {
                f.write_str(decide)?;
                if let Some(w) = wait {
                    write!(f, " {}", run::seconds(*w))?;
                }
                match rollback {
                    Some(true) => f.write_str(" with rollback"),
                    Some(false) => f.write_str(" without rollback"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl CaseFile {
    /// Reads and parses the cases file at `path`: a regular file of at most
    /// [`MAX_CASES_FILE_SIZE`] bytes.
    ///
    /// # Errors
    /// [`CaseError::Read`], [`CaseError::NotAFile`], [`CaseError::TooLarge`],
    /// or every problem in the file, one [`CaseError::Invalid`] each.
    pub fn load(path: &Path) -> Result<CaseFile, Vec<CaseError>> {
        let path_buf = path.to_path_buf();
        let text = read_capped(path, MAX_CASES_FILE_SIZE).map_err(|e| {
            vec![match e {
                ReadFailure::Io(source) => CaseError::Read {
                    path: path_buf,
                    source,
                },
                ReadFailure::NotAFile => CaseError::NotAFile { path: path_buf },
                ReadFailure::TooLarge(_) => CaseError::TooLarge {
                    path: path_buf,
                    max: MAX_CASES_FILE_SIZE,
                },
            }]
        })?;
        CaseFile::parse(path, &text)
    }

    /// Parses `text`, naming `path` in errors.
    ///
    /// # Errors
    /// Every problem in the text, one [`CaseError::Invalid`] each, in file
    /// order.
    pub fn parse(path: &Path, text: &str) -> Result<CaseFile, Vec<CaseError>> {
        let invalid = |(pos, message): (Pos, String)| CaseError::Invalid {
            path: path.to_path_buf(),
            pos,
            message,
        };
        let root = haifu_yaml::parse(text).map_err(|e| vec![invalid((e.pos, e.message))])?;
        read::cases(root.as_ref())
            .map(|cases| CaseFile {
                path: path.to_path_buf(),
                cases,
            })
            .map_err(|mut problems| {
                problems.sort_by_key(|(pos, _)| *pos);
                problems.into_iter().map(invalid).collect()
            })
    }
}

/// Why a bounded read failed.
#[derive(Debug)]
enum ReadFailure {
    Io(std::io::Error),
    NotAFile,
    /// At least this many bytes.
    TooLarge(u64),
}

/// Reads `path` through the one capped, regular-files-only reader
/// ([`crate::input::read_text`]), sorting its refusals into this module's.
fn read_capped(path: &Path, max: u64) -> Result<String, ReadFailure> {
    crate::input::read_text(path, max, "policy test files").map_err(|e| {
        match e
            .get_ref()
            .and_then(|i| i.downcast_ref::<crate::input::InputError>())
        {
            Some(crate::input::InputError::NotRegular { .. }) => ReadFailure::NotAFile,
            Some(crate::input::InputError::TooLarge { cap, .. }) => ReadFailure::TooLarge(cap + 1),
            _ => ReadFailure::Io(e),
        }
    })
}

#[cfg(test)]
mod tests;
