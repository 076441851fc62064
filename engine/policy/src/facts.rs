//! The read-only facts the engine hands to scripts.
//!
//! Each fact struct turns into one Rhai object map per call. Scripts receive
//! maps by value, so whatever a script does to them never reaches the engine.
//! The keys are documented in `policies/README.md`; keep the two in step.

use jiff::{Timestamp, ZonedDateTime};
use rhai::{Dynamic, Engine, FLOAT, INT, ImmutableString};

/// Facts for `next_round(ctx)`, asked after a broadcast round has finished.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundFacts {
    /// The round that just finished, from 1.
    pub round: u32,
    /// The rounds planned by the workflow (`broadcast: { rounds: N }`).
    pub rounds: u32,
    /// Clients that have confirmed so far.
    pub delivered: u64,
    /// Clients targeted.
    pub total: u64,
    /// Now, in the site's time zone (gives the script the local hour).
    pub now: ZonedDateTime,
    /// When the run started (`schedule.start`).
    pub start: Timestamp,
    /// When the run's deadline falls.
    pub deadline: Timestamp,
    /// The workflow's daily window (`schedule.window`), as minutes after
    /// local midnight `(open, close)`; `close < open` wraps midnight.
    pub window: Option<(u16, u16)>,
}

/// Facts for `round_budget(ctx)`, asked before each broadcast round starts.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetFacts {
    /// The round about to start, from 1.
    pub round: u32,
    /// The rounds planned by the workflow (`broadcast: { rounds: N }`).
    pub rounds: u32,
    /// The artifact's size in bytes.
    pub size: u64,
    /// The workflow's broadcast rate, in bits per second.
    pub rate: u64,
    /// Clients not delivered yet (the round is for them).
    pub remaining: u64,
    /// The worst loss rate relays measured among the previous round's
    /// listeners, from 0 to 1; `None` before the first round, or when no
    /// relay measured (relays without feedback repair).
    pub last_loss: Option<f64>,
    /// Listeners that decoded the whole artifact in the previous round;
    /// `None` when no relay said.
    pub last_decoded: Option<u64>,
    /// Now, in the site's time zone.
    pub now: ZonedDateTime,
    /// When the run started (`schedule.start`).
    pub start: Timestamp,
    /// When the run's deadline falls.
    pub deadline: Timestamp,
    /// The workflow's daily window, as in [`RoundFacts::window`].
    pub window: Option<(u16, u16)>,
}

/// Facts about one client, for `allow` and `disconnect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFacts {
    /// The client's identity (its certificate name).
    pub id: String,
    /// The version it last reported, if it ever did.
    pub version: Option<semver::Version>,
    /// The newest registered version of the artifact.
    pub newest: semver::Version,
    /// How many registered versions are newer than the client's (0 when up
    /// to date; the caller counts, as only the ledger knows the versions).
    pub behind: u32,
    /// When the client last contacted a relay or the master.
    pub last_contact: Option<Timestamp>,
    /// Its state in the run: `pending`, `delivered`, `delta`, `undelivered`
    /// or `disconnected`.
    pub state: String,
}

/// Facts about a service a client asks to use, for `allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    /// The service's name.
    pub name: String,
    /// The version in which the service appeared.
    pub since: semver::Version,
}

fn int(n: impl TryInto<INT>) -> Dynamic {
    Dynamic::from_int(n.try_into().unwrap_or(INT::MAX))
}

fn text(s: impl Into<rhai::ImmutableString>) -> Dynamic {
    Dynamic::from(s.into())
}

fn float(x: f64) -> Dynamic {
    Dynamic::from_float(x as FLOAT)
}

/// What a script sees as `ctx` in `next_round(ctx)`: the facts behind
/// read-only getters, each computed only when the script reads it (no map is
/// built per call, and nothing a script does reaches the engine).
#[derive(Debug, Clone)]
pub(crate) struct RoundView(pub(crate) RoundFacts);

/// What a script sees as `ctx` in `round_budget(ctx)`, as [`RoundView`].
#[derive(Debug, Clone)]
pub(crate) struct BudgetView(pub(crate) BudgetFacts);

