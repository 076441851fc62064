//! `haifu demo`: the whole method end to end with real processes; its JSON
//! report is checked against what must hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::fleet::plugin_dir;
use serde_json::Value;

#[test]
fn the_demo_delivers_everyone_or_cuts_them_off_and_reports_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path());
    let out = Command::new(env!("CARGO_BIN_EXE_haifu"))
        .args([
            "demo",
            "--clients",
            "7",
            "--relays",
            "2",
            "--loss",
            "8",
            "--offline",
            "30",
            "--broken",
            "2",
            "--size",
            "2",
            "--seed",
            "5",
            // Room for a busy test machine: the stragglers must finish
            // before the cut-off.
            "--deadline",
            "40",
            "--json",
        ])
        .env("HAIFU_PLUGINS", &plugins)
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r:#}"));
    assert_eq!(n("clients"), 7);
    assert_eq!(r["problems"], serde_json::json!([]), "{r:#}");
    // Every client ends delivered, failed or disconnected.
    let by_round: u64 = r["delivered_by_round"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        by_round
            + n("delivered_by_delta")
            + n("delivered_full_copy")
            + n("failed")
            + n("disconnected"),
        7,
        "{r:#}"
    );
    assert_eq!(n("undelivered"), 0);
    // 30% of 7 offline = 2: one back after round 1, one straggler that
    // takes a delta; of the two broken ones, the one whose post-install
    // check fails reports it (failed, with its reason) and the one that
    // never comes back is cut off.
    assert_eq!(n("delivered_by_delta"), 1, "{r:#}");
    assert_eq!(n("failed"), 1, "{r:#}");
    assert_eq!(n("disconnected"), 1, "{r:#}");
    let broken: Vec<&str> = r["broken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for d in r["disconnected_clients"].as_array().unwrap() {
        assert!(broken.contains(&d["client"].as_str().unwrap()), "{r:#}");
        assert!(d["reason"].as_str().unwrap().contains("2.4.0 is required"));
    }
    let failed = &r["failed_clients"][0];
    assert!(
        broken.contains(&failed["client"].as_str().unwrap()),
        "{r:#}"
    );
    assert_eq!(failed["kind"], "post-install", "{r:#}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("exit status: 1"),
        "{r:#}"
    );
    // Bytes: a round costs each of the 2 relays what its worst listener's
    // loss needs (at most 1.75 × 8%: 1.034 / 0.86 ≈ 1.2 × the artifact
    // with the datagram headers), within the repair loop's 15% (the
    // carousel's seeded simulation): at most 2 × 1.2 × 1.15 ≈ 2.8; the
    // delta is a small fraction of the artifact.
    let art = n("artifact_bytes");
    let rounds = r["multicast_by_round"].as_array().unwrap();
    assert!(!rounds.is_empty());
    assert_eq!(
        rounds.len(),
        r["delivered_by_round"].as_array().unwrap().len()
    );
    for b in rounds {
        let ratio = b.as_u64().unwrap() as f64 / art as f64;
        assert!((1.0..=2.8).contains(&ratio), "{ratio} in {r:#}");
    }
    assert_eq!(
        n("multicast_bytes"),
        rounds.iter().map(|b| b.as_u64().unwrap()).sum::<u64>()
    );
    // One delta per straggler (the client whose post-install check failed
    // does not ask again for the version that failed).
    let deltas = n("deltas_sent");
    assert!(deltas >= 1, "{r:#}");
    assert!(
        n("delta_bytes") > 0 && n("delta_bytes") / deltas * 10 < art,
        "{r:#}"
    );
    assert_eq!(
        n("unicast_bytes"),
        n("fetch_bytes") + n("delta_bytes") + n("full_bytes")
    );
    // The gate: the straggler is denied on 2.3.0 and allowed after its
    // delta; a broadcast client is allowed; a cut-off one is denied.
    let gate = r["gate"].as_array().unwrap();
    let asked = |when: &str| {
        gate.iter()
            .find(|g| g["when"] == when)
            .unwrap_or_else(|| panic!("no gate answer {when:?} in {r:#}"))
    };
    let before = asked("before its update");
    assert_eq!(before["allow"], false);
    assert_eq!(before["version"], "2.3.0");
    let after = asked("after its delta");
    assert_eq!(after["client"], before["client"]);
    assert_eq!(after["allow"], true);
    assert_eq!(after["version"], "2.4.0");
    assert_eq!(asked("delivered by broadcast")["allow"], true);
    let cut = asked("cut off");
    assert_eq!(cut["allow"], false);
    assert!(cut["reason"].as_str().unwrap().contains("disconnected"));
    // Progress went to stderr; the folder was removed.
    assert!(stderr.contains("audit after round"), "{stderr}");
    assert!(r["folder"].is_null());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("haifu-demo."))
        .collect();
    assert!(left.is_empty(), "the demo's folder is removed: {left:?}");
}

