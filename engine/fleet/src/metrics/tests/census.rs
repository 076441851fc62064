//! The master's census read from a real ledger: runs, clients by state,
//! completions by kind and round, rounds and their bytes, rollbacks; and
//! the deltas it counts.

use std::time::Instant;

use super::super::*;
use super::{parse, value};

/// A ledger at `path` with one live run of `clients` (id, relay).
fn live_run(path: &std::path::Path, clients: &[(&str, &str)]) -> (haifu_ledger::Ledger, i64) {
    let mut l = haifu_ledger::Ledger::open(path).unwrap();
    let run = haifu_ledger::testing::TestRun::new()
        .clients(clients.iter().copied())
        .create(&mut l)
        .unwrap();
    (l, run)
}

#[test]
fn the_masters_census_counts_live_runs_from_the_ledger_and_is_cached() {
    use haifu_ledger::{ClientUpdate, FleetBatch, Ledger};
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ledger.sqlite");
    let (mut l, run) = live_run(&path, &[("c1", "east"), ("c2", "east"), ("c3", "west")]);
    let complete = |l: &mut Ledger, c: &str| {
        let mut b = FleetBatch::default();
        b.updates.push((
            run,
            ClientUpdate::Completed {
                client: c.into(),
                round: Some(1),
                at: "2026-01-01T00:00:00Z".into(),
            },
        ));
        l.apply_fleet(&b).unwrap();
    };
    complete(&mut l, "c1");
    let m = MasterMetrics::new(
        std::sync::Arc::default(),
        vec!["east".into(), "north".into()],
        Some(path.clone()),
    );
    m.watch(|| PeerView {
        relays: vec!["east".into()],
        clients: 0,
    });
    let delivered = |text: &str, relay: &str| {
        value(
            &parse(text),
            "haifu_master_run_clients",
            &format!("relay=\"{relay}\",run=\"{run}\",state=\"delivered\""),
        )
    };
    let first = m.exporter().text().unwrap();
    assert_eq!(delivered(&first, "east"), Some(1.0), "{first}");
    let samples = parse(&first);
    assert_eq!(
        value(&samples, "haifu_master_runs", "status=\"running\""),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "haifu_master_relay_connected", "relay=\"east\""),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "haifu_master_relay_connected", "relay=\"north\""),
        Some(0.0),
        "a configured relay that is not connected is listed as 0"
    );
    // Within the TTL the ledger is not read again; after it, it is.
    complete(&mut l, "c2");
    let started = Instant::now();
    let again = m.exporter().text().unwrap();
    if started.elapsed() < CENSUS_TTL / 2 {
        assert_eq!(delivered(&again, "east"), Some(1.0), "cached");
    }
    std::thread::sleep(CENSUS_TTL);
    let later = m.exporter().text().unwrap();
    assert_eq!(delivered(&later, "east"), Some(2.0), "{later}");
}

/// Issue 15: completions by kind and round, each round's bytes and the
/// rollback orders come from the ledger, as the audit reads them; rounds
/// started, late completions and deltas are counted as they happen.
#[test]
fn completions_rounds_and_rollbacks_agree_with_the_ledger() {
    use haifu_ledger::{ClientTouch, ClientUpdate, FleetBatch, Traffic, TrafficKind};
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ledger.sqlite");
    let names = ["c1", "c2", "c3", "c4"];
    let (mut l, run) = live_run(&path, &names.map(|c| (c, "east")));
    let at = "2026-01-01T00:00:00Z".to_owned();
    let mut b = FleetBatch::default();
    for c in names {
        b.touches.push(ClientTouch {
            client: c.into(),
            relay: Some("east".into()),
            artifact: None,
            version: None,
            at: at.clone(),
        });
    }
    for (c, round) in [("c1", Some(1)), ("c2", Some(2)), ("c3", None)] {
        b.updates.push((
            run,
            ClientUpdate::Completed {
                client: c.into(),
                round,
                at: at.clone(),
            },
        ));
    }
    for (round, bytes) in [(1, 5000), (2, 700)] {
        b.traffic.push(Traffic {
            run,
            peer: "east".into(),
            kind: TrafficKind::Multicast,
            round: Some(round),
            bytes,
        });
    }
    b.traffic.push(Traffic {
        run,
        peer: "c3".into(),
        kind: TrafficKind::Full,
        round: None,
        bytes: 900,
    });
    l.apply_fleet(&b).unwrap();
    l.order_rollbacks("app", &["c1".to_owned()], None, "test")
        .unwrap();

    let m = MasterMetrics::new(std::sync::Arc::default(), Vec::new(), Some(path));
    m.round_started();
    m.committed(
        std::time::Duration::from_millis(2),
        Some(haifu_ledger::Counted {
            broadcast: 2,
            delta: 1,
            current: 0,
            late: 1,
            failed: [1, 0, 2],
        }),
    );
    delta_built(1234);
    delta_refused();
    let samples = parse(&m.exporter().text().unwrap());
    let get = |n: &str, l: &str| value(&samples, n, l);
    let run_l = |rest: &str| format!("{rest}run=\"{run}\"");
    assert_eq!(
        get(
            "haifu_master_run_completions",
            &format!("kind=\"round\",round=\"1\",run=\"{run}\"")
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "haifu_master_run_completions",
            &format!("kind=\"round\",round=\"2\",run=\"{run}\"")
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "haifu_master_run_completions",
            &format!("kind=\"full\",round=\"\",run=\"{run}\"")
        ),
        Some(1.0),
        "c3 was sent a full copy"
    );
    assert_eq!(
        get("haifu_master_run_round_bytes", &run_l("round=\"1\",")),
        Some(5000.0)
    );
    assert_eq!(
        get("haifu_master_run_round_bytes", &run_l("round=\"2\",")),
        Some(700.0)
    );
    assert_eq!(
        get("haifu_master_rollbacks", "state=\"ordered\""),
        Some(1.0)
    );
    assert_eq!(get("haifu_master_rollbacks", "state=\"done\""), Some(0.0));
    assert_eq!(get("haifu_master_rounds_started_total", ""), Some(1.0));
    assert_eq!(
        get("haifu_master_completions_recorded_total", "kind=\"late\""),
        Some(1.0)
    );
    assert_eq!(
        get(
            "haifu_master_install_failures_total",
            "kind=\"post-install\""
        ),
        Some(1.0)
    );
    assert_eq!(
        get("haifu_master_install_failures_total", "kind=\"health\""),
        Some(0.0),
        "every kind from the start"
    );
    assert_eq!(
        get(
            "haifu_master_install_failures_total",
            "kind=\"rolled-back\""
        ),
        Some(2.0)
    );
    // Process-wide: other tests in this process may build deltas too.
    assert!(get("haifu_master_deltas_built_total", "").unwrap() >= 1.0);
    assert!(get("haifu_master_deltas_built_bytes_total", "").unwrap() >= 1234.0);
    assert!(get("haifu_master_deltas_refused_total", "").unwrap() >= 1.0);
}