/// The schedule facts both `ctx` objects carry, so their time getters are
/// registered once, from one definition, and cannot drift apart.
trait Scheduled: Clone + Send + Sync + 'static {
    fn now(&self) -> &ZonedDateTime;
    fn start(&self) -> Timestamp;
    fn deadline(&self) -> Timestamp;
    fn window(&self) -> Option<(u16, u16)>;
}

impl Scheduled for RoundView {
    fn now(&self) -> &ZonedDateTime {
        &self.0.now
    }
    fn start(&self) -> Timestamp {
        self.0.start
    }
    fn deadline(&self) -> Timestamp {
        self.0.deadline
    }
    fn window(&self) -> Option<(u16, u16)> {
        self.0.window
    }
}

impl Scheduled for BudgetView {
    fn now(&self) -> &ZonedDateTime {
        &self.0.now
    }
    fn start(&self) -> Timestamp {
        self.0.start
    }
    fn deadline(&self) -> Timestamp {
        self.0.deadline
    }
    fn window(&self) -> Option<(u16, u16)> {
        self.0.window
    }
}

/// `hour` … `window_close`: local time and the schedule.
fn register_schedule<T: Scheduled>(engine: &mut Engine) {
    engine
        .register_get("hour", |v: &mut T| int(v.now().hour()))
        .register_get("minute", |v: &mut T| int(v.now().minute()))
        .register_get("second", |v: &mut T| int(v.now().second()))
        .register_get("weekday", |v: &mut T| {
            int(v.now().weekday().to_monday_one_offset())
        })
        .register_get("now", |v: &mut T| text(v.now().to_string()))
        .register_get("time_zone", |v: &mut T| {
            text(v.now().time_zone().iana_name().unwrap_or("UTC"))
        })
        .register_get("since_start", |v: &mut T| {
            int(v
                .now()
                .timestamp()
                .as_second()
                .saturating_sub(v.start().as_second()))
        })
        .register_get("to_deadline", |v: &mut T| {
            int(v
                .deadline()
                .as_second()
                .saturating_sub(v.now().timestamp().as_second()))
        })
        .register_get("window_open", |v: &mut T| {
            v.window().map_or(Dynamic::UNIT, |(open, _)| int(open))
        })
        .register_get("window_close", |v: &mut T| {
            v.window().map_or(Dynamic::UNIT, |(_, close)| int(close))
        });
}

/// Seconds one pass of `size` bytes takes at `rate` bits per second (a
/// rate of 0 is read as 1, so the answer is always finite).
pub(crate) fn one_pass_secs(size: u64, rate: u64) -> f64 {
    size as f64 * 8.0 / rate.max(1) as f64
}

/// What a script sees as `client`: [`ClientFacts`] and the time of the call.
/// The strings scripts read most (id, versions, state) are made once per
/// call, so a script that interpolates them several times pays once.
#[derive(Debug, Clone)]
pub(crate) struct ClientView {
    id: ImmutableString,
    version: Option<ImmutableString>,
    newest: ImmutableString,
    state: ImmutableString,
    behind: u32,
    last_contact: Option<Timestamp>,
    now: Timestamp,
}

impl ClientView {
    pub(crate) fn new(facts: &ClientFacts, now: Timestamp) -> Self {
        Self {
            id: facts.id.as_str().into(),
            version: facts.version.as_ref().map(|v| v.to_string().into()),
            newest: facts.newest.to_string().into(),
            state: facts.state.as_str().into(),
            behind: facts.behind,
            last_contact: facts.last_contact,
            now,
        }
    }

    fn silent_secs(&self) -> Option<i64> {
        self.last_contact
            .map(|at| self.now.as_second().saturating_sub(at.as_second()).max(0))
    }
}

/// What a script sees as `service`.
#[derive(Debug, Clone)]
pub(crate) struct ServiceView {
    name: ImmutableString,
    since: ImmutableString,
}

impl ServiceView {
    pub(crate) fn new(facts: &ServiceFacts) -> Self {
        Self {
            name: facts.name.as_str().into(),
            since: facts.since.to_string().into(),
        }
    }
}

