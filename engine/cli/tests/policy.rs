//! `haifu policy test` and `haifu policy eval` through the real binary: every
//! shipped policy passes its cases (so CI runs them), and failures and bad
//! files are named with their positions and exit non-zero.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `haifu ARGS` from the top of the repository (policy commands use no home).
fn haifu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haifu"))
        .args(args)
        .env_remove("HAIFU_HOME")
        .env("RUST_LOG", "warn")
        .current_dir(repo())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn cases_file(dir: &tempfile::TempDir, body: &str) -> String {
    let path = dir.path().join("cases.yaml");
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn every_shipped_policy_passes_its_cases() {
    let mut policies: Vec<String> = std::fs::read_dir(repo().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".rhai"))
        .collect();
    policies.sort();
    assert!(policies.len() >= 5, "{policies:?}");
    for name in policies {
        let stem = name.trim_end_matches(".rhai");
        let script = format!("policies/{name}");
        let cases = format!("policies/tests/{stem}.yaml");
        assert!(
            repo().join(&cases).is_file(),
            "{script} has no cases: write {cases}"
        );
        let out = haifu(&["policy", "test", &script, &cases]);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{script}: {stdout}{}",
            text(&out.stderr)
        );
        assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
        assert!(!stdout.contains("FAIL"), "{stdout}");
        // No warning either: a case calling an entry point the script lacks
        // would fall back and fail, but say so plainly if it ever happens.
        assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    }
}

#[test]
fn a_wrong_expected_decision_fails_naming_the_case_and_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases_file(
        &dir,
        "cases:\n  - name: right\n    next_round: { round: 1, rounds: 12 }\n    expect: { wait: 5m }\n  - name: wrong expected decision\n    next_round: { round: 1, rounds: 12 }\n    expect: { wait: 10m }\n",
    );
    let out = haifu(&["policy", "test", "policies/urgent-retry.rhai", &cases]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("ok   {cases}:2:5: right")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("FAIL {cases}:5:5: wrong expected decision")),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected wait 600 s, got wait 300 s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("at policies/urgent-retry.rhai:13:1 (fn next_round)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");

    let out = haifu(&[
        "policy",
        "test",
        "policies/urgent-retry.rhai",
        &cases,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 1);
    assert_eq!(report["results"][1]["line"], 5);
    assert_eq!(report["results"][1]["got"]["wait_secs"], 300.0);
    assert_eq!(report["results"][1]["script"]["line"], 13);
}

#[test]
fn a_script_error_fails_the_case_with_the_script_line_unless_expected() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("broken.rhai");
    std::fs::write(
        &script,
        "fn allow(client, service) {\n    client.no_such_fact\n}\n",
    )
    .unwrap();
    let script = script.to_str().unwrap();
    let cases = cases_file(
        &dir,
        "cases:\n  - name: answers\n    allow: { client: { version: 2.4.0 } }\n    expect: { allow: true }\n  - name: falls back to the safe default\n    allow: { client: { version: 2.4.0 } }\n    expect: { allow: true, fallback: true }\n",
    );
    let out = haifu(&["policy", "test", script, &cases]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("FAIL {cases}:2:5: answers")),
        "{stdout}"
    );
    assert!(stdout.contains("the script did not answer: "), "{stdout}");
    assert!(stdout.contains(&format!("at {script}:2:")), "{stdout}");
    assert!(
        stdout.contains(&format!("ok   {cases}:5:5: falls back")),
        "{stdout}"
    );
}

#[test]
fn eval_prints_one_decision() {
    let out = haifu(&[
        "policy",
        "eval",
        "policies/restrict.rhai",
        "allow",
        "--fact",
        "client.id=pos-7",
        "client.version=2.3.0",
        "client.newest=2.4.0",
        "service.name=refund",
        "service.since=2.4.0",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["entry"], "allow");
    assert_eq!(answer["allow"], false);
    assert_eq!(
        answer["reason"],
        "client pos-7 runs 2.3.0, older than 2.4.0 where service refund appeared; update it to 2.4.0"
    );
    assert!(answer["fallback"].is_null());

    let out = haifu(&[
        "policy",
        "eval",
        "policies/urgent-retry.rhai",
        "next_round",
        "--fact",
        "round=3",
        "rounds=12",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "next_round: wait 1200 s\n");
}

#[test]
fn eval_refuses_an_unknown_fact() {
    let out = haifu(&[
        "policy",
        "eval",
        "policies/disconnect.rhai",
        "disconnect",
        "--fact",
        "client.silent=40",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown fact \"client.silent\" for disconnect"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_unknown_key_in_a_cases_file_is_named_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases_file(
        &dir,
        "cases:\n  - name: typo\n    allow: { client: { vesion: 2.3.0 } }\n    expect: { allow: true }\n",
    );
    let out = haifu(&["policy", "test", "policies/restrict.rhai", &cases]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{cases}:3:24: unknown fact \"client.vesion\" for allow"
        )),
        "{stderr}"
    );
    assert!(text(&out.stdout).is_empty(), "no case runs from a bad file");
}

#[test]
fn a_billion_laughs_cases_file_is_refused_without_expanding() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from(
        "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        body.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    body.push_str("cases: *i\n");
    let cases = cases_file(&dir, &body);
    let out = haifu(&["policy", "test", "policies/restrict.rhai", &cases]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("{cases}:2:")),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("aliases"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn eval_asks_the_broadcast_policy_for_a_round_budget() {
    let out = haifu(&[
        "policy",
        "eval",
        "policies/broadcast.rhai",
        "round_budget",
        "--fact",
        "round=3",
        "rounds=3",
        "size=64MiB",
        "rate=100Mbit/s",
        "last_loss=0.05",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "round_budget: proactive 0.053, budget 5, time 50.265 s, silence 1 s\n"
    );

    // A refused answer: the safe default, the reason, exit status 1.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("greedy.rhai");
    std::fs::write(&script, "fn round_budget(ctx) {\n    #{ budget: 50 }\n}\n").unwrap();
    let script = script.to_str().unwrap();
    let out = haifu(&["policy", "eval", script, "round_budget", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["entry"], "round_budget");
    assert_eq!(answer["budget"], 3.0);
    assert_eq!(answer["proactive"], 0.02);
    assert_eq!(
        answer["fallback"],
        format!(
            "{script}: round_budget: budget 50 is out of range (1 to 16 × the artifact); safe default used"
        )
    );
}

#[test]
fn a_round_budget_case_that_fails_names_each_key_that_differs() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases_file(
        &dir,
        "cases:\n  - name: last round\n    round_budget: { round: 3, rounds: 3 }\n    expect: { budget: 4, time: 50.265 }\n",
    );
    let out = haifu(&["policy", "test", "policies/broadcast.rhai", &cases]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("FAIL {cases}:2:5: last round")),
        "{stdout}"
    );
    assert!(stdout.contains("expected budget 4, got 5\n"), "{stdout}");
    assert!(!stdout.contains("expected time"), "{stdout}");
    assert!(
        stdout.contains("at policies/broadcast.rhai:22:1 (fn round_budget)"),
        "{stdout}"
    );
}
