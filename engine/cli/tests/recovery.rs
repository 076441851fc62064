//! Issue 17 with real processes on loopback: versions only move forward,
//! a run's report is final when it says so, and a restarted peer is back
//! within a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::fleet::Fleet;
use serde_json::Value;

/// `v` with a few bytes changed at `at`, so deltas between versions are
/// small.
fn edited(v: &[u8], at: usize, xor: u8) -> Vec<u8> {
    let mut out = v.to_vec();
    for b in &mut out[at..at + 256] {
        *b ^= xor;
    }
    out
}

/// The downgrade of issue 17: `s1` misses run 2 (1.1.0 → 1.2.0); run 2
/// ends with its delta window closed, so nothing is served for it any more
/// (`s1` boots and stays on 1.1.0). Run 3 then takes everyone to 1.3.0;
/// `s1` restarted boots and stays on 1.3.0, the master sends no delta or
/// full copy at any point, and run 2's audit never changes.
#[test]
fn a_client_that_missed_a_run_and_then_moved_on_is_never_taken_back() {
    let mut f = Fleet::new(0);
    f.write_master("");
    let port = f.write_relay("relay-a", f.master_port + 10);
    let master = format!(
        "master: {{address: '127.0.0.1:{}', name: master}}\n",
        f.master_port
    );
    for id in ["ok1", "s1"] {
        f.write_client(id, "relay-a", port, &master);
    }
    let v1 = std::fs::read(f.artifact("app-1.bin", 1 << 20, 5)).unwrap();
    let v2 = edited(&v1, 300_000, 0x5a);
    let v3 = edited(&v2, 600_000, 0xa5);
    std::fs::write(f.path("app-2.bin"), &v2).unwrap();
    std::fs::write(f.path("app-3.bin"), &v3).unwrap();
    // The helper's schedule started long ago: each run's delta window
    // (`until: 2s`) is closed from the start, so a run ends at its audit.
    f.workflow("v1", "app-1.bin", "1.1.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.workflow("v2", "app-2.bin", "1.2.0", &["relay-a"], 1, 1, "200Mbit/s");
    f.workflow("v3", "app-3.bin", "1.3.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.start("master", "master");
    f.start("relay", "relay-a");
    f.wait_log("relay-a", "connected to the master", 1, 60);
    for id in ["ok1", "s1"] {
        f.start("client", id);
        f.wait_log("relay-a", &format!("client registered client={id}"), 1, 60);
    }
    std::thread::sleep(Duration::from_millis(800));
    let report: Value =
        serde_json::from_str(&f.haifu_ok(&["run", "v1.yaml", "--live", "--json"])).unwrap();
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    let current = |f: &Fleet, id: &str| {
        std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap()
    };

    // s1 misses run 2.
    assert!(f.stop("s1"));
    let report: Value =
        serde_json::from_str(&f.haifu_ok(&["run", "v2.yaml", "--live", "--json"])).unwrap();
    assert_eq!(report["undelivered"], 1, "{report:#}\n{}", f.dump());
    assert_eq!(f.json(&["status", "2", "--json"])["status"], "done");
    let audit2 = f.json(&["audit", "2", "--json"]);
    // Back after run 2 ended: its window is closed, nothing is served.
    f.start("client", "s1");
    f.wait_log("relay-a", "client registered client=s1", 2, 60);
    f.wait_log("master", "peer connected peer=s1", 1, 30);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(current(&f, "s1"), v1, "s1 stays on 1.1.0\n{}", f.dump());

    // Run 3 takes everyone to 1.3.0.
    let report: Value =
        serde_json::from_str(&f.haifu_ok(&["run", "v3.yaml", "--live", "--json"])).unwrap();
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    assert_eq!(current(&f, "s1"), v3);
    // s1 restarts: its boot check asks the master, which has nothing for it.
    assert!(f.stop("s1"));
    let asked = f.log("master").matches("peer connected peer=s1").count();
    f.start("client", "s1");
    f.wait_log("relay-a", "client registered client=s1", 3, 60);
    f.wait_for(30, "s1's boot check at the master", || {
        f.log("master").matches("peer connected peer=s1").count() > asked
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(current(&f, "s1"), v3, "s1 stays on 1.3.0\n{}", f.dump());
    let master = f.log("master");
    assert!(
        !master.contains("sending a delta") && !master.contains("sending the full artifact"),
        "no delta or full copy is served\n{master}"
    );
    assert!(
        !f.log("s1").contains("installed from the master"),
        "{}",
        f.log("s1")
    );
    // The record is final; only the live view of each straggler (its last
    // contact, what it runs now) moves on.
    let record = |mut a: Value| {
        for r in a["relays"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("stragglers");
        }
        a
    };
    assert_eq!(
        record(f.json(&["audit", "2", "--json"])),
        record(audit2),
        "run 2's audit is final"
    );
    let fleet = f.haifu_ok(&["fleet", "list"]);
    assert!(
        fleet
            .lines()
            .any(|l| l.contains("s1") && l.contains("1.3.0")),
        "{fleet}"
    );
}
