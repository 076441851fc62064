//! Failures after install with real processes on loopback: a post-install
//! command that fails on one of three clients is reported through its
//! relay, recorded by the master and shown by `haifu audit` with its kind
//! and reason while the client stays on its old version; readmitted once
//! its fix is in, it installs the version in a later round of the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::fleet::{Fleet, Layout};
use serde_json::Value;

#[test]
fn a_failed_post_install_is_audited_and_a_readmitted_client_installs_in_a_later_round() {
    let clients = ["c1", "c2", "c3"];
    let mut f = Fleet::with(
        0,
        &Layout {
            relays: &[("relay-a", &clients)],
            ..Layout::default()
        },
    );
    // c2's check refuses 1.2.0 until the operator's fix (a marker file)
    // is in.
    let fixed = f.path("c2-fixed");
    std::fs::write(
        f.path("check.sh"),
        format!(
            "[ \"$HAIFU_VERSION\" = 1.1.0 ] || [ -f '{}' ] || \
             {{ echo 'migration refused: the fix is not in' >&2; exit 3; }}\n",
            fixed.display()
        ),
    )
    .unwrap();
    let config = f.path("c2.yaml");
    let c2 = std::fs::read_to_string(&config).unwrap();
    let check = f.path("check.sh");
    std::fs::write(
        &config,
        format!(
            "{c2}post_install: {{program: sh, args: ['{}']}}\n",
            check.display()
        ),
    )
    .unwrap();
    let v1 = std::fs::read(f.artifact("app-1.bin", 256 << 10, 5)).unwrap();
    let mut v2 = v1.clone();
    for b in &mut v2[100..900] {
        *b ^= 0x5a;
    }
    std::fs::write(f.path("app-2.bin"), &v2).unwrap();
    f.workflow("v1", "app-1.bin", "1.1.0", &["relay-a"], 2, 1, "200Mbit/s");
    // Enough rounds, 2 s apart, for the readmission to land mid-run.
    f.workflow("v2", "app-2.bin", "1.2.0", &["relay-a"], 60, 2, "200Mbit/s");
    f.start_fleet(&clients);
    let report = f.json(&["run", "v1.yaml", "--live", "--json"]);
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());

    let run = f
        .haifu()
        .args(["run", "v2.yaml", "--live", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Null until the run exists and has a failure.
    let failed = |f: &Fleet| -> Value {
        let out = f.haifu().args(["audit", "2", "--json"]).output().unwrap();
        if !out.status.success() {
            return Value::Null;
        }
        let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
        audit["relays"][0]["failed"].clone()
    };
    f.wait_for(60, "c2's failure in the audit", || failed(&f).is_array());
    let list = failed(&f);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["client"], "c2");
    assert_eq!(list[0]["kind"], "post-install");
    let reason = list[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("exit status: 3") && reason.contains("the fix is not in"),
        "{reason}"
    );
    let current = |id: &str| std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap();
    assert_eq!(current("c2"), v1, "c2 stays on its old version");
    f.wait_for(60, "c1 and c3 on 1.2.0", || {
        current("c1") == v2 && current("c3") == v2
    });
    let text = f.haifu_ok(&["audit", "2"]);
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("failed")
            && l.contains("c2 (post-install: exited with exit status: 3")),
        "{text}"
    );
    // `haifu status` counts it.
    let runs = f.json(&["status", "--json"]);
    let run2 = runs.as_array().unwrap().iter().find(|r| r["id"] == 2);
    assert_eq!(run2.unwrap()["counts"]["failed"], 1, "{runs:#}");
    assert!(f.haifu_ok(&["status"]).contains("FAILED"));
    // The client holds the version back: several rounds pass and it does
    // not try again.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        f.log("c2")
            .matches("post-install: migration refused")
            .count(),
        1,
        "{}",
        f.log("c2")
    );

    // The fix is in; the operator readmits c2.
    std::fs::write(&fixed, b"").unwrap();
    let out = f.haifu_ok(&["fleet", "readmit", "c2", "--by", "ops"]);
    assert!(out.contains("c2 readmitted to run 2"), "{out}");
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", f.dump());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    assert_eq!(current("c2"), v2, "{}", f.dump());
    let audit = f.json(&["audit", "2", "--json"]);
    assert!(audit["relays"][0].get("failed").is_none(), "{audit:#}");
    let later: Vec<&str> = audit["relays"][0]["delivered_by_round"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .flat_map(|r| r.as_array().unwrap())
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(later.contains(&"c2"), "a later round: {audit:#}");
    assert!(f.log("c2").contains("readmitted by the master"));
}

