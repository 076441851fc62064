//! Runs: one row per run with the machine's opaque JSON snapshot, written
//! at every transition together with its client changes and events.
//!
//! A run's per-client facts live in `run_clients` ([`crate::run_clients`]);
//! a transition applies the snapshot, those changes and the events in one
//! transaction, so a restarted master rebuilds everything from the rows.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::control::Pause;
use crate::run_clients::{ClientUpdate, apply_updates};
use crate::{Ledger, LedgerError, now_text};

/// Where a run stands as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Still has steps to run.
    Running,
    /// Every step finished.
    Done,
    /// Stopped by an error an operator must look at.
    Failed,
}

impl RunStatus {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// Stored as its word; an unknown word is an error, never a default (a
/// ledger written by a newer haifu must not read as "running").
impl rusqlite::types::FromSql for RunStatus {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        [Self::Running, Self::Done, Self::Failed]
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| unknown_word("run status", s))
    }
}

impl rusqlite::types::ToSql for RunStatus {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// The error for a stored word this build does not know.
pub(crate) fn unknown_word(what: &str, s: &str) -> rusqlite::types::FromSqlError {
    rusqlite::types::FromSqlError::Other(format!("unknown {what} {s:?}").into())
}

/// How a run's fleet is driven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFleet {
    /// By a master daemon and its relays (`haifu run --live`).
    Live,
    /// By the simulator, in virtual time: its description (a JSON object
    /// of the modelled fleet's parameters).
    Modelled(String),
}

impl RunFleet {
    /// The word stored for a live run.
    const LIVE: &'static str = "live";

    /// Whether a master drives it.
    pub fn is_live(&self) -> bool {
        matches!(self, Self::Live)
    }

    /// The text stored and shown.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Live => Self::LIVE,
            Self::Modelled(d) => d,
        }
    }
}

impl Serialize for RunFleet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl rusqlite::types::FromSql for RunFleet {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        Ok(if s == Self::LIVE {
            Self::Live
        } else {
            Self::Modelled(s.to_owned())
        })
    }
}

impl rusqlite::types::ToSql for RunFleet {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// The workflow file.
    pub workflow: &'a str,
    /// The workflow's name.
    pub name: &'a str,
    /// Artifact name.
    pub artifact: &'a str,
    /// Artifact version.
    pub version: &'a str,
    /// How its fleet is driven.
    pub fleet: &'a RunFleet,
    /// The machine's first snapshot.
    pub state: &'a str,
    /// When it first wakes.
    pub next_wake: Option<&'a str>,
    /// Targeted clients and their relays.
    pub clients: &'a [(String, String)],
    /// Each staged client's stage (from 0), for a phased rollout; empty
    /// for a run without stages. Written with the run, as
    /// [`Ledger::set_client_stages`] would.
    pub stages: &'a [(String, u32)],
}

/// A run as stored.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// Run id.
    pub id: i64,
    /// The workflow file.
    pub workflow: String,
    /// The workflow's name.
    pub name: String,
    /// Artifact name.
    pub artifact: String,
    /// Artifact version.
    pub version: String,
    /// How its fleet is driven.
    pub fleet: RunFleet,
    /// The machine's snapshot (JSON).
    #[serde(skip)]
    pub state: String,
    /// Running, done or failed.
    pub status: RunStatus,
    /// When it next wakes.
    pub next_wake: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last transition.
    pub updated_at: String,
    /// Clients per state.
    pub counts: BTreeMap<String, u64>,
    /// An operator's pause, while the run is paused.
    pub paused: Option<Pause>,
}

/// One atomic step of a run: the new snapshot, the client changes and the
/// events, committed together or not at all.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The machine's new snapshot.
    pub state: String,
    /// The run's status after it.
    pub status: RunStatus,
    /// When the run next wakes.
    pub next_wake: Option<String>,
    /// Client changes.
    pub updates: Vec<ClientUpdate>,
    /// Events: (kind, detail JSON).
    pub events: Vec<(String, String)>,
}

impl Ledger {
    /// Creates a run with its targeted clients, in one transaction.
    pub fn create_run(&mut self, run: &NewRun<'_>) -> Result<i64, LedgerError> {
        crate::stages::check_stages(run.stages)?;
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        let now = now_text();
        tx.execute(
            "INSERT INTO runs (workflow, name, artifact, version, fleet, state, status, next_wake, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8, ?8)",
            params![run.workflow, run.name, run.artifact, run.version, run.fleet, run.state, run.next_wake, now],
        )
        .map_err(&wrap)?;
        let id = tx.last_insert_rowid();
        {
            let mut ins = tx
                .prepare(
                    "INSERT INTO run_clients (run_id, client, relay, state) VALUES (?1, ?2, ?3, 'pending')",
                )
                .map_err(&wrap)?;
            // Targeted clients join the fleet table too, so the gate knows
            // them (their version stays unknown until they report or
            // complete).
            let mut fleet = tx
                .prepare(
                    "INSERT INTO clients (id, relay, artifact) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET relay = excluded.relay, artifact = excluded.artifact",
                )
                .map_err(&wrap)?;
            for (client, relay) in run.clients {
                ins.execute(params![id, client, relay]).map_err(&wrap)?;
                fleet
                    .execute(params![client, relay, run.artifact])
                    .map_err(&wrap)?;
            }
        }
        crate::stages::place(&tx, id, run.stages).map_err(&wrap)?;
        insert_event(&tx, &now, "run-created", &format!("run:{id}"), "{}").map_err(&wrap)?;
        tx.commit().map_err(&wrap)?;
        Ok(id)
    }

