//! Failures after install: a client that installed a run's version and then
//! failed its post-install command or its health command, or rolled back on
//! its own. Recorded once per client and run (the first report wins), each
//! with an event, and counted against a phased rollout's gate; an
//! operator's readmission (the fix is in) makes the client pending again.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::control::cut;
use crate::runs::{RunStatus, insert_event, unknown_word};
use crate::{Ledger, LedgerError, MAX_REASON, MAX_WHO, now_text};

/// What failed after a client installed a run's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The post-install command failed; the client went back.
    PostInstall,
    /// The version did not come up: the health command failed after its
    /// delay; the client went back.
    Health,
    /// The client rolled back to its previous version on its own.
    RolledBack,
}

impl FailureKind {
    /// Every kind, in the order they are shown.
    pub const ALL: [FailureKind; 3] = [Self::PostInstall, Self::Health, Self::RolledBack];

    /// The word stored, sent and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PostInstall => "post-install",
            Self::Health => "health",
            Self::RolledBack => "rolled-back",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no [`FailureKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown failure kind {0:?} (known: post-install, health, rolled-back)")]
pub struct UnknownFailureKind(pub String);

impl std::str::FromStr for FailureKind {
    type Err = UnknownFailureKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownFailureKind(s.to_owned()))
    }
}

/// Stored as its word; an unknown word is an error.
impl rusqlite::types::FromSql for FailureKind {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        s.parse().map_err(|_| unknown_word("failure kind", s))
    }
}

impl rusqlite::types::ToSql for FailureKind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// One client's report that the run's version failed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure<'a> {
    /// The run.
    pub run: i64,
    /// The client that failed (and reported it).
    pub client: &'a str,
    /// What failed.
    pub kind: FailureKind,
    /// Why, in the client's words (cut to [`MAX_REASON`] bytes).
    pub reason: &'a str,
    /// When, as the client reported it.
    pub at: &'a str,
}

/// What [`Ledger::record_failure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureRecorded {
    /// Recorded now.
    Recorded,
    /// The client's failure in this run was already recorded (a resend);
    /// the first report stands.
    Already,
    /// The run does not target the client: nothing written.
    NotInRun,
    /// The run is not running (or does not exist): nothing written.
    RunEnded,
}

/// A failed client of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureRow {
    /// The client.
    pub client: String,
    /// Its relay.
    pub relay: String,
    /// Its stage (from 0), in a staged run.
    pub stage: Option<u32>,
    /// What failed.
    pub kind: FailureKind,
    /// Why.
    pub reason: String,
    /// When.
    pub at: String,
}

impl Ledger {
    /// Records `f`: the client goes from pending, undelivered, delivered or
    /// delta to failed (its round and completion time kept, for a client
    /// whose health failed after it completed), with a `client-failed`
    /// event, in one transaction. Idempotent: a second report changes
    /// nothing.
    pub fn record_failure(&mut self, f: &Failure<'_>) -> Result<FailureRecorded, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        let recorded = record_in(&tx, f).map_err(&wrap)?;
        if recorded == FailureRecorded::Recorded {
            tx.commit().map_err(&wrap)?;
        }
        Ok(recorded)
    }

    /// An operator's readmission of a client that failed in run `run` (its
    /// fix is in): it becomes pending again, its failure cleared (the
    /// `client-failed` event stays in the history), with a
    /// `client-readmitted` event naming `by`. `Ok(false)` when the client
    /// had not failed in that run, or the run is not running.
    pub fn readmit_failed(
        &mut self,
        run: i64,
        client: &str,
        by: &str,
    ) -> Result<bool, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        let n = tx
            .execute(
                "UPDATE run_clients SET state = 'pending', failure = NULL, reason = NULL,
                        failed_at = NULL, round = NULL, completed_at = NULL
                 WHERE run_id = ?1 AND client = ?2 AND state = 'failed'
                   AND EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND status = ?3)",
                params![run, client, RunStatus::Running],
            )
            .map_err(&wrap)?;
        if n > 0 {
            let detail = serde_json::json!({ "client": client, "by": cut(by, MAX_WHO) });
            insert_event(
                &tx,
                &now_text(),
                "client-readmitted",
                &format!("run:{run}"),
                &detail.to_string(),
            )
            .map_err(&wrap)?;
        }
        tx.commit().map_err(&wrap)?;
        Ok(n > 0)
    }

    /// The failed clients of run `run`, by client.
    pub fn run_failures(&self, run: i64) -> Result<Vec<FailureRow>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT client, relay, stage, failure, reason, failed_at FROM run_clients
                 WHERE run_id = ?1 AND state = 'failed' ORDER BY client",
            )
            .map_err(&wrap)?;
        stmt.query_map(params![run], |r| {
            Ok(FailureRow {
                client: r.get(0)?,
                relay: r.get(1)?,
                stage: stage_of(r.get(2)?),
                kind: r.get(3)?,
                reason: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                at: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            })
        })
        .and_then(|r| r.collect())
        .map_err(&wrap)
    }
}