/// A version that does not come up: the client is killed and restarted
/// during the health check's delay (as a version that restarts the
/// machine would have it), runs the check when it starts again, it fails,
/// the client switches back to its previous version and the master records
/// `health` with the reason, though the client had completed.
#[test]
fn a_failed_health_check_switches_back_and_is_audited() {
    let clients = ["h1", "h2"];
    let mut f = Fleet::with(
        1,
        &Layout {
            relays: &[("relay-a", &clients)],
            ..Layout::default()
        },
    );
    std::fs::write(
        f.path("health.sh"),
        "[ \"$HAIFU_VERSION\" = 1.1.0 ] || { echo 'no listener on :8080' >&2; exit 4; }\n",
    )
    .unwrap();
    let config = f.path("h2.yaml");
    let h2 = std::fs::read_to_string(&config).unwrap();
    let health = f.path("health.sh");
    std::fs::write(
        &config,
        format!(
            "{h2}health: {{program: sh, args: ['{}'], delay_secs: 3, timeout_secs: 10}}\n",
            health.display()
        ),
    )
    .unwrap();
    // The run stays open long enough for the check after the switch.
    let (v1, v2) = v1_delivered_v2_kept_open(&mut f, &clients, 3, 7);
    f.wait_log("h2", "health check passed", 1, 30);

    f.haifu_ok(&["run", "v2.yaml", "--live", "--detach"]);
    f.wait_log("h2", "installed; completion sent", 2, 60);
    f.kill("h2");
    f.start("client", "h2");
    let failed = |f: &Fleet| -> Value {
        let out = f.haifu().args(["audit", "2", "--json"]).output().unwrap();
        if !out.status.success() {
            return Value::Null;
        }
        let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
        audit["relays"][0]["failed"].clone()
    };
    f.wait_for(60, "h2's failure in the audit", || failed(&f).is_array());
    let list = failed(&f);
    assert_eq!(list[0]["client"], "h2", "{list:#}");
    assert_eq!(list[0]["kind"], "health", "{list:#}");
    let reason = list[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("exit status: 4")
            && reason.contains("no listener on :8080")
            && reason.contains("switched back to 1.1.0"),
        "{reason}"
    );
    let current = |id: &str| std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap();
    assert_eq!(current("h2"), v1, "switched back");
    assert_eq!(current("h1"), v2);
    assert!(
        f.log("h2").contains("a health check was still to run"),
        "{}",
        f.log("h2")
    );
}

/// A version put back outside haifu: after both clients switched to 1.2.0,
/// p1 is rolled back by the operator's order and p2's `current` is pointed
/// at its previous version by hand while it is down (as an A/B slot or a
/// watchdog would). Started again, p2 reports `rolled-back` naming both
/// versions, once however often it starts; p1's ordered rollback is no
/// failure.
#[test]
fn a_version_put_back_outside_haifu_is_reported_once_and_an_ordered_rollback_never() {
    let clients = ["p1", "p2"];
    let mut f = Fleet::with(
        2,
        &Layout {
            relays: &[("relay-a", &clients)],
            ..Layout::default()
        },
    );
    // Run 2 stays open while the failure comes in.
    let (v1, _) = v1_delivered_v2_kept_open(&mut f, &clients, 4, 9);
    f.haifu_ok(&["run", "v2.yaml", "--live", "--detach"]);
    for id in clients {
        f.wait_log(id, "installed; completion sent", 2, 60);
    }
    let orders = f.json(&[
        "rollback", "app", "--client", "p1", "--to", "1.1.0", "--by", "ops", "--wait", "60",
        "--json",
    ]);
    assert_eq!(orders[0]["state"], "done", "{orders:#}\n{}", f.dump());

    // p2 is down; its previous version is put back by hand.
    f.kill("p2");
    let root = f.path("p2-root");
    let previous = std::fs::read_link(root.join("previous")).unwrap();
    std::os::unix::fs::symlink(&previous, root.join("current.new")).unwrap();
    std::fs::rename(root.join("current.new"), root.join("current")).unwrap();
    // Both start again.
    f.kill("p1");
    f.start("client", "p1");
    f.start("client", "p2");
    let failed = |f: &Fleet| -> Value {
        let out = f.haifu().args(["audit", "2", "--json"]).output().unwrap();
        if !out.status.success() {
            return Value::Null;
        }
        let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
        audit["relays"][0]["failed"].clone()
    };
    f.wait_for(60, "p2's failure in the audit", || failed(&f).is_array());
    let list = failed(&f);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    assert_eq!(list[0]["client"], "p2", "{list:#}");
    assert_eq!(list[0]["kind"], "rolled-back", "{list:#}");
    let reason = list[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("switched to 1.2.0") && reason.contains("found 1.1.0 current"),
        "{reason}"
    );
    f.wait_log("p2", "failure acknowledged by the master", 1, 30);
    // Once: not again when it starts again.
    f.kill("p2");
    f.start("client", "p2");
    f.wait_log("p2", "client started", 3, 30);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        f.log("p2").matches("put back outside haifu").count(),
        1,
        "{}",
        f.log("p2")
    );
    assert!(
        !f.log("p1").contains("put back outside haifu"),
        "{}",
        f.log("p1")
    );
    let current = |id: &str| std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap();
    assert_eq!(current("p2"), v1, "not installed again by itself");
    assert_eq!(current("p1"), v1);
}

/// Version 1.1.0 (an artifact from `seed`) delivered to `clients` behind
/// relay-a, and 1.2.0 (the same with byte `flipped` changed) registered as
/// workflow `v2`, whose delta window stays open; returns both versions' bytes.
fn v1_delivered_v2_kept_open(
    f: &mut Fleet,
    clients: &[&str],
    seed: u64,
    flipped: usize,
) -> (Vec<u8>, Vec<u8>) {
    let v1 = std::fs::read(f.artifact("app-1.bin", 128 << 10, seed)).unwrap();
    let mut v2 = v1.clone();
    v2[flipped] ^= 0xff;
    std::fs::write(f.path("app-2.bin"), &v2).unwrap();
    f.workflow("v1", "app-1.bin", "1.1.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.workflow("v2", "app-2.bin", "1.2.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.open_delta_window("v2");
    f.start_fleet(clients);
    let report = f.json(&["run", "v1.yaml", "--live", "--json"]);
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    (v1, v2)
}