#[test]
fn the_demo_refuses_impossible_settings_in_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_haifu"))
        .args(["demo", "--clients", "4", "--broken", "2", "--offline", "50"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leave no client online"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_haifu"))
        .args(["demo", "--loss", "70"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--loss 70"));
    assert!(!out.status.success());
}

/// `haifu demo --stages`: the canary's refusing client pauses the run
/// after stage 1 with its reason, no client of stages 2-3 installs before
/// the operator's resume, and every client ends on 2.4.0.
#[test]
fn the_staged_demo_pauses_on_the_canary_then_resumes_to_everyone() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path());
    let out = Command::new(env!("CARGO_BIN_EXE_haifu"))
        .args([
            "demo",
            "--stages",
            "--clients",
            "8",
            "--relays",
            "2",
            "--size",
            "1",
            "--seed",
            "3",
            "--json",
        ])
        .env("HAIFU_PLUGINS", &plugins)
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(r["problems"], serde_json::json!([]), "{r:#}\n{stderr}");

    // Paused after stage 1 by the advance policy, the refusing client's
    // reason recorded.
    let p = &r["paused"];
    assert_eq!(p["after_stage"], 1, "{r:#}");
    assert_eq!(p["by"], "advance policy", "{r:#}");
    let failed = p["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{r:#}");
    assert_eq!(failed[0]["kind"], "post-install");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("refuses to start: the receipt-printer migration is missing"),
        "{r:#}"
    );
    // Relay-2's four clients (stages 2-3) were on 2.3.0 on disk while paused.
    assert_eq!(
        p["later_stages_on_old"].as_array().unwrap().len(),
        4,
        "{r:#}"
    );
    assert_eq!(p["later_stages_installed"], serde_json::json!([]), "{r:#}");
    assert!(stderr.contains("haifu fleet readmit"), "{stderr}");
    assert!(stderr.contains("haifu run resume"), "{stderr}");

    // The stages as the audit shows them: the canary's first decision was
    // the pause, and stage 2 started only after it.
    let stages = r["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["canary", "half", "rest"], "{r:#}");
    let first = &stages[0]["decisions"][0];
    assert_eq!(first["decide"], "pause", "{r:#}");
    let at = |v: &Value| v.as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(at(&stages[1]["started"]) > at(&first["at"]), "{r:#}");
    let targeted: u64 = stages.iter().map(|s| s["targeted"].as_u64().unwrap()).sum();
    assert_eq!(targeted, 8, "{r:#}");
    for s in stages {
        assert_eq!(s["delivered"], s["targeted"], "{s:#}");
        assert_eq!(
            (s["failed"].as_u64(), s["pending"].as_u64()),
            (Some(0), Some(0)),
            "{s:#}"
        );
    }
    // Every client ends on 2.4.0, checked on disk.
    assert_eq!(p["ended_on_new"].as_array().unwrap().len(), 8, "{r:#}");
}
