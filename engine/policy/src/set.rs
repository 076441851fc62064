//! The typed policy set: load once, then ask decisions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rhai::{Dynamic, Engine, Map};

use crate::advance::{Advance, StageFacts, StageView, advance_from, follow_gate, pause_on_failure};
use crate::budget::{Budget, budget_from};
use crate::decision::{CutOff, Decision, Fallback, FallbackCause, NextRound, Outcome, Role};
use crate::error::{LoadWarning, PolicyError};
use crate::facts::{
    BudgetFacts, BudgetView, ClientFacts, ClientView, RoundFacts, RoundView, ServiceFacts,
    ServiceView,
};
use crate::hardening::{Limits, hardened_engine};
use crate::script::Script;

/// The gap between rounds when the retry policy gives none: one hour.
pub const DEFAULT_ROUND_GAP: Duration = Duration::from_secs(3600);

/// Where each role's script lives (as a workflow names them, already
/// resolved against the workflow's folder). `None` uses the safe default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyPaths {
    /// Script defining `next_round(ctx)`.
    pub retry: Option<PathBuf>,
    /// Script defining `allow(client, service)`.
    pub restrict: Option<PathBuf>,
    /// Script defining `disconnect(client)`.
    pub disconnect: Option<PathBuf>,
    /// Script defining `round_budget(ctx)`.
    pub broadcast: Option<PathBuf>,
    /// Script defining `advance(ctx)`.
    pub advance: Option<PathBuf>,
}

impl PolicyPaths {
    /// The path configured for `role`.
    pub fn get(&self, role: Role) -> Option<&Path> {
        match role {
            Role::Retry => self.retry.as_deref(),
            Role::Restrict => self.restrict.as_deref(),
            Role::Disconnect => self.disconnect.as_deref(),
            Role::Broadcast => self.broadcast.as_deref(),
            Role::Advance => self.advance.as_deref(),
        }
    }
}

/// The policies of one workflow, compiled and ready to answer.
///
/// Call order: [`PolicySet::load`] once (or [`PolicySet::defaults`]), show
/// [`PolicySet::warnings`], then ask [`PolicySet::round_budget`],
/// [`PolicySet::next_round`], [`PolicySet::allow`] and
/// [`PolicySet::disconnect`] as often as needed from any thread: the set is
/// `Send + Sync` (and cheap to clone) and each call is independent.
///
/// Every decision returns an [`Outcome`]: the answer, plus a [`Fallback`]
/// when the safe default was used (no script, no entry point, script error,
/// limit hit, wrong return type). Fallbacks are also logged with `tracing`.
#[derive(Debug, Clone)]
pub struct PolicySet {
    engine: Arc<Engine>,
    limits: Limits,
    /// Each role's script, by [`Role::index`].
    scripts: [Option<Arc<Script>>; Role::ALL.len()],
    warnings: Vec<LoadWarning>,
}

impl PolicySet {
    /// No scripts: every decision is its safe default.
    pub fn defaults() -> PolicySet {
        let limits = Limits::default();
        PolicySet {
            engine: Arc::new(hardened_engine(&limits)),
            limits,
            scripts: Default::default(),
            warnings: Vec::new(),
        }
    }

    /// Reads and compiles the scripts with the default [`Limits`].
    ///
    /// A script named for several roles is compiled once. A script lacking
    /// a role's entry point is not an error: it yields a [`LoadWarning`] and
    /// the role uses its safe default.
    ///
    /// # Errors
    /// Every script that cannot be read or compiled, one error each.
    pub fn load(paths: &PolicyPaths) -> Result<PolicySet, Vec<PolicyError>> {
        PolicySet::load_with_limits(paths, Limits::default())
    }

