//! The clients of a run and their completions (the audit that reads them
//! is [`crate::audit`]).
//!
//! One row per client and run, so a completion is a single conditional
//! update: it changes a row only if the client had not completed yet. That
//! makes completions idempotent — the same message twice, or again after a
//! crash, is counted once — and lets a restarted master rebuild its counts
//! from the rows. The readers never size anything by a stored number.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::runs::{RunRow, RunStatus};
use crate::{Ledger, LedgerError};

/// A client's state within one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientState {
    /// Targeted, not completed yet.
    Pending,
    /// Completed from a broadcast round.
    Delivered,
    /// Completed from a delta.
    Delta,
    /// Already had the version when it reported in; took no part.
    Current,
    /// Listed by the audit as never completed.
    Undelivered,
    /// Cut off at the deadline.
    Disconnected,
    /// Installed, then its post-install or health check failed, or it
    /// rolled back on its own ([`crate::FailureKind`]); it runs its old
    /// version. Counts against a stage's gate; an operator's readmission
    /// makes it pending again.
    Failed,
}

impl ClientState {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Delta => "delta",
            Self::Current => "current",
            Self::Undelivered => "undelivered",
            Self::Disconnected => "disconnected",
            Self::Failed => "failed",
        }
    }

    /// Whether the client has the version.
    pub fn is_complete(self) -> bool {
        matches!(self, Self::Delivered | Self::Delta | Self::Current)
    }
}

impl ClientState {
    /// Every state, in the order they are shown.
    pub const ALL: [ClientState; 7] = [
        Self::Pending,
        Self::Delivered,
        Self::Delta,
        Self::Current,
        Self::Undelivered,
        Self::Disconnected,
        Self::Failed,
    ];
}

/// Stored as its word; an unknown word is an error, never "pending".
impl rusqlite::types::FromSql for ClientState {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| crate::runs::unknown_word("client state", s))
    }
}

impl rusqlite::types::ToSql for ClientState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// One client of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunClient {
    /// Client id.
    pub client: String,
    /// Its relay.
    pub relay: String,
    /// Its state in the run.
    pub state: ClientState,
    /// The round it completed in (broadcast only).
    pub round: Option<u32>,
    /// When it completed or was cut off.
    pub completed_at: Option<String>,
    /// Why it was cut off or kept, or what failed.
    pub reason: Option<String>,
    /// Its stage (from 0), in a staged run.
    pub stage: Option<u32>,
    /// What failed, for a failed client.
    pub failure: Option<crate::FailureKind>,
    /// What was recorded for it after the run had finished, if anything.
    pub late: Option<LateRecord>,
}

/// A completion, or a report of already having the version, recorded after
/// its run had finished: shown beside the run's final record, which it
/// does not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LateRecord {
    /// The client.
    pub client: String,
    /// `delivered` (by a round), `delta` or `current`.
    pub state: String,
    /// The round it was filed under (by a round only).
    pub round: Option<u32>,
    /// When it was recorded.
    pub at: String,
}

/// A change to one or many clients of a run, applied with a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientUpdate {
    /// A completion message: from `round`, or from a delta when `None`.
    /// Counted only if the client had not completed (or been cut off).
    Completed {
        /// Client id.
        client: String,
        /// The round, or `None` for a delta.
        round: Option<u32>,
        /// When.
        at: String,
    },
    /// A client reported that it already has the run's version: it takes
    /// no part in the rounds.
    Current {
        /// Client id.
        client: String,
        /// When it reported.
        at: String,
    },
    /// Every pending client becomes undelivered (the audit).
    AuditPending,
    /// A straggler is cut off.
    Disconnected {
        /// Client id.
        client: String,
        /// Why.
        reason: String,
        /// When.
        at: String,
    },
    /// A straggler the policy kept connected: the reason is recorded.
    Kept {
        /// Client id.
        client: String,
        /// Why.
        reason: String,
    },
}

/// How many clients a batch of updates changed, by what they became
/// (repeats count zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Completions from a broadcast round.
    pub broadcast: u64,
    /// Completions from a delta or full copy.
    pub delta: u64,
    /// Reports of already having the version.
    pub current: u64,
    /// Any of these recorded after the run had finished (late records).
    pub late: u64,
    /// Failures after install recorded, by kind in
    /// [`FailureKind::ALL`](crate::FailureKind::ALL) order (not in
    /// [`Counted::total`]: no completion).
    pub failed: [u64; 3],
}

impl Counted {
    /// Every client changed.
    pub fn total(&self) -> u64 {
        self.broadcast + self.delta + self.current + self.late
    }

    pub(crate) fn add(&mut self, o: Counted) {
        self.broadcast += o.broadcast;
        self.delta += o.delta;
        self.current += o.current;
        self.late += o.late;
        for (a, b) in self.failed.iter_mut().zip(o.failed) {
            *a += b;
        }
    }

