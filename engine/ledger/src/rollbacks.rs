//! Rollback orders (`haifu rollback`): the one way a client's version moves
//! back. An order is recorded here first (`ordered`); the master sends it
//! to the client through its relay and records what the client did
//! (`done`, with the version now current, or `refused`, with the client's
//! reason) in its group commit ([`FleetBatch::rollbacks`]). An outcome is
//! recorded once: a resent report changes nothing.
//!
//! [`FleetBatch::rollbacks`]: crate::FleetBatch::rollbacks

use rusqlite::params;
use serde::Serialize;

use crate::control::{MAX_WHO, cut, order_in};
use crate::runs::insert_event;
use crate::{Ledger, LedgerError, OrderError, RunOrder, now_text};

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RollbackState {
    /// Recorded; not yet reported on by the client.
    Ordered,
    /// The client made the kept previous version current.
    Done,
    /// The client changed nothing, and said why.
    Refused,
}

impl RollbackState {
    /// Every state.
    pub const ALL: [Self; 3] = [Self::Ordered, Self::Done, Self::Refused];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ordered => "ordered",
            Self::Done => "done",
            Self::Refused => "refused",
        }
    }
}

/// Stored as its word; an unknown word is an error, never "ordered".
impl rusqlite::types::FromSql for RollbackState {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        [Self::Ordered, Self::Done, Self::Refused]
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| crate::runs::unknown_word("rollback state", s))
    }
}

/// One rollback order and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackRow {
    /// The order's id (the protocol's `order`).
    pub id: i64,
    /// The client ordered back.
    pub client: String,
    /// The relay it was behind when ordered.
    pub relay: Option<String>,
    /// The artifact.
    pub artifact: String,
    /// What the fleet table said the client ran when ordered.
    pub from_version: Option<String>,
    /// The version asked for (`None`: the one the client keeps).
    pub to_version: Option<String>,
    /// Who ordered it.
    pub by: String,
    /// The newest run when ordered: runs up to it do not move the client
    /// forward again.
    pub through_run: i64,
    /// When it was ordered.
    pub ordered_at: String,
    /// Where it stands.
    pub state: RollbackState,
    /// The version current after it (done).
    pub version: Option<String>,
    /// The client's reason (refused).
    pub reason: Option<String>,
    /// When the client reported (its clock).
    pub finished_at: Option<String>,
}

/// A client's report on an order, as the master records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackResult {
    /// The order's id.
    pub order: i64,
    /// The client (the row must name the same one).
    pub client: String,
    /// What the client did.
    pub outcome: RollbackOutcome,
    /// When, by the client's clock (RFC 3339).
    pub at: String,
}

/// What a client did with its order, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// It made the kept previous version current (the order is `done`).
    Done {
        /// The version now current.
        version: String,
    },
    /// It changed nothing (the order is `refused`).
    Refused {
        /// The client's reason.
        reason: String,
    },
}

const COLUMNS: &str = "id, client, relay, artifact, from_version, to_version, by, through_run,
    ordered_at, state, version, reason, finished_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RollbackRow> {
    Ok(RollbackRow {
        id: r.get(0)?,
        client: r.get(1)?,
        relay: r.get(2)?,
        artifact: r.get(3)?,
        from_version: r.get(4)?,
        to_version: r.get(5)?,
        by: r.get(6)?,
        through_run: r.get(7)?,
        ordered_at: r.get(8)?,
        state: r.get(9)?,
        version: r.get(10)?,
        reason: r.get(11)?,
        finished_at: r.get(12)?,
    })
}

