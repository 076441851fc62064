//! The workflows shipped in `workflows/` validate clean, with the plan an
//! operator would expect; and a good fixture loads with its warnings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use haifu_spec::steps::delta::Until;
use haifu_spec::{Step, StepKind};

fn workflow(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../workflows")
        .join(name)
}

fn kinds(steps: &[Step]) -> Vec<StepKind> {
    steps.iter().map(Step::kind).collect()
}

#[test]
fn nightly_store_rollout_validates_clean() {
    let started = Instant::now();
    let plan = haifu_spec::load_and_validate(&workflow("nightly-store-rollout.yaml"))
        .unwrap_or_else(|errors| panic!("{errors:#?}"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert_eq!(plan.name.value, "pos-terminal-2.4");
    assert_eq!(plan.artifact.version, semver::Version::new(2, 4, 0));
    assert!(
        plan.artifact
            .path
            .value
            .ends_with("examples/artifacts/pos-app-2.4.0.tar")
    );
    assert_eq!(plan.targets.relays, vec!["store-east", "store-west"]);
    assert_eq!(plan.schedule.start.to_string(), "2026-11-30T17:00:00Z");
    assert_eq!(
        plan.schedule.deadline.as_second() - plan.schedule.start.as_second(),
        72 * 3600
    );
    assert_eq!(plan.schedule.time_zone.iana_name(), Some("Asia/Tokyo"));
    assert_eq!(plan.schedule.window.unwrap().to_string(), "02:00-05:00");
    assert_eq!(plan.rate, Some(20_000_000));
    assert_eq!(plan.transports.unicast.as_deref(), Some("quic"));
    assert_eq!(
        kinds(&plan.steps),
        vec![
            StepKind::Register,
            StepKind::Broadcast,
            StepKind::Audit,
            StepKind::Delta,
            StepKind::Disconnect
        ]
    );
    let Step::Broadcast(b) = &plan.steps[1] else {
        panic!()
    };
    assert_eq!(b.rounds.value, 3);
    let Step::Delta(d) = &plan.steps[3] else {
        panic!()
    };
    assert_eq!(d.until.value, Until::Deadline);
    assert_eq!(d.budget.as_ref().unwrap().value, 50 << 20);
    // The policy paths load as they are.
    haifu_policy::PolicySet::load(&plan.policies.paths()).unwrap();
}

#[test]
fn urgent_security_fix_validates_clean_with_tighter_timing() {
    let plan = haifu_spec::load_and_validate(&workflow("urgent-security-fix.yaml"))
        .unwrap_or_else(|errors| panic!("{errors:#?}"));
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert_eq!(
        plan.schedule.deadline.as_second() - plan.schedule.start.as_second(),
        6 * 3600
    );
    assert_eq!(plan.targets.groups, vec!["all-stores"]);
    assert_eq!(plan.schedule.window, None);
    let Step::Broadcast(b) = &plan.steps[1] else {
        panic!()
    };
    assert_eq!(b.rounds.value, 8);
    let Step::Delta(d) = &plan.steps[3] else {
        panic!()
    };
    let end = d
        .until
        .value
        .resolve(plan.schedule.start, plan.schedule.deadline);
    assert_eq!(
        end.as_second() - plan.schedule.start.as_second(),
        5 * 3600 + 1800
    );
    assert!(
        plan.policies
            .retry
            .as_ref()
            .unwrap()
            .value
            .ends_with("policies/urgent-retry.rhai")
    );
}

#[test]
fn a_policy_without_its_entry_point_is_a_warning_not_an_error() {
    let plan = haifu_spec::load_and_validate(Path::new("tests/fixtures/good.yaml"))
        .unwrap_or_else(|errors| panic!("{errors:#?}"));
    let warnings: Vec<String> = plan.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec![
            "tests/fixtures/good.yaml:12:5: warning: no disconnect policy: the disconnect step will keep every client connected (the safe default)",
            "tests/fixtures/good.yaml:6:20: warning: tests/fixtures/policies/no-entry.rhai: no fn next_round(ctx); the retry policy falls back to its safe default",
            "tests/fixtures/good.yaml:6:55: warning: tests/fixtures/policies/no-entry.rhai: no fn round_budget(ctx); the broadcast policy falls back to its safe default",
        ]
    );
    assert!(
        plan.policies
            .broadcast
            .unwrap()
            .value
            .ends_with("fixtures/policies/no-entry.rhai")
    );
}

#[test]
fn a_broadcast_policy_is_optional_and_warned_about_only_when_unused() {
    let base = "name: w\nartifact: { name: app, version: 1.2.3, path: a.tar }\n\
                targets: { relays: [r1] }\n\
                schedule: { start: 2026-12-01T02:00:00+09:00, deadline: 24h }\n\
                transports: { broadcast: multicast }\n";
    let with_rounds = format!(
        "{base}policies: {{ broadcast: ../policies/broadcast.rhai }}\nsteps: [{{ broadcast: {{ rounds: 1 }} }}]\n"
    );
    let plan = haifu_spec::check_text(Path::new("/w/x.yaml"), &with_rounds).unwrap();
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert_eq!(
        plan.policies.paths().broadcast.unwrap(),
        Path::new("/policies/broadcast.rhai")
    );
    // None named: the default budget, silently.
    let none = format!("{base}steps: [{{ broadcast: {{ rounds: 1 }} }}]\n");
    let plan = haifu_spec::check_text(Path::new("/w/x.yaml"), &none).unwrap();
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert_eq!(plan.policies.broadcast, None);
    let unused = format!("{base}policies: {{ broadcast: b.rhai }}\nsteps: [register]\n");
    let plan = haifu_spec::check_text(Path::new("/w/x.yaml"), &unused).unwrap();
    let warnings: Vec<String> = plan.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["/w/x.yaml:6:24: warning: broadcast policy unused: there is no broadcast step"]
    );
}

#[test]
fn check_text_needs_no_files() {
    let text = std::fs::read_to_string(workflow("nightly-store-rollout.yaml")).unwrap();
    let plan = haifu_spec::check_text(Path::new("/nowhere/w.yaml"), &text).unwrap();
    assert_eq!(
        plan.policies.retry.unwrap().value,
        Path::new("/policies/retry.rhai")
    );
}
