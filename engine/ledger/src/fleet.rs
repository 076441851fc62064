//! The fleet table: every client the master has heard of, its relay, the
//! version it reported, its last contact and whether it is cut off; and the
//! group commit of what arrives from the fleet ([`FleetBatch`]).

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::run_clients::{ClientUpdate, Counted, apply_updates};
use crate::runs::insert_event;
use crate::{Ledger, LedgerError, now_text};

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
    /// Clients' reports on rollback orders.
    pub rollbacks: Vec<crate::RollbackResult>,
    /// Clients' labels, each replacing that client's whole set.
    pub labels: Vec<crate::LabelReport>,
    /// Clients' failures after install, each recorded as
    /// [`Ledger::record_failure`] would.
    pub failures: Vec<crate::FailureReport>,
}

impl FleetBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.touches.is_empty()
            && self.joins.is_empty()
            && self.updates.is_empty()
            && self.events.is_empty()
            && self.traffic.is_empty()
            && self.rollbacks.is_empty()
            && self.labels.is_empty()
            && self.failures.is_empty()
    }
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
        Ok(self.apply_fleet_counted(batch)?.total())
    }

    /// [`Ledger::apply_fleet`], with the clients changed by what they
    /// became.
    pub fn apply_fleet_counted(&mut self, batch: &FleetBatch) -> Result<Counted, LedgerError> {
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
        let mut counted = Counted::default();
        let mut by_run: BTreeMap<i64, Vec<ClientUpdate>> = BTreeMap::new();
        for (run, u) in &batch.updates {
            by_run.entry(*run).or_default().push(u.clone());
        }
        for (run, updates) in &by_run {
            counted.add(apply_updates(&tx, *run, updates).map_err(&wrap)?);
        }
        for (kind, subject, detail) in &batch.events {
            insert_event(&tx, &now, kind, subject, detail).map_err(&wrap)?;
        }
        for t in &batch.traffic {
            crate::traffic::insert(&tx, &now, t).map_err(&wrap)?;
        }
        crate::rollbacks::apply_results(&tx, &now, &batch.rollbacks).map_err(&wrap)?;
        crate::labels::apply(&tx, &batch.labels).map_err(&wrap)?;
        counted.failed = crate::failures::apply(&tx, &batch.failures).map_err(&wrap)?;
        tx.commit().map_err(&wrap)?;
        Ok(counted)
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
}

pub(crate) fn client_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok(ClientRow {
        id: r.get(0)?,
        relay: r.get(1)?,
        artifact: r.get(2)?,
        version: r.get(3)?,
        last_contact: r.get(4)?,
        denied_reason: r.get(5)?,
    })
}