impl Ledger {
    /// Records one order per client of `clients` in one transaction (none
    /// if any is not in the fleet table: [`LedgerError::UnknownClient`]), with the
    /// relay and version the fleet table has for each and the newest run as
    /// `through_run`. Returns the orders, in the order of `clients`.
    pub fn order_rollbacks(
        &mut self,
        artifact: &str,
        clients: &[String],
        to: Option<&str>,
        by: &str,
    ) -> Result<Vec<RollbackRow>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        let now = now_text();
        let through: i64 = tx
            .query_row("SELECT coalesce(max(id), 0) FROM runs", [], |r| r.get(0))
            .map_err(&wrap)?;
        let mut ids = Vec::with_capacity(clients.len());
        for client in clients {
            let Some(id) =
                insert_order(&tx, client, artifact, to, by, through, &now).map_err(&wrap)?
            else {
                // Dropped with the transaction: nothing of the order stays.
                return Err(LedgerError::UnknownClient {
                    client: client.clone(),
                });
            };
            ids.push(id);
        }
        tx.commit().map_err(&wrap)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.rollback(id)? {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Aborts run `id` (as [`Ledger::order_run`] does) and, in the same
    /// transaction, orders back to the version each keeps every client of
    /// the run's started stages that installed the run's version
    /// (`delivered` or `delta`; a client that already had it is left
    /// alone). An abort refused writes no order, and a run already ended
    /// is refused: a driver that asks again after a restart never orders
    /// twice. Returns the orders, by client.
    pub fn abort_rolling_back(
        &mut self,
        id: i64,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Vec<RollbackRow>, OrderError> {
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        order_in(&tx, &wrap, id, RunOrder::Abort, by, reason)?;
        let by = cut(by, MAX_WHO);
        let artifact: String = tx
            .query_row(
                "SELECT artifact FROM runs WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(&wrap)?;
        let clients: Vec<String> = {
            let mut stmt = tx
                .prepare(
                    "SELECT client FROM run_clients WHERE run_id = ?1
                     AND state IN ('delivered', 'delta') AND stage IS NOT NULL ORDER BY client",
                )
                .map_err(&wrap)?;
            stmt.query_map(params![id], |r| r.get(0))
                .and_then(|r| r.collect())
                .map_err(&wrap)?
        };
        let now = now_text();
        let through: i64 = tx
            .query_row("SELECT coalesce(max(id), 0) FROM runs", [], |r| r.get(0))
            .map_err(&wrap)?;
        let mut ids = Vec::with_capacity(clients.len());
        for client in &clients {
            // A client the fleet table lost cannot be reached: skipped,
            // never a reason to keep the run going.
            if let Some(order) =
                insert_order(&tx, client, &artifact, None, by, through, &now).map_err(&wrap)?
            {
                ids.push(order);
            }
        }
        tx.commit().map_err(&wrap)?;
        tracing::info!(
            run = id,
            by,
            orders = ids.len(),
            "run aborted; clients ordered back"
        );
        let mut out = Vec::with_capacity(ids.len());
        for order in ids {
            if let Some(row) = self.rollback(order)? {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// One order, if it exists.
    pub fn rollback(&self, id: i64) -> Result<Option<RollbackRow>, LedgerError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM rollbacks WHERE id = ?1"),
                params![id],
                from_row,
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))
    }

    /// Orders not yet reported on, oldest first, at most `limit`.
    pub fn pending_rollbacks(&self, limit: usize) -> Result<Vec<RollbackRow>, LedgerError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_rollbacks(
            &format!(
                "SELECT {COLUMNS} FROM rollbacks WHERE state = 'ordered' ORDER BY id LIMIT ?1"
            ),
            params![limit],
        )
    }

    /// Every order, oldest first.
    pub fn rollbacks(&self) -> Result<Vec<RollbackRow>, LedgerError> {
        self.query_rollbacks(&format!("SELECT {COLUMNS} FROM rollbacks ORDER BY id"), [])
    }

    /// The done rollbacks that took clients of run `run_id` back from the
    /// run's version, ordered after the run was created, oldest first.
    pub fn run_rollbacks(&self, run_id: i64) -> Result<Vec<RollbackRow>, LedgerError> {
        let cols = COLUMNS
            .split(',')
            .map(|c| format!("b.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        self.query_rollbacks(
            &format!(
                "SELECT {cols} FROM rollbacks b
                 JOIN runs r ON r.id = ?1
                 JOIN run_clients c ON c.run_id = r.id AND c.client = b.client
                 WHERE b.state = 'done' AND b.artifact = r.artifact
                   AND b.from_version = r.version AND b.through_run >= r.id
                 ORDER BY b.id"
            ),
            params![run_id],
        )
    }

    fn query_rollbacks(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<RollbackRow>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self.conn.prepare(sql).map_err(&wrap)?;
        stmt.query_map(p, from_row)
            .and_then(|r| r.collect())
            .map_err(&wrap)
    }
}

/// Inserts one order for `client` with its `rollback-ordered` event, the
/// relay and version taken from the fleet table; `None` for a client not
/// in it.
fn insert_order(
    tx: &rusqlite::Connection,
    client: &str,
    artifact: &str,
    to: Option<&str>,
    by: &str,
    through: i64,
    now: &str,
) -> rusqlite::Result<Option<i64>> {
    let inserted = tx.execute(
        "INSERT INTO rollbacks (client, relay, artifact, from_version, to_version, by,
                                through_run, ordered_at, state)
         SELECT id, relay, ?2, version, ?3, ?4, ?5, ?6, 'ordered' FROM clients WHERE id = ?1",
        params![client, artifact, to, by, through, now],
    )?;
    if inserted != 1 {
        return Ok(None);
    }
    let id = tx.last_insert_rowid();
    let detail = serde_json::json!({ "order": id, "artifact": artifact, "to": to, "by": by });
    insert_event(
        tx,
        now,
        "rollback-ordered",
        &format!("client:{client}"),
        &detail.to_string(),
    )?;
    Ok(Some(id))
}

/// Records each report in `tx` (only an order still `ordered` and naming
/// the same client changes; a resent report changes nothing), with an
/// event per recorded outcome and the client's version in the fleet table.
/// Returns how many were recorded.
pub(crate) fn apply_results(
    tx: &rusqlite::Transaction<'_>,
    now: &str,
    results: &[RollbackResult],
) -> rusqlite::Result<u64> {
    let mut n = 0;
    for r in results {
        let (state, version, reason) = match &r.outcome {
            RollbackOutcome::Done { version } => {
                (RollbackState::Done, Some(version.as_str()), None)
            }
            RollbackOutcome::Refused { reason } => {
                (RollbackState::Refused, None, Some(reason.as_str()))
            }
        };
        let changed = tx.execute(
            "UPDATE rollbacks SET state = ?3, version = ?4, reason = ?5, finished_at = ?6
             WHERE id = ?1 AND client = ?2 AND state = 'ordered'",
            params![r.order, r.client, state.as_str(), version, reason, r.at],
        )?;
        if changed == 0 {
            continue;
        }
        n += 1;
        if let Some(v) = version {
            tx.execute(
                "UPDATE clients SET version = ?2, last_contact = ?3 WHERE id = ?1",
                params![r.client, v, r.at],
            )?;
        }
        let (kind, detail) = match &r.outcome {
            RollbackOutcome::Done { version } => (
                "rolled-back",
                serde_json::json!({ "order": r.order, "version": version }),
            ),
            RollbackOutcome::Refused { reason } => (
                "rollback-refused",
                serde_json::json!({ "order": r.order, "reason": reason }),
            ),
        };
        insert_event(
            tx,
            now,
            kind,
            &format!("client:{}", r.client),
            &detail.to_string(),
        )?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{ClientTouch, FleetBatch};

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::open(&d.path().join("l.sqlite")).unwrap();
        (d, l)
    }

    fn known(l: &mut Ledger, id: &str, version: &str) {
        let batch = FleetBatch {
            touches: vec![ClientTouch {
                client: id.into(),
                relay: Some("relay-a".into()),
                artifact: Some("app".into()),
                version: Some(version.into()),
                at: "2026-12-01T00:00:00Z".into(),
            }],
            ..FleetBatch::default()
        };
        l.apply_fleet(&batch).unwrap();
    }

    /// The abort and its orders are one transaction: a second abort (a
    /// driver that asks again after a restart) is refused and orders
    /// nobody twice; only clients that installed the run's version are
    /// ordered back.
    #[test]
    fn an_abort_rolling_back_orders_the_installed_clients_once() {
        let (_d, mut l) = ledger();
        for c in ["c1", "c2", "c3"] {
            known(&mut l, c, "1.0.0");
        }
        let run = crate::testing::TestRun::new()
            .clients([("c1", "relay-a"), ("c2", "relay-a"), ("c3", "relay-a")])
            .stages([("c1", 0), ("c2", 0), ("c3", 1)])
            .create(&mut l)
            .unwrap();
        l.conn
            .execute(
                "UPDATE run_clients SET state = 'delivered' WHERE client IN ('c1', 'c3')",
                [],
            )
            .unwrap();
        let rows = l
            .abort_rolling_back(run, "advance policy", Some("bad"))
            .unwrap();
        let clients: Vec<&str> = rows.iter().map(|r| r.client.as_str()).collect();
        assert_eq!(clients, ["c1", "c3"]);
        assert!(rows.iter().all(|r| r.by == "advance policy"
            && r.state == RollbackState::Ordered
            && r.to_version.is_none()
            && r.from_version.as_deref() == Some("1.0.0")));
        assert_eq!(
            l.run(run).unwrap().unwrap().status,
            crate::RunStatus::Failed
        );
        let again = l.abort_rolling_back(run, "advance policy", Some("bad"));
        assert!(
            matches!(again, Err(OrderError::NotRunning { .. })),
            "{again:?}"
        );
        assert_eq!(l.rollbacks().unwrap().len(), 2, "no order twice");
    }

    fn done(version: &str) -> RollbackOutcome {
        RollbackOutcome::Done {
            version: version.into(),
        }
    }

    fn refused(reason: &str) -> RollbackOutcome {
        RollbackOutcome::Refused {
            reason: reason.into(),
        }
    }

    fn result(order: i64, client: &str, outcome: RollbackOutcome) -> FleetBatch {
        FleetBatch {
            rollbacks: vec![RollbackResult {
                order,
                client: client.into(),
                outcome,
                at: "2026-12-01T00:01:00Z".into(),
            }],
            ..FleetBatch::default()
        }
    }

    #[test]
    fn an_order_for_an_unknown_client_records_nothing() {
        let (_d, mut l) = ledger();
        known(&mut l, "c1", "1.2.0");
        let e = l
            .order_rollbacks("app", &["c1".into(), "nobody".into()], None, "alice")
            .unwrap_err();
        assert!(matches!(e, LedgerError::UnknownClient { .. }), "{e}");
        assert!(l.rollbacks().unwrap().is_empty());
    }

    #[test]
    fn an_outcome_is_recorded_once_and_only_for_its_client() {
        let (_d, mut l) = ledger();
        known(&mut l, "c1", "1.2.0");
        known(&mut l, "c2", "1.2.0");
        let orders = l
            .order_rollbacks("app", &["c1".into(), "c2".into()], Some("1.1.0"), "alice")
            .unwrap();
        assert_eq!(orders.len(), 2);
        let o1 = &orders[0];
        assert_eq!(
            (
                o1.client.as_str(),
                o1.relay.as_deref(),
                o1.from_version.as_deref()
            ),
            ("c1", Some("relay-a"), Some("1.2.0"))
        );
        assert_eq!(o1.state, RollbackState::Ordered);
        assert_eq!(l.pending_rollbacks(10).unwrap().len(), 2);
        // Another client's report on c1's order changes nothing.
        l.apply_fleet(&result(o1.id, "c2", done("1.1.0"))).unwrap();
        assert_eq!(
            l.rollback(o1.id).unwrap().unwrap().state,
            RollbackState::Ordered
        );
        l.apply_fleet(&result(o1.id, "c1", done("1.1.0"))).unwrap();
        // A resend (even saying otherwise) changes nothing.
        l.apply_fleet(&result(o1.id, "c1", refused("no"))).unwrap();
        let done = l.rollback(o1.id).unwrap().unwrap();
        assert_eq!(done.state, RollbackState::Done);
        assert_eq!(done.version.as_deref(), Some("1.1.0"));
        assert_eq!(
            l.client("c1").unwrap().unwrap().version.as_deref(),
            Some("1.1.0")
        );
        let o2 = &orders[1];
        l.apply_fleet(&result(o2.id, "c2", refused("no previous version kept")))
            .unwrap();
        let refused = l.rollback(o2.id).unwrap().unwrap();
        assert_eq!(refused.state, RollbackState::Refused);
        assert_eq!(refused.reason.as_deref(), Some("no previous version kept"));
        assert_eq!(
            l.client("c2").unwrap().unwrap().version.as_deref(),
            Some("1.2.0")
        );
        assert!(l.pending_rollbacks(10).unwrap().is_empty());
    }
}
