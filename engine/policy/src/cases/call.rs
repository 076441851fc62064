//! Facts written as `key = text` pairs, turned into one entry point's call.
//!
//! Both the cases reader (YAML mappings flattened to `client.version`) and
//! `haifu policy eval --fact client.version=2.3.0` come through
//! [`Call::from_facts`], so the two accept the same keys, values and
//! defaults. The defaults are documented in `policies/README.md`; keep the
//! two in step.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ZonedDateTime};

use crate::advance::{FailureThreshold, StageFacts};
use crate::decision::Role;
use crate::facts::{BudgetFacts, ClientFacts, RoundFacts, ServiceFacts};

/// `now` when a case gives none: a fixed instant, so a case answers the same
/// whenever it runs.
pub const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

const ROUND_KEYS: &[&str] = &[
    "round",
    "rounds",
    "delivered",
    "total",
    "now",
    "time_zone",
    "start",
    "deadline",
    "window",
];
const BUDGET_KEYS: &[&str] = &[
    "round",
    "rounds",
    "size",
    "rate",
    "remaining",
    "last_loss",
    "last_decoded",
    "now",
    "time_zone",
    "start",
    "deadline",
    "window",
];
const ALLOW_KEYS: &[&str] = &[
    "client.id",
    "client.version",
    "client.newest",
    "client.behind",
    "client.state",
    "client.last_contact",
    "service.name",
    "service.since",
    "now",
];
const DISCONNECT_KEYS: &[&str] = &[
    "client.id",
    "client.version",
    "client.newest",
    "client.behind",
    "client.state",
    "client.last_contact",
    "now",
];
const ADVANCE_KEYS: &[&str] = &[
    "stage",
    "stages",
    "name",
    "targeted",
    "delivered",
    "failed",
    "failures",
    "in_stage",
    "soaked",
    "soak",
    "min_success",
    "max_failures",
];
const STATES: &[&str] = &[
    "pending",
    "delivered",
    "delta",
    "undelivered",
    "disconnected",
];

/// One entry point's call, with every fact resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `next_round(ctx)`.
    NextRound(RoundFacts),
    /// `allow(client, service)` at `now`.
    Allow {
        /// The client.
        client: ClientFacts,
        /// The service it asks for.
        service: ServiceFacts,
        /// The time of the call.
        now: Timestamp,
    },
    /// `disconnect(client)` at `now`.
    Disconnect {
        /// The straggler.
        client: ClientFacts,
        /// The time of the call.
        now: Timestamp,
    },
    /// `round_budget(ctx)`.
    RoundBudget(BudgetFacts),
    /// `advance(ctx)`.
    Advance(StageFacts),
}

/// A `--fact` that cannot be used, naming the fact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FactError {
    /// The fact's key (`client.version`).
    pub key: String,
    /// What is wrong with it, naming the fact.
    pub message: String,
}

impl Call {
    /// The role whose entry point this calls.
    pub fn role(&self) -> Role {
        match self {
            Call::NextRound(_) => Role::Retry,
            Call::Allow { .. } => Role::Restrict,
            Call::Disconnect { .. } => Role::Disconnect,
            Call::RoundBudget(_) => Role::Broadcast,
            Call::Advance(_) => Role::Advance,
        }
    }

    /// The entry point's name: `next_round`, `allow`, `disconnect` or
    /// `round_budget`.
    pub fn entry(&self) -> &'static str {
        self.role().entry_point().0
    }

    /// The keys `role`'s call accepts.
    pub fn keys(role: Role) -> &'static [&'static str] {
        match role {
            Role::Retry => ROUND_KEYS,
            Role::Restrict => ALLOW_KEYS,
            Role::Disconnect => DISCONNECT_KEYS,
            Role::Broadcast => BUDGET_KEYS,
            Role::Advance => ADVANCE_KEYS,
        }
    }

    /// Builds `role`'s call from `key = value` facts (`None` for an unset
    /// value: YAML's `~`, or `--fact client.version=`); facts not given get
    /// the documented defaults.
    ///
    /// # Errors
    /// Every unknown, repeated or malformed fact, one error each.
    pub fn from_facts(role: Role, facts: &[(&str, Option<&str>)]) -> Result<Call, Vec<FactError>> {
        let facts: Vec<(&str, Option<&str>, ())> = facts.iter().map(|&(k, v)| (k, v, ())).collect();
        build(role, &facts).map_err(|errors| {
            errors
                .into_iter()
                .map(|(key, (), message)| FactError {
                    message: named(&key, message),
                    key,
                })
                .collect()
        })
    }
}

