//! Failures after install and the stages of a run: recorded once, counted
//! per stage, readmitted by an operator, kept across a migration.

use super::{done, ledger, step};
use crate::testing::TestRun;
use crate::{
    ClientState, Failure, FailureKind, FailureRecorded, Ledger, LedgerError, RunOrder, StageTally,
};

fn staged_run(l: &mut Ledger) -> i64 {
    // Stage 0: c0, c1; stage 1: c2, c3, c4; c5 not placed yet.
    let clients = (0..6).map(|i| (format!("c{i}"), "r1".to_owned()));
    let stages = [("c0", 0), ("c1", 0), ("c2", 1), ("c3", 1), ("c4", 1)];
    TestRun::new()
        .clients(clients)
        .stages(stages)
        .create(l)
        .unwrap()
}

fn failure<'a>(run: i64, client: &'a str, kind: FailureKind, reason: &'a str) -> Failure<'a> {
    Failure {
        run,
        client,
        kind,
        reason,
        at: "2026-12-05T10:00:00Z",
    }
}

#[test]
fn a_failure_is_recorded_once_and_counted_against_its_stage() {
    let (_d, mut l) = ledger();
    let run = staged_run(&mut l);
    l.transition(run, &step(vec![done("c0", Some(1)), done("c1", Some(1))]))
        .unwrap();
    // c1 completed, then its health check failed: it fails, its round kept.
    let f = failure(
        run,
        "c1",
        FailureKind::Health,
        "health: exit 3: no listener on :8080",
    );
    assert_eq!(l.record_failure(&f).unwrap(), FailureRecorded::Recorded);
    // The resend, or a different story later, changes nothing.
    assert_eq!(l.record_failure(&f).unwrap(), FailureRecorded::Already);
    let other = failure(run, "c1", FailureKind::RolledBack, "other");
    assert_eq!(l.record_failure(&other).unwrap(), FailureRecorded::Already);
    let stranger = failure(run, "nobody", FailureKind::PostInstall, "x");
    assert_eq!(
        l.record_failure(&stranger).unwrap(),
        FailureRecorded::NotInRun
    );
    let t = l.stage_tallies(run).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(
        t[0],
        StageTally {
            targeted: 2,
            delivered: 1,
            failures: [("health".to_owned(), 1)].into(),
            pending: 0,
        }
    );
    assert_eq!((t[1].targeted, t[1].pending, t[1].failed()), (3, 3, 0));
    let rows = l.run_failures(run).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].client.as_str(), rows[0].stage), ("c1", Some(0)));
    assert_eq!(rows[0].kind, FailureKind::Health);
    assert!(rows[0].reason.contains("exit 3"), "{rows:?}");
    let c1 = l
        .run_clients(run)
        .unwrap()
        .into_iter()
        .find(|c| c.client == "c1");
    let c1 = c1.unwrap();
    assert_eq!(
        (c1.state, c1.round, c1.failure),
        (ClientState::Failed, Some(1), Some(FailureKind::Health))
    );
    // The audit lists it under its relay, with what and why.
    let audit = l.audit(run).unwrap().unwrap();
    assert_eq!(audit.relays[0].failed.len(), 1);
    // A completion after the failure does not undo it: only a readmission
    // does.
    l.transition(run, &step(vec![done("c1", Some(2))])).unwrap();
    assert_eq!(l.run_clients_in(run, ClientState::Failed).unwrap(), ["c1"]);
}

