//! `stages:`: a phased rollout reads into the plan with its gates; a
//! workflow without it has no stages and behaves as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use haifu_spec::{FailureLimit, StageGate};

const HEAD: &str = "name: staged
artifact: { name: app, version: 1.2.3, path: a.tar }
targets: { relays: [r1, r2, r3] }
schedule: { start: 2026-12-01T02:00:00+09:00, deadline: 24h }
transports: { broadcast: multicast }
";
const STEPS: &str = "steps:\n  - register\n  - broadcast: { rounds: 1 }\n  - audit\n";

fn plan(stages: &str) -> haifu_spec::Plan {
    let text = format!("{HEAD}{stages}{STEPS}");
    haifu_spec::check_text(Path::new("w.yaml"), &text).unwrap_or_else(|e| panic!("{e:#?}"))
}

#[test]
fn three_stages_read_with_their_targets_and_gates() {
    let plan = plan(
        "stages:
  - name: canary
    relays: [r1]
    gate: { soak: 30m, min_success: 95%, max_failures: 2% }
  - clients: [pos-0042]
    percent: 50
    seed: 7
    gate: { soak: 1h30m, max_failures: 3 }
  - name: rest
    percent: 100
",
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let [canary, half, rest] = &plan.stages[..] else {
        panic!("{:?}", plan.stages)
    };
    assert_eq!(canary.name, "canary");
    assert_eq!(canary.relays, ["r1"]);
    assert_eq!(canary.percent, None);
    assert_eq!(
        canary.gate,
        StageGate {
            soak: Duration::from_secs(1800),
            min_success: Some(95.0),
            max_failures: Some(FailureLimit::Percent(2.0)),
        }
    );
    assert_eq!(canary.pos.line, 7);
    assert_eq!(
        half.name, "stage-2",
        "an unnamed stage is named by its place"
    );
    assert_eq!(half.clients, ["pos-0042"]);
    assert_eq!((half.percent, half.seed), (Some(50), 7));
    assert_eq!(half.gate.soak, Duration::from_secs(5400));
    assert_eq!(half.gate.max_failures, Some(FailureLimit::Count(3)));
    assert_eq!(half.gate.min_success, None);
    assert_eq!(rest.percent, Some(100));
    assert_eq!(rest.seed, 0);
    assert_eq!(
        rest.gate,
        StageGate::default(),
        "no gate: no soak, no thresholds"
    );
}

#[test]
fn without_stages_a_plan_has_none() {
    assert!(plan("").stages.is_empty());
}

#[test]
fn a_last_stage_short_of_everyone_is_a_warning_naming_it() {
    let plan = plan("stages:\n  - relays: [r1]\n  - name: most\n    percent: 90\n");
    let [w] = &plan.warnings[..] else {
        panic!("{:?}", plan.warnings)
    };
    assert_eq!(w.pos.line, 8);
    assert!(w.message.contains("\"most\" is not percent: 100"), "{w}");
}

#[test]
fn stage_relays_are_not_checked_against_target_groups() {
    // Groups are resolved to relays at run time, not here.
    let text = format!("{HEAD}stages:\n  - relays: [r9]\n  - percent: 100\n{STEPS}")
        .replace("relays: [r1, r2, r3]", "groups: [east]");
    assert!(haifu_spec::check_text(Path::new("w.yaml"), &text).is_ok());
}

#[test]
fn a_stage_names_its_clients_by_labels() {
    let plan = plan(
        "stages:\n  - labels: { ring: canary, site: store-12 }\n  - labels: { ring: early }\n    percent: 100\n",
    );
    let want: haifu_core::Labels = [
        ("ring".to_owned(), "canary".to_owned()),
        ("site".to_owned(), "store-12".to_owned()),
    ]
    .into();
    assert_eq!(plan.stages[0].labels, want);
    assert!(plan.stages[0].relays.is_empty() && plan.stages[0].percent.is_none());
    assert_eq!(plan.stages[1].labels.len(), 1);
    assert_eq!(plan.stages[1].percent, Some(100));
    let text = format!("{HEAD}stages:\n  - labels: {{ ring: a, ring: b }}\n{STEPS}");
    let e = haifu_spec::check_text(Path::new("w.yaml"), &text).unwrap_err();
    assert!(
        format!("{e:?}").contains("written twice") || format!("{e:?}").contains("uplicate"),
        "{e:?}"
    );
}