/// `fact client.version: …`, unless the message already names the fact.
pub(crate) fn named(key: &str, message: String) -> String {
    if message.contains(&format!("{key:?}")) || message.starts_with(key) {
        message
    } else {
        format!("fact {key}: {message}")
    }
}

/// Collects facts by key and the problems found reading them; `P` is where
/// a fact was written (a YAML position, or nothing for `--fact`).
struct Facts<'a, P: Copy> {
    facts: &'a [(&'a str, Option<&'a str>, P)],
    errors: Vec<(String, P, String)>,
}

impl<'a, P: Copy> Facts<'a, P> {
    fn get(&self, key: &str) -> Option<(Option<&'a str>, P)> {
        self.facts
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|&(_, v, at)| (v, at))
    }

    /// Reads `key` with `parse`; `None` when absent or malformed (the
    /// latter recorded as an error).
    fn read<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, FactValueError>,
    ) -> Option<T> {
        let (value, at) = self.get(key)?;
        let Some(text) = value else {
            self.errors
                .push((key.to_string(), at, "needs a value here".into()));
            return None;
        };
        match parse(text.trim()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push((key.to_string(), at, e.to_string()));
                None
            }
        }
    }

    /// Like [`Facts::read`] for a fact that may be unset: `Some(None)` when
    /// given as `~` or empty.
    fn read_optional<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, FactValueError>,
    ) -> Option<Option<T>> {
        match self.get(key)? {
            (None, _) => Some(None),
            (Some(text), _) if text.trim().is_empty() => Some(None),
            _ => self.read(key, parse).map(Some),
        }
    }
}

/// Builds the call, or every problem as `(key, where, message)`.
pub(crate) fn build<P: Copy>(
    role: Role,
    facts: &[(&str, Option<&str>, P)],
) -> Result<Call, Vec<(String, P, String)>> {
    let known = Call::keys(role);
    let mut f = Facts {
        facts,
        errors: Vec::new(),
    };
    for (i, &(key, _, at)) in facts.iter().enumerate() {
        if !known.contains(&key) {
            let (entry, _) = role.entry_point();
            f.errors.push((
                key.to_string(),
                at,
                format!(
                    "unknown fact {key:?} for {entry}; known: {}",
                    known.join(", ")
                ),
            ));
        } else if facts[..i].iter().any(|(k, _, _)| *k == key) {
            f.errors
                .push((key.to_string(), at, format!("{key} is given twice")));
        }
    }
    let call = match role {
        Role::Retry => Call::NextRound(round_facts(&mut f)),
        Role::Restrict => {
            let now = now_timestamp(&mut f);
            let client = client_facts(&mut f, now);
            let service = ServiceFacts {
                name: f
                    .read("service.name", text)
                    .unwrap_or_else(|| "service".into()),
                since: f
                    .read("service.since", version)
                    .unwrap_or_else(|| client.newest.clone()),
            };
            Call::Allow {
                client,
                service,
                now,
            }
        }
        Role::Disconnect => {
            let now = now_timestamp(&mut f);
            let client = client_facts(&mut f, now);
            Call::Disconnect { client, now }
        }
        Role::Broadcast => Call::RoundBudget(budget_facts(&mut f)),
        Role::Advance => Call::Advance(stage_facts(&mut f)),
    };
    if f.errors.is_empty() {
        Ok(call)
    } else {
        Err(f.errors)
    }
}

