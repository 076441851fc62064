//! How a run's completions came: in which broadcast round, by delta, by a
//! full copy, or late (after the run's final record). The census reads
//! these per counted run for the master's metrics, so a dashboard shows
//! the same split as the audit.
//!
//! Grouped queries only: the answer is bounded by the kinds and by
//! [`haifu_core::MAX_ROUNDS`] (a stored round outside it is filed as
//! unknown, as the audit does), never by the run's size.

use rusqlite::params;

use crate::rollbacks::RollbackState;
use crate::{Ledger, LedgerError};

/// How a client came to have a run's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CompletionKind {
    /// Decoded from a broadcast round.
    Round,
    /// A delta from the master.
    Delta,
    /// A full copy from the master (no delta was smaller or possible).
    Full,
    /// Recorded after the run had finished, beside its final record.
    Late,
}

impl CompletionKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Round, Self::Delta, Self::Full, Self::Late];

    /// The word metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Round => "round",
            Self::Delta => "delta",
            Self::Full => "full",
            Self::Late => "late",
        }
    }
}

/// How many of a run's clients completed one way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionCount {
    /// The run.
    pub run: i64,
    /// How.
    pub kind: CompletionKind,
    /// The broadcast round, for [`CompletionKind::Round`] and a late
    /// completion from a round; `None` otherwise, or when the stored round
    /// is one no run can have.
    pub round: Option<u32>,
    /// Clients.
    pub clients: u64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A stored round as a label value can carry it: only rounds a run can have.
fn round_of(n: Option<i64>) -> Option<u32> {
    n.and_then(|n| u32::try_from(n).ok())
        .filter(|r| haifu_core::round_index(*r).is_some())
}

impl Ledger {
    /// Run `run_id`'s completions by kind and round. A client delivered
    /// by the master counts as a full copy when the run's traffic holds a
    /// full copy sent to it, else as a delta.
    pub fn completion_counts(&self, run_id: i64) -> Result<Vec<CompletionCount>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut out: Vec<CompletionCount> = Vec::new();
        let mut add = |kind, round, clients| match out
            .iter_mut()
            .find(|c| c.kind == kind && c.round == round)
        {
            Some(c) => c.clients = c.clients.saturating_add(clients),
            None => out.push(CompletionCount {
                run: run_id,
                kind,
                round,
                clients,
            }),
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.state, c.round,
                        EXISTS (SELECT 1 FROM run_traffic t WHERE t.run_id = c.run_id
                                AND t.kind = 'full' AND t.peer = c.client),
                        count(*)
                 FROM run_clients c WHERE c.run_id = ?1 AND c.state IN ('delivered', 'delta')
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            )
            .map_err(&wrap)?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(&wrap)?;
        for row in rows {
            let (state, round, full, n) = row.map_err(&wrap)?;
            match (state.as_str(), full) {
                ("delivered", _) => add(CompletionKind::Round, round_of(round), count(n)),
                (_, true) => add(CompletionKind::Full, None, count(n)),
                (_, false) => add(CompletionKind::Delta, None, count(n)),
            }
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT late_round, count(*) FROM run_clients
                 WHERE run_id = ?1 AND late_state IN ('delivered', 'delta')
                 GROUP BY 1 ORDER BY 1",
            )
            .map_err(&wrap)?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(&wrap)?;
        for row in rows {
            let (round, n) = row.map_err(&wrap)?;
            add(CompletionKind::Late, round_of(round), count(n));
        }
        Ok(out)
    }

    /// Rollback orders by state (every state listed, 0 included).
    pub fn rollback_counts(&self) -> Result<Vec<(RollbackState, u64)>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut out: Vec<(RollbackState, u64)> = RollbackState::ALL.map(|s| (s, 0)).to_vec();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, count(*) FROM rollbacks GROUP BY state")
            .map_err(&wrap)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, RollbackState>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(&wrap)?;
        for row in rows {
            let (state, n) = row.map_err(&wrap)?;
            if let Some(slot) = out.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = count(n);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{ClientUpdate, FleetBatch, Traffic, TrafficKind};

    #[test]
    fn completions_split_by_round_delta_full_and_late() {
        let d = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&d.path().join("l.sqlite")).unwrap();
        let clients = ["a", "b", "c", "d", "e"].map(|c| (c, "east"));
        let run = crate::testing::TestRun::new()
            .clients(clients)
            .create(&mut l)
            .unwrap();
        let at = "2026-01-01T00:00:00Z".to_owned();
        let mut batch = FleetBatch::default();
        for (client, round) in [("a", Some(1)), ("b", Some(2)), ("c", None), ("d", None)] {
            batch.updates.push((
                run,
                ClientUpdate::Completed {
                    client: client.into(),
                    round,
                    at: at.clone(),
                },
            ));
        }
        batch.traffic.push(Traffic {
            run,
            peer: "d".into(),
            kind: TrafficKind::Full,
            round: None,
            bytes: 10,
        });
        batch.traffic.push(Traffic {
            run,
            peer: "c".into(),
            kind: TrafficKind::Delta,
            round: None,
            bytes: 3,
        });
        l.apply_fleet(&batch).unwrap();
        // After the run ended, e's completion is late, from its round.
        l.fail_run(run, "stopped").unwrap();
        let late = FleetBatch {
            updates: vec![(
                run,
                ClientUpdate::Completed {
                    client: "e".into(),
                    round: Some(3),
                    at: at.clone(),
                },
            )],
            ..FleetBatch::default()
        };
        l.apply_fleet(&late).unwrap();
        let mut got: Vec<(CompletionKind, Option<u32>, u64)> = l
            .completion_counts(run)
            .unwrap()
            .into_iter()
            .map(|c| (c.kind, c.round, c.clients))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                (CompletionKind::Round, Some(1), 1),
                (CompletionKind::Round, Some(2), 1),
                (CompletionKind::Delta, None, 1),
                (CompletionKind::Full, None, 1),
                (CompletionKind::Late, Some(3), 1),
            ]
        );
        assert_eq!(
            l.rollback_counts().unwrap(),
            [
                (RollbackState::Ordered, 0),
                (RollbackState::Done, 0),
                (RollbackState::Refused, 0)
            ]
        );
    }
}
