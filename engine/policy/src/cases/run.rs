//! Running cases against one script through the typed façade.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{Call, Case, Expected, Pos, ReadFailure};
use crate::advance::Advance;
use crate::budget::Budget;
use crate::decision::{Fallback, FallbackCause, NextRound, Outcome, Role};
use crate::error::PolicyError;
use crate::facts::BudgetFacts;
use crate::hardening::Limits;
use crate::set::PolicySet;

/// One script, compiled for the roles its cases call, with its source kept
/// to point at entry points in reports.
#[derive(Debug)]
pub struct PolicyUnderTest {
    path: PathBuf,
    source: String,
    set: PolicySet,
}

/// What the policy answered (the script's answer, or the safe default when
/// it fell back).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Answer {
    /// `next_round`: stop, or wait this many seconds.
    NextRound {
        /// Whether rounds stop.
        stop: bool,
        /// Seconds until the next round (when not stopping).
        #[serde(skip_serializing_if = "Option::is_none")]
        wait_secs: Option<f64>,
        /// Why it stops (the engine records no reason for a wait).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `allow`.
    Allow {
        /// Whether the client may use the service.
        allow: bool,
        /// Why.
        reason: String,
    },
    /// `disconnect`.
    Disconnect {
        /// Whether the client is cut off.
        cut: bool,
        /// Why.
        reason: String,
    },
    /// `round_budget`, with the keys a script returns.
    RoundBudget {
        /// Fraction of each block's source symbols sent as repair in its
        /// first pass.
        proactive: f64,
        /// Most bytes, as a multiple of the artifact.
        budget: f64,
        /// Longest round, in seconds.
        time: f64,
        /// Silence that drops a listener from the wait, in seconds.
        silence: f64,
    },
    /// `advance`.
    Advance {
        /// `proceed`, `wait`, `pause` or `abort`.
        decide: &'static str,
        /// Seconds to wait (with `wait`).
        #[serde(skip_serializing_if = "Option::is_none")]
        wait_secs: Option<f64>,
        /// Whether an abort rolls the stage back (with `abort`).
        #[serde(skip_serializing_if = "Option::is_none")]
        rollback: Option<bool>,
        /// Why.
        reason: String,
    },
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// Where the case starts in its file.
    pub pos: Pos,
    /// The entry point called.
    pub entry: &'static str,
    /// What the policy answered.
    pub got: Answer,
    /// Set when the safe default answered instead of the script.
    pub fallback: Option<Fallback>,
    /// Each way the answer differs from `expect`; empty when the case passed.
    pub failures: Vec<String>,
    /// Where in the script to look: the script error's line and column when
    /// the script failed with one, else the line of the entry point's `fn`.
    pub script_pos: Option<Pos>,
}

impl CaseReport {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::NextRound {
                stop: true, reason, ..
            } => write!(f, "stop ({:?})", reason.as_deref().unwrap_or("")),
            Answer::NextRound { wait_secs, .. } => {
                write!(f, "wait {} s", wait_secs.unwrap_or_default())
            }
            Answer::Allow { allow, reason } => {
                write!(f, "{} ({reason:?})", if *allow { "allow" } else { "deny" })
            }
            Answer::Disconnect { cut, reason } => {
                let verb = if *cut { "cut off" } else { "keep connected" };
                write!(f, "{verb} ({reason:?})")
            }
            Answer::RoundBudget {
                proactive,
                budget,
                time,
                silence,
            } => write!(
                f,
                "proactive {proactive}, budget {budget}, time {time} s, silence {silence} s"
            ),
            Answer::Advance {
                decide,
                wait_secs,
                rollback,
                reason,
            } => {
                f.write_str(decide)?;
                if let Some(w) = wait_secs {
                    write!(f, " {w} s")?;
                }
                match rollback {
                    Some(true) => f.write_str(" with rollback")?,
                    Some(false) => f.write_str(" without rollback")?,
                    None => {}
                }
                write!(f, " ({reason:?})")
            }
        }
    }
}

/// `120 s`, `1.5 s`.
pub(super) fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

