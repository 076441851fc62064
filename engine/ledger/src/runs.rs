//! Runs, their clients and completions, and the fleet's last known state.
//!
//! A run's machine state is an opaque JSON snapshot the engine writes at
//! every transition; the per-client facts live in `run_clients`, one row per
//! client, so a completion is a single conditional update: it changes a row
//! only if the client had not completed yet. That makes completions
//! idempotent — the same message twice, or again after a crash, is counted
//! once — and lets a restarted master rebuild its counts from the rows.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;

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
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => Self::Running,
        }
    }
}

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
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "delivered" => Self::Delivered,
            "delta" => Self::Delta,
            "current" => Self::Current,
            "undelivered" => Self::Undelivered,
            "disconnected" => Self::Disconnected,
            _ => Self::Pending,
        }
    }

    /// Whether the client has the version.
    pub fn is_complete(self) -> bool {
        matches!(self, Self::Delivered | Self::Delta | Self::Current)
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
    /// Which fleet drives it (`sim:…` or a master's relays).
    pub fleet: &'a str,
    /// The machine's first snapshot.
    pub state: &'a str,
    /// When it first wakes.
    pub next_wake: Option<&'a str>,
    /// Targeted clients and their relays.
    pub clients: &'a [(String, String)],
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
    /// Which fleet drives it.
    pub fleet: String,
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
    /// Why it was cut off or kept.
    pub reason: Option<String>,
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

/// A fleet member's last known state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientRow {
    /// Client id.
    pub id: String,
    /// Its relay.
    pub relay: Option<String>,
    /// The artifact it runs.
    pub artifact: Option<String>,
    /// The version it runs.
    pub version: Option<String>,
    /// Last contact.
    pub last_contact: Option<String>,
    /// Why it is deny-listed, if it is.
    pub denied_reason: Option<String>,
}

/// What a client reported: recorded in the fleet table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTouch {
    /// Client id.
    pub client: String,
    /// Its relay.
    pub relay: Option<String>,
    /// The artifact it has installed, if any.
    pub artifact: Option<String>,
    /// The version it has installed, if any.
    pub version: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// What the master records as fleet messages arrive, outside the run
/// driver's transitions: one transaction for the whole batch (group commit),
/// so many completions cost one fsync.
#[derive(Debug, Clone, Default)]
pub struct FleetBatch {
    /// Version reports and contacts.
    pub touches: Vec<ClientTouch>,
    /// Clients that join a running run as pending: `(run, client, relay)`.
    /// A client already in the run is left as it is.
    pub joins: Vec<(i64, String, String)>,
    /// Completions and version reports against runs: `(run, update)`.
    pub updates: Vec<(i64, ClientUpdate)>,
    /// Events: `(kind, subject, detail JSON)`.
    pub events: Vec<(String, String, String)>,
    /// Bytes sent (a record whose run does not exist is skipped).
    pub traffic: Vec<crate::Traffic>,
}

impl FleetBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.touches.is_empty()
            && self.joins.is_empty()
            && self.updates.is_empty()
            && self.events.is_empty()
            && self.traffic.is_empty()
    }
}

/// The audit of one relay's clients.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayAudit {
    /// Relay name.
    pub relay: String,
    /// Clients delivered in each round: index 0 is round 1 (never longer
    /// than [`haifu_core::MAX_ROUNDS`]).
    pub delivered_by_round: Vec<Vec<String>>,
    /// Clients delivered by broadcast under a round number no run can have
    /// (written by a master that took a peer's word for it); empty on any
    /// ledger this version wrote.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delivered_unknown_round: Vec<String>,
    /// Clients delivered by delta.
    pub delta: Vec<String>,
    /// Clients that already had the version when they reported in.
    pub current: Vec<String>,
    /// Clients that never completed and were not cut off.
    pub undelivered: Vec<String>,
    /// Clients still pending (the audit has not run yet).
    pub pending: Vec<String>,
    /// Clients cut off, with the reason.
    pub disconnected: Vec<(String, String)>,
    /// Each undelivered or pending client with what the fleet table knows
    /// of it: last contact and installed version.
    pub stragglers: Vec<ClientRow>,
}

/// The audit of a run, per relay.
#[derive(Debug, Clone, Serialize)]
pub struct RunAudit {
    /// The run.
    pub run: RunRow,
    /// One entry per relay, by name.
    pub relays: Vec<RelayAudit>,
    /// The bytes the run cost on the wire.
    pub traffic: crate::TrafficTotals,
}