fn default_now() -> Timestamp {
    DEFAULT_NOW.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn now_timestamp<P: Copy>(f: &mut Facts<'_, P>) -> Timestamp {
    f.read("now", |t| timestamp(t, None))
        .unwrap_or_else(default_now)
}

/// The schedule both `ctx` objects carry: `now` (in `time_zone`), `start`,
/// `deadline` and `window`.
struct Schedule {
    now: ZonedDateTime,
    start: Timestamp,
    deadline: Timestamp,
    window: Option<(u16, u16)>,
}

fn schedule<P: Copy>(f: &mut Facts<'_, P>) -> Schedule {
    let zone_given = f.get("time_zone").is_some();
    let zone = f
        .read("time_zone", |t| {
            TimeZone::get(t).map_err(|source| FactValueError::TimeZone {
                text: t.to_owned(),
                source,
            })
        })
        .unwrap_or(TimeZone::UTC);
    let now = f
        .read("now", |t| {
            // RFC 9557 (`…+09:00[Asia/Tokyo]`) carries its own zone.
            if t.contains('[') {
                if zone_given {
                    return Err(FactValueError::TwoZones);
                }
                return t.parse::<ZonedDateTime>().map_err(FactValueError::ZonedNow);
            }
            timestamp(t, None).map(|at| at.to_zoned_datetime(zone.clone()))
        })
        .unwrap_or_else(|| default_now().to_zoned_datetime(zone.clone()));
    let at = now.timestamp();
    Schedule {
        start: f.read("start", |t| timestamp(t, Some(at))).unwrap_or(at),
        deadline: f
            .read("deadline", |t| timestamp(t, Some(at)))
            .unwrap_or_else(|| {
                at.saturating_add(SignedDuration::from_hours(7 * 24))
                    .unwrap_or(at)
            }),
        window: f.read("window", window).unwrap_or(None),
        now,
    }
}

fn round_facts<P: Copy>(f: &mut Facts<'_, P>) -> RoundFacts {
    let round = f.read("round", number).unwrap_or(1);
    let rounds = f.read("rounds", number).unwrap_or(3);
    let delivered = f.read("delivered", number).unwrap_or(0);
    let total = f.read("total", number).unwrap_or(10);
    let s = schedule(f);
    RoundFacts {
        round,
        rounds,
        delivered,
        total,
        now: s.now,
        start: s.start,
        deadline: s.deadline,
        window: s.window,
    }
}

/// 64 MiB: the size the engine's benchmarks broadcast.
const DEFAULT_SIZE: u64 = 64 * 1024 * 1024;
/// 100 Mbit/s: the engine's rate when a workflow sets none.
const DEFAULT_RATE: u64 = 100_000_000;

fn budget_facts<P: Copy>(f: &mut Facts<'_, P>) -> BudgetFacts {
    let round = f.read("round", number).unwrap_or(1);
    let rounds = f.read("rounds", number).unwrap_or(3);
    let size = f.read("size", bytes).unwrap_or(DEFAULT_SIZE);
    let rate = f.read("rate", bits_per_second).unwrap_or(DEFAULT_RATE);
    let remaining = f.read("remaining", number).unwrap_or(10);
    let last_loss = f.read_optional("last_loss", loss).unwrap_or(None);
    let last_decoded = f.read_optional("last_decoded", number).unwrap_or(None);
    let s = schedule(f);
    BudgetFacts {
        round,
        rounds,
        size,
        rate,
        remaining,
        last_loss,
        last_decoded,
        now: s.now,
        start: s.start,
        deadline: s.deadline,
        window: s.window,
    }
}

/// Defaults: stage 1 of 3, 10 targeted, all delivered, none failed, an
/// hour in the stage, soaked, no gate.
fn stage_facts<P: Copy>(f: &mut Facts<'_, P>) -> StageFacts {
    let targeted: u64 = f.read("targeted", number).unwrap_or(10);
    let failures = f.read("failures", failures).unwrap_or_default();
    let failed: u64 = f
        .read("failed", number)
        .unwrap_or_else(|| failures.iter().map(|(_, n)| n).sum());
    StageFacts {
        stage: f.read("stage", number).unwrap_or(1),
        stages: f.read("stages", number).unwrap_or(3),
        name: f.read("name", text).unwrap_or_else(|| "stage-1".into()),
        delivered: f
            .read("delivered", number)
            .unwrap_or_else(|| targeted.saturating_sub(failed)),
        targeted,
        failed,
        failures,
        in_stage: f
            .read("in_stage", duration)
            .unwrap_or(Duration::from_secs(3600)),
        soaked: f
            .read("soaked", duration)
            .unwrap_or(Duration::from_secs(3600)),
        soak: f.read("soak", duration).unwrap_or_default(),
        min_success: f.read_optional("min_success", percent).unwrap_or(None),
        max_failures: f
            .read_optional("max_failures", |t| {
                if t.ends_with('%') {
                    percent(t).map(FailureThreshold::Percent)
                } else {
                    number(t).map(FailureThreshold::Count)
                }
            })
            .unwrap_or(None),
        previous: Vec::new(),
    }
}

/// `95%` → 95.0.
fn percent(t: &str) -> Result<f64, FactValueError> {
    t.strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| FactValueError::Percent(t.to_owned()))
}

