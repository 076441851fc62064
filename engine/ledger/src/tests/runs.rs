//! Runs: creation, transitions, completions counted once, late records,
//! stored words this build does not know.

use super::{done, ledger, new_run, step};
use crate::{ClientUpdate, FleetBatch, RunStatus, Transition};

fn pair(from: &str, to: &str) -> crate::StragglerPair {
    crate::StragglerPair {
        artifact: "app".into(),
        from: from.into(),
        to: to.into(),
    }
}

#[test]
fn straggler_pairs_list_each_needed_delta_once() {
    let (_d, mut l) = ledger();
    let clients = ["a", "b", "c", "d", "e"].map(|c| (c, "relay-0"));
    let run = crate::testing::TestRun::new().clients(clients);
    let id = run.version("2.0.0").create(&mut l).unwrap();
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
    let all = vec![pair("1.0.0", "2.0.0"), pair("1.5.0", "2.0.0")];
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