/// A client's report: relay, version and contact time; a field it did not
/// report keeps its value.
const TOUCH_SQL: &str =
    "INSERT INTO clients (id, relay, artifact, version, last_contact) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (id) DO UPDATE SET
       relay = coalesce(excluded.relay, relay),
       artifact = coalesce(excluded.artifact, artifact),
       version = coalesce(excluded.version, version),
       last_contact = excluded.last_contact";

impl Ledger {
    /// Creates a run with its targeted clients, in one transaction.
    pub fn create_run(&mut self, run: &NewRun<'_>) -> Result<i64, LedgerError> {
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
        let counted = apply_updates(&tx, run_id, &t.updates).map_err(&wrap)?;
        let changed = tx
            .execute(
                "UPDATE runs SET state = ?2, status = ?3, next_wake = ?4, updated_at = ?5 WHERE id = ?1",
                params![run_id, t.state, t.status.as_str(), t.next_wake, now],
            )
            .map_err(&wrap)?;
        if changed != 1 {
            return Err(LedgerError::Damaged {
                path: self.path.clone(),
                detail: format!("run {run_id} does not exist"),
            });
        }
        for (kind, detail) in &t.events {
            insert_event(&tx, &now, kind, &format!("run:{run_id}"), detail).map_err(&wrap)?;
        }
        tx.commit().map_err(&wrap)?;
        Ok(counted)
    }

    /// One run, with its counts per client state.
    pub fn run(&self, run_id: i64) -> Result<Option<RunRow>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let row = self
            .conn
            .query_row(
                "SELECT id, workflow, name, artifact, version, fleet, state, status, next_wake, created_at, updated_at
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
                "SELECT id, workflow, name, artifact, version, fleet, state, status, next_wake, created_at, updated_at
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

    /// Every client of a run, by id.
    pub fn run_clients(&self, run_id: i64) -> Result<Vec<RunClient>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT client, relay, state, round, completed_at, reason FROM run_clients
                 WHERE run_id = ?1 ORDER BY client",
            )
            .map_err(&wrap)?;
        stmt.query_map(params![run_id], |r| {
            Ok(RunClient {
                client: r.get(0)?,
                relay: r.get(1)?,
                state: ClientState::parse(&r.get::<_, String>(2)?),
                round: r
                    .get::<_, Option<i64>>(3)?
                    .map(|n| u32::try_from(n).unwrap_or(0)),
                completed_at: r.get(4)?,
                reason: r.get(5)?,
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
        stmt.query_map(params![run_id, state.as_str()], |r| r.get(0))
            .and_then(|r| r.collect())
            .map_err(&wrap)
    }

    /// The audit of a run: per relay, who completed in which round, by
    /// delta, who never did, and who was cut off.
    pub fn audit(&self, run_id: i64) -> Result<Option<RunAudit>, LedgerError> {
        let Some(run) = self.run(run_id)? else {
            return Ok(None);
        };
        let mut relays: BTreeMap<String, RelayAudit> = BTreeMap::new();
        for c in self.run_clients(run_id)? {
            let a = relays.entry(c.relay.clone()).or_insert_with(|| RelayAudit {
                relay: c.relay.clone(),
                ..RelayAudit::default()
            });
            match c.state {
                ClientState::Delivered => {
                    // Never sized by a stored number: the index is bounded by
                    // MAX_ROUNDS, anything else is filed as unknown.
                    match haifu_core::round_index(c.round.unwrap_or(1)) {
                        Some(i) => {
                            if a.delivered_by_round.len() <= i {
                                a.delivered_by_round.resize(i + 1, Vec::new());
                            }
                            a.delivered_by_round[i].push(c.client);
                        }
                        None => a.delivered_unknown_round.push(c.client),
                    }
                }
                ClientState::Delta => a.delta.push(c.client),
                ClientState::Current => a.current.push(c.client),
                ClientState::Undelivered | ClientState::Pending => {
                    let row = self.client(&c.client)?.unwrap_or_else(|| ClientRow {
                        id: c.client.clone(),
                        relay: Some(c.relay.clone()),
                        artifact: None,
                        version: None,
                        last_contact: None,
                        denied_reason: None,
                    });
                    a.stragglers.push(row);
                    if c.state == ClientState::Pending {
                        a.pending.push(c.client);
                    } else {
                        a.undelivered.push(c.client);
                    }
                }
                ClientState::Disconnected => a
                    .disconnected
                    .push((c.client, c.reason.unwrap_or_default())),
            }
        }
        Ok(Some(RunAudit {
            traffic: self.traffic(run_id)?,
            run,
            relays: relays.into_values().collect(),
        }))
    }

    /// Records what a client reported: its relay, version and contact time.
    pub fn touch_client(
        &mut self,
        id: &str,
        relay: Option<&str>,
        artifact: Option<&str>,
        version: Option<&str>,
        at: &str,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(TOUCH_SQL, params![id, relay, artifact, version, at])
            .map_err(LedgerError::sqlite(&self.path))?;
        Ok(())
    }

    /// Applies a [`FleetBatch`] in one transaction. Returns how many of its
    /// updates changed a client (repeats count zero).
    pub fn apply_fleet(&mut self, batch: &FleetBatch) -> Result<u64, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        let now = now_text();
        {
            let mut touch = tx.prepare_cached(TOUCH_SQL).map_err(&wrap)?;
            for t in &batch.touches {
                touch
                    .execute(params![t.client, t.relay, t.artifact, t.version, t.at])
                    .map_err(&wrap)?;
            }
            let mut join = tx
                .prepare_cached(
                    "INSERT INTO run_clients (run_id, client, relay, state) VALUES (?1, ?2, ?3, 'pending')
                     ON CONFLICT (run_id, client) DO NOTHING",
                )
                .map_err(&wrap)?;
            for (run, client, relay) in &batch.joins {
                join.execute(params![run, client, relay]).map_err(&wrap)?;
            }
        }
        let mut counted = 0;
        let mut by_run: BTreeMap<i64, Vec<ClientUpdate>> = BTreeMap::new();
        for (run, u) in &batch.updates {
            by_run.entry(*run).or_default().push(u.clone());
        }
        for (run, updates) in &by_run {
            counted += apply_updates(&tx, *run, updates).map_err(&wrap)?;
        }
        for (kind, subject, detail) in &batch.events {
            insert_event(&tx, &now, kind, subject, detail).map_err(&wrap)?;
        }
        for t in &batch.traffic {
            crate::traffic::insert(&tx, &now, t).map_err(&wrap)?;
        }
        tx.commit().map_err(&wrap)?;
        Ok(counted)
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
                 WHERE c.client = ?1 AND c.state = 'undelivered' AND r.fleet = 'live'
                 ORDER BY r.id DESC LIMIT 1",
                params![client],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))
    }

