//! The audit: grouped by relay, round, delta and cut-off; never sized by a
//! stored number.

use super::{done, ledger, new_run, step};
use crate::{ClientUpdate, RelayAudit};

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

/// A delivered row with no round (written by hand or by a broken build)
/// is filed as an unknown round, not under round 1.
#[test]
fn a_delivery_stored_without_a_round_is_an_unknown_round_not_round_one() {
    let (_d, mut l) = ledger();
    let run = new_run(&mut l, 2);
    l.transition(run, &step(vec![done("c00", Some(1))]))
        .unwrap();
    l.conn
        .execute(
            "UPDATE run_clients SET state = 'delivered', round = NULL WHERE client = 'c01'",
            [],
        )
        .unwrap();
    let a = l.audit(run).unwrap().unwrap();
    let r1 = a.relays.iter().find(|r| r.relay == "relay-1").unwrap();
    assert_eq!(r1.delivered_unknown_round, ["c01"]);
    assert!(
        r1.delivered_by_round.is_empty(),
        "{:?}",
        r1.delivered_by_round
    );
    let r0 = a.relays.iter().find(|r| r.relay == "relay-0").unwrap();
    assert_eq!(r0.delivered_by_round, vec![vec!["c00".to_owned()]]);
}
