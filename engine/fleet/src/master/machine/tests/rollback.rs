//! Rollback orders: sent through the client's relay, reports taken only
//! from there, acked once durable.

use super::*;

fn order(n: u64, client: &str) -> haifu_protocol::Rollback {
    haifu_protocol::Rollback {
        order: n,
        client: client.into(),
        artifact: "app".parse().unwrap(),
        to: None,
        through_run: 1,
    }
}

fn report(n: u64, client: &str) -> Message {
    Message::RollbackReport(haifu_protocol::RollbackReport {
        order: n,
        client: client.into(),
        outcome: haifu_protocol::RollbackOutcome::Done {
            version: "1.0.0".parse().unwrap(),
            digest: D,
        },
        at: secs(5),
    })
}

fn orders_sent(effects: &[Effect]) -> Vec<(ConnId, u64)> {
    sends(effects)
        .into_iter()
        .filter_map(|(c, m)| match m {
            Message::Rollback(o) => Some((c, o.order)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_rollback_order_goes_to_the_clients_relay_only_and_again_when_it_registers() {
    let mut w = World::new();
    let e = w.on(
        secs(1),
        Event::Rollbacks(vec![order(5, "c0"), order(6, "c2")]),
    );
    assert_eq!(orders_sent(&e), vec![(RELAY, 5), (OTHER_RELAY, 6)]);
    // The same list again sends nothing new.
    let e = w.on(
        secs(2),
        Event::Rollbacks(vec![order(5, "c0"), order(6, "c2")]),
    );
    assert!(orders_sent(&e).is_empty());
    // r0 reconnects: c0's order goes again; and when c0 reports in.
    let e = w.msg(RELAY, register("r0"));
    assert_eq!(orders_sent(&e), vec![(RELAY, 5)]);
    let e = w.msg(
        RELAY,
        Message::RegisterClient(RegisterClient {
            client: "c0".into(),
            relay: "r0".into(),
            installed: None,
            broadcast: None,
        }),
    );
    assert_eq!(orders_sent(&e), vec![(RELAY, 5)]);
}

#[test]
fn a_rollback_report_is_acked_only_once_durable_and_recorded_once() {
    let mut w = World::new();
    w.on(secs(1), Event::Rollbacks(vec![order(5, "c0")]));
    let e = w.msg(RELAY, report(5, "c0"));
    let batch = writes(&e);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].rollbacks.len(), 1);
    assert_eq!(
        batch[0].rollbacks[0].outcome,
        haifu_ledger::RollbackOutcome::Done {
            version: "1.0.0".to_owned()
        }
    );
    let rollback_acks = |e: &[Effect]| {
        sends(e)
            .into_iter()
            .filter(|(_, m)| matches!(m, Message::RollbackAck(_)))
            .count()
    };
    assert_eq!(rollback_acks(&e), 0, "no ack before the commit");
    // A resend while it is written: nothing more to write.
    let e = w.msg(RELAY, report(5, "c0"));
    assert!(writes(&e).is_empty());
    let e = w.on(secs(3), Event::Committed);
    assert_eq!(rollback_acks(&e), 1);
    // A stale read of the ledger still listing it sends it no more, and a
    // resend after the ack is acked again without a write.
    let e = w.on(secs(4), Event::Rollbacks(vec![order(5, "c0")]));
    assert!(orders_sent(&e).is_empty());
    let e = w.msg(RELAY, report(5, "c0"));
    assert!(writes(&e).is_empty());
    assert_eq!(rollback_acks(&e), 1);
}

#[test]
fn a_rollback_report_from_another_relay_or_for_an_unknown_order_is_refused() {
    let mut w = World::new();
    w.on(secs(1), Event::Rollbacks(vec![order(5, "c0")]));
    // r1 does not have c0 behind it.
    let e = w.msg(OTHER_RELAY, report(5, "c0"));
    assert!(writes(&e).is_empty());
    assert!(
        error(&e).unwrap().1.contains("registered behind relay"),
        "{e:?}"
    );
    // c1 is behind r0, but order 5 is c0's; order 9 was never given.
    let e = w.msg(RELAY, report(5, "c1"));
    assert!(writes(&e).is_empty());
    assert!(
        error(&e).unwrap().1.contains("no rollback order 5"),
        "{e:?}"
    );
    let e = w.msg(RELAY, report(9, "c0"));
    assert!(writes(&e).is_empty());
    // A client may not send one to the master at all, nor anyone an order.
    let e = w.msg(CLIENT, report(5, "c0"));
    assert!(writes(&e).is_empty());
    assert!(error(&e).is_some());
    let e = w.msg(RELAY, Message::Rollback(order(5, "c0")));
    assert!(error(&e).is_some());
    assert_eq!(w.refused(), 3);
}

#[test]
fn a_rollback_report_recorded_before_a_restart_is_acked_again() {
    let mut w = World::new();
    // The ledger has order 5's outcome; this master never sent it.
    w.facts.rollbacks_recorded.push((5, "c0".into()));
    let e = w.msg(RELAY, report(5, "c0"));
    assert!(writes(&e).is_empty());
    assert!(
        sends(&e)
            .iter()
            .any(|(c, m)| *c == RELAY && matches!(m, Message::RollbackAck(a) if a.order == 5))
    );
    assert_eq!(w.refused(), 0);
}
