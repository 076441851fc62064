//! The read-only facts the engine hands to scripts.
//!
//! Each fact struct turns into one Rhai object map per call. Scripts receive
//! maps by value, so whatever a script does to them never reaches the engine.
//! The keys are documented in `policies/README.md`; keep the two in step.

use jiff::{Timestamp, ZonedDateTime};
use rhai::{Dynamic, INT, Map};

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

impl RoundFacts {
    pub(crate) fn to_map(&self) -> Map {
        let now = self.now.timestamp().as_second();
        let mut m = Map::new();
        m.insert("round".into(), int(self.round));
        m.insert("rounds".into(), int(self.rounds));
        m.insert("delivered".into(), int(self.delivered));
        m.insert("total".into(), int(self.total));
        m.insert(
            "remaining".into(),
            int(self.total.saturating_sub(self.delivered)),
        );
        m.insert("hour".into(), int(self.now.hour()));
        m.insert("minute".into(), int(self.now.minute()));
        m.insert("second".into(), int(self.now.second()));
        m.insert(
            "weekday".into(),
            int(self.now.weekday().to_monday_one_offset()),
        );
        m.insert("now".into(), text(self.now.to_string()));
        m.insert(
            "time_zone".into(),
            text(self.now.time_zone().iana_name().unwrap_or("UTC")),
        );
        m.insert(
            "since_start".into(),
            int(now.saturating_sub(self.start.as_second())),
        );
        m.insert(
            "to_deadline".into(),
            int(self.deadline.as_second().saturating_sub(now)),
        );
        let (open, close) = match self.window {
            Some((open, close)) => (int(open), int(close)),
            None => (Dynamic::UNIT, Dynamic::UNIT),
        };
        m.insert("window_open".into(), open);
        m.insert("window_close".into(), close);
        m
    }
}

impl ClientFacts {
    pub(crate) fn to_map(&self, now: Timestamp) -> Map {
        let mut m = Map::new();
        m.insert("id".into(), text(self.id.as_str()));
        m.insert(
            "version".into(),
            self.version
                .as_ref()
                .map_or(Dynamic::UNIT, |v| text(v.to_string())),
        );
        m.insert("newest".into(), text(self.newest.to_string()));
        m.insert("behind".into(), int(self.behind));
        m.insert("state".into(), text(self.state.as_str()));
        match self.last_contact {
            Some(at) => {
                let silent = now.as_second().saturating_sub(at.as_second()).max(0);
                m.insert("last_contact".into(), text(at.to_string()));
                m.insert("silent_secs".into(), int(silent));
                m.insert("silent_days".into(), int(silent / 86_400));
            }
            None => {
                m.insert("last_contact".into(), Dynamic::UNIT);
                m.insert("silent_secs".into(), Dynamic::UNIT);
                m.insert("silent_days".into(), Dynamic::UNIT);
            }
        }
        m
    }
}

impl ServiceFacts {
    pub(crate) fn to_map(&self) -> Map {
        let mut m = Map::new();
        m.insert("name".into(), text(self.name.as_str()));
        m.insert("since".into(), text(self.since.to_string()));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let m = facts.to_map();
        assert_eq!(m["hour"].as_int().unwrap(), 3);
        assert_eq!(m["minute"].as_int().unwrap(), 30);
        assert_eq!(m["weekday"].as_int().unwrap(), 2); // a Tuesday
        assert_eq!(m["remaining"].as_int().unwrap(), 10);
        assert_eq!(m["since_start"].as_int().unwrap(), 5400);
        assert_eq!(m["to_deadline"].as_int().unwrap(), 72 * 3600 - 5400);
        assert_eq!(m["window_close"].as_int().unwrap(), 300);
        assert_eq!(m["time_zone"].clone().into_string().unwrap(), "Asia/Tokyo");
    }

    #[test]
    fn a_client_never_heard_from_has_unit_contact_facts() {
        let c = ClientFacts {
            id: "pos-1".into(),
            version: None,
            newest: semver::Version::new(2, 4, 0),
            behind: 0,
            last_contact: None,
            state: "pending".into(),
        };
        let m = c.to_map(Timestamp::UNIX_EPOCH);
        assert!(m["version"].is_unit());
        assert!(m["silent_days"].is_unit());
    }
}