impl PolicyUnderTest {
    /// Reads the script at `path` (a regular file no larger than the
    /// policy source limit) and compiles it for `roles`.
    ///
    /// Only the roles asked are compiled, so a script without `next_round`
    /// tested only for `allow` brings no warning about it.
    ///
    /// # Errors
    /// The script cannot be read, is too large or does not compile.
    pub fn load(path: &Path, roles: &[Role]) -> Result<PolicyUnderTest, Vec<PolicyError>> {
        let max = Limits::default().max_source_size;
        let source = super::read_capped(path, max as u64).map_err(|e| {
            let path = path.to_path_buf();
            vec![match e {
                ReadFailure::Io(source) => PolicyError::Read { path, source },
                ReadFailure::NotAFile => PolicyError::Read {
                    path,
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "not a regular file",
                    ),
                },
                ReadFailure::TooLarge(size) => PolicyError::TooLarge {
                    path,
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max,
                },
            }]
        })?;
        PolicyUnderTest::compile(path, source, roles)
    }

    /// Compiles `source`, naming `path` in messages.
    ///
    /// # Errors
    /// The script is too large or does not compile.
    pub fn compile(
        path: &Path,
        source: String,
        roles: &[Role],
    ) -> Result<PolicyUnderTest, Vec<PolicyError>> {
        let mut sources: Vec<(Role, &Path, &str)> = Vec::new();
        for role in Role::ALL {
            if roles.contains(&role) {
                sources.push((role, path, source.as_str()));
            }
        }
        let set = PolicySet::compile_with_limits(&sources, Limits::default())?;
        Ok(PolicyUnderTest {
            path: path.to_path_buf(),
            source,
            set,
        })
    }

    /// The script's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The set the script was compiled into (its load warnings, say).
    pub fn set(&self) -> &PolicySet {
        &self.set
    }

    /// Asks the script once.
    pub fn decide(&self, call: &Call) -> (Answer, Option<Fallback>) {
        match call {
            Call::NextRound(facts) => {
                let Outcome { value, fallback } = self.set.next_round(facts);
                let answer = match value {
                    NextRound::Stop { reason } => Answer::NextRound {
                        stop: true,
                        wait_secs: None,
                        reason: Some(reason),
                    },
                    NextRound::Wait(d) => Answer::NextRound {
                        stop: false,
                        wait_secs: Some(d.as_secs_f64()),
                        reason: None,
                    },
                };
                (answer, fallback)
            }
            Call::Allow {
                client,
                service,
                now,
            } => {
                let Outcome { value, fallback } = self.set.allow(client, service, *now);
                let answer = Answer::Allow {
                    allow: value.allow,
                    reason: value.reason,
                };
                (answer, fallback)
            }
            Call::Disconnect { client, now } => {
                let Outcome { value, fallback } = self.set.disconnect(client, *now);
                let answer = Answer::Disconnect {
                    cut: value.cut,
                    reason: value.reason,
                };
                (answer, fallback)
            }
            Call::RoundBudget(facts) => {
                let (answer, fallback) = self.decide_budget(facts);
                (answer.0, fallback)
            }
            Call::Advance(facts) => {
                let Outcome { value, fallback } = self.set.advance(facts);
                let answer = Answer::Advance {
                    decide: value.word(),
                    wait_secs: match &value {
                        Advance::Wait { wait, .. } => Some(wait.as_secs_f64()),
                        _ => None,
                    },
                    rollback: match &value {
                        Advance::Abort { rollback, .. } => Some(*rollback),
                        _ => None,
                    },
                    reason: value.reason().to_string(),
                };
                (answer, fallback)
            }
        }
    }

    /// Asks `round_budget` once: the answer, the typed budget, and the
    /// fallback if any.
    fn decide_budget(&self, facts: &BudgetFacts) -> ((Answer, Budget), Option<Fallback>) {
        let Outcome { value, fallback } = self.set.round_budget(facts);
        let answer = Answer::RoundBudget {
            proactive: value.proactive,
            budget: value.bytes,
            time: value.time.as_secs_f64(),
            silence: value.silence.as_secs_f64(),
        };
        ((answer, value), fallback)
    }

    /// Runs one case and says how its answer differs from `expect`.
    pub fn run(&self, case: &Case) -> CaseReport {
        let mut failures = Vec::new();
        let (got, fallback) = match (&case.call, &case.expect.decision) {
            // A budget is checked key by key: one line per key that differs
            // says more than two whole budgets side by side.
            (Call::RoundBudget(facts), Expected::Budget(want)) => {
                let ((got, budget), fallback) = self.decide_budget(facts);
                for (key, want, got) in want.mismatches(&budget) {
                    failures.push(format!("expected {key} {want}, got {got}"));
                }
                (got, fallback)
            }
            (call, want) => {
                let (got, fallback) = self.decide(call);
                if !decision_matches(want, &got) {
                    failures.push(format!("expected {want}, got {got}"));
                }
                (got, fallback)
            }
        };
        match (&fallback, case.expect.fallback) {
            (Some(fb), false) => {
                failures.insert(0, format!("the script did not answer: {fb}"));
            }
            (None, true) => failures.insert(
                0,
                "expected a fallback to the safe default, but the script answered".into(),
            ),
            _ => {}
        }
        if let Some(want) = &case.expect.reason {
            let reason = match &got {
                Answer::NextRound { reason, .. } => reason.as_deref(),
                Answer::Allow { reason, .. }
                | Answer::Disconnect { reason, .. }
                | Answer::Advance { reason, .. } => Some(reason.as_str()),
                Answer::RoundBudget { .. } => None,
            };
            match reason {
                Some(r) if want.matches(r) => {}
                Some(r) => failures.push(match want {
                    super::ReasonMatch::Exact(w) => format!("expected reason {w:?}, got {r:?}"),
                    super::ReasonMatch::Contains(w) => {
                        format!("expected a reason containing {w:?}, got {r:?}")
                    }
                }),
                None => failures.push("expected a reason, but this answer carries none".into()),
            }
        }
        let script_pos = match &fallback {
            Some(Fallback {
                cause:
                    FallbackCause::Runtime {
                        position: Some((line, column)),
                        ..
                    },
                ..
            }) => Some(Pos {
                line: *line,
                column: *column,
            }),
            _ => self.entry_position(case.call.role()),
        };
        CaseReport {
            name: case.name.clone(),
            pos: case.pos,
            entry: case.call.entry(),
            got,
            fallback,
            failures,
            script_pos,
        }
    }

    /// Where `fn <entry>(` is defined: Rhai keeps no position for function
    /// definitions, so the source is searched for the line that opens it.
    pub fn entry_position(&self, role: Role) -> Option<Pos> {
        let (name, params) = role.entry_point();
        self.source.lines().enumerate().find_map(|(i, line)| {
            let trimmed = line.trim_start();
            let rest = trimmed
                .strip_prefix("private ")
                .unwrap_or(trimmed)
                .strip_prefix("fn ")?
                .trim_start()
                .strip_prefix(name)?
                .trim_start()
                .strip_prefix('(')?;
            let arity = rest
                .split(')')
                .next()
                .map_or(0, |p| p.split(',').filter(|s| !s.trim().is_empty()).count());
            (arity == params.len()).then(|| Pos {
                line: i + 1,
                column: line.len() - trimmed.len() + 1,
            })
        })
    }
}

fn decision_matches(expected: &Expected, got: &Answer) -> bool {
    match (expected, got) {
        (Expected::Stop, Answer::NextRound { stop, .. }) => *stop,
        (Expected::Wait(None), Answer::NextRound { stop, .. }) => !*stop,
        (
            Expected::Wait(Some(d)),
            Answer::NextRound {
                stop, wait_secs, ..
            },
        ) => !*stop && *wait_secs == Some(d.as_secs_f64()),
        (Expected::Allow(want), Answer::Allow { allow, .. }) => want == allow,
        (Expected::Cut(want), Answer::Disconnect { cut, .. }) => want == cut,
        (
            Expected::Advance {
                decide: want,
                wait,
                rollback: want_rollback,
            },
            Answer::Advance {
                decide,
                wait_secs,
                rollback,
                ..
            },
        ) => {
            want == decide
                && wait.is_none_or(|w| *wait_secs == Some(w.as_secs_f64()))
                && want_rollback.is_none_or(|r| *rollback == Some(r))
        }
        _ => false,
    }
}
