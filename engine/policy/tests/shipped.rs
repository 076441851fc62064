//! The shipped policies in `policies/`, through the typed façade.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use haifu_policy::{
    Budget, BudgetFacts, ClientFacts, NextRound, PolicyPaths, PolicySet, Role, RoundFacts,
    ServiceFacts,
};
use jiff::{Timestamp, ZonedDateTime};

fn policy(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../policies")
        .join(name)
}

fn nightly() -> PolicySet {
    let set = PolicySet::load(&PolicyPaths {
        retry: Some(policy("retry.rhai")),
        restrict: Some(policy("restrict.rhai")),
        disconnect: Some(policy("disconnect.rhai")),
        broadcast: Some(policy("broadcast.rhai")),
        advance: None,
    })
    .unwrap();
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
    set
}

fn round(round: u32, delivered: u64, now: &str) -> RoundFacts {
    RoundFacts {
        round,
        rounds: 3,
        delivered,
        total: 100,
        now: now.parse::<ZonedDateTime>().unwrap(),
        start: "2026-12-01T02:00:00+09:00".parse().unwrap(),
        deadline: "2026-12-04T02:00:00+09:00".parse().unwrap(),
        window: Some((120, 300)),
    }
}

fn client(version: Option<&str>, behind: u32, last_contact: Option<&str>) -> ClientFacts {
    ClientFacts {
        id: "pos-0042".into(),
        version: version.map(|v| v.parse().unwrap()),
        newest: "2.4.0".parse().unwrap(),
        behind,
        last_contact: last_contact.map(|t| t.parse().unwrap()),
        state: "undelivered".into(),
    }
}

fn service(since: &str) -> ServiceFacts {
    ServiceFacts {
        name: "loyalty-v2".into(),
        since: since.parse().unwrap(),
    }
}

const TOKYO_0230: &str = "2026-12-01T02:30:00+09:00[Asia/Tokyo]";
const TOKYO_0450: &str = "2026-12-01T04:50:00+09:00[Asia/Tokyo]";

#[test]
fn nightly_retry_backs_off_within_the_window_when_many_are_missing() {
    let out = nightly().next_round(&round(1, 50, TOKYO_0230));
    assert_eq!(out.fallback, None);
    assert_eq!(out.value, NextRound::Wait(Duration::from_secs(20 * 60)));
    let out = nightly().next_round(&round(2, 50, "2026-12-01T02:50:00+09:00[Asia/Tokyo]"));
    assert_eq!(out.value, NextRound::Wait(Duration::from_secs(40 * 60)));
}

#[test]
fn nightly_retry_waits_for_the_next_night_when_few_are_missing() {
    let out = nightly().next_round(&round(1, 95, TOKYO_0230));
    // 02:30 -> next night's 02:00 is 23.5 h away.
    assert_eq!(
        out.value,
        NextRound::Wait(Duration::from_secs(23 * 3600 + 1800))
    );
}

#[test]
fn nightly_retry_waits_for_the_next_night_when_the_window_closes() {
    let out = nightly().next_round(&round(1, 10, TOKYO_0450));
    assert_eq!(
        out.value,
        NextRound::Wait(Duration::from_secs(21 * 3600 + 10 * 60))
    );
}

#[test]
fn nightly_retry_stops_when_everyone_has_it() {
    let out = nightly().next_round(&round(1, 100, TOKYO_0230));
    assert_eq!(
        out.value,
        NextRound::Stop {
            reason: "every terminal has the update".into()
        }
    );
    assert_eq!(out.fallback, None);
}

#[test]
fn nightly_retry_stops_after_the_planned_rounds_and_before_the_deadline() {
    let out = nightly().next_round(&round(3, 10, TOKYO_0230));
    assert!(matches!(out.value, NextRound::Stop { .. }));
    // On the last night, the next window is past the 72 h deadline.
    let mut facts = round(2, 95, "2026-12-03T04:50:00+09:00[Asia/Tokyo]");
    facts.deadline = "2026-12-04T01:00:00+09:00".parse().unwrap();
    let out = nightly().next_round(&facts);
    assert_eq!(
        out.value,
        NextRound::Stop {
            reason: "the next night window opens after the deadline".into()
        }
    );
}

#[test]
fn urgent_retry_uses_short_growing_gaps() {
    let set = PolicySet::load(&PolicyPaths {
        retry: Some(policy("urgent-retry.rhai")),
        ..PolicyPaths::default()
    })
    .unwrap();
    let gaps: Vec<NextRound> = (1..=5)
        .map(|r| {
            let mut f = round(r, 10, TOKYO_0230);
            f.rounds = 8;
            set.next_round(&f).value
        })
        .collect();
    let mins = |m: u64| NextRound::Wait(Duration::from_secs(m * 60));
    assert_eq!(gaps, vec![mins(5), mins(10), mins(20), mins(30), mins(30)]);
}