    /// Failures of `kind` recorded.
    pub fn failed(&self, kind: crate::FailureKind) -> u64 {
        crate::FailureKind::ALL
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.failed[i])
    }
}

/// A delta a straggler may need: from the version it runs to its run's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StragglerPair {
    /// The artifact.
    pub artifact: String,
    /// The version the straggler reported running.
    pub from: String,
    /// The run's version.
    pub to: String,
}

impl Ledger {
    /// Every client of a run, by id.
    pub fn run_clients(&self, run_id: i64) -> Result<Vec<RunClient>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT client, relay, state, round, completed_at, reason,
                        late_state, late_round, late_at, stage, failure FROM run_clients
                 WHERE run_id = ?1 ORDER BY client",
            )
            .map_err(&wrap)?;
        stmt.query_map(params![run_id], |r| {
            Ok(RunClient {
                client: r.get(0)?,
                relay: r.get(1)?,
                state: r.get(2)?,
                // A stored round outside u32 reads as round 0, which no
                // run has: the audit files it as an unknown round rather
                // than dropping the delivery.
                round: r
                    .get::<_, Option<i64>>(3)?
                    .map(|n| u32::try_from(n).unwrap_or(0)),
                completed_at: r.get(4)?,
                reason: r.get(5)?,
                stage: crate::failures::stage_of(r.get(9)?),
                failure: r.get(10)?,
                late: match (
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(8)?,
                ) {
                    (Some(state), Some(at)) => Some(LateRecord {
                        client: r.get(0)?,
                        state,
                        round: r
                            .get::<_, Option<i64>>(7)?
                            .and_then(|n| u32::try_from(n).ok()),
                        at,
                    }),
                    _ => None,
                },
            })
        })
        .and_then(|r| r.collect())
        .map_err(&wrap)
    }

    /// The ids of a run's clients in `state`, by id.
    pub fn run_clients_in(
        &self,
        run_id: i64,
        state: ClientState,
    ) -> Result<Vec<String>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT client FROM run_clients WHERE run_id = ?1 AND state = ?2 ORDER BY client",
            )
            .map_err(&wrap)?;
        stmt.query_map(params![run_id, state], |r| r.get(0))
            .and_then(|r| r.collect())
            .map_err(&wrap)
    }

    /// What run `run` has `client` as now, or `None` when the run does
    /// not target the client.
    pub fn run_client_state(
        &self,
        run: i64,
        client: &str,
    ) -> Result<Option<ClientState>, LedgerError> {
        self.conn
            .query_row(
                "SELECT state FROM run_clients WHERE run_id = ?1 AND client = ?2",
                params![run, client],
                |r| r.get(0),
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))
    }

    /// The relay a run lists `client` behind, or `None` when the run does
    /// not target the client.
    pub fn run_client_relay(&self, run: i64, client: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT relay FROM run_clients WHERE run_id = ?1 AND client = ?2",
                params![run, client],
                |r| r.get(0),
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))
    }

    /// The newest live run that lists `client` as a straggler (undelivered
    /// after its audit): `(run, artifact, version)`.
    pub fn straggler_run(
        &self,
        client: &str,
    ) -> Result<Option<(i64, String, String)>, LedgerError> {
        self.conn
            .query_row(
                "SELECT r.id, r.artifact, r.version FROM runs r
                 JOIN run_clients c ON c.run_id = r.id
                 WHERE c.client = ?1 AND c.state = 'undelivered' AND r.fleet = ?2
                 ORDER BY r.id DESC LIMIT 1",
                params![client, crate::RunFleet::Live],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))
    }

    /// The newest live run still running that lists `client` as a
    /// straggler: the only kind of run a delta or full copy may be served
    /// for (the caller also checks its delta window in the snapshot). A
    /// finished run's stragglers are never served: the fleet may have
    /// moved past its version since.
    pub fn running_straggler_run(&self, client: &str) -> Result<Option<RunRow>, LedgerError> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT r.id FROM runs r
                 JOIN run_clients c ON c.run_id = r.id
                 WHERE c.client = ?1 AND c.state = 'undelivered' AND r.fleet = ?2
                   AND r.status = ?3
                 ORDER BY r.id DESC LIMIT 1",
                params![client, crate::RunFleet::Live, RunStatus::Running],
                |r| r.get(0),
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))?;
        match id {
            Some(id) => self.run(id),
            None => Ok(None),
        }
    }

    /// The version pairs the stragglers of running live runs may need:
    /// the installed version and the run's of every client not yet
    /// delivered, each pair once, so the master can build the deltas
    /// during the rounds, before any straggler asks.
    pub fn straggler_pairs(&self) -> Result<Vec<StragglerPair>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT r.artifact, f.version, r.version FROM runs r
                 JOIN run_clients c ON c.run_id = r.id
                 JOIN clients f ON f.id = c.client
                 WHERE r.status = ?2 AND r.fleet = ?1 AND c.state IN ('pending', 'undelivered')
                   AND f.artifact = r.artifact AND f.version IS NOT NULL AND f.version != r.version
                 ORDER BY r.artifact, f.version, r.version",
            )
            .map_err(&wrap)?;
        stmt.query_map(params![crate::RunFleet::Live, RunStatus::Running], |r| {
            Ok(StragglerPair {
                artifact: r.get(0)?,
                from: r.get(1)?,
                to: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(&wrap)
    }
}

pub(crate) fn apply_updates(
    tx: &Transaction<'_>,
    run_id: i64,
    updates: &[ClientUpdate],
) -> rusqlite::Result<Counted> {
    let mut counted = Counted::default();
    if updates.is_empty() {
        return Ok(counted);
    }
    // A round can carry tens of thousands of completions: prepare each
    // statement once per transaction, not once per row.
    let (artifact, version, running): (String, String, bool) = tx.query_row(
        "SELECT artifact, version, status = ?2 FROM runs WHERE id = ?1",
        params![run_id, RunStatus::Running],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // A finished run's record is final: what comes after it is kept beside
    // it as a late record (once, like any completion), never in it.
    // Completions inside the run's delta window are not late: the run is
    // still running then.
    let mut complete = if running {
        tx.prepare_cached(
            "UPDATE run_clients SET state = ?3, round = ?4, completed_at = ?5
             WHERE run_id = ?1 AND client = ?2 AND state IN ('pending', 'undelivered')",
        )?
    } else {
        tx.prepare_cached(
            "UPDATE run_clients SET late_state = ?3, late_round = ?4, late_at = ?5
             WHERE run_id = ?1 AND client = ?2 AND state IN ('pending', 'undelivered')
               AND late_at IS NULL",
        )?
    };
    let mut now_runs = tx.prepare_cached(
        "UPDATE clients SET artifact = ?2, version = ?3, last_contact = ?4 WHERE id = ?1",
    )?;
    for u in updates {
        match u {
            ClientUpdate::Completed { client, round, at } => {
                let state = if round.is_some() {
                    "delivered"
                } else {
                    "delta"
                };
                // Only a client that has not completed or been cut off
                // changes: repeats are no-ops, so nothing counts twice.
                let n = complete.execute(params![run_id, client, state, round, at])?;
                if !running {
                    counted.late += n as u64;
                    if n > 0 {
                        tracing::warn!(
                            run = run_id,
                            client = %client,
                            state,
                            round = ?round,
                            "a completion came after the run finished: recorded as late, beside the run's final record"
                        );
                    }
                } else if round.is_some() {
                    counted.broadcast += n as u64;
                } else {
                    counted.delta += n as u64;
                }
                if n > 0 {
                    // The client now runs the run's version: the gate sees it.
                    now_runs.execute(params![client, artifact, version, at])?;
                }
            }
            ClientUpdate::Current { client, at } => {
                let sql = if running {
                    "UPDATE run_clients SET state = 'current', completed_at = ?3
                     WHERE run_id = ?1 AND client = ?2 AND state IN ('pending', 'undelivered')"
                } else {
                    "UPDATE run_clients SET late_state = 'current', late_at = ?3
                     WHERE run_id = ?1 AND client = ?2 AND state IN ('pending', 'undelivered')
                       AND late_at IS NULL"
                };
                let n = tx
                    .prepare_cached(sql)?
                    .execute(params![run_id, client, at])?;
                if running {
                    counted.current += n as u64;
                } else {
                    counted.late += n as u64;
                }
                if n > 0 {
                    now_runs.execute(params![client, artifact, version, at])?;
                }
            }
            ClientUpdate::AuditPending => {
                tx.execute(
                    "UPDATE run_clients SET state = 'undelivered' WHERE run_id = ?1 AND state = 'pending'",
                    params![run_id],
                )?;
            }
            ClientUpdate::Disconnected { client, reason, at } => {
                tx.prepare_cached(
                    "UPDATE run_clients SET state = 'disconnected', reason = ?3, completed_at = ?4
                     WHERE run_id = ?1 AND client = ?2 AND state IN ('pending', 'undelivered')",
                )?
                .execute(params![run_id, client, reason, at])?;
                tx.prepare_cached(
                    "INSERT INTO clients (id, denied_reason, denied_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET denied_reason = excluded.denied_reason,
                                                    denied_at = excluded.denied_at",
                )?
                .execute(params![client, reason, at])?;
            }
            ClientUpdate::Kept { client, reason } => {
                tx.prepare_cached(
                    "UPDATE run_clients SET reason = ?3 WHERE run_id = ?1 AND client = ?2",
                )?
                .execute(params![run_id, client, reason])?;
            }
        }
    }
    Ok(counted)
}
