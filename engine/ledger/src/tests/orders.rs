//! Operators' orders: each refused order writes nothing, a pause is
//! recorded with who and why, an abort ends the run as failed with its
//! reason, and a driver's step after an abort is not written over it.

use super::{ledger, new_run, step};
use crate::{LedgerError, OrderError, RunOrder, RunStatus};

fn event_count(l: &crate::Ledger) -> i64 {
    l.conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_pause_is_recorded_with_who_and_why_and_cleared_by_the_resume() {
    let (_d, mut l) = ledger();
    let id = new_run(&mut l, 2);
    l.order_run(id, RunOrder::Pause, "alice", Some("shop opens"))
        .unwrap();
    let row = l.run(id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Running);
    let p = row.paused.unwrap();
    assert_eq!(
        (p.by.as_str(), p.reason.as_deref()),
        ("alice", Some("shop opens"))
    );
    l.order_run(id, RunOrder::Resume, "bob", None).unwrap();
    assert_eq!(l.run(id).unwrap().unwrap().paused, None);
    let orders = l.orders(id).unwrap();
    let seen: Vec<_> = orders.iter().map(|o| (o.order, o.by.as_str())).collect();
    assert_eq!(
        seen,
        [(RunOrder::Pause, "alice"), (RunOrder::Resume, "bob")]
    );
}

#[test]
fn refused_orders_write_nothing_and_say_why() {
    let (_d, mut l) = ledger();
    let id = new_run(&mut l, 2);
    let before = event_count(&l);
    let e = l.order_run(id + 1, RunOrder::Pause, "a", None).unwrap_err();
    assert!(matches!(e, OrderError::NoSuchRun(_)), "{e}");
    let e = l.order_run(id, RunOrder::Resume, "a", None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("run {id} is not paused; nothing to resume")
    );
    l.order_run(id, RunOrder::Pause, "a", None).unwrap();
    let before_paused = event_count(&l);
    assert_eq!(before_paused, before + 1);
    let e = l.order_run(id, RunOrder::Pause, "b", None).unwrap_err();
    assert!(
        matches!(e, OrderError::AlreadyPaused { ref by, .. } if by == "a"),
        "{e}"
    );
    assert_eq!(event_count(&l), before_paused);
    l.order_run(id, RunOrder::Abort, "c", Some("bad build"))
        .unwrap();
    let after_abort = event_count(&l);
    for order in [RunOrder::Pause, RunOrder::Resume, RunOrder::Abort] {
        let e = l.order_run(id, order, "d", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot {} run {id}: it is failed, not running",
                order.as_str()
            )
        );
    }
    assert_eq!(event_count(&l), after_abort);
}

#[test]
fn an_abort_ends_the_run_failed_and_a_later_step_is_not_written_over_it() {
    let (_d, mut l) = ledger();
    let id = new_run(&mut l, 2);
    l.order_run(id, RunOrder::Pause, "a", None).unwrap();
    l.order_run(id, RunOrder::Abort, "ops", Some("bad build"))
        .unwrap();
    let row = l.run(id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Failed);
    assert_eq!(row.paused, None);
    assert_eq!(
        l.failure(id).unwrap().as_deref(),
        Some("aborted by ops: bad build")
    );
    let e = l.transition(id, &step(Vec::new())).unwrap_err();
    assert!(matches!(e, LedgerError::RunEnded(r) if r == id), "{e}");
    assert_eq!(l.run(id).unwrap().unwrap().status, RunStatus::Failed);
}

#[test]
fn an_operators_words_are_cut_to_their_bounds() {
    let (_d, mut l) = ledger();
    let id = new_run(&mut l, 1);
    let long = "é".repeat(crate::MAX_REASON);
    l.order_run(id, RunOrder::Pause, &long, Some(&long))
        .unwrap();
    let p = l.run(id).unwrap().unwrap().paused.unwrap();
    assert!(p.by.len() <= crate::MAX_WHO && !p.by.is_empty());
    assert!(p.reason.unwrap().len() <= crate::MAX_REASON);
}
