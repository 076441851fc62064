//! The `advance(ctx)` decision: after a stage of a phased rollout, does
//! the next stage start, does the run wait, pause or abort?
//!
//! [`StageFacts`] are what the engine knows about the stage (who was
//! targeted, delivered, failed and why, time in the stage and since its
//! broadcast, the workflow's gate); [`Advance`] is the answer. The gate's
//! arithmetic ([`StageFacts::over_failures`], [`StageFacts::success_reached`])
//! lives here once, for the default and for scripts (`ctx.over_failures`,
//! `ctx.success_reached`), so a script and the default cannot read a
//! threshold differently.
//!
//! No I/O and no clock: the caller passes the facts, times included.

use std::time::Duration;

use rhai::{Array, Dynamic, Engine, INT, Map};
use serde::Serialize;

use crate::decision::FallbackCause;

/// How often the default asks again while a stage is short of its
/// `min_success` after its soak: a straggler's delta can still bring it up.
pub const DEFAULT_ADVANCE_RECHECK: Duration = Duration::from_secs(600);

/// `max_failures` as the engine hands it to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureThreshold {
    /// Percent of the stage's targeted clients, 0..=100.
    Percent(f64),
    /// Failed clients.
    Count(u64),
}

/// What one earlier stage ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageSummary {
    /// Its name.
    pub name: String,
    /// Clients in it.
    pub targeted: u64,
    /// Clients that installed.
    pub delivered: u64,
    /// Clients that reported a failure.
    pub failed: u64,
}

/// Facts for `advance(ctx)`, asked when a stage's broadcast is over, again
/// when the wait the policy asked for is over, and when a failure is
/// reported in the stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageFacts {
    /// The stage, from 1.
    pub stage: u32,
    /// Stages in the workflow.
    pub stages: u32,
    /// Its name.
    pub name: String,
    /// Clients in the stage.
    pub targeted: u64,
    /// Of them, those that installed and reported success.
    pub delivered: u64,
    /// Of them, those that reported a failure.
    pub failed: u64,
    /// Failures by reason (`post-install`, `health`, `rollback`, …), in
    /// the order the caller gives them.
    pub failures: Vec<(String, u64)>,
    /// Time since the stage started.
    pub in_stage: Duration,
    /// Time since the stage's broadcast ended (zero while it goes on).
    pub soaked: Duration,
    /// The gate's soak.
    pub soak: Duration,
    /// The gate's `min_success`, in percent.
    pub min_success: Option<f64>,
    /// The gate's `max_failures`.
    pub max_failures: Option<FailureThreshold>,
    /// The stages before this one, in order.
    pub previous: Vec<StageSummary>,
}

impl StageFacts {
    /// Clients that have neither installed nor failed.
    pub fn pending(&self) -> u64 {
        self.targeted
            .saturating_sub(self.delivered)
            .saturating_sub(self.failed)
    }

    /// `part` of the targeted clients, in percent (0 of 0 is 0 %).
    fn percent(&self, part: u64) -> f64 {
        if self.targeted == 0 {
            0.0
        } else {
            part as f64 * 100.0 / self.targeted as f64
        }
    }

    /// Delivered clients in percent of the targeted.
    pub fn success(&self) -> f64 {
        self.percent(self.delivered)
    }

    /// Failed clients in percent of the targeted.
    pub fn failure(&self) -> f64 {
        self.percent(self.failed)
    }

    /// Whether the failures exceed `max_failures` (strictly: `2%` tolerates
    /// exactly 2 %, `3` tolerates three). Never without a threshold.
    pub fn over_failures(&self) -> bool {
        match self.max_failures {
            None => false,
            // Compared in integers where possible: 2% of 50 is exactly one.
            Some(FailureThreshold::Percent(p)) => {
                self.failed as f64 * 100.0 > p * self.targeted as f64
            }
            Some(FailureThreshold::Count(n)) => self.failed > n,
        }
    }

    /// Whether the delivered share reaches `min_success` (always without
    /// a threshold, and in a stage of nobody: an empty stage must not hold
    /// the rollout forever).
    pub fn success_reached(&self) -> bool {
        self.min_success
            .is_none_or(|m| self.delivered as f64 * 100.0 >= m * self.targeted as f64)
    }

    /// What is left of the soak.
    pub fn soak_left(&self) -> Duration {
        self.soak.saturating_sub(self.soaked)
    }

    /// Whether this is the last stage.
    pub fn last(&self) -> bool {
        self.stage >= self.stages
    }
}