/// `post-install=2, health=1`.
fn failures(t: &str) -> Result<Vec<(String, u64)>, FactValueError> {
    t.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (reason, n) = pair
                .split_once('=')
                .ok_or_else(|| FactValueError::ReasonCount(pair.to_owned()))?;
            Ok((reason.trim().to_string(), number(n.trim())?))
        })
        .collect()
}

fn client_facts<P: Copy>(f: &mut Facts<'_, P>, now: Timestamp) -> ClientFacts {
    let installed = f.read_optional("client.version", version).unwrap_or(None);
    let newest = f
        .read("client.newest", version)
        .or_else(|| installed.clone())
        .unwrap_or_else(|| semver::Version::new(1, 0, 0));
    // As the gate counts: 0 when up to date; at least one newer version
    // when behind or unknown (the caller knows the exact count).
    let behind_default = match &installed {
        Some(v) if *v >= newest => 0,
        _ => 1,
    };
    ClientFacts {
        id: f
            .read("client.id", text)
            .unwrap_or_else(|| "client-1".into()),
        behind: f.read("client.behind", number).unwrap_or(behind_default),
        state: f
            .read("client.state", |t| {
                if STATES.contains(&t) {
                    Ok(t.to_string())
                } else {
                    Err(FactValueError::State(t.to_owned()))
                }
            })
            .unwrap_or_else(|| "pending".into()),
        last_contact: f
            .read_optional("client.last_contact", |t| timestamp(t, Some(now)))
            .unwrap_or(None),
        version: installed,
        newest,
    }
}

fn text(t: &str) -> Result<String, FactValueError> {
    Ok(t.to_string())
}

fn number<T: std::str::FromStr>(t: &str) -> Result<T, FactValueError> {
    t.parse().map_err(|_| FactValueError::Number(t.to_owned()))
}

/// `67108864`, `64MiB`, `512KiB`, `2GiB`.
fn bytes(t: &str) -> Result<u64, FactValueError> {
    scaled(
        t,
        &[
            ("KiB", 1 << 10),
            ("MiB", 1 << 20),
            ("GiB", 1 << 30),
            ("B", 1),
            ("", 1),
        ],
    )
    .ok_or_else(|| FactValueError::Size(t.to_owned()))
}

/// `100000000`, `100Mbit/s`, `800kbit/s`, `1Gbit/s`, as `rate:` is written
/// in a workflow; a rate of 0 is refused (nothing would ever be sent).
fn bits_per_second(t: &str) -> Result<u64, FactValueError> {
    scaled(
        t,
        &[
            ("kbit/s", 1_000),
            ("Mbit/s", 1_000_000),
            ("Gbit/s", 1_000_000_000),
            ("bit/s", 1),
            ("", 1),
        ],
    )
    .filter(|&r| r > 0)
    .ok_or_else(|| FactValueError::Rate(t.to_owned()))
}

/// A whole number followed by one of `units` (tried in order), scaled.
fn scaled(t: &str, units: &[(&str, u64)]) -> Option<u64> {
    units.iter().find_map(|(unit, scale)| {
        let digits = t.strip_suffix(unit)?.trim_end();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok()?.checked_mul(*scale)
    })
}

/// A loss rate from 0 to 1 (`0.05`, not `5%`).
fn loss(t: &str) -> Result<f64, FactValueError> {
    match t.parse::<f64>() {
        Ok(l) if (0.0..=1.0).contains(&l) => Ok(l),
        _ => Err(FactValueError::Loss(t.to_owned())),
    }
}

