//! Phased rollouts through the real binary: `haifu simulate` models the
//! stages, a failure rate and the advance policy; `haifu run` goes stage
//! by stage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

mod common;
use common::{json, ok, run};

const CANARY: &str = "workflows/canary-rollout.yaml";

fn stages(report: &Value) -> &Vec<Value> {
    report["stages"].as_array().unwrap()
}

fn secs_between(a: &Value, b: &Value) -> i64 {
    let a: jiff::Timestamp = a.as_str().unwrap().parse().unwrap();
    let b: jiff::Timestamp = b.as_str().unwrap().parse().unwrap();
    b.as_second() - a.as_second()
}

#[test]
fn check_accepts_the_staged_workflow_and_counts_its_stages() {
    let t = tempfile::tempdir().unwrap();
    // `check` resolves transport names against the real plugins.
    let plugins = common::fleet::plugin_dir(t.path());
    let out = common::haifu(t.path())
        .env("HAIFU_PLUGINS", &plugins)
        .args(["check", CANARY])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.trim_end(),
        "workflows/canary-rollout.yaml: ok (pos-app 2.4.0, 5 steps, 3 stages)"
    );
}

#[test]
fn simulate_fail_10_stops_at_the_canary_with_the_shipped_policy() {
    let t = tempfile::tempdir().unwrap();
    let r = json(t.path(), &["simulate", CANARY, "--fail", "10", "--json"]);
    assert_eq!(r["ending"], "paused", "{r:#}");
    let [canary] = &stages(&r)[..] else {
        panic!("{r:#}")
    };
    assert_eq!(canary["name"], "canary");
    assert_eq!(canary["decision"], "pause");
    let (targeted, failed) = (
        canary["targeted"].as_u64().unwrap(),
        canary["failed"].as_u64().unwrap(),
    );
    // The clients behind store-east: every other client of 1,000.
    assert_eq!(targeted, 500);
    assert!(failed * 100 > 2 * targeted, "{canary}");
    assert!(
        canary["reason"]
            .as_str()
            .unwrap()
            .contains("more than max_failures 2%"),
        "{canary}"
    );
    // Paused when the broadcast ended, not after the hour of soak.
    assert!(
        secs_between(&canary["started"], &canary["decided"]) < 3600,
        "{canary}"
    );
    assert_eq!(r["not_started"], serde_json::json!(["half", "rest"]));
    assert_eq!(r["untouched"], 500, "no client of stages 2-3 installs");

    let text = ok(t.path(), &["simulate", CANARY, "--fail", "10"]);
    assert!(text.contains("paused after stage 1 (canary)"), "{text}");
    assert!(
        text.contains("500 never received it (stages not started: half, rest)"),
        "{text}"
    );
}

#[test]
fn a_healthy_release_goes_through_every_stage_after_its_soak() {
    let t = tempfile::tempdir().unwrap();
    let args = ["simulate", CANARY, "--clients", "2000", "--json"];
    let r = json(t.path(), &args);
    assert_eq!(r, json(t.path(), &args), "the same seed, the same rollout");
    assert_eq!(r["ending"], "complete", "{r:#}");
    let s = stages(&r);
    let names: Vec<&str> = s.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["canary", "half", "rest"]);
    let targeted: Vec<u64> = s.iter().map(|s| s["targeted"].as_u64().unwrap()).collect();
    assert_eq!(targeted, [1000, 500, 500], "one relay, half the rest, all");
    assert!(
        s.iter()
            .all(|s| s["failed"] == 0 && s["decision"] == "proceed")
    );
    // Each stage's soak is respected: canary 1 h, half 30 min, rest none;
    // a stage starts when the one before it proceeded.
    assert!(secs_between(&s[0]["started"], &s[0]["decided"]) >= 3600);
    assert!(secs_between(&s[1]["started"], &s[1]["decided"]) >= 1800);
    assert_eq!(s[1]["started"], s[0]["decided"]);
    assert_eq!(s[2]["started"], s[1]["decided"]);
    assert_eq!(r["untouched"], 0);
}

