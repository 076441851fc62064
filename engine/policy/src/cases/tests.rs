#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::decision::Role;

fn parse(text: &str) -> Result<CaseFile, Vec<CaseError>> {
    CaseFile::parse(Path::new("t.yaml"), text)
}

fn errors(text: &str) -> Vec<String> {
    parse(text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

const RETRY: &str = r#"
fn next_round(ctx) {
    if ctx.delivered >= ctx.total { return #{ stop: true, reason: "all in" }; }
    if ctx.round == 2 { return 10 / (ctx.round - 2); }
    120
}
"#;

fn retry() -> PolicyUnderTest {
    PolicyUnderTest::compile(Path::new("r.rhai"), RETRY.into(), &[Role::Retry]).unwrap()
}

#[test]
fn cases_read_with_defaults_and_positions() {
    let file = parse(
        "cases:\n  - name: all in\n    next_round: { delivered: 10, total: 10 }\n    expect: { stop: true, reason: all in }\n  - name: gate\n    allow:\n      client: { version: 2.3.0, newest: 2.4.0 }\n    expect: { allow: false }\n",
    )
    .unwrap();
    assert_eq!(file.cases[0].pos, Pos { line: 2, column: 5 });
    let Call::NextRound(facts) = &file.cases[0].call else {
        panic!()
    };
    assert_eq!((facts.round, facts.rounds, facts.total), (1, 3, 10));
    assert_eq!(facts.now.timestamp().to_string(), DEFAULT_NOW);
    let Call::Allow {
        client, service, ..
    } = &file.cases[1].call
    else {
        panic!()
    };
    assert_eq!(client.behind, 1, "older than newest counts one behind");
    assert_eq!(
        service.since.to_string(),
        "2.4.0",
        "since defaults to newest"
    );
    assert_eq!(file.cases[1].expect.decision, Expected::Allow(false));
}

#[test]
fn unknown_keys_name_file_line_and_column() {
    let errs = errors(
        "cases:\n  - name: x\n    allow: { client: { vesion: 2.3.0 } }\n    expect: { allow: true, because: x }\n",
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("t.yaml:3:24: unknown fact \"client.vesion\" for allow"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("t.yaml:4:28: unknown key \"because\""),
        "{errs:?}"
    );
}

#[test]
fn aliases_are_refused() {
    let errs = errors("a: &x [1, 2]\ncases: *x\n");
    assert!(errs[0].contains("aliases"), "{errs:?}");
}

#[test]
fn bad_values_and_missing_decisions_are_errors() {
    let errs = errors(
        "cases:\n  - name: x\n    disconnect: { client: { state: gone, last_contact: yesterday } }\n    expect: { reason: x }\n",
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("unknown state \"gone\"")));
    assert!(errs.iter().any(|e| e.contains("not an RFC 3339 time")));
    assert!(
        errs.iter()
            .any(|e| e.contains("state the decision with `cut"))
    );
    assert!(errors("cases: []\n")[0].contains("tests nothing"));
}

#[test]
fn relative_times_count_from_now() {
    let call = Call::from_facts(
        Role::Disconnect,
        &[
            ("now", Some("2026-12-10T00:00:00Z")),
            ("client.last_contact", Some("-40d")),
        ],
    )
    .unwrap();
    let Call::Disconnect { client, .. } = call else {
        panic!()
    };
    assert_eq!(
        client.last_contact.unwrap().to_string(),
        "2026-10-31T00:00:00Z"
    );
    let err = Call::from_facts(Role::Retry, &[("rounds", Some("-1"))]).unwrap_err();
    assert_eq!(err[0].key, "rounds");
}

#[test]
fn a_wrong_expectation_fails_and_names_the_entry_point() {
    let file =
        parse("cases:\n  - name: waits\n    next_round: {}\n    expect: { wait: 60 }\n").unwrap();
    let report = retry().run(&file.cases[0]);
    assert!(!report.passed());
    assert_eq!(report.failures, ["expected wait 60 s, got wait 120 s"]);
    assert_eq!(report.script_pos, Some(Pos { line: 2, column: 1 }));
}

#[test]
fn a_fallback_fails_unless_expected_and_names_the_script_line() {
    let file = parse(
        "cases:\n  - name: a\n    next_round: { round: 2 }\n    expect: { wait: 1h }\n  - name: b\n    next_round: { round: 2 }\n    expect: { wait: 1h, fallback: true }\n",
    )
    .unwrap();
    let policy = retry();
    let failed = policy.run(&file.cases[0]);
    assert_eq!(failed.failures.len(), 1, "{:?}", failed.failures);
    assert!(
        failed.failures[0].contains("r.rhai:4:"),
        "{:?}",
        failed.failures
    );
    assert_eq!(failed.script_pos.map(|p| p.line), Some(4));
    let passed = policy.run(&file.cases[1]);
    assert!(passed.passed(), "{:?}", passed.failures);
    assert_eq!(
        file.cases[1].expect.decision,
        Expected::Wait(Some(Duration::from_secs(3600)))
    );
}

#[test]
fn a_key_given_twice_is_an_error() {
    let errs = errors(
        "cases:\n  - name: x\n    disconnect: {}\n    expect: { cut: true }\n    expect: { cut: false }\n",
    );
    assert_eq!(errs, ["t.yaml:5:5: a case: key \"expect\" is given twice"]);
}

#[test]
fn only_regular_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let errs = CaseFile::load(dir.path()).unwrap_err();
    assert!(matches!(errs[..], [CaseError::NotAFile { .. }]), "{errs:?}");
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, vec![b'#'; MAX_CASES_FILE_SIZE as usize + 1]).unwrap();
    let errs = CaseFile::load(&big).unwrap_err();
    assert!(matches!(errs[..], [CaseError::TooLarge { .. }]), "{errs:?}");
}

#[test]
fn every_truncation_of_a_shipped_cases_file_parses_or_errs_without_panicking() {
    let text = include_str!("../../../../policies/tests/retry.yaml");
    // Every third byte: enough to cut inside every key, value and line.
    for end in (0..=text.len())
        .step_by(3)
        .filter(|&i| text.is_char_boundary(i))
    {
        if let Err(errors) = parse(&text[..end]) {
            assert!(!errors.is_empty());
        }
    }
}

const BROADCAST: &str = r#"
fn round_budget(ctx) {
    if ctx.round == 9 { return #{ budget: 40 }; }
    let loss = ctx.last_loss;
    if type_of(loss) == "()" { return #{}; }
    #{ proactive: loss, budget: 4 }
}
"#;

fn broadcast() -> PolicyUnderTest {
    PolicyUnderTest::compile(Path::new("b.rhai"), BROADCAST.into(), &[Role::Broadcast]).unwrap()
}

#[test]
fn round_budget_cases_read_units_and_unset_facts() {
    let file = parse(
        "cases:\n  - name: x\n    round_budget: { size: 64MiB, rate: 20Mbit/s, last_loss: ~, last_decoded: 3 }\n    expect: { proactive: 0.02, time: 2m, silence: 1.5 }\n",
    )
    .unwrap();
    let Call::RoundBudget(facts) = &file.cases[0].call else {
        panic!()
    };
    assert_eq!((facts.size, facts.rate), (64 << 20, 20_000_000));
    assert_eq!((facts.round, facts.rounds, facts.remaining), (1, 3, 10));
    assert_eq!((facts.last_loss, facts.last_decoded), (None, Some(3)));
    let Expected::Budget(want) = &file.cases[0].expect.decision else {
        panic!()
    };
    assert_eq!(want.proactive, Some(0.02));
    assert_eq!(want.bytes, None, "a key not written is not checked");
    assert_eq!(want.time, Some(Duration::from_secs(120)));
    assert_eq!(want.silence, Some(Duration::from_millis(1500)));
}

#[test]
fn round_budget_cases_refuse_bad_facts_and_expectations() {
    let errs = errors(
        "cases:\n  - name: x\n    round_budget: { size: 64MB, rate: 0, last_loss: 5%, delivered: 3 }\n    expect: { budget: lots, time: soon, reason: x }\n",
    );
    assert_eq!(errs.len(), 7, "{errs:?}");
    assert!(errs[0].contains("not a size like"), "{errs:?}");
    assert!(errs[1].contains("not a rate above 0 like"), "{errs:?}");
    assert!(errs[2].contains("not a loss rate from 0 to 1"), "{errs:?}");
    assert!(
        errs[3].contains("unknown fact \"delivered\" for round_budget"),
        "{errs:?}"
    );
    assert!(
        errs[4].starts_with("t.yaml:4:23: expect.budget: expected a number"),
        "{errs:?}"
    );
    assert!(
        errs[5].contains("expect.time: expected seconds"),
        "{errs:?}"
    );
    assert!(errs[6].contains("unknown key \"reason\""), "{errs:?}");
    let errs =
        errors("cases:\n  - name: x\n    round_budget: {}\n    expect: { fallback: true }\n");
    assert!(
        errs[0].contains("state the decision with one or more of `proactive`"),
        "{errs:?}"
    );
}

#[test]
fn a_round_budget_case_fails_key_by_key() {
    let file = parse(
        "cases:\n  - name: right\n    round_budget: { last_loss: 0.25 }\n    expect: { proactive: 0.25, budget: 4 }\n  - name: wrong\n    round_budget: { last_loss: 0.25 }\n    expect: { proactive: 0.3, budget: 4, silence: 2 }\n",
    )
    .unwrap();
    let policy = broadcast();
    assert!(policy.run(&file.cases[0]).passed());
    let report = policy.run(&file.cases[1]);
    assert_eq!(
        report.failures,
        [
            "expected proactive 0.3, got 0.25",
            "expected silence 2 s, got 1 s"
        ]
    );
    assert_eq!(report.script_pos, Some(Pos { line: 2, column: 1 }));
}

#[test]
fn a_refused_round_budget_fails_unless_the_case_expects_the_fallback() {
    let file = parse(
        "cases:\n  - name: a\n    round_budget: { round: 9, rounds: 9 }\n    expect: { budget: 3 }\n  - name: b\n    round_budget: { round: 9, rounds: 9 }\n    expect: { budget: 3, time: 34.159, fallback: true }\n",
    )
    .unwrap();
    let policy = broadcast();
    let failed = policy.run(&file.cases[0]);
    assert_eq!(failed.failures.len(), 1, "{:?}", failed.failures);
    assert!(
        failed.failures[0].contains("b.rhai: round_budget: budget 40 is out of range"),
        "{:?}",
        failed.failures
    );
    let passed = policy.run(&file.cases[1]);
    assert!(passed.passed(), "{:?}", passed.failures);
}