/// What `advance` decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decide", rename_all = "snake_case")]
pub enum Advance {
    /// Start the next stage (after the last: the rollout is complete).
    Proceed {
        /// Why, for the audit.
        reason: String,
    },
    /// Ask again after this long (sooner if a failure is reported).
    Wait {
        /// How long.
        #[serde(rename = "wait_secs", serialize_with = "secs")]
        wait: Duration,
        /// Why, for the audit.
        reason: String,
    },
    /// Stop here until an operator resumes or aborts the run.
    Pause {
        /// Why, for the audit.
        reason: String,
    },
    /// End the run; no further stage installs.
    Abort {
        /// Why, for the audit.
        reason: String,
        /// Whether the stage's clients go back to their previous version.
        rollback: bool,
    },
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Advance {
    /// `proceed`, `wait`, `pause` or `abort`.
    pub fn word(&self) -> &'static str {
        match self {
            Advance::Proceed { .. } => "proceed",
            Advance::Wait { .. } => "wait",
            Advance::Pause { .. } => "pause",
            Advance::Abort { .. } => "abort",
        }
    }

    /// Why.
    pub fn reason(&self) -> &str {
        match self {
            Advance::Proceed { reason }
            | Advance::Wait { reason, .. }
            | Advance::Pause { reason }
            | Advance::Abort { reason, .. } => reason,
        }
    }
}

fn threshold_text(t: FailureThreshold) -> String {
    match t {
        FailureThreshold::Percent(p) => format!("{p}%"),
        FailureThreshold::Count(n) => n.to_string(),
    }
}

/// The workflow's gate, followed to the letter: what `advance` decides
/// when the workflow names no advance policy (and what the shipped
/// `policies/advance.rhai` does).
///
/// Pause as soon as the failures exceed `max_failures` (even during the
/// soak: a bad release is stopped when it shows, not when the soak ends);
/// wait out the soak; wait while fewer than `min_success` have installed
/// (asking again every [`DEFAULT_ADVANCE_RECHECK`]); then proceed. Never
/// aborts: that is an operator's call.
pub fn follow_gate(f: &StageFacts) -> Advance {
    if f.over_failures() {
        return Advance::Pause {
            reason: format!(
                "{} of {} clients failed ({:.1}%), more than max_failures {}",
                f.failed,
                f.targeted,
                f.failure(),
                f.max_failures.map(threshold_text).unwrap_or_default()
            ),
        };
    }
    let left = f.soak_left();
    if !left.is_zero() {
        return Advance::Wait {
            wait: left,
            reason: format!(
                "soaking: {} s of {} s left",
                left.as_secs(),
                f.soak.as_secs()
            ),
        };
    }
    if !f.success_reached() {
        return Advance::Wait {
            wait: DEFAULT_ADVANCE_RECHECK,
            reason: format!(
                "{} of {} clients installed ({:.1}%), short of min_success {}%",
                f.delivered,
                f.targeted,
                f.success(),
                f.min_success.unwrap_or_default()
            ),
        };
    }
    Advance::Proceed {
        reason: format!(
            "stage {:?} passed its gate: {} of {} installed, {} failed",
            f.name, f.delivered, f.targeted, f.failed
        ),
    }
}

/// What `advance` decides when its script fails: pause. A broken policy
/// must never carry a release further; a paused run waits for an operator,
/// who can resume it.
pub(crate) fn pause_on_failure() -> Advance {
    Advance::Pause {
        reason: "the advance policy gave no answer; paused (safe default)".into(),
    }
}

const FORMS: &str = "\"proceed\", \"pause\", \"abort\", seconds to wait (int >= 0), or \
                     #{ decide: \"proceed\"|\"wait\"|\"pause\"|\"abort\", wait: N, reason: \"…\", rollback: bool }";

fn wait_from(d: &Dynamic) -> Option<Result<Duration, FallbackCause>> {
    if let Ok(n) = d.as_int() {
        return Some(
            u64::try_from(n)
                .map(Duration::from_secs)
                .map_err(|_| FallbackCause::BadValue(format!("returned a negative wait ({n})"))),
        );
    }
    if let Ok(x) = d.as_float() {
        return Some(
            Duration::try_from_secs_f64(x)
                .map_err(|_| FallbackCause::BadValue(format!("returned a wait of {x} seconds"))),
        );
    }
    None
}

