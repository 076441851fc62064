//! Runs: one row per run with the machine's opaque JSON snapshot, written
//! at every transition together with its client changes and events.
//!
//! A run's per-client facts live in `run_clients` ([`crate::run_clients`]);
//! a transition applies the snapshot, those changes and the events in one
//! transaction, so a restarted master rebuilds everything from the rows.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

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
        let counted = apply_updates(&tx, run_id, &t.updates)
            .map_err(&wrap)?
            .total();
        let changed = tx
            .execute(
                "UPDATE runs SET state = ?2, status = ?3, next_wake = ?4, updated_at = ?5 WHERE id = ?1",
                params![run_id, t.state, t.status, t.next_wake, now],
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientTouch, FleetBatch, RelayAudit};

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
            fleet: &RunFleet::Modelled("sim".into()),
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
                fleet: &RunFleet::Live,
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

    /// Issue 17: a completion recorded after its run finished does not
    /// change the run's final record; it is kept beside it as a late record
    /// (once, however often it arrives), and the audit shows it as such.
    /// While the run runs (its delta window included) nothing is late.
    #[test]
    fn a_completion_after_the_run_finished_is_a_late_record_beside_the_final_one() {
        let (_d, mut l) = ledger();
        let run = new_run(&mut l, 3);
        // In the delta window the run is still running: counted as usual.
        l.transition(
            run,
            &step(vec![done("c00", Some(1)), ClientUpdate::AuditPending]),
        )
        .unwrap();
        l.transition(run, &step(vec![done("c01", None)])).unwrap();
        l.transition(
            run,
            &Transition {
                status: RunStatus::Done,
                ..step(vec![])
            },
        )
        .unwrap();
        let before = l.audit(run).unwrap().unwrap();
        let counts = l.run(run).unwrap().unwrap().counts;
        l.touch_client(
            "c02",
            Some("relay-0"),
            Some("app"),
            Some("0.9.0"),
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        // c02's completion comes after the end, through the master's group
        // commit, twice.
        let late = FleetBatch {
            updates: vec![(run, done("c02", Some(1)))],
            ..FleetBatch::default()
        };
        assert_eq!(l.apply_fleet_counted(&late).unwrap().late, 1);
        assert_eq!(l.apply_fleet_counted(&late).unwrap().total(), 0, "once");
        let after = l.audit(run).unwrap().unwrap();
        assert_eq!(l.run(run).unwrap().unwrap().counts, counts);
        // The final record: who is in which list (late records aside).
        let lists = |a: &crate::RunAudit| -> Vec<String> {
            a.relays
                .iter()
                .map(|r| {
                    format!(
                        "{:?} {:?} {:?}",
                        r.delivered_by_round, r.delta, r.undelivered
                    )
                })
                .collect()
        };
        assert_eq!(
            lists(&after),
            lists(&before),
            "the final record is unchanged"
        );
        let marked: Vec<&crate::LateRecord> = after.relays.iter().flat_map(|r| &r.late).collect();
        assert_eq!(marked.len(), 1);
        assert_eq!(
            (
                marked[0].client.as_str(),
                marked[0].state.as_str(),
                marked[0].round
            ),
            ("c02", "delivered", Some(1))
        );
        let json = serde_json::to_value(&after).unwrap();
        assert_eq!(json["relays"][0]["late"][0]["client"], "c02", "{json}");
        // The fleet table knows c02 runs the version now (the gate sees it).
        let c02 = l.client("c02").unwrap().unwrap();
        assert_eq!(c02.version.as_deref(), Some("1.0.0"));
    }

    /// A word this build does not know (written by a newer haifu, or by
    /// hand) is an error naming it, not a default.
    #[test]
    fn an_unknown_stored_status_is_an_error_not_running() {
        let (_d, l) = ledger();
        let mut l = l;
        let run = new_run(&mut l, 1);
        l.conn
            .execute_batch(&format!(
                "PRAGMA ignore_check_constraints = ON;
                 UPDATE runs SET status = 'paused' WHERE id = {run};
                 UPDATE run_clients SET state = 'lost' WHERE run_id = {run};"
            ))
            .unwrap();
        let e = l.run(run).unwrap_err().to_string();
        assert!(e.contains("unknown run status \"paused\""), "{e}");
        let e = l.run_clients(run).unwrap_err().to_string();
        assert!(e.contains("unknown client state \"lost\""), "{e}");
    }

    /// A completion stored under round u32::MAX by a master that took a
    /// client's word for it would make a reader that sized by it allocate
    /// 96 GiB. The audit files it as "unknown round" and allocates nothing
    /// by it.
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
            rollbacks: Vec::new(),
            labels: Vec::new(),
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
