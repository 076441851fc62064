//! haifu's ledger: the embedded SQLite database that is the master's memory.
//!
//! What it does: keeps the registered artifacts and versions (with their
//! signed manifests) and an event log, in one SQLite file in WAL mode with
//! `synchronous = FULL`, so a write that returned is on disk. The schema is
//! versioned: [`MIGRATIONS`] lists every step in order, and opening a ledger
//! applies the missing ones in a transaction each. Clients, runs, rounds and
//! completion messages arrive as later migrations, as do the HTTP API's
//! bearer tokens (stored hashed).
//!
//! What it does not do: hold artifact bytes (the store does) or decide
//! anything (the engine does). It records and answers.
#![forbid(unsafe_code)]

mod audit;
mod census;
mod completions;
mod control;
mod error;
mod failures;
mod fleet;
mod labels;
mod migrations;
mod rollbacks;
mod run_clients;
mod runs;
mod services;
mod stages;
#[cfg(test)]
mod tests;
mod tokens;
mod traffic;
mod versions;

// Fixtures for tests, this crate's and (through the `testing` feature)
// other crates'.
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

pub use audit::{RelayAudit, RunAudit};
pub use census::{CENSUS_VERSIONS, Census, RelayCount, RunCount};
pub use completions::{CompletionCount, CompletionKind};
pub use control::{
    MAX_ORDERS, MAX_REASON, MAX_WHO, OrderError, OrderRecord, Pause, RunOrder, printable_reason,
};
pub use error::LedgerError;
pub use failures::{
    Failure, FailureKind, FailureRecorded, FailureReport, FailureRow, UnknownFailureKind,
};
pub use fleet::{ClientRow, ClientTouch, FleetBatch};
pub use labels::LabelReport;
pub use migrations::{MIGRATIONS, SCHEMA_VERSION};
pub use rollbacks::RollbackOutcome;
pub use rollbacks::{RollbackResult, RollbackRow, RollbackState};
pub use run_clients::{ClientState, ClientUpdate, Counted, LateRecord, RunClient, StragglerPair};
pub use runs::{NewRun, RunFleet, RunRow, RunStatus, Transition};
pub use services::ServiceRow;
pub use stages::{MAX_STAGE_EVENTS, MAX_STAGES, StageEvent, StageTally};
pub use tokens::{TokenDigest, TokenRow, TokenScope, UnknownScope};
pub use traffic::{Traffic, TrafficKind, TrafficTotals};
pub use versions::{Recorded, VersionRow};

/// An open ledger. One per process is the intended use; SQLite's locking
/// keeps several processes on one file safe.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let wrap = LedgerError::sqlite(path);
        let conn = Connection::open(path).map_err(&wrap)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(&wrap)?;
        // WAL: readers never block the writer; FULL: a commit is durable
        // before it returns, which "durable before acknowledged" relies on.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(&wrap)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "ledger is not in WAL mode");
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(&wrap)?;
        let mut ledger = Self {
            conn,
            path: path.to_owned(),
        };
        migrations::migrate(&mut ledger.conn, path)?;
        Ok(ledger)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version this file is at.
    pub fn schema_version(&self) -> Result<u32, LedgerError> {
        migrations::user_version(&self.conn).map_err(LedgerError::sqlite(&self.path))
    }

    /// SQLite's own consistency check; `Ok(())` or the problems it found.
    pub fn integrity_check(&self) -> Result<(), LedgerError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA quick_check")
            .map_err(LedgerError::sqlite(&self.path))?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(LedgerError::sqlite(&self.path))?;
        if rows == ["ok"] {
            Ok(())
        } else {
            Err(LedgerError::Damaged {
                path: self.path.clone(),
                detail: rows.join("; "),
            })
        }
    }
}

/// The current time as stored in the ledger: RFC 3339, UTC.
pub(crate) fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}