#[test]
fn restrict_allows_new_enough_clients_and_explains_denials() {
    let set = nightly();
    let now = Timestamp::now();
    let ok = set.allow(&client(Some("2.4.0"), 0, None), &service("2.4.0"), now);
    assert!(ok.value.allow, "{}", ok.value.reason);
    assert_eq!(ok.fallback, None);
    let old = set.allow(&client(Some("2.3.0"), 1, None), &service("2.4.0"), now);
    assert!(!old.value.allow);
    assert_eq!(
        old.value.reason,
        "client pos-0042 runs 2.3.0, older than 2.4.0 where service loyalty-v2 appeared; update it to 2.4.0"
    );
    let unknown = set.allow(&client(None, 1, None), &service("2.0.0"), now);
    assert!(!unknown.value.allow);
    assert!(unknown.value.reason.contains("has not reported"));
}

#[test]
fn restrict_compares_versions_numerically() {
    let out = nightly().allow(
        &client(Some("2.10.0"), 0, None),
        &service("2.9.0"),
        Timestamp::now(),
    );
    assert!(out.value.allow, "{}", out.value.reason);
}

#[test]
fn disconnect_cuts_off_long_silent_or_far_behind_clients_only() {
    let set = nightly();
    let now: Timestamp = "2026-12-04T00:00:00Z".parse().unwrap();
    let silent = set.disconnect(&client(Some("2.3.0"), 1, Some("2026-10-01T00:00:00Z")), now);
    assert!(silent.value.cut, "{}", silent.value.reason);
    assert!(silent.value.reason.contains("silent for 64 days"));
    let behind = set.disconnect(&client(Some("2.0.0"), 4, Some("2026-12-03T00:00:00Z")), now);
    assert!(behind.value.cut, "{}", behind.value.reason);
    let recent = set.disconnect(&client(Some("2.3.0"), 1, Some("2026-12-03T00:00:00Z")), now);
    assert!(!recent.value.cut);
    let never_seen = set.disconnect(&client(None, 1, None), now);
    assert!(!never_seen.value.cut);
    assert_eq!(never_seen.fallback, None);
}

#[test]
fn one_script_may_serve_several_roles_and_missing_ones_warn() {
    let set = PolicySet::load(&PolicyPaths {
        retry: Some(policy("restrict.rhai")),
        restrict: Some(policy("restrict.rhai")),
        ..PolicyPaths::default()
    })
    .unwrap();
    assert_eq!(set.warnings().len(), 1);
    assert_eq!(set.warnings()[0].role, Role::Retry);
    assert!(
        set.warnings()[0].to_string().ends_with(
            "restrict.rhai: no fn next_round(ctx); the retry policy falls back to its safe default"
        ),
        "{}",
        set.warnings()[0]
    );
}

#[test]
fn every_shipped_script_compiles_with_its_entry_point() {
    for (role, file) in [
        (Role::Retry, "retry.rhai"),
        (Role::Retry, "urgent-retry.rhai"),
        (Role::Restrict, "restrict.rhai"),
        (Role::Disconnect, "disconnect.rhai"),
        (Role::Broadcast, "broadcast.rhai"),
        (Role::Advance, "advance.rhai"),
        (Role::Advance, "roll-back-on-failures.rhai"),
    ] {
        let warning = haifu_policy::check_script(role, &policy(file)).unwrap();
        assert_eq!(warning, None, "{file}");
    }
}

#[test]
fn nightly_retry_follows_the_workflow_window() {
    // 01:00-04:00 instead of the script's 02:00-05:00 default.
    let mut facts = round(1, 10, TOKYO_0230);
    facts.window = Some((60, 240));
    assert_eq!(
        nightly().next_round(&facts).value,
        NextRound::Wait(Duration::from_secs(20 * 60))
    );
    let mut facts = round(1, 10, "2026-12-01T03:50:00+09:00[Asia/Tokyo]");
    facts.window = Some((60, 240));
    assert_eq!(
        nightly().next_round(&facts).value,
        NextRound::Wait(Duration::from_secs(21 * 3600 + 10 * 60))
    );
}

fn budget_facts(round: u32, last_loss: Option<f64>) -> BudgetFacts {
    BudgetFacts {
        round,
        rounds: 3,
        size: 64 << 20,
        rate: 20_000_000,
        remaining: 40,
        last_loss,
        last_decoded: last_loss.map(|_| 60),
        now: TOKYO_0230.parse().unwrap(),
        start: "2026-12-01T02:00:00+09:00".parse().unwrap(),
        deadline: "2026-12-04T02:00:00+09:00".parse().unwrap(),
        window: Some((120, 300)),
    }
}