    /// [`PolicySet::load`] with explicit limits.
    ///
    /// # Errors
    /// As [`PolicySet::load`].
    pub fn load_with_limits(
        paths: &PolicyPaths,
        limits: Limits,
    ) -> Result<PolicySet, Vec<PolicyError>> {
        let mut texts: HashMap<&Path, String> = HashMap::new();
        let mut errors = Vec::new();
        for role in Role::ALL {
            let Some(path) = paths.get(role) else {
                continue;
            };
            if texts.contains_key(path) || errors.iter().any(|e: &PolicyError| e.path() == path) {
                continue;
            }
            match crate::input::read_text(path, limits.max_source_size as u64, "policy scripts") {
                Ok(text) => {
                    texts.insert(path, text);
                }
                Err(source) => errors.push(PolicyError::Read {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let sources: Vec<(Role, &Path, &str)> = Role::ALL
            .into_iter()
            .filter_map(|role| {
                let path = paths.get(role)?;
                Some((role, path, texts.get(path)?.as_str()))
            })
            .collect();
        PolicySet::compile_with_limits(&sources, limits)
    }

    /// Compiles scripts given as text: `(role, path to name in messages,
    /// source)`. Used by [`PolicySet::load`], and by callers that hold
    /// scripts in memory (tests, the simulator).
    ///
    /// # Errors
    /// Every source that does not compile, one error per path.
    pub fn compile_with_limits(
        sources: &[(Role, &Path, &str)],
        limits: Limits,
    ) -> Result<PolicySet, Vec<PolicyError>> {
        let engine = hardened_engine(&limits);
        let mut compiled: HashMap<&Path, Arc<Script>> = HashMap::new();
        let mut errors: Vec<PolicyError> = Vec::new();
        let mut warnings = Vec::new();
        let mut scripts: [Option<Arc<Script>>; Role::ALL.len()] = Default::default();
        for &(role, path, source) in sources {
            let script = match compiled.get(path) {
                Some(s) => Arc::clone(s),
                None => {
                    if errors.iter().any(|e| e.path() == path) {
                        continue; // a broken file is reported once
                    }
                    match Script::compile(&engine, &limits, path, source) {
                        Ok(s) => {
                            let s = Arc::new(s);
                            compiled.insert(path, Arc::clone(&s));
                            s
                        }
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    }
                }
            };
            if let Some(w) = script.check_entry_point(role) {
                tracing::warn!(target: "haifu_policy", "{w}");
                warnings.push(w);
            }
            scripts[role.index()] = Some(script);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PolicySet {
            engine: Arc::new(engine),
            limits,
            scripts,
            warnings,
        })
    }

    /// Entry points that are missing, found at load.
    pub fn warnings(&self) -> &[LoadWarning] {
        &self.warnings
    }

    fn script(&self, role: Role) -> Option<&Script> {
        self.scripts[role.index()].as_deref()
    }

    /// Runs `role`'s entry point and converts its answer, or falls back.
    fn decide<T>(
        &self,
        role: Role,
        args: impl rhai::FuncArgs,
        convert: impl FnOnce(Dynamic) -> Result<T, FallbackCause>,
        default: impl FnOnce() -> T,
    ) -> Outcome<T> {
        let Some(script) = self.script(role) else {
            return Outcome {
                value: default(),
                fallback: Some(Fallback {
                    role,
                    script: None,
                    cause: FallbackCause::NotConfigured,
                }),
            };
        };
        let result = script
            .call(&self.engine, &self.limits, role, args)
            .and_then(convert);
        match result {
            Ok(value) => Outcome {
                value,
                fallback: None,
            },
            Err(cause) => {
                let fallback = Fallback {
                    role,
                    script: Some(script.path().to_path_buf()),
                    cause,
                };
                tracing::warn!(target: "haifu_policy", "{fallback}");
                Outcome {
                    value: default(),
                    fallback: Some(fallback),
                }
            }
        }
    }

    /// When the next broadcast round starts, or that rounds stop.
    ///
    /// The script's `next_round(ctx)` returns a number of seconds to wait
    /// (an integer or float `>= 0`, or `#{ wait: N }`), or says stop with
    /// `"stop"` or `#{ stop: true, reason: "…" }`. Anything else, including
    /// `()` and negative numbers, is an error.
    ///
    /// **Safe default:** stop when every client has the artifact
    /// (`delivered >= total`) or every planned round has been sent; otherwise
    /// wait [`DEFAULT_ROUND_GAP`] (one hour). Rounds keep going at a steady
    /// pace rather than stopping early, because an unsent round can leave
    /// clients without the update while an extra one only costs bandwidth.
    pub fn next_round(&self, facts: &RoundFacts) -> Outcome<NextRound> {
        self.decide(
            Role::Retry,
            (Dynamic::from(RoundView(facts.clone())),),
            next_round_from,
            || default_next_round(facts),
        )
    }

    /// How the next broadcast round spends bytes and time.
    ///
    /// The script's `round_budget(ctx)` returns a map, each key optional
    /// (a missing key takes its default): `proactive` (fraction of each
    /// block's source symbols sent as repair in its first pass, 0 to 1),
    /// `budget` (most bytes, as a multiple of the artifact, 1 to 16, and at
    /// least `1 + proactive`), `time` (longest round in seconds, 1 s to a
    /// day, and no shorter than one first pass at the rate) and `silence`
    /// (seconds after which a silent listener no longer holds the round,
    /// 0.1 to 60). Any other answer — not a map, an unknown key, a value
    /// that is not a number or out of range — is refused whole.
    ///
    /// **Safe default:** [`Budget::safe_default`]: 2 % proactive, 3 × the
    /// artifact, the time those bytes take at the rate with half again to
    /// spare plus 10 s, 1 s of silence. It delivers every listener up to
    /// about 50 % loss while bounding what a round costs; a missing key
    /// takes its part of it (a missing `time` follows the decided
    /// `budget`). A workflow that names no broadcast policy gets it
    /// silently ([`FallbackCause::NotConfigured`], not logged).
    pub fn round_budget(&self, facts: &BudgetFacts) -> Outcome<Budget> {
        self.decide(
            Role::Broadcast,
            (Dynamic::from(BudgetView(facts.clone())),),
            |d| budget_from(d, facts),
            || Budget::safe_default(facts.size, facts.rate),
        )
    }

    /// Whether a phased rollout's next stage starts after `facts`' stage.
    ///
    /// The script's `advance(ctx)` returns `"proceed"`, `"pause"`,
    /// `"abort"`, a number of seconds to wait, or `#{ decide: "proceed" |
    /// "wait" | "pause" | "abort", wait: N, reason: "…", rollback: bool }`
    /// (`wait` required with `"wait"`). Anything else is refused whole.
    ///
    /// **Default without a script:** [`follow_gate`], the workflow's gate to
    /// the letter (pause above `max_failures`, wait out the soak and for
    /// `min_success`, then proceed), reported as
    /// [`FallbackCause::NotConfigured`] and not logged.
    ///
    /// **Safe default when the script fails:** pause. A broken policy must
    /// never carry a release to more clients; a paused run waits for an
    /// operator, who resumes or aborts it.
    pub fn advance(&self, facts: &StageFacts) -> Outcome<Advance> {
        if self.script(Role::Advance).is_none() {
            return Outcome {
                value: follow_gate(facts),
                fallback: Some(Fallback {
                    role: Role::Advance,
                    script: None,
                    cause: FallbackCause::NotConfigured,
                }),
            };
        }
        self.decide(
            Role::Advance,
            (Dynamic::from(StageView(facts.clone())),),
            advance_from,
            pause_on_failure,
        )
    }

    /// Whether `client` may use `service` (the service gate).
    ///
    /// The script's `allow(client, service)` returns a bool, or
    /// `#{ allow: bool, reason: "…" }`.
    ///
    /// **Safe default:** allow only when the client's installed version is at
    /// least the version in which the service appeared (`service.since`);
    /// deny a client whose version is unknown. This is the patent's rule
    /// (old-version clients are kept from new services) and never lets an old
    /// client reach a service it cannot speak.
    pub fn allow(
        &self,
        client: &ClientFacts,
        service: &ServiceFacts,
        now: Timestamp,
    ) -> Outcome<Decision> {
        self.decide(
            Role::Restrict,
            (
                Dynamic::from(ClientView::new(client, now)),
                Dynamic::from(ServiceView::new(service)),
            ),
            |d| decision_from(d, "allow"),
            || default_allow(client, service),
        )
    }

    /// Whether a straggler is cut off (deny-listed) at the deadline.
    ///
    /// The script's `disconnect(client)` returns a bool, or
    /// `#{ cut: bool, reason: "…" }`.
    ///
    /// **Safe default:** do not cut off. Cutting off refuses the client at
    /// the handshake until an operator readmits it, so a broken policy must
    /// never strand a fleet; a client kept connected is still held back from
    /// new services by the gate, and is listed as undelivered in the audit.
    pub fn disconnect(&self, client: &ClientFacts, now: Timestamp) -> Outcome<CutOff> {
        self.decide(
            Role::Disconnect,
            (Dynamic::from(ClientView::new(client, now)),),
            |d| {
                decision_from(d, "cut").map(|d| CutOff {
                    cut: d.allow,
                    reason: d.reason,
                })
            },
            || CutOff {
                cut: false,
                reason: "kept connected (safe default)".into(),
            },
        )
    }
}

fn default_next_round(facts: &RoundFacts) -> NextRound {
    if facts.delivered >= facts.total {
        NextRound::Stop {
            reason: "every client has the artifact".into(),
        }
    } else if facts.round >= facts.rounds {
        NextRound::Stop {
            reason: format!("all {} planned rounds sent", facts.rounds),
        }
    } else {
        NextRound::Wait(DEFAULT_ROUND_GAP)
    }
}

fn default_allow(client: &ClientFacts, service: &ServiceFacts) -> Decision {
    match &client.version {
        Some(v) if *v >= service.since => Decision {
            allow: true,
            reason: format!(
                "client {} has {v}, service {:?} needs {}",
                client.id, service.name, service.since
            ),
        },
        Some(v) => Decision {
            allow: false,
            reason: format!(
                "client {} has {v}, older than {} where service {:?} appeared",
                client.id, service.since, service.name
            ),
        },
        None => Decision {
            allow: false,
            reason: format!(
                "client {} never reported its version; service {:?} needs {}",
                client.id, service.name, service.since
            ),
        },
    }
}

const NEXT_ROUND_FORMS: &str = "seconds (int >= 0), \"stop\", #{ wait: N } or #{ stop: true }";

fn seconds_from(d: &Dynamic) -> Option<Result<Duration, FallbackCause>> {
    if let Ok(n) = d.as_int() {
        return Some(match u64::try_from(n) {
            Ok(s) => Ok(Duration::from_secs(s)),
            Err(_) => Err(FallbackCause::BadValue(format!(
                "returned a negative wait ({n}); return \"stop\" or #{{ stop: true }} to stop"
            ))),
        });
    }
    if let Ok(f) = d.as_float() {
        return Some(
            Duration::try_from_secs_f64(f)
                .map_err(|_| FallbackCause::BadValue(format!("returned a wait of {f} seconds"))),
        );
    }
    None
}

fn next_round_from(d: Dynamic) -> Result<NextRound, FallbackCause> {
    if let Some(wait) = seconds_from(&d) {
        return wait.map(NextRound::Wait);
    }
    if d.is_string() && d.to_string() == "stop" {
        return Ok(NextRound::Stop {
            reason: "the retry policy said stop".into(),
        });
    }
    if let Some(map) = d.read_lock::<Map>() {
        if map.get("stop").and_then(|v| v.as_bool().ok()) == Some(true) {
            return Ok(NextRound::Stop {
                reason: reason_of(&map).unwrap_or_else(|| "the retry policy said stop".into()),
            });
        }
        if let Some(wait) = map.get("wait").and_then(seconds_from) {
            return wait.map(NextRound::Wait);
        }
    }
    Err(FallbackCause::WrongType {
        expected: NEXT_ROUND_FORMS,
        got: d.type_name().to_string(),
    })
}

fn reason_of(map: &Map) -> Option<String> {
    map.get("reason")
        .filter(|r| r.is_string())
        .map(ToString::to_string)
}

/// Converts `bool` or `#{ <key>: bool, reason: "…" }`.
fn decision_from(d: Dynamic, key: &'static str) -> Result<Decision, FallbackCause> {
    let expected = if key == "allow" {
        "bool or #{ allow: bool, reason: \"…\" }"
    } else {
        "bool or #{ cut: bool, reason: \"…\" }"
    };
    if let Ok(b) = d.as_bool() {
        let verb = match (key, b) {
            ("allow", true) => "allowed",
            ("allow", false) => "denied",
            (_, true) => "cut off",
            (_, false) => "kept connected",
        };
        return Ok(Decision {
            allow: b,
            reason: format!("{verb} by policy"),
        });
    }
    if let Some(map) = d.read_lock::<Map>()
        && let Some(b) = map.get(key).and_then(|v| v.as_bool().ok())
    {
        let reason = reason_of(&map).unwrap_or_else(|| {
            if key == "allow" {
                format!("{} by policy", if b { "allowed" } else { "denied" })
            } else {
                format!("{} by policy", if b { "cut off" } else { "kept connected" })
            }
        });
        return Ok(Decision { allow: b, reason });
    }
    Err(FallbackCause::WrongType {
        expected,
        got: d.type_name().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_round_accepts_every_documented_form() {
        let wait = |n| Ok(NextRound::Wait(Duration::from_secs(n)));
        assert_eq!(next_round_from(Dynamic::from_int(60)), wait(60));
        assert_eq!(
            next_round_from(Dynamic::from_float(1.5)),
            Ok(NextRound::Wait(Duration::from_millis(1500)))
        );
        assert!(matches!(
            next_round_from(Dynamic::from("stop")),
            Ok(NextRound::Stop { .. })
        ));
        let mut m = Map::new();
        m.insert("wait".into(), Dynamic::from_int(5));
        assert_eq!(next_round_from(Dynamic::from_map(m)), wait(5));
        let mut m = Map::new();
        m.insert("stop".into(), Dynamic::TRUE);
        m.insert("reason".into(), Dynamic::from("all in"));
        assert_eq!(
            next_round_from(Dynamic::from_map(m)),
            Ok(NextRound::Stop {
                reason: "all in".into()
            })
        );
    }

    #[test]
    fn next_round_rejects_unit_and_negative() {
        assert!(matches!(
            next_round_from(Dynamic::UNIT),
            Err(FallbackCause::WrongType { .. })
        ));
        assert!(matches!(
            next_round_from(Dynamic::from_int(-1)),
            Err(FallbackCause::BadValue(_))
        ));
        assert!(matches!(
            next_round_from(Dynamic::from_float(f64::NAN)),
            Err(FallbackCause::BadValue(_))
        ));
        assert!(matches!(
            next_round_from(Dynamic::from("later")),
            Err(FallbackCause::WrongType { .. })
        ));
    }

    #[test]
    fn decision_accepts_bool_and_map() {
        assert!(decision_from(Dynamic::TRUE, "allow").unwrap().allow);
        let mut m = Map::new();
        m.insert("cut".into(), Dynamic::TRUE);
        m.insert("reason".into(), Dynamic::from("silent 40 days"));
        let d = decision_from(Dynamic::from_map(m), "cut").unwrap();
        assert!(d.allow);
        assert_eq!(d.reason, "silent 40 days");
        assert!(decision_from(Dynamic::from_int(1), "allow").is_err());
    }
}