#[test]
fn a_readmitted_client_is_pending_again_and_its_failure_no_longer_counts() {
    let (_d, mut l) = ledger();
    let run = staged_run(&mut l);
    let f = failure(run, "c0", FailureKind::PostInstall, "post-install: exit 1");
    l.record_failure(&f).unwrap();
    assert!(
        !l.readmit_failed(run, "c1", "ops").unwrap(),
        "c1 never failed"
    );
    assert!(l.readmit_failed(run, "c0", "ops").unwrap());
    assert!(!l.readmit_failed(run, "c0", "ops").unwrap(), "once");
    assert_eq!(l.stage_tallies(run).unwrap()[0].failed(), 0);
    assert_eq!(
        l.stage_clients_in(run, Some(0), ClientState::Pending)
            .unwrap(),
        ["c0", "c1"]
    );
    let kinds: Vec<String> = {
        let mut stmt = l
            .conn
            .prepare("SELECT kind FROM events WHERE subject = ?1 ORDER BY id")
            .unwrap();
        let rows = stmt
            .query_map([format!("run:{run}")], |r| r.get(0))
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert!(kinds.iter().any(|k| k == "client-failed"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "client-readmitted"), "{kinds:?}");
    // It can fail again, and be recorded again.
    assert_eq!(l.record_failure(&f).unwrap(), FailureRecorded::Recorded);
}

#[test]
fn nothing_is_recorded_for_a_run_that_ended() {
    let (_d, mut l) = ledger();
    let run = staged_run(&mut l);
    l.order_run(run, RunOrder::Abort, "ops", Some("bad release"))
        .unwrap();
    let f = failure(run, "c0", FailureKind::PostInstall, "x");
    assert_eq!(l.record_failure(&f).unwrap(), FailureRecorded::RunEnded);
    assert!(l.run_failures(run).unwrap().is_empty());
}

#[test]
fn placement_is_kept_and_bounded() {
    let (_d, mut l) = ledger();
    let run = staged_run(&mut l);
    assert_eq!(
        l.stage_clients_in(run, None, ClientState::Pending).unwrap(),
        ["c5"]
    );
    l.set_client_stages(run, &[("c5".into(), 2), ("stranger".into(), 0)])
        .unwrap();
    assert_eq!(l.stage_tallies(run).unwrap().len(), 3);
    assert!(
        l.stage_clients_in(run, None, ClientState::Pending)
            .unwrap()
            .is_empty()
    );
    // A stage past any workflow's is refused whole: nothing written.
    let err = l
        .set_client_stages(run, &[("c0".into(), 1), ("c1".into(), crate::MAX_STAGES)])
        .unwrap_err();
    assert!(matches!(err, LedgerError::StageOutOfRange { .. }), "{err}");
    assert_eq!(
        l.stage_clients_in(run, Some(0), ClientState::Pending)
            .unwrap(),
        ["c0", "c1"]
    );
    // A damaged stage index in the file is not counted, and sizes nothing.
    l.conn
        .execute(
            "UPDATE run_clients SET stage = 4000000000 WHERE client = 'c5'",
            [],
        )
        .unwrap();
    assert_eq!(l.stage_tallies(run).unwrap().len(), 2);
}

#[test]
fn a_ledger_from_before_stages_migrates_with_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    let c = rusqlite::Connection::open(&path).unwrap();
    for sql in &crate::MIGRATIONS[..10] {
        c.execute_batch(sql).unwrap();
    }
    c.pragma_update(None, "user_version", 10).unwrap();
    c.execute_batch(
        "INSERT INTO runs (id, workflow, name, artifact, version, fleet, state, status, created_at, updated_at)
           VALUES (1, 'w.yaml', 'w', 'app', '1.0.0', 'live', '{}', 'running', 't', 't');
         INSERT INTO run_clients (run_id, client, relay, state, round, completed_at, late_state, late_round, late_at)
           VALUES (1, 'a', 'r', 'delivered', 1, 't1', NULL, NULL, NULL),
                  (1, 'b', 'r', 'disconnected', NULL, NULL, NULL, NULL, NULL);",
    )
    .unwrap();
    drop(c);
    let mut l = Ledger::open(&path).unwrap();
    assert_eq!(l.schema_version().unwrap(), crate::SCHEMA_VERSION);
    let rows = l.run_clients(1).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].state, rows[0].round, rows[0].stage),
        (ClientState::Delivered, Some(1), None)
    );
    assert!(
        l.stage_tallies(1).unwrap().is_empty(),
        "an old run has no stages"
    );
    let f = failure(1, "a", FailureKind::RolledBack, "went back");
    assert_eq!(l.record_failure(&f).unwrap(), FailureRecorded::Recorded);
}