    /// The version pairs the stragglers of running live runs may need:
    /// `(artifact, installed version, run's version)` of every client not
    /// yet delivered, each pair once, so the master can build the deltas
    /// during the rounds, before any straggler asks.
    pub fn straggler_pairs(&self) -> Result<Vec<(String, String, String)>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT r.artifact, f.version, r.version FROM runs r
                 JOIN run_clients c ON c.run_id = r.id
                 JOIN clients f ON f.id = c.client
                 WHERE r.status = 'running' AND r.fleet = 'live' AND c.state IN ('pending', 'undelivered')
                   AND f.artifact = r.artifact AND f.version IS NOT NULL AND f.version != r.version
                 ORDER BY r.artifact, f.version, r.version",
            )
            .map_err(&wrap)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(&wrap)
    }

    /// Registers a known client behind `relay` (the operator moved it):
    /// from then on that relay speaks for it and its old one may not.
    /// Returns whether the client exists.
    pub fn move_client(&mut self, id: &str, relay: &str) -> Result<bool, LedgerError> {
        let n = self
            .conn
            .execute(
                "UPDATE clients SET relay = ?2 WHERE id = ?1",
                params![id, relay],
            )
            .map_err(LedgerError::sqlite(&self.path))?;
        if n > 0 {
            insert_event(
                &self.conn,
                &now_text(),
                "moved",
                &format!("client:{id}"),
                &serde_json::json!({ "relay": relay }).to_string(),
            )
            .map_err(LedgerError::sqlite(&self.path))?;
        }
        Ok(n > 0)
    }

    /// Lifts a client's cut-off; returns whether it was cut off.
    pub fn readmit(&mut self, id: &str) -> Result<bool, LedgerError> {
        let n = self
            .conn
            .execute(
                "UPDATE clients SET denied_reason = NULL, denied_at = NULL
                 WHERE id = ?1 AND denied_reason IS NOT NULL",
                params![id],
            )
            .map_err(LedgerError::sqlite(&self.path))?;
        if n > 0 {
            insert_event(
                &self.conn,
                &now_text(),
                "readmitted",
                &format!("client:{id}"),
                "{}",
            )
            .map_err(LedgerError::sqlite(&self.path))?;
        }
        Ok(n > 0)
    }

    /// The identities cut off, sorted.
    pub fn denied(&self) -> Result<Vec<String>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM clients WHERE denied_reason IS NOT NULL ORDER BY id")
            .map_err(&wrap)?;
        stmt.query_map([], |r| r.get(0))
            .and_then(|r| r.collect())
            .map_err(&wrap)
    }

    /// A fleet member, if known.
    pub fn client(&self, id: &str) -> Result<Option<ClientRow>, LedgerError> {
        self.conn
            .query_row(
                "SELECT id, relay, artifact, version, last_contact, denied_reason FROM clients WHERE id = ?1",
                params![id],
                client_from_row,
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))
    }

    /// Every fleet member, by id.
    pub fn clients(&self) -> Result<Vec<ClientRow>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT id, relay, artifact, version, last_contact, denied_reason FROM clients ORDER BY id")
            .map_err(&wrap)?;
        stmt.query_map([], client_from_row)
            .and_then(|r| r.collect())
            .map_err(&wrap)
    }

    /// Declares that `service` appeared in `since` of `artifact`.
    pub fn set_service(
        &mut self,
        name: &str,
        artifact: &str,
        since: &str,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT INTO services (name, artifact, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET artifact = excluded.artifact, since = excluded.since",
                params![name, artifact, since],
            )
            .map_err(LedgerError::sqlite(&self.path))?;
        Ok(())
    }

    /// The artifact and version a service appeared in, if declared.
    pub fn service(&self, name: &str) -> Result<Option<(String, String)>, LedgerError> {
        self.conn
            .query_row(
                "SELECT artifact, since FROM services WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))
    }
}

