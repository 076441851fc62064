//! The group commit: acks only after the write that holds them, what
//! arrives meanwhile in the next write, a failed write written again.

use super::*;

#[test]
fn a_completion_is_acknowledged_only_once_its_write_committed() {
    let mut w = World::new();
    on_air(&mut w);
    let e = w.msg(RELAY, completion("c0", Via::Round(9), secs(30)));
    assert!(acks(&e).is_empty(), "no ack before the write: {e:?}");
    let b = writes(&e);
    assert_eq!(b.len(), 1);
    // Filed under the round on air when it decoded (1), not the client's 9.
    assert_eq!(filed_round(b[0]), Some(1));
    assert!(!w.core.is_idle());
    let e = w.on(secs(101), Event::Committed);
    assert_eq!(acks(&e), vec![(RELAY, "c0".to_owned())]);
    assert!(w.core.is_idle());
}

#[test]
fn completions_arriving_during_a_write_go_into_the_next_one() {
    let mut w = World::new();
    on_air(&mut w);
    let first = w.msg(RELAY, completion("c0", Via::Round(1), secs(70)));
    assert_eq!(writes(&first).len(), 1);
    let e1 = w.msg(RELAY, completion("c1", Via::Round(1), secs(70)));
    let e2 = w.msg(OTHER_RELAY, completion("c2", Via::Round(1), secs(70)));
    assert!(writes(&e1).is_empty() && writes(&e2).is_empty());
    // The first commit acks c0 only and starts the next write with both.
    let e = w.on(secs(101), Event::Committed);
    assert_eq!(acks(&e), vec![(RELAY, "c0".to_owned())]);
    let next = writes(&e);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].updates.len(), 2);
    let e = w.on(secs(102), Event::Committed);
    assert_eq!(
        acks(&e),
        vec![(RELAY, "c1".to_owned()), (OTHER_RELAY, "c2".to_owned())]
    );
}

#[test]
fn a_failed_write_is_written_again_with_what_came_meanwhile_and_acked_after() {
    let mut w = World::new();
    on_air(&mut w);
    w.msg(RELAY, completion("c0", Via::Round(1), secs(30)));
    let report = Message::RegisterClient(RegisterClient {
        client: "c1".into(),
        relay: "r0".into(),
        installed: None,
        broadcast: None,
    });
    assert!(
        writes(&w.msg(RELAY, report)).is_empty(),
        "one write at a time"
    );
    let e = w.on(secs(101), Event::CommitFailed);
    assert!(acks(&e).is_empty());
    let again = writes(&e);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].updates.len(), again[0].touches.len()), (1, 1));
    assert_eq!(acks(&w.on(secs(102), Event::Committed)).len(), 1);
    assert!(w.core.is_idle());
}

#[test]
fn a_duplicate_is_written_again_and_acknowledged_again() {
    // The ledger counts a client once per run; the core need not remember.
    let mut w = World::new();
    on_air(&mut w);
    for _ in 0..2 {
        let e = w.msg(RELAY, completion("c0", Via::Round(1), secs(30)));
        assert_eq!(writes(&e).len(), 1);
        assert_eq!(acks(&w.on(secs(101), Event::Committed)).len(), 1);
    }
}