/// The script's answer as an [`Advance`]; anything not in [`FORMS`] is
/// refused whole.
pub(crate) fn advance_from(d: Dynamic) -> Result<Advance, FallbackCause> {
    let by_policy = |word: &str| format!("{word} by the advance policy");
    if let Some(wait) = wait_from(&d) {
        let wait = wait?;
        return Ok(Advance::Wait {
            wait,
            reason: by_policy("wait"),
        });
    }
    let wrong = || FallbackCause::WrongType {
        expected: FORMS,
        got: d.type_name().to_string(),
    };
    let (word, map) = if d.is_string() {
        (d.to_string(), None)
    } else if let Some(map) = d.read_lock::<Map>() {
        let word = map
            .get("decide")
            .filter(|w| w.is_string())
            .map(ToString::to_string)
            .ok_or_else(wrong)?;
        (word, Some(map.clone()))
    } else {
        return Err(wrong());
    };
    let reason = map
        .as_ref()
        .and_then(|m| m.get("reason"))
        .filter(|r| r.is_string())
        .map(ToString::to_string)
        .unwrap_or_else(|| by_policy(&word));
    let get = |key: &str| map.as_ref().and_then(|m| m.get(key).cloned());
    match word.as_str() {
        "proceed" => Ok(Advance::Proceed { reason }),
        "pause" => Ok(Advance::Pause { reason }),
        "abort" => {
            let rollback = match get("rollback") {
                None => false,
                Some(b) => b.as_bool().map_err(|_| {
                    FallbackCause::BadValue("rollback must be true or false".into())
                })?,
            };
            Ok(Advance::Abort { reason, rollback })
        }
        "wait" => {
            let wait = match get("wait") {
                Some(w) => wait_from(&w).unwrap_or_else(|| {
                    Err(FallbackCause::BadValue(
                        "wait must be a number of seconds".into(),
                    ))
                })?,
                None => {
                    return Err(FallbackCause::BadValue(
                        "decide: \"wait\" needs wait: N seconds".into(),
                    ));
                }
            };
            Ok(Advance::Wait { wait, reason })
        }
        other => Err(FallbackCause::BadValue(format!(
            "unknown decision {other:?}; one of proceed, wait, pause, abort"
        ))),
    }
}

/// What a script sees as `ctx` in `advance(ctx)`.
#[derive(Debug, Clone)]
pub(crate) struct StageView(pub(crate) StageFacts);

fn int(n: u64) -> Dynamic {
    Dynamic::from_int(INT::try_from(n).unwrap_or(INT::MAX))
}

fn summary_map(s: &StageSummary) -> Dynamic {
    let mut m = Map::new();
    m.insert("name".into(), Dynamic::from(s.name.clone()));
    m.insert("targeted".into(), int(s.targeted));
    m.insert("delivered".into(), int(s.delivered));
    m.insert("failed".into(), int(s.failed));
    Dynamic::from_map(m)
}

