//! The census: the counts a monitoring scrape of the master reads, in a few
//! grouped queries whose answers are bounded by the fleet's shape (runs
//! chosen, relays, states, versions), never by its size.
//!
//! Only live runs (those a master drives) are counted: a simulation run in
//! the same home is not the fleet's.

use rusqlite::params;

use crate::run_clients::ClientState;
use crate::runs::{RunFleet, RunStatus};
use crate::{Ledger, LedgerError};

/// The most versions [`Census::versions`] lists (the most installed first).
pub const CENSUS_VERSIONS: usize = 64;

/// How many clients of one run are in one state behind one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCount {
    /// The run.
    pub run: i64,
    /// The relay.
    pub relay: String,
    /// The state.
    pub state: ClientState,
    /// Clients.
    pub clients: u64,
}

/// The fleet table, per relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayCount {
    /// The relay the clients are registered behind (`None`: not yet known).
    pub relay: Option<String>,
    /// Clients.
    pub clients: u64,
    /// Of those, cut off (deny-listed).
    pub denied: u64,
}

/// What a scrape of the master reads from its ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Live runs by status.
    pub runs: Vec<(RunStatus, u64)>,
    /// The runs counted below, newest first.
    pub counted_runs: Vec<i64>,
    /// Their clients by relay and state.
    pub run_clients: Vec<RunCount>,
    /// Their bytes on the wire, by kind (`multicast`, `fetch`, `delta`,
    /// `delta-bsdiff`, `full`), summed with saturation.
    pub run_traffic: Vec<(i64, String, u64)>,
    /// The fleet table per relay.
    pub relays: Vec<RelayCount>,
    /// Clients per installed artifact and version (the
    /// [`CENSUS_VERSIONS`] most common).
    pub versions: Vec<(String, String, u64)>,
    /// The counted runs' completions by kind and round.
    pub completions: Vec<crate::CompletionCount>,
    /// The counted runs' rounds that went on air: (run, round, multicast
    /// bytes of every relay), as the audit's `multicast_by_round`.
    pub rounds: Vec<(i64, u32, u64)>,
    /// Rollback orders by state, every state listed.
    pub rollbacks: Vec<(crate::RollbackState, u64)>,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Ledger {
    /// The census, counting the clients and traffic of every running live
    /// run and the newest finished ones, `max_runs` runs at most.
    pub fn census(&self, max_runs: usize) -> Result<Census, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let limit = i64::try_from(max_runs).unwrap_or(i64::MAX);
        let mut c = Census::default();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT status, count(*) FROM runs WHERE fleet = ?1 GROUP BY status ORDER BY status",
            )
            .map_err(&wrap)?;
        c.runs = stmt
            .query_map(params![RunFleet::Live], |r| {
                Ok((r.get::<_, RunStatus>(0)?, count(r.get(1)?)))
            })
            .and_then(|r| r.collect())
            .map_err(&wrap)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id FROM runs WHERE fleet = ?2
                 ORDER BY (status = ?3) DESC, id DESC LIMIT ?1",
            )
            .map_err(&wrap)?;
        c.counted_runs = stmt
            .query_map(params![limit, RunFleet::Live, RunStatus::Running], |r| {
                r.get(0)
            })
            .and_then(|r| r.collect())
            .map_err(&wrap)?;
        for &run in &c.counted_runs {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT relay, state, count(*) FROM run_clients WHERE run_id = ?1
                     GROUP BY relay, state ORDER BY relay, state",
                )
                .map_err(&wrap)?;
            let rows = stmt
                .query_map(params![run], |r| {
                    Ok(RunCount {
                        run,
                        relay: r.get(0)?,
                        state: r.get(1)?,
                        clients: count(r.get(2)?),
                    })
                })
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .map_err(&wrap)?;
            c.run_clients.extend(rows);
            let mut stmt = self
                .conn
                .prepare_cached(
                    // Summed here with saturation, as the audit does.
                    "SELECT kind, bytes FROM run_traffic WHERE run_id = ?1",
                )
                .map_err(&wrap)?;
            let mut sums: std::collections::BTreeMap<String, u64> = Default::default();
            let rows = stmt
                .query_map(params![run], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(&wrap)?;
            for row in rows {
                let (kind, bytes) = row.map_err(&wrap)?;
                let sum = sums.entry(kind).or_default();
                *sum = sum.saturating_add(count(bytes));
            }
            c.run_traffic
                .extend(sums.into_iter().map(|(kind, bytes)| (run, kind, bytes)));
            c.completions.extend(self.completion_counts(run)?);
            let by_round = self.traffic(run)?.multicast_by_round;
            c.rounds.extend(
                (1u32..)
                    .zip(by_round)
                    .filter(|(_, bytes)| *bytes > 0)
                    .map(|(round, bytes)| (run, round, bytes)),
            );
        }
        c.rollbacks = self.rollback_counts()?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT relay, count(*), count(denied_reason) FROM clients
                 GROUP BY relay ORDER BY relay",
            )
            .map_err(&wrap)?;
        c.relays = stmt
            .query_map([], |r| {
                Ok(RelayCount {
                    relay: r.get(0)?,
                    clients: count(r.get(1)?),
                    denied: count(r.get(2)?),
                })
            })
            .and_then(|r| r.collect())
            .map_err(&wrap)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT artifact, version, count(*) FROM clients
                 WHERE artifact IS NOT NULL AND version IS NOT NULL
                 GROUP BY artifact, version ORDER BY count(*) DESC, artifact, version LIMIT ?1",
            )
            .map_err(&wrap)?;
        c.versions = stmt
            .query_map(params![CENSUS_VERSIONS as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, count(r.get(2)?)))
            })
            .and_then(|r| r.collect())
            .map_err(&wrap)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRun;
    use crate::{ClientUpdate, FleetBatch, RunFleet, Traffic, TrafficKind};

    fn new_run(l: &mut Ledger, fleet: RunFleet, clients: &[(&str, &str)]) -> i64 {
        let run = TestRun::new().fleet(fleet).clients(clients.iter().copied());
        run.create(l).unwrap()
    }

    #[test]
    fn counts_live_runs_by_relay_and_state_and_the_fleet_by_relay_and_version() {
        let d = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&d.path().join("l.sqlite")).unwrap();
        let clients = [("c1", "east"), ("c2", "east"), ("c3", "west")];
        let live = new_run(&mut l, RunFleet::Live, &clients);
        new_run(&mut l, RunFleet::Modelled("{}".into()), &clients);
        let at = "2026-01-01T00:00:00Z".to_owned();
        let mut batch = FleetBatch::default();
        for (c, r) in clients {
            batch.touches.push(crate::ClientTouch {
                client: c.into(),
                relay: Some(r.into()),
                artifact: None,
                version: None,
                at: at.clone(),
            });
        }
        batch.updates.push((
            live,
            ClientUpdate::Completed {
                client: "c1".into(),
                round: Some(1),
                at: at.clone(),
            },
        ));
        batch.traffic.push(Traffic {
            run: live,
            peer: "east".into(),
            kind: TrafficKind::Multicast,
            round: Some(1),
            bytes: 1000,
        });
        batch.traffic.push(Traffic {
            run: live,
            peer: "west".into(),
            kind: TrafficKind::Multicast,
            round: Some(1),
            bytes: 500,
        });
        l.apply_fleet(&batch).unwrap();

        let c = l.census(8).unwrap();
        assert_eq!(
            c.runs,
            [(RunStatus::Running, 1)],
            "the modelled run is not counted"
        );
        assert_eq!(c.counted_runs, [live]);
        let get = |relay: &str, state| {
            c.run_clients
                .iter()
                .find(|x| x.relay == relay && x.state == state)
                .map(|x| x.clients)
        };
        assert_eq!(get("east", ClientState::Delivered), Some(1));
        assert_eq!(get("east", ClientState::Pending), Some(1));
        assert_eq!(get("west", ClientState::Pending), Some(1));
        assert_eq!(c.run_traffic, [(live, "multicast".to_owned(), 1500)]);
        assert_eq!(
            c.relays
                .iter()
                .map(|r| (r.relay.clone(), r.clients))
                .collect::<Vec<_>>(),
            [(Some("east".into()), 2), (Some("west".into()), 1)]
        );
        // c1 completed: it runs the run's version now.
        assert_eq!(c.versions, [("app".into(), "1.0.0".into(), 1)]);
        assert!(
            l.census(0).unwrap().run_clients.is_empty(),
            "max_runs bounds it"
        );
    }
}