    /// Applies one transition atomically. Returns how many completions in it
    /// were new (the rest were repeats and changed nothing).
    pub fn transition(&mut self, run_id: i64, t: &Transition) -> Result<u64, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        let now = now_text();
        let counted = apply_updates(&tx, run_id, &t.updates)
            .map_err(&wrap)?
            .total();
        let changed = tx
            .execute(
                "UPDATE runs SET state = ?2, status = ?3, next_wake = ?4, updated_at = ?5
                 WHERE id = ?1 AND status = ?6",
                params![
                    run_id,
                    t.state,
                    t.status,
                    t.next_wake,
                    now,
                    RunStatus::Running
                ],
            )
            .map_err(&wrap)?;
        if changed != 1 {
            // An operator's abort (or a failure) ended the run while its
            // driver was at work: the driver's step is dropped whole, never
            // written over the end.
            let status: Option<RunStatus> = tx
                .query_row(
                    "SELECT status FROM runs WHERE id = ?1",
                    params![run_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&wrap)?;
            return Err(match status {
                Some(_) => LedgerError::RunEnded(run_id),
                None => LedgerError::Damaged {
                    path: self.path.clone(),
                    detail: format!("run {run_id} does not exist"),
                },
            });
        }
        for (kind, detail) in &t.events {
            insert_event(&tx, &now, kind, &format!("run:{run_id}"), detail).map_err(&wrap)?;
        }
        tx.commit().map_err(&wrap)?;
        Ok(counted)
    }

    /// Marks a run that cannot go on failed, with `reason` in a
    /// `run-failed` event, in one transaction; its snapshot is kept as it
    /// was. A run no longer running is left as it is.
    pub fn fail_run(&mut self, run_id: i64, reason: &str) -> Result<(), LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        let now = now_text();
        let changed = tx
            .execute(
                "UPDATE runs SET status = 'failed', next_wake = NULL, updated_at = ?2
                 WHERE id = ?1 AND status = 'running'",
                params![run_id, now],
            )
            .map_err(&wrap)?;
        if changed == 1 {
            let detail = serde_json::json!({ "reason": reason }).to_string();
            insert_event(&tx, &now, "run-failed", &format!("run:{run_id}"), &detail)
                .map_err(&wrap)?;
        }
        tx.commit().map_err(&wrap)
    }

    /// Why a failed run failed, from its last `run-failed` event.
    pub fn failure(&self, run_id: i64) -> Result<Option<String>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let detail: Option<String> = self
            .conn
            .query_row(
                "SELECT detail FROM events WHERE kind = 'run-failed' AND subject = ?1
                 ORDER BY id DESC LIMIT 1",
                params![format!("run:{run_id}")],
                |r| r.get(0),
            )
            .optional()
            .map_err(&wrap)?;
        Ok(detail.map(|d| {
            serde_json::from_str::<serde_json::Value>(&d)
                .ok()
                .and_then(|v| v.get("reason")?.as_str().map(str::to_owned))
                .unwrap_or(d)
        }))
    }

    /// One run, with its counts per client state.
    pub fn run(&self, run_id: i64) -> Result<Option<RunRow>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let row = self
            .conn
            .query_row(
                "SELECT id, workflow, name, artifact, version, fleet, state, status, next_wake, created_at, updated_at,
                        paused_at, paused_by, paused_reason
                 FROM runs WHERE id = ?1",
                params![run_id],
                run_from_row,
            )
            .optional()
            .map_err(&wrap)?;
        row.map(|mut r| {
            r.counts = self.counts(r.id)?;
            Ok(r)
        })
        .transpose()
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRow>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, workflow, name, artifact, version, fleet, state, status, next_wake, created_at, updated_at,
                        paused_at, paused_by, paused_reason
                 FROM runs ORDER BY id DESC",
            )
            .map_err(&wrap)?;
        let mut rows: Vec<RunRow> = stmt
            .query_map([], run_from_row)
            .and_then(|r| r.collect())
            .map_err(&wrap)?;
        for r in &mut rows {
            r.counts = self.counts(r.id)?;
        }
        Ok(rows)
    }

    fn counts(&self, run_id: i64) -> Result<BTreeMap<String, u64>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT state, count(*) FROM run_clients WHERE run_id = ?1 GROUP BY state")
            .map_err(&wrap)?;
        let pairs: Vec<(String, i64)> = stmt
            .query_map(params![run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|r| r.collect())
            .map_err(&wrap)?;
        Ok(pairs
            .into_iter()
            .map(|(s, n)| (s, n.unsigned_abs()))
            .collect())
    }
}

pub(crate) fn insert_event(
    tx: &rusqlite::Connection,
    at: &str,
    kind: &str,
    subject: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO events (at, kind, subject, detail) VALUES (?1, ?2, ?3, ?4)",
        params![at, kind, subject, detail],
    )?;
    Ok(())
}

pub(crate) fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        workflow: r.get(1)?,
        name: r.get(2)?,
        artifact: r.get(3)?,
        version: r.get(4)?,
        fleet: r.get(5)?,
        state: r.get(6)?,
        status: r.get(7)?,
        next_wake: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        counts: BTreeMap::new(),
        paused: match r.get::<_, Option<String>>(11)? {
            Some(at) => Some(Pause {
                at,
                by: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
                reason: r.get(13)?,
            }),
            None => None,
        },
    })
}