#[test]
fn broadcast_sends_no_repair_blind_until_a_loss_is_measured() {
    let set = nightly();
    // The engine's defaults, except the proactive share: with feedback
    // repair a loss nobody measured costs a report turn, not a blind share.
    let blind = Budget {
        proactive: 0.0,
        ..Budget::safe_default(64 << 20, 20_000_000)
    };
    let out = set.round_budget(&budget_facts(1, None));
    assert_eq!(out.fallback, None);
    assert_eq!(out.value, blind);
    // A clean last round changes nothing either.
    assert_eq!(set.round_budget(&budget_facts(2, Some(0.0))).value, blind);
}

#[test]
fn broadcast_sends_the_measured_loss_up_front_and_more_in_the_last_round() {
    let set = nightly();
    let out = set.round_budget(&budget_facts(2, Some(0.2))).value;
    assert_eq!((out.proactive, out.bytes), (0.25, 3.0));
    let last = set.round_budget(&budget_facts(3, Some(0.05))).value;
    assert_eq!((last.proactive, last.bytes), (0.053, 5.0));
    // The time follows the bigger budget: 5 x 64 MiB at 20 Mbit/s x 1.5 + 10 s.
    assert_eq!(last.time, Budget::default_time(64 << 20, 20_000_000, 5.0));
    assert_eq!(last.time, Duration::from_millis(211_326));
}

/// The shipped `advance.rhai` is the gate the engine follows without a
/// script: the same decision and wait on every boundary of a grid of
/// stages (percent and count thresholds, soaking or not, short of success
/// or not).
#[test]
fn the_shipped_advance_policy_decides_as_the_gate_without_a_script() {
    use haifu_policy::{Advance, FailureThreshold, StageFacts, follow_gate};
    let set = PolicySet::load(&PolicyPaths {
        advance: Some(policy("advance.rhai")),
        ..PolicyPaths::default()
    })
    .unwrap();
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
    let mut compared = 0;
    for targeted in [0u64, 1, 50, 1000] {
        for failed in [0u64, 1, 2, 3, 21] {
            for delivered in [0u64, 40, 47, 48, 949, 950] {
                if failed + delivered > targeted {
                    continue;
                }
                for soaked in [0u64, 600, 1800] {
                    for (min_success, max_failures) in [
                        (None, None),
                        (Some(95.0), Some(FailureThreshold::Percent(2.0))),
                        (Some(94.9), Some(FailureThreshold::Count(2))),
                        (None, Some(FailureThreshold::Percent(0.0))),
                    ] {
                        let facts = StageFacts {
                            stage: 1,
                            stages: 3,
                            name: "canary".into(),
                            targeted,
                            delivered,
                            failed,
                            failures: vec![("post-install".into(), failed)],
                            in_stage: Duration::from_secs(soaked + 300),
                            soaked: Duration::from_secs(soaked),
                            soak: Duration::from_secs(1800),
                            min_success,
                            max_failures,
                            previous: Vec::new(),
                        };
                        let script = set.advance(&facts);
                        assert_eq!(script.fallback, None, "{facts:?}");
                        let want = follow_gate(&facts);
                        let wait = |a: &Advance| match a {
                            Advance::Wait { wait, .. } => Some(*wait),
                            _ => None,
                        };
                        assert_eq!(
                            (script.value.word(), wait(&script.value)),
                            (want.word(), wait(&want)),
                            "{facts:?}"
                        );
                        compared += 1;
                    }
                }
            }
        }
    }
    assert!(compared > 300, "{compared}");
}

/// An advance script that fails pauses the rollout; no script at all
/// follows the gate.
#[test]
fn a_failing_advance_policy_pauses_and_none_follows_the_gate() {
    use haifu_policy::{FailureThreshold, FallbackCause, StageFacts};
    let facts = StageFacts {
        stage: 1,
        stages: 2,
        name: "canary".into(),
        targeted: 10,
        delivered: 10,
        failed: 0,
        failures: Vec::new(),
        in_stage: Duration::from_secs(60),
        soaked: Duration::from_secs(60),
        soak: Duration::ZERO,
        min_success: None,
        max_failures: Some(FailureThreshold::Count(0)),
        previous: Vec::new(),
    };
    let none = PolicySet::defaults().advance(&facts);
    assert_eq!(none.value.word(), "proceed");
    assert_eq!(
        none.fallback.map(|f| f.cause),
        Some(FallbackCause::NotConfigured)
    );
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("advance.rhai");
    std::fs::write(&broken, "fn advance(ctx) { ctx.no_such_fact }").unwrap();
    let set = PolicySet::load(&PolicyPaths {
        advance: Some(broken),
        ..PolicyPaths::default()
    })
    .unwrap();
    let out = set.advance(&facts);
    assert_eq!(out.value.word(), "pause");
    assert!(out.fallback.is_some());
}
