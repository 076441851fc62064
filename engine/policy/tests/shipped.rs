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
