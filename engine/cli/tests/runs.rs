//! Workflows, runs, the simulator and the gate, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{haifu, json, ok, repo, run};

#[test]
fn check_accepts_the_shipped_workflows_and_names_file_line_column() {
    let t = tempfile::tempdir().unwrap();
    let out = ok(
        t.path(),
        &[
            "check",
            "workflows/nightly-store-rollout.yaml",
            "workflows/urgent-security-fix.yaml",
        ],
    );
    assert_eq!(out.lines().count(), 2, "{out}");

    let bad = t.path().join("bad.yaml");
    fs::write(
        &bad,
        "name: x\nartifact: { name: pos-app, version: 2.4.0, path: nowhere.tar }\ntargets: { relays: [a] }\n\
schedule: { start: 2026-12-01T02:00:00+09:00, deadline: 72h }\ntransports: { broadcast: multicast }\n\
steps:\n  - register\n  - brodcast: { rounds: 0 }\n  - audit\n",
    )
    .unwrap();
    let out = run(t.path(), &["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let prefix = format!("{}:", bad.display());
    assert!(err.lines().all(|l| l.starts_with(&prefix)), "{err}");
    assert!(err.contains("did you mean \"broadcast\""), "{err}");
    assert!(err.contains("nowhere.tar"), "{err}");
    // The JSON form: one array with the same files and positions.
    let out = run(
        t.path(),
        &["check", "--format", "json", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let diags: Value = serde_json::from_slice(&out.stdout).unwrap();
    let diags = diags.as_array().unwrap();
    let from_json: Vec<String> = diags
        .iter()
        .map(|d| {
            format!(
                "{}:{}:{}:",
                d["file"].as_str().unwrap(),
                d["line"],
                d["column"]
            )
        })
        .collect();
    let from_text: Vec<String> = err
        .lines()
        .map(|l| {
            let rest = &l[prefix.len()..];
            let mut parts = rest.splitn(3, ':');
            format!(
                "{}{}:{}:",
                prefix,
                parts.next().unwrap(),
                parts.next().unwrap()
            )
        })
        .collect();
    assert_eq!(from_json, from_text);
    assert!(diags.iter().all(|d| d["severity"] == "error"));
    assert!(
        diags.iter().any(|d| d["suggestion"] == "broadcast"),
        "{diags:#?}"
    );
    let out = run(
        t.path(),
        &[
            "check",
            "--format",
            "json",
            "workflows/urgent-security-fix.yaml",
        ],
    );
    assert!(out.status.success());
    assert!(
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .is_array()
    );
    assert!(
        !t.path().join(".haifu").exists(),
        "check has no side effect"
    );
}

#[test]
fn simulate_accounts_for_every_client_and_is_reproducible() {
    let t = tempfile::tempdir().unwrap();
    let args = [
        "simulate",
        "workflows/nightly-store-rollout.yaml",
        "--clients",
        "3000",
        "--loss",
        "5",
        "--offline",
        "30",
        "--seed",
        "11",
        "--json",
    ];
    let a = json(t.path(), &args);
    let b = json(t.path(), &args);
    assert_eq!(a, b, "same seed, same outcome");
    assert_eq!(a["clients"], 3000);
    let rounds: Vec<u64> = a["delivered_by_round"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(!rounds.is_empty() && rounds.len() <= 3, "{rounds:?}");
    let total: u64 = rounds.iter().sum::<u64>()
        + a["delivered_by_delta"].as_u64().unwrap()
        + a["disconnected"].as_u64().unwrap()
        + a["undelivered"].as_u64().unwrap();
    assert_eq!(total, 3000, "{a}");
    // 30% offline per round: the first round cannot reach everyone, later
    // rounds pick up clients from earlier partial reception.
    assert!(rounds[0] < 2400 && rounds[0] > 900, "{rounds:?}");
    assert!(rounds.len() >= 2 && rounds[1] > 0, "{rounds:?}");
    assert!(
        !t.path().join(".haifu").exists(),
        "simulate leaves no home behind"
    );

    let mut other = args.to_vec();
    other[9] = "12";
    assert_ne!(json(t.path(), &other), a, "another seed, another fleet");
}

#[test]
fn bad_arguments_are_one_line_and_create_no_run() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    for (args, needle) in [
        (
            &[
                "simulate",
                "workflows/nightly-store-rollout.yaml",
                "--loss",
                "120",
            ][..],
            "--loss \"120\" is not a percentage",
        ),
        (
            &[
                "run",
                "workflows/nightly-store-rollout.yaml",
                "--clients",
                "0",
            ],
            "--clients must be at least 1",
        ),
        (&["run", "workflows/missing.yaml"], "missing.yaml"),
        (&["run", "--resume", "9"], "run 9 does not exist"),
        (&["audit", "9"], "run 9 does not exist"),
    ] {
        let out = run(&home, args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("haifu: error: ") && last.contains(needle),
            "{args:?}: {err}"
        );
    }
    if home.exists() {
        let runs = json(&home, &["status", "--json"]);
        assert_eq!(runs, Value::Array(vec![]));
    }
}

/// A workflow that runs in a few seconds of real time: rounds one second
/// apart, a deadline eight seconds after the start, and policies whose
/// answers depend only on counts and client ids, so two runs of it decide
/// alike whatever their timing.
fn quick_workflow(dir: &Path) -> PathBuf {
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    fs::write(
        dir.join("retry.rhai"),
        "fn next_round(ctx) { if ctx.delivered == ctx.total { \"stop\" } else { 1 } }\n",
    )
    .unwrap();
    fs::write(
        dir.join("cut.rhai"),
        "fn disconnect(c) {\n  let last = c.id.sub_string(c.id.len() - 1);\n  \
#{ cut: last == \"0\" || last == \"2\" || last == \"4\", reason: \"test policy\" }\n}\n",
    )
    .unwrap();
    let artifact = repo().join("examples/artifacts/pos-app-2.4.0.tar");
    let wf = dir.join("quick.yaml");
    fs::write(
        &wf,
        format!(
            "name: quick\nartifact: {{ name: pos-app, version: 2.4.0, path: {} }}\n\
targets: {{ relays: [relay-1, relay-2] }}\n\
schedule: {{ start: {start}, deadline: 8s, time_zone: UTC }}\n\
transports: {{ broadcast: multicast, unicast: quic }}\n\
policies: {{ retry: retry.rhai, disconnect: cut.rhai }}\n\
steps:\n  - register\n  - broadcast: {{ rounds: 4 }}\n  - audit\n  - delta: {{ until: deadline }}\n  - disconnect\n",
            artifact.display()
        ),
    )
    .unwrap();
    wf
}

/// Step 106's list must not depend on crashes: a run killed with SIGKILL
/// twice and resumed ends with exactly the audit of an uninterrupted run.
#[test]
fn a_run_killed_with_sigkill_resumes_with_nothing_lost_or_counted_twice() {
    let t = tempfile::tempdir().unwrap();
    let wf = quick_workflow(t.path());
    let wf = wf.to_str().unwrap();
    let fleet = [
        "--clients",
        "400",
        "--loss",
        "30",
        "--offline",
        "40",
        "--seed",
        "5",
    ];
    let (home_a, home_b) = (t.path().join("a"), t.path().join("b"));

    let mut reference = haifu(&home_a)
        .arg("run")
        .arg(wf)
        .args(fleet)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut victim = haifu(&home_b)
        .arg("run")
        .arg(wf)
        .args(fleet)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let began = Instant::now();
    for kill_at in [Duration::from_millis(2300), Duration::from_millis(5200)] {
        std::thread::sleep(kill_at.saturating_sub(began.elapsed()));
        victim.kill().unwrap(); // SIGKILL
        victim.wait().unwrap();
        victim = haifu(&home_b)
            .args(["run", "--resume", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    }
    assert!(reference.wait().unwrap().success());
    assert!(victim.wait().unwrap().success());

    let a = json(&home_a, &["audit", "1", "--json"]);
    let b = json(&home_b, &["audit", "1", "--json"]);
    assert_eq!(
        a["relays"], b["relays"],
        "the interrupted run's audit differs"
    );
    assert_eq!(b["run"]["status"], "done");
    // Every client is counted once, in exactly one place.
    let mut seen = std::collections::BTreeSet::new();
    for relay in b["relays"].as_array().unwrap() {
        let mut names: Vec<String> = Vec::new();
        for round in relay["delivered_by_round"].as_array().unwrap() {
            names.extend(
                round
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned()),
            );
        }
        for key in ["delta", "undelivered", "pending"] {
            names.extend(
                relay[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned()),
            );
        }
        names.extend(
            relay["disconnected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v[0].as_str().unwrap().to_owned()),
        );
        for n in names {
            assert!(seen.insert(n.clone()), "{n} counted twice");
        }
    }
    assert_eq!(seen.len(), 400);
    let r = json(&home_b, &["status", "1", "--json"]);
    let rounds = r["report"]["delivered_by_round"].as_array().unwrap().len();
    assert!(rounds >= 2, "30% loss needs more than one round: {r}");
    assert!(r["report"]["disconnected"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn the_gate_allows_updated_clients_and_denies_the_rest_with_a_reason() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    // A service can only be declared for a registered artifact.
    ok(
        &home,
        &[
            "register",
            "--name",
            "pos-app",
            "--version",
            "2.4.0",
            "examples/artifacts/pos-app-2.4.0.tar",
        ],
    );
    ok(
        &home,
        &[
            "service",
            "set",
            "contactless-refund",
            "--artifact",
            "pos-app",
            "--since",
            "2.4.0",
        ],
    );
    let gate = |client: &str| -> (Value, Option<i32>) {
        let out = run(
            &home,
            &[
                "gate",
                "--client",
                client,
                "--service",
                "contactless-refund",
                "--json",
            ],
        );
        (
            serde_json::from_slice(&out.stdout).unwrap(),
            out.status.code(),
        )
    };
    let (v, code) = gate("client-000001");
    assert_eq!((v["allow"].as_bool(), code), (Some(false), Some(3)));
    assert!(
        v["reason"].as_str().unwrap().contains("unknown client"),
        "{v}"
    );

    let report: Value = serde_json::from_str(&ok(
        &home,
        &[
            "run",
            "workflows/urgent-security-fix.yaml",
            "--clients",
            "60",
            "--offline",
            "60",
            "--seed",
            "3",
            "--virtual-time",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(report["status"], "done");
    let audit = json(&home, &["audit", "1", "--json"]);
    let delivered = audit["relays"][0]["delivered_by_round"][0][0]
        .as_str()
        .unwrap()
        .to_owned();
    let (v, code) = gate(&delivered);
    assert_eq!((v["allow"].as_bool(), code), (Some(true), Some(0)), "{v}");

    // A client that never completed runs an unknown version: denied.
    let stragglers: Vec<&Value> = audit["relays"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["undelivered"]
                .as_array()
                .unwrap()
                .iter()
                .chain(r["disconnected"].as_array().unwrap().iter().map(|d| &d[0]))
        })
        .collect();
    if let Some(s) = stragglers.first() {
        let (v, _) = gate(s.as_str().unwrap());
        assert_eq!(v["allow"], false, "{v}");
    }
    let (v, _) = gate("ghost");
    assert_eq!(v["allow"], false);
}

#[test]
fn ca_init_and_issue_and_plugins_listing() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    ok(&home, &["ca", "init"]);
    // A role is required: a certificate grants exactly one.
    let out = run(&home, &["ca", "issue", "relay-1"]);
    assert!(!out.status.success());
    let out = run(&home, &["ca", "issue", "relay-1", "--role", "admin"]);
    assert!(!out.status.success());
    ok(&home, &["ca", "issue", "relay-1", "--role", "relay"]);
    assert!(home.join("certs/relay-1.crt").is_file());
    let out = run(&home, &["ca", "issue", "relay-1", "--role", "relay"]);
    assert!(!out.status.success());
    let out = run(&home, &["ca", "issue", "Bad Name", "--role", "client"]);
    assert!(!out.status.success());

    let plugins = t.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    // Only files named libhaifu_transport_<name>.so are plugin files; the
    // other library is not even opened.
    fs::write(
        plugins.join("libhaifu_transport_notalib.so"),
        "not a library",
    )
    .unwrap();
    fs::write(plugins.join("libnotalib.so"), "not a library").unwrap();
    let out = run(
        &home,
        &["plugins", "--plugins", plugins.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["plugins"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["plugins"][0]["status"], "error");
    assert!(
        v["plugins"][0]["error"]
            .as_str()
            .unwrap()
            .contains("libhaifu_transport_notalib.so"),
        "{v}"
    );
}

/// `--log-format json` (or `HAIFU_LOG_FORMAT=json`): every log line on
/// stderr is one JSON object with the level and the event's fields, for
/// journald and log shippers.
#[test]
fn json_logs_are_one_object_per_line() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    for by_env in [false, true] {
        let mut c = common::haifu(&home);
        c.env("RUST_LOG", "info");
        if by_env {
            c.env("HAIFU_LOG_FORMAT", "json");
        } else {
            c.args(["--log-format", "json"]);
        }
        let out = c
            .args([
                "simulate",
                "workflows/urgent-security-fix.yaml",
                "--clients",
                "5",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines.len() >= 3, "{err}");
        for l in lines {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v["level"].is_string() && v["target"].is_string(), "{l}");
            assert!(v["fields"].is_object(), "{l}");
        }
        // The run's events carry their fields as fields, not as text.
        assert!(
            err.contains(r#""fields":{"run":1,"event":"registered""#),
            "{err}"
        );
    }
    let out = common::run(&home, &["--log-format", "xml", "versions"]);
    assert!(!out.status.success());
}