/// Registers the fact types and their getters. The property names are the
/// ones `policies/README.md` documents; keep the two in step.
pub(crate) fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<RoundView>("RoundFacts")
        .register_get("round", |v: &mut RoundView| int(v.0.round))
        .register_get("rounds", |v: &mut RoundView| int(v.0.rounds))
        .register_get("delivered", |v: &mut RoundView| int(v.0.delivered))
        .register_get("total", |v: &mut RoundView| int(v.0.total))
        .register_get("remaining", |v: &mut RoundView| {
            int(v.0.total.saturating_sub(v.0.delivered))
        });
    register_schedule::<RoundView>(engine);
    engine
        .register_type_with_name::<BudgetView>("BudgetFacts")
        .register_get("round", |v: &mut BudgetView| int(v.0.round))
        .register_get("rounds", |v: &mut BudgetView| int(v.0.rounds))
        .register_get("size", |v: &mut BudgetView| int(v.0.size))
        .register_get("rate", |v: &mut BudgetView| int(v.0.rate))
        .register_get("remaining", |v: &mut BudgetView| int(v.0.remaining))
        .register_get("one_pass", |v: &mut BudgetView| {
            float(one_pass_secs(v.0.size, v.0.rate))
        })
        .register_get("last_loss", |v: &mut BudgetView| {
            // A rate the engine measured; clamped so a script never sees a
            // loss outside 0..1 or a NaN whatever a relay reported.
            v.0.last_loss
                .filter(|l| l.is_finite())
                .map_or(Dynamic::UNIT, |l| float(l.clamp(0.0, 1.0)))
        })
        .register_get("last_decoded", |v: &mut BudgetView| {
            v.0.last_decoded.map_or(Dynamic::UNIT, int)
        });
    register_schedule::<BudgetView>(engine);
    engine
        .register_type_with_name::<ClientView>("ClientFacts")
        .register_get("id", |v: &mut ClientView| text(v.id.clone()))
        .register_get("version", |v: &mut ClientView| {
            v.version.clone().map_or(Dynamic::UNIT, text)
        })
        .register_get("newest", |v: &mut ClientView| text(v.newest.clone()))
        .register_get("behind", |v: &mut ClientView| int(v.behind))
        .register_get("state", |v: &mut ClientView| text(v.state.clone()))
        .register_get("last_contact", |v: &mut ClientView| {
            v.last_contact
                .map_or(Dynamic::UNIT, |at| text(at.to_string()))
        })
        .register_get("silent_secs", |v: &mut ClientView| {
            v.silent_secs().map_or(Dynamic::UNIT, int)
        })
        .register_get("silent_days", |v: &mut ClientView| {
            v.silent_secs().map_or(Dynamic::UNIT, |s| int(s / 86_400))
        });
    engine
        .register_type_with_name::<ServiceView>("ServiceFacts")
        .register_get("name", |v: &mut ServiceView| text(v.name.clone()))
        .register_get("since", |v: &mut ServiceView| text(v.since.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardening::{Limits, hardened_engine};

    /// Reads `expr` with `ctx` bound to `value`, through the hardened engine.
    fn read(value: Dynamic, expr: &str) -> Dynamic {
        let engine = hardened_engine(&Limits::default());
        let mut scope = rhai::Scope::new();
        scope.push_dynamic("ctx", value);
        engine.eval_with_scope::<Dynamic>(&mut scope, expr).unwrap()
    }

    #[test]
    fn round_facts_carry_local_time_and_counts() {
        let now: ZonedDateTime = "2026-12-01T03:30:00+09:00[Asia/Tokyo]".parse().unwrap();
        let start: Timestamp = "2026-11-30T17:00:00Z".parse().unwrap();
        let deadline: Timestamp = "2026-12-03T17:00:00Z".parse().unwrap();
        let facts = RoundFacts {
            round: 1,
            rounds: 3,
            delivered: 90,
            total: 100,
            now,
            start,
            deadline,
            window: Some((120, 300)),
        };
        let ctx = || Dynamic::from(RoundView(facts.clone()));
        let int_of = |e: &str| read(ctx(), e).as_int().unwrap();
        assert_eq!(int_of("ctx.hour"), 3);
        assert_eq!(int_of("ctx.minute"), 30);
        assert_eq!(int_of("ctx.weekday"), 2); // a Tuesday
        assert_eq!(int_of("ctx.remaining"), 10);
        assert_eq!(int_of("ctx.since_start"), 5400);
        assert_eq!(int_of("ctx.to_deadline"), 72 * 3600 - 5400);
        assert_eq!(int_of("ctx.window_close"), 300);
        assert_eq!(
            read(ctx(), "ctx.time_zone").into_string().unwrap(),
            "Asia/Tokyo"
        );
    }

    fn budget_facts() -> BudgetFacts {
        BudgetFacts {
            round: 2,
            rounds: 3,
            size: 64 * 1024 * 1024,
            rate: 100_000_000,
            remaining: 7,
            last_loss: Some(0.125),
            last_decoded: Some(5),
            now: "2026-12-01T03:30:00+09:00[Asia/Tokyo]".parse().unwrap(),
            start: "2026-11-30T17:00:00Z".parse().unwrap(),
            deadline: "2026-12-03T17:00:00Z".parse().unwrap(),
            window: None,
        }
    }

    #[test]
    fn budget_facts_carry_the_artifact_the_rate_and_the_last_round() {
        let facts = budget_facts();
        let ctx = || Dynamic::from(BudgetView(facts.clone()));
        let int_of = |e: &str| read(ctx(), e).as_int().unwrap();
        assert_eq!(int_of("ctx.round"), 2);
        assert_eq!(int_of("ctx.rounds"), 3);
        assert_eq!(int_of("ctx.size"), 67_108_864);
        assert_eq!(int_of("ctx.rate"), 100_000_000);
        assert_eq!(int_of("ctx.remaining"), 7);
        assert_eq!(int_of("ctx.last_decoded"), 5);
        assert_eq!(read(ctx(), "ctx.last_loss").as_float().unwrap(), 0.125);
        // 536,870,912 bits at 100 Mbit/s.
        assert_eq!(read(ctx(), "ctx.one_pass").as_float().unwrap(), 5.36870912);
        // The time facts are next_round's.
        assert_eq!(int_of("ctx.hour"), 3);
        assert_eq!(int_of("ctx.since_start"), 5400);
        assert_eq!(int_of("ctx.to_deadline"), 72 * 3600 - 5400);
        assert!(read(ctx(), "ctx.window_open").is_unit());
        assert_eq!(
            read(ctx(), "ctx.time_zone").into_string().unwrap(),
            "Asia/Tokyo"
        );
    }

    #[test]
    fn an_unknown_last_round_reads_as_unit_and_a_bad_loss_is_bounded() {
        let mut facts = budget_facts();
        facts.last_loss = None;
        facts.last_decoded = None;
        assert!(read(Dynamic::from(BudgetView(facts.clone())), "ctx.last_loss").is_unit());
        assert!(read(Dynamic::from(BudgetView(facts.clone())), "ctx.last_decoded").is_unit());
        facts.last_loss = Some(f64::NAN);
        assert!(read(Dynamic::from(BudgetView(facts.clone())), "ctx.last_loss").is_unit());
        facts.last_loss = Some(7.0);
        let loss = read(Dynamic::from(BudgetView(facts.clone())), "ctx.last_loss");
        assert_eq!(loss.as_float().unwrap(), 1.0);
        facts.rate = 0;
        let pass = read(Dynamic::from(BudgetView(facts)), "ctx.one_pass");
        assert!(pass.as_float().unwrap().is_finite());
    }

    #[test]
    fn facts_are_read_only_and_unknown_ones_are_errors() {
        let c = ClientFacts {
            id: "pos-1".into(),
            version: None,
            newest: semver::Version::new(2, 4, 0),
            behind: 0,
            last_contact: None,
            state: "pending".into(),
        };
        let view = || Dynamic::from(ClientView::new(&c, Timestamp::UNIX_EPOCH));
        assert!(read(view(), "ctx.version").is_unit());
        assert!(read(view(), "ctx.silent_days").is_unit());
        let engine = hardened_engine(&Limits::default());
        let mut scope = rhai::Scope::new();
        scope.push_dynamic("ctx", view());
        assert!(
            engine
                .eval_with_scope::<Dynamic>(&mut scope, "ctx.behind = 0")
                .is_err()
        );
        assert!(
            engine
                .eval_with_scope::<Dynamic>(&mut scope, "ctx.no_such_fact")
                .is_err()
        );
    }
}
