//! The fleet table and the master's group commit.

use super::{done, ledger, new_run};
use crate::{ClientTouch, ClientUpdate, FleetBatch, ServiceRow};

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
        Some(ServiceRow {
            artifact: "app".into(),
            since: "2.4.0".into()
        })
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
        failures: Vec::new(),
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

#[test]
fn failures_ride_in_the_group_commit_recorded_once_and_only_for_the_runs_clients() {
    let (_d, mut l) = ledger();
    let id = new_run(&mut l, 3);
    let report = |client: &str, kind, reason: &str| crate::FailureReport {
        run: id,
        client: client.into(),
        kind,
        reason: reason.into(),
        at: "2026-12-05T10:00:00Z".into(),
    };
    let batch = FleetBatch {
        updates: vec![(id, done("c00", Some(1)))],
        failures: vec![
            report("c01", crate::FailureKind::PostInstall, "exited with 3"),
            // A second story in the same batch: the first wins.
            report("c01", crate::FailureKind::Health, "later"),
            // Not in the run, and a run that does not exist: nothing, and
            // the batch still commits.
            report("stranger", crate::FailureKind::Health, "x"),
            crate::FailureReport {
                run: id + 1000,
                ..report("c02", crate::FailureKind::Health, "x")
            },
        ],
        ..FleetBatch::default()
    };
    assert!(!batch.is_empty());
    let first = l.apply_fleet_counted(&batch).unwrap();
    assert_eq!(first.failed(crate::FailureKind::PostInstall), 1);
    assert_eq!(first.failed, [1, 0, 0], "only what was recorded counts");
    let again = l.apply_fleet_counted(&batch).unwrap();
    assert_eq!(again.failed, [0, 0, 0], "a resend counts nothing");
    let failed = l.run_failures(id).unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        l.run_client_state(id, "c01").unwrap(),
        Some(crate::ClientState::Failed)
    );
    assert_eq!(
        l.run_client_state(id, "c02").unwrap(),
        Some(crate::ClientState::Pending)
    );
    assert_eq!(l.run_client_state(id, "stranger").unwrap(), None);
    assert_eq!(
        (
            failed[0].client.as_str(),
            failed[0].kind,
            failed[0].reason.as_str()
        ),
        ("c01", crate::FailureKind::PostInstall, "exited with 3")
    );
    let audit = l.audit(id).unwrap().unwrap();
    assert_eq!(
        audit.relays[0].delivered_by_round,
        vec![vec!["c00".to_owned()]]
    );
}