/// Registers `ctx`'s getters; the names are those `policies/README.md`
/// documents.
pub(crate) fn register(engine: &mut Engine) {
    let secs = |d: Duration| int(d.as_secs());
    engine
        .register_type_with_name::<StageView>("StageFacts")
        .register_get("stage", |v: &mut StageView| int(u64::from(v.0.stage)))
        .register_get("stages", |v: &mut StageView| int(u64::from(v.0.stages)))
        .register_get("last", |v: &mut StageView| Dynamic::from_bool(v.0.last()))
        .register_get("name", |v: &mut StageView| Dynamic::from(v.0.name.clone()))
        .register_get("targeted", |v: &mut StageView| int(v.0.targeted))
        .register_get("delivered", |v: &mut StageView| int(v.0.delivered))
        .register_get("failed", |v: &mut StageView| int(v.0.failed))
        .register_get("pending", |v: &mut StageView| int(v.0.pending()))
        .register_get("success", |v: &mut StageView| {
            Dynamic::from_float(v.0.success())
        })
        .register_get("failure", |v: &mut StageView| {
            Dynamic::from_float(v.0.failure())
        })
        .register_get("failures", |v: &mut StageView| {
            let mut m = Map::new();
            for (reason, n) in &v.0.failures {
                m.insert(reason.as_str().into(), int(*n));
            }
            Dynamic::from_map(m)
        })
        .register_get("in_stage", move |v: &mut StageView| secs(v.0.in_stage))
        .register_get("soaked", move |v: &mut StageView| secs(v.0.soaked))
        .register_get("soak", move |v: &mut StageView| secs(v.0.soak))
        .register_get("soak_left", move |v: &mut StageView| secs(v.0.soak_left()))
        .register_get("min_success", |v: &mut StageView| {
            v.0.min_success.map_or(Dynamic::UNIT, Dynamic::from_float)
        })
        .register_get("max_failures", |v: &mut StageView| match v.0.max_failures {
            None => Dynamic::UNIT,
            Some(t) => Dynamic::from(threshold_text(t)),
        })
        .register_get("over_failures", |v: &mut StageView| {
            Dynamic::from_bool(v.0.over_failures())
        })
        .register_get("success_reached", |v: &mut StageView| {
            Dynamic::from_bool(v.0.success_reached())
        })
        .register_get("previous", |v: &mut StageView| {
            let list: Array = v.0.previous.iter().map(summary_map).collect();
            Dynamic::from_array(list)
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> StageFacts {
        StageFacts {
            stage: 1,
            stages: 3,
            name: "canary".into(),
            targeted: 50,
            delivered: 48,
            failed: 1,
            failures: vec![("post-install".into(), 1)],
            in_stage: Duration::from_secs(3600),
            soaked: Duration::from_secs(1800),
            soak: Duration::from_secs(1800),
            min_success: Some(95.0),
            max_failures: Some(FailureThreshold::Percent(2.0)),
            previous: Vec::new(),
        }
    }

    #[test]
    fn thresholds_are_strict_for_failures_and_inclusive_for_success() {
        let f = facts();
        assert!(!f.over_failures(), "1 of 50 is 2%: tolerated");
        assert!(f.success_reached(), "48 of 50 is 96%");
        let f = StageFacts {
            failed: 2,
            delivered: 47,
            ..facts()
        };
        assert!(f.over_failures(), "2 of 50 is 4%");
        assert!(!f.success_reached(), "47 of 50 is 94%");
        let f = StageFacts {
            max_failures: Some(FailureThreshold::Count(1)),
            failed: 1,
            ..facts()
        };
        assert!(!f.over_failures());
        let f = StageFacts {
            targeted: 0,
            delivered: 0,
            failed: 0,
            ..facts()
        };
        assert!(
            !f.over_failures() && f.success_reached(),
            "an empty stage (a relay without clients) does not hold the rollout"
        );
        let f = StageFacts {
            min_success: None,
            max_failures: None,
            delivered: 0,
            failed: 50,
            ..facts()
        };
        assert!(
            !f.over_failures() && f.success_reached(),
            "no gate, no threshold"
        );
    }

    #[test]
    fn the_gate_pauses_on_failures_even_while_soaking() {
        let f = StageFacts {
            failed: 3,
            soaked: Duration::ZERO,
            ..facts()
        };
        let d = follow_gate(&f);
        assert_eq!(d.word(), "pause");
        assert_eq!(
            d.reason(),
            "3 of 50 clients failed (6.0%), more than max_failures 2%"
        );
    }

    #[test]
    fn the_gate_waits_out_the_soak_then_for_success_then_proceeds() {
        let soaking = StageFacts {
            soaked: Duration::from_secs(600),
            ..facts()
        };
        assert_eq!(
            follow_gate(&soaking),
            Advance::Wait {
                wait: Duration::from_secs(1200),
                reason: "soaking: 1200 s of 1800 s left".into()
            }
        );
        let short = StageFacts {
            delivered: 40,
            ..facts()
        };
        assert!(
            matches!(follow_gate(&short), Advance::Wait { wait, .. } if wait == DEFAULT_ADVANCE_RECHECK)
        );
        assert_eq!(follow_gate(&facts()).word(), "proceed");
    }

    #[test]
    fn every_documented_answer_form_converts_and_others_are_refused() {
        let map = |pairs: &[(&str, Dynamic)]| {
            let mut m = Map::new();
            for (k, v) in pairs {
                m.insert((*k).into(), v.clone());
            }
            Dynamic::from_map(m)
        };
        assert_eq!(
            advance_from(Dynamic::from("proceed")).unwrap().word(),
            "proceed"
        );
        assert_eq!(
            advance_from(Dynamic::from("pause")).unwrap().word(),
            "pause"
        );
        assert_eq!(
            advance_from(Dynamic::from_int(90)).unwrap(),
            Advance::Wait {
                wait: Duration::from_secs(90),
                reason: "wait by the advance policy".into()
            }
        );
        assert_eq!(
            advance_from(map(&[
                ("decide", Dynamic::from("abort")),
                ("rollback", Dynamic::TRUE),
                ("reason", Dynamic::from("health checks fail")),
            ]))
            .unwrap(),
            Advance::Abort {
                reason: "health checks fail".into(),
                rollback: true
            }
        );
        assert!(
            advance_from(map(&[
                ("decide", Dynamic::from("wait")),
                ("wait", Dynamic::from_int(5))
            ]))
            .is_ok()
        );
        for bad in [
            Dynamic::UNIT,
            Dynamic::from("onward"),
            Dynamic::from_int(-1),
            Dynamic::from_float(f64::NAN),
            map(&[("decide", Dynamic::from("wait"))]),
            map(&[
                ("decide", Dynamic::from("abort")),
                ("rollback", Dynamic::from_int(1)),
            ]),
            map(&[("reason", Dynamic::from("no decision"))]),
        ] {
            assert!(advance_from(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