/// A failure as the master's group commit carries it ([`crate::FleetBatch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReport {
    /// The run.
    pub run: i64,
    /// The client that failed.
    pub client: String,
    /// What failed.
    pub kind: FailureKind,
    /// Why, in the client's words.
    pub reason: String,
    /// When, as the client reported it.
    pub at: String,
}

impl FailureReport {
    fn as_failure(&self) -> Failure<'_> {
        Failure {
            run: self.run,
            client: &self.client,
            kind: self.kind,
            reason: &self.reason,
            at: &self.at,
        }
    }
}

/// Records the group commit's failures in its transaction, each as
/// [`Ledger::record_failure`] would (one for a run that ended meanwhile,
/// or a client it does not target, writes nothing); returns how many were
/// recorded, by kind in [`FailureKind::ALL`] order.
pub(crate) fn apply(
    tx: &rusqlite::Transaction<'_>,
    reports: &[FailureReport],
) -> rusqlite::Result<[u64; 3]> {
    let mut recorded = [0u64; 3];
    for r in reports {
        if record_in(tx, &r.as_failure())? == FailureRecorded::Recorded
            && let Some(i) = FailureKind::ALL.iter().position(|k| *k == r.kind)
        {
            recorded[i] += 1;
        }
    }
    Ok(recorded)
}

/// [`Ledger::record_failure`]'s checks and writes, in `tx`.
fn record_in(tx: &rusqlite::Transaction<'_>, f: &Failure<'_>) -> rusqlite::Result<FailureRecorded> {
    let running: Option<bool> = tx
        .query_row(
            "SELECT status = ?2 FROM runs WHERE id = ?1",
            params![f.run, RunStatus::Running],
            |r| r.get(0),
        )
        .optional()?;
    if running != Some(true) {
        return Ok(FailureRecorded::RunEnded);
    }
    let state: Option<String> = tx
        .query_row(
            "SELECT state FROM run_clients WHERE run_id = ?1 AND client = ?2",
            params![f.run, f.client],
            |r| r.get(0),
        )
        .optional()?;
    let Some(state) = state else {
        return Ok(FailureRecorded::NotInRun);
    };
    if !matches!(
        state.as_str(),
        "pending" | "undelivered" | "delivered" | "delta"
    ) {
        return Ok(FailureRecorded::Already);
    }
    let reason = cut(f.reason, MAX_REASON);
    let at = cut(f.at, MAX_WHO);
    tx.execute(
        "UPDATE run_clients SET state = 'failed', failure = ?3, reason = ?4, failed_at = ?5
         WHERE run_id = ?1 AND client = ?2",
        params![f.run, f.client, f.kind, reason, at],
    )?;
    let detail = serde_json::json!({
        "client": f.client, "kind": f.kind.as_str(), "reason": reason, "at": at,
    });
    insert_event(
        tx,
        &now_text(),
        "client-failed",
        &format!("run:{}", f.run),
        &detail.to_string(),
    )?;
    Ok(FailureRecorded::Recorded)
}

/// A stored stage index, read without trusting it: anything outside u32
/// reads as no stage.
pub(crate) fn stage_of(stored: Option<i64>) -> Option<u32> {
    stored.and_then(|n| u32::try_from(n).ok())
}