fn apply_updates(
    tx: &Transaction<'_>,
    run_id: i64,
    updates: &[ClientUpdate],
) -> rusqlite::Result<u64> {
    let mut counted = 0u64;
    if updates.is_empty() {
        return Ok(0);
    }
    // A round can carry tens of thousands of completions: prepare each
    // statement once per transaction, not once per row.
    let (artifact, version): (String, String) = tx.query_row(
        "SELECT artifact, version FROM runs WHERE id = ?1",
        params![run_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut complete = tx.prepare_cached(
        "UPDATE run_clients SET state = ?3, round = ?4, completed_at = ?5
         WHERE run_id = ?1 AND client = ?2 AND state IN ('pending', 'undelivered')",
    )?;
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
                counted += n as u64;
                if n > 0 {
                    // The client now runs the run's version: the gate sees it.
                    now_runs.execute(params![client, artifact, version, at])?;
                }
            }
            ClientUpdate::Current { client, at } => {
                let n = tx
                    .prepare_cached(
                        "UPDATE run_clients SET state = 'current', completed_at = ?3
                         WHERE run_id = ?1 AND client = ?2 AND state IN ('pending', 'undelivered')",
                    )?
                    .execute(params![run_id, client, at])?;
                counted += n as u64;
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

fn insert_event(
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

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        workflow: r.get(1)?,
        name: r.get(2)?,
        artifact: r.get(3)?,
        version: r.get(4)?,
        fleet: r.get(5)?,
        state: r.get(6)?,
        status: RunStatus::parse(&r.get::<_, String>(7)?),
        next_wake: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        counts: BTreeMap::new(),
    })
}

fn client_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok(ClientRow {
        id: r.get(0)?,
        relay: r.get(1)?,
        artifact: r.get(2)?,
        version: r.get(3)?,
        last_contact: r.get(4)?,
        denied_reason: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        (dir, l)
    }

    fn new_run(l: &mut Ledger, n: usize) -> i64 {
        let clients: Vec<(String, String)> = (0..n)
            .map(|i| (format!("c{i:02}"), format!("relay-{}", i % 2)))
            .collect();
        l.create_run(&NewRun {
            workflow: "w.yaml",
            name: "w",
            artifact: "app",
            version: "1.0.0",
            fleet: "sim",
            state: "{}",
            next_wake: None,
            clients: &clients,
        })
        .unwrap()
    }

    fn step(updates: Vec<ClientUpdate>) -> Transition {
        Transition {
            state: "{}".into(),
            status: RunStatus::Running,
            next_wake: None,
            updates,
            events: vec![("test".into(), "{}".into())],
        }
    }

    fn done(client: &str, round: Option<u32>) -> ClientUpdate {
        ClientUpdate::Completed {
            client: client.into(),
            round,
            at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn straggler_pairs_list_each_needed_delta_once() {
        let (_d, mut l) = ledger();
        let clients: Vec<(String, String)> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|c| ((*c).to_owned(), "relay-0".to_owned()))
            .collect();
        let id = l
            .create_run(&NewRun {
                workflow: "w.yaml",
                name: "w",
                artifact: "app",
                version: "2.0.0",
                fleet: "live",
                state: "{}",
                next_wake: None,
                clients: &clients,
            })
            .unwrap();
        for (c, v) in [
            ("a", "1.0.0"),
            ("b", "1.0.0"),
            ("c", "1.5.0"),
            ("d", "2.0.0"),
        ] {
            l.touch_client(
                c,
                Some("relay-0"),
                Some("app"),
                Some(v),
                "2026-01-01T00:00:00Z",
            )
            .unwrap();
        }
        let all = vec![
            ("app".to_owned(), "1.0.0".to_owned(), "2.0.0".to_owned()),
            ("app".to_owned(), "1.5.0".to_owned(), "2.0.0".to_owned()),
        ];
        assert_eq!(l.straggler_pairs().unwrap(), all, "pending: may need one");
        l.transition(id, &step(vec![done("b", Some(1)), done("c", Some(1))]))
            .unwrap();
        l.transition(id, &step(vec![ClientUpdate::AuditPending]))
            .unwrap();
        // a (1.0.0) is a straggler; b and c completed; d already has 2.0.0;
        // e never said what it runs.
        assert_eq!(l.straggler_pairs().unwrap(), all[..1]);
        l.transition(
            id,
            &Transition {
                status: RunStatus::Done,
                ..step(vec![])
            },
        )
        .unwrap();
        assert!(l.straggler_pairs().unwrap().is_empty(), "the run is over");
    }

    #[test]
    fn a_completion_counts_once_however_often_it_arrives() {
        let (_d, mut l) = ledger();
        let run = new_run(&mut l, 4);
        assert_eq!(
            l.transition(run, &step(vec![done("c00", Some(1)), done("c01", Some(1))]))
                .unwrap(),
            2
        );
        assert_eq!(
            l.transition(run, &step(vec![done("c00", Some(1))]))
                .unwrap(),
            0
        );
        assert_eq!(
            l.transition(run, &step(vec![done("c00", Some(2))]))
                .unwrap(),
            0
        );
        // An unknown client changes nothing either.
        assert_eq!(
            l.transition(run, &step(vec![done("zz", Some(1))])).unwrap(),
            0
        );
        let r = l.run(run).unwrap().unwrap();
        assert_eq!(r.counts["delivered"], 2);
        assert_eq!(r.counts["pending"], 2);
    }

    /// A completion stored under round u32::MAX by a master that took a
    /// client's word for it (issue 11) made every reader allocate 96 GiB.
    /// The audit files it as "unknown round" and allocates nothing by it.
    #[test]
    fn a_stored_impossible_round_does_not_size_the_audit() {
        let (_d, mut l) = ledger();
        let run = new_run(&mut l, 2);
        l.transition(
            run,
            &step(vec![done("c00", Some(u32::MAX)), done("c01", Some(1))]),
        )
        .unwrap();
        let a = l.audit(run).unwrap().unwrap();
        let all: Vec<&RelayAudit> = a.relays.iter().collect();
        let unknown: Vec<&String> = all
            .iter()
            .flat_map(|r| r.delivered_unknown_round.iter())
            .collect();
        assert_eq!(unknown, ["c00"]);
        assert!(all.iter().all(|r| r.delivered_by_round.len() <= 1));
    }

    #[test]
    fn audit_groups_by_relay_round_delta_and_cut_off() {
        let (_d, mut l) = ledger();
        let run = new_run(&mut l, 6);
        l.transition(run, &step(vec![done("c00", Some(1)), done("c01", Some(2))]))
            .unwrap();
        l.transition(run, &step(vec![ClientUpdate::AuditPending]))
            .unwrap();
        l.transition(run, &step(vec![done("c02", None)])).unwrap();
        l.transition(
            run,
            &step(vec![ClientUpdate::Disconnected {
                client: "c03".into(),
                reason: "silent 9 days".into(),
                at: "2026-01-02T00:00:00Z".into(),
            }]),
        )
        .unwrap();
        let a = l.audit(run).unwrap().unwrap();
        assert_eq!(a.relays.len(), 2);
        let r0 = &a.relays[0];
        assert_eq!(r0.relay, "relay-0");
        assert_eq!(r0.delivered_by_round, vec![vec!["c00".to_string()]]);
        assert_eq!(r0.delta, ["c02"]);
        assert_eq!(r0.undelivered, ["c04"]);
        let r1 = &a.relays[1];
        assert_eq!(r1.delivered_by_round, vec![vec![], vec!["c01".to_string()]]);
        assert_eq!(
            r1.disconnected,
            [("c03".to_string(), "silent 9 days".to_string())]
        );
        assert_eq!(r1.undelivered, ["c05"]);
        assert_eq!(
            l.client("c03").unwrap().unwrap().denied_reason.as_deref(),
            Some("silent 9 days")
        );
    }

    #[test]
    fn a_transition_on_a_missing_run_fails_and_writes_nothing() {
        let (_d, mut l) = ledger();
        let e = l.transition(99, &step(vec![])).unwrap_err();
        assert!(e.to_string().contains("run 99 does not exist"), "{e}");
        let events: i64 = l
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 0);
    }

    #[test]
    fn clients_and_services_are_remembered() {
        let (_d, mut l) = ledger();
        l.touch_client(
            "pos-1",
            Some("east"),
            Some("app"),
            Some("2.3.0"),
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        l.touch_client("pos-1", None, None, Some("2.4.0"), "2026-01-02T00:00:00Z")
            .unwrap();
        let c = l.client("pos-1").unwrap().unwrap();
        assert_eq!(
            (c.relay.as_deref(), c.version.as_deref()),
            (Some("east"), Some("2.4.0"))
        );
        assert_eq!(l.clients().unwrap().len(), 1);
        l.set_service("refund", "app", "2.4.0").unwrap();
        assert_eq!(
            l.service("refund").unwrap(),
            Some(("app".into(), "2.4.0".into()))
        );
        assert_eq!(l.service("nope").unwrap(), None);
    }

    #[test]
    fn fleet_batches_count_completions_once_and_join_late_clients() {
        let (_d, mut l) = ledger();
        let id = new_run(&mut l, 3);
        let batch = FleetBatch {
            touches: vec![ClientTouch {
                client: "late".into(),
                relay: Some("relay-1".into()),
                artifact: None,
                version: None,
                at: "2026-12-01T00:00:00Z".into(),
            }],
            joins: vec![
                (id, "late".into(), "relay-1".into()),
                (id, "c00".into(), "relay-9".into()),
            ],
            updates: vec![
                (id, done("c00", Some(1))),
                (id, done("c00", Some(1))),
                (
                    id,
                    ClientUpdate::Current {
                        client: "c01".into(),
                        at: "2026-12-01T00:00:00Z".into(),
                    },
                ),
            ],
            events: vec![("completion".into(), format!("run:{id}"), "{}".into())],
            traffic: vec![
                crate::Traffic {
                    run: id,
                    peer: "relay-0".into(),
                    kind: crate::TrafficKind::Multicast,
                    round: Some(1),
                    bytes: 4096,
                },
                crate::Traffic {
                    run: id + 1000,
                    peer: "relay-0".into(),
                    kind: crate::TrafficKind::Fetch,
                    round: None,
                    bytes: 1,
                },
            ],
        };
        assert_eq!(l.apply_fleet(&batch).unwrap(), 2, "the repeat counts zero");
        assert_eq!(
            l.traffic(id).unwrap().multicast_by_round,
            vec![4096],
            "traffic rides in the batch; a bad run id does not fail it"
        );
        // A resend in a later batch changes nothing either.
        assert_eq!(l.apply_fleet(&batch).unwrap(), 0);
        let audit = l.audit(id).unwrap().unwrap();
        let r0 = &audit.relays[0];
        assert_eq!(r0.relay, "relay-0");
        assert_eq!(r0.delivered_by_round, vec![vec!["c00".to_owned()]]);
        assert_eq!(r0.pending, vec!["c02".to_owned()]);
        let r1 = &audit.relays[1];
        assert_eq!(r1.current, vec!["c01".to_owned()]);
        assert_eq!(r1.pending, vec!["late".to_owned()]);
        assert_eq!(
            r1.stragglers[0].last_contact.as_deref(),
            Some("2026-12-01T00:00:00Z")
        );
        assert_eq!(
            l.client("c01").unwrap().unwrap().version.as_deref(),
            Some("1.0.0"),
            "a client that reports the version has it"
        );
    }
}
