//! Typed answers, and what happened when a script could not give one.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// What `next_round` decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NextRound {
    /// Start the next round after this long.
    Wait(Duration),
    /// Send no more rounds.
    Stop {
        /// Why, for the audit.
        reason: String,
    },
}

/// The gate's answer to "may this client use this service?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the client may use the service.
    pub allow: bool,
    /// Why, in words an operator can act on.
    pub reason: String,
}

/// Whether a straggler is cut off at the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CutOff {
    /// Whether the client is cut off (deny-listed) now.
    pub cut: bool,
    /// Why, for the audit.
    pub reason: String,
}

/// A decision, plus why the safe default was used instead of the script, if
/// it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    /// The answer to act on.
    pub value: T,
    /// Set when `value` is the safe default rather than the script's answer.
    pub fallback: Option<Fallback>,
}

/// The policy roles a workflow names: one workflow key and one entry point
/// each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `next_round(ctx)`: when the next broadcast round starts.
    Retry,
    /// `allow(client, service)`: the service gate.
    Restrict,
    /// `disconnect(client)`: whether a straggler is cut off.
    Disconnect,
    /// `round_budget(ctx)`: how a broadcast round spends bytes and time.
    Broadcast,
    /// `advance(ctx)`: whether a phased rollout's next stage starts.
    Advance,
}

impl Role {
    /// All roles, in the order a workflow lists them.
    pub const ALL: [Role; 5] = [
        Role::Retry,
        Role::Restrict,
        Role::Disconnect,
        Role::Broadcast,
        Role::Advance,
    ];

    /// The workflow key naming this role's script.
    pub fn key(self) -> &'static str {
        match self {
            Role::Retry => "retry",
            Role::Restrict => "restrict",
            Role::Disconnect => "disconnect",
            Role::Broadcast => "broadcast",
            Role::Advance => "advance",
        }
    }

    /// The function the script must define, and its parameters.
    pub fn entry_point(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Role::Retry => ("next_round", &["ctx"]),
            Role::Restrict => ("allow", &["client", "service"]),
            Role::Disconnect => ("disconnect", &["client"]),
            Role::Broadcast => ("round_budget", &["ctx"]),
            Role::Advance => ("advance", &["ctx"]),
        }
    }

    /// The role's place in [`Role::ALL`], for per-role arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Role::Retry => 0,
            Role::Restrict => 1,
            Role::Disconnect => 2,
            Role::Broadcast => 3,
            Role::Advance => 4,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Which limit a script hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKind {
    /// Too many operations (e.g. `loop {}`).
    Operations,
    /// Calls nested too deeply (e.g. unbounded recursion).
    CallDepth,
    /// A string, array or map grew too large; names which.
    DataSize(String),
    /// Too many variables at once.
    Variables,
    /// A module was imported.
    Modules,
    /// The call ran past its wall-clock limit.
    WallClock,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKind::Operations => f.write_str("operations limit hit"),
            LimitKind::CallDepth => f.write_str("call depth limit hit (recursion too deep)"),
            LimitKind::DataSize(what) => {
                write!(f, "size limit hit ({})", what.to_lowercase())
            }
            LimitKind::Variables => f.write_str("variables limit hit"),
            LimitKind::Modules => f.write_str("modules are not allowed"),
            LimitKind::WallClock => f.write_str("wall-clock limit hit"),
        }
    }
}

/// Why a script's answer was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackCause {
    /// The workflow names no script for this role.
    NotConfigured,
    /// The script does not define the entry point (with that many parameters).
    MissingFunction,
    /// The script failed at run time.
    Runtime {
        /// Rhai's message, lower-cased first letter.
        message: String,
        /// Line and column in the script, where Rhai gives them.
        position: Option<(usize, usize)>,
    },
    /// The script hit a limit (these carry no position in Rhai).
    Limit(LimitKind),
    /// The script returned a value of the wrong type.
    WrongType {
        /// What the entry point may return.
        expected: &'static str,
        /// The Rhai type it returned.
        got: String,
    },
    /// The script returned a value of the right type that makes no sense.
    BadValue(String),
}

/// The record of one fallback to a safe default: enough to log it and to
/// show it to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The policy role.
    pub role: Role,
    /// The script, if one is configured.
    pub script: Option<PathBuf>,
    /// What went wrong.
    pub cause: FallbackCause,
}

impl fmt::Display for Fallback {
    /// One line: `policies/retry.rhai:12:5: next_round: <cause>; safe default used`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (function, params) = self.role.entry_point();
        match (&self.script, &self.cause) {
            (
                Some(path),
                FallbackCause::Runtime {
                    position: Some((line, col)),
                    ..
                },
            ) => write!(f, "{}:{line}:{col}: ", path.display())?,
            (Some(path), _) => write!(f, "{}: ", path.display())?,
            (None, _) => write!(f, "{} policy: ", self.role)?,
        }
        write!(f, "{function}: ")?;
        match &self.cause {
            FallbackCause::NotConfigured => write!(f, "no {} script configured", self.role)?,
            FallbackCause::MissingFunction => {
                write!(f, "no fn {function}({})", params.join(", "))?;
            }
            FallbackCause::Runtime { message, .. } => write!(f, "script error: {message}")?,
            FallbackCause::Limit(kind) => write!(f, "{kind}")?,
            FallbackCause::WrongType { expected, got } => {
                write!(f, "returned {got}, expected {expected}")?;
            }
            FallbackCause::BadValue(why) => f.write_str(why)?,
        }
        f.write_str("; safe default used")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_names_script_position_and_function() {
        let fb = Fallback {
            role: Role::Retry,
            script: Some("policies/retry.rhai".into()),
            cause: FallbackCause::Runtime {
                message: "division by zero".into(),
                position: Some((12, 5)),
            },
        };
        assert_eq!(
            fb.to_string(),
            "policies/retry.rhai:12:5: next_round: script error: division by zero; safe default used"
        );
    }

    #[test]
    fn limit_fallback_names_the_limit_without_position() {
        let fb = Fallback {
            role: Role::Restrict,
            script: Some("policies/restrict.rhai".into()),
            cause: FallbackCause::Limit(LimitKind::Operations),
        };
        assert_eq!(
            fb.to_string(),
            "policies/restrict.rhai: allow: operations limit hit; safe default used"
        );
    }

    #[test]
    fn decision_serialises_as_the_gate_prints_it() {
        let d = Decision {
            allow: false,
            reason: "too old".into(),
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"allow":false,"reason":"too old"}"#
        );
    }
}