#[test]
fn fail_without_stages_shows_one_stage_of_everyone() {
    let t = tempfile::tempdir().unwrap();
    let r = json(
        t.path(),
        &[
            "simulate",
            "workflows/urgent-security-fix.yaml",
            "--fail",
            "10",
            "--json",
        ],
    );
    let [all] = &stages(&r)[..] else {
        panic!("{r:#}")
    };
    assert_eq!(
        (all["name"].as_str(), all["targeted"].as_u64()),
        (Some("all"), Some(1000))
    );
    let failed = all["failed"].as_u64().unwrap();
    assert!((50..=150).contains(&failed), "about 10% of 1,000: {failed}");
    assert_eq!(r["ending"], "complete", "no gate holds it: {r:#}");

    let bad = run(t.path(), &["simulate", CANARY, "--fail", "110"]);
    assert!(!bad.status.success());
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(
        err.starts_with("haifu: error: --fail \"110\" is not a percentage"),
        "{err}"
    );
}

/// A staged run through the binary, in virtual time: the canary on
/// store-east, then half, then the rest, each started after the previous
/// one proceeded; the audit shows the stages and their decisions.
#[test]
fn run_goes_stage_by_stage_and_the_audit_shows_each_stage() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let repo = format!("{}/", common::repo().display());
    let text = std::fs::read_to_string(common::repo().join(CANARY))
        .unwrap()
        .replace("../", &repo)
        .replace("2026-12-01T10:00:00+09:00", "2030-01-07T10:00:00+09:00")
        .replace("min_success: 95%, ", "");
    let wf = t.path().join("staged.yaml");
    std::fs::write(&wf, text).unwrap();
    let wf = wf.display().to_string();
    ok(
        &home,
        &[
            "run",
            &wf,
            "--virtual-time",
            "--clients",
            "200",
            "--offline",
            "0",
        ],
    );
    let audit = json(&home, &["audit", "1", "--json"]);
    let stages = stages(&audit);
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["canary", "half", "rest"], "{audit:#}");
    for s in stages {
        let last = s["decisions"].as_array().unwrap().last().unwrap();
        assert_eq!(last["decide"], "proceed", "{s:#}");
        assert_eq!(s["pending"], 0, "{s:#}");
    }
    assert_eq!(stages[0]["targeted"], 100, "store-east's half of 200");
    let after = |k: usize| secs_between(&stages[k]["started"], &stages[k + 1]["started"]);
    assert!(after(0) >= 3600, "the canary soaked an hour: {}", after(0));
    assert!(after(1) >= 1800, "half soaked 30 min: {}", after(1));
    let text = ok(&home, &["audit", "1"]);
    assert!(
        text.contains("stages (3)") && text.contains("gate: soak 1h"),
        "{text}"
    );
}

#[test]
fn simulate_gives_labels_to_a_share_of_the_fleet_and_a_stage_finds_them() {
    let t = tempfile::tempdir().unwrap();
    let repo = format!("{}/", common::repo().display());
    let text = std::fs::read_to_string(common::repo().join(CANARY))
        .unwrap()
        .replace("../", &repo)
        .replace("relays: [store-east]\n", "labels: { ring: canary }\n");
    let wf = t.path().join("labelled.yaml");
    std::fs::write(&wf, text).unwrap();
    let wf = wf.to_str().unwrap();
    let args = [
        "simulate",
        wf,
        "--label-share",
        "ring=canary:5%",
        "--fail",
        "10",
        "--json",
    ];
    let r = json(t.path(), &args);
    assert_eq!(stages(&r)[0]["name"], "canary", "{r:#}");
    assert_eq!(stages(&r)[0]["targeted"], 50, "5% of 1,000: {r:#}");
    let none = json(t.path(), &["simulate", wf, "--fail", "10", "--json"]);
    assert_eq!(
        stages(&none)[0]["targeted"],
        0,
        "no labels, nobody: {none:#}"
    );
    for (bad, says) in [
        ("ring=canary", "write KEY=VALUE:PCT"),
        ("Ring=canary:5", "label key \"Ring\""),
        ("ring=canary:200", "not a percentage"),
    ] {
        let out = run(t.path(), &["simulate", wf, "--label-share", bad]);
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{bad}: {err}");
    }
}