fn version(t: &str) -> Result<semver::Version, FactValueError> {
    semver::Version::parse(t).map_err(|source| FactValueError::Version {
        text: t.to_owned(),
        source,
    })
}

/// `HH:MM-HH:MM` → minutes after midnight, as `schedule.window` is written.
fn window(t: &str) -> Result<Option<(u16, u16)>, FactValueError> {
    let minutes = |hm: &str| -> Option<u16> {
        let (h, m) = hm.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    let bad = || FactValueError::Window(t.to_owned());
    let (open, close) = t.split_once('-').ok_or_else(bad)?;
    Ok(Some((
        minutes(open).ok_or_else(bad)?,
        minutes(close).ok_or_else(bad)?,
    )))
}

/// An RFC 3339 time, or (when `relative_to` is given) an offset from it:
/// `-40d`, `+2h`, `-90m`, `-30s`.
fn timestamp(t: &str, relative_to: Option<Timestamp>) -> Result<Timestamp, FactValueError> {
    if let (Some(base), Some(sign @ ('+' | '-'))) = (relative_to, t.chars().next()) {
        let out_of_range = || FactValueError::OutOfRange(t.to_owned());
        let span = duration(&t[1..])?;
        let secs = i64::try_from(span.as_secs()).map_err(|_| out_of_range())?;
        let offset = SignedDuration::from_secs(if sign == '-' { -secs } else { secs });
        return base.checked_add(offset).map_err(|_| out_of_range());
    }
    if t.contains('[') {
        return t
            .parse::<ZonedDateTime>()
            .map(|z| z.timestamp())
            .map_err(|source| FactValueError::Zoned {
                text: t.to_owned(),
                source,
            });
    }
    t.parse::<Timestamp>()
        .map_err(|source| FactValueError::Time {
            text: t.to_owned(),
            relative: relative_to.is_some(),
            source,
        })
}

/// `120` (seconds), `90s`, `20m`, `2h`, `3d`.
pub(crate) fn duration(t: &str) -> Result<Duration, FactValueError> {
    let bad = || FactValueError::Duration(t.to_owned());
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| FactValueError::OutOfRange(t.to_owned()))
}

/// Why a fact's value does not parse; each message names the value and
/// shows what is expected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FactValueError {
    #[error("{0:?} is not a percentage like 95%")]
    Percent(String),
    #[error("{0:?} is not reason=count")]
    ReasonCount(String),
    #[error("unknown state {0:?}; one of: {states}", states = STATES.join(", "))]
    State(String),
    #[error("{0:?} is not a whole number in range")]
    Number(String),
    #[error("{0:?} is not a size like 67108864, 64MiB or 2GiB")]
    Size(String),
    #[error("{0:?} is not a rate above 0 like 100000000, 20Mbit/s or 1Gbit/s")]
    Rate(String),
    #[error("{0:?} is not a loss rate from 0 to 1, like 0.05")]
    Loss(String),
    #[error("{text:?} is not a semantic version ({source})")]
    Version { text: String, source: semver::Error },
    #[error("{0:?} is not a window like 02:00-05:00")]
    Window(String),
    #[error("{0:?} is out of range")]
    OutOfRange(String),
    #[error("{text:?} is not an RFC 9557 time ({source})")]
    Zoned { text: String, source: jiff::Error },
    #[error(
        "{text:?} is not an RFC 3339 time like 2026-12-10T00:00:00Z{} ({source})",
        if *relative { ", or an offset from now such as -40d, +2h" } else { "" }
    )]
    Time {
        text: String,
        relative: bool,
        source: jiff::Error,
    },
    #[error("{0:?} is not a duration like 120, 90s, 20m, 2h or 3d")]
    Duration(String),
    #[error("unknown time zone {text:?} ({source})")]
    TimeZone { text: String, source: jiff::Error },
    #[error("carries its own time zone; drop time_zone")]
    TwoZones,
    #[error("not an RFC 9557 time ({0})")]
    ZonedNow(jiff::Error),
}
