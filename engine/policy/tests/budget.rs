//! `round_budget(ctx)` through the typed façade: the silent default when no
//! broadcast policy is named, and every way a script's answer falls back to
//! it, each named with the script (and line and column where Rhai gives
//! them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Duration;

use haifu_policy::{Budget, BudgetFacts, FallbackCause, PolicyPaths, PolicySet, Role};

const MIB_64: u64 = 64 << 20;

fn facts() -> BudgetFacts {
    BudgetFacts {
        round: 2,
        rounds: 3,
        size: MIB_64,
        rate: 100_000_000,
        remaining: 4,
        last_loss: Some(0.05),
        last_decoded: Some(6),
        now: "2026-12-01T02:30:00+09:00[Asia/Tokyo]".parse().unwrap(),
        start: "2026-12-01T02:00:00+09:00".parse().unwrap(),
        deadline: "2026-12-04T02:00:00+09:00".parse().unwrap(),
        window: Some((120, 300)),
    }
}

/// A broadcast policy from `src`, and the file (kept alive for its path).
fn broadcast(src: &str) -> (PolicySet, tempfile::NamedTempFile) {
    let mut f = tempfile::Builder::new().suffix(".rhai").tempfile().unwrap();
    f.write_all(src.as_bytes()).unwrap();
    let set = PolicySet::load(&PolicyPaths {
        broadcast: Some(f.path().to_path_buf()),
        ..PolicyPaths::default()
    })
    .unwrap();
    (set, f)
}

/// The fallback's one line, and checks the default was used.
fn fallback(src: &str) -> (String, String) {
    let (set, f) = broadcast(src);
    let out = set.round_budget(&facts());
    assert_eq!(
        out.value,
        Budget::safe_default(MIB_64, 100_000_000),
        "{src}"
    );
    let fb = out
        .fallback
        .unwrap_or_else(|| panic!("no fallback for {src}"));
    assert_eq!(fb.role, Role::Broadcast);
    (fb.to_string(), f.path().display().to_string())
}

#[test]
fn no_broadcast_policy_gives_the_default_as_not_configured() {
    let out = PolicySet::defaults().round_budget(&facts());
    assert_eq!(out.value, Budget::safe_default(MIB_64, 100_000_000));
    // NotConfigured is the one cause the façade does not log: a workflow
    // without a broadcast policy is normal, not a problem.
    assert_eq!(out.fallback.unwrap().cause, FallbackCause::NotConfigured);
}

#[test]
fn a_script_decides_every_key_from_the_facts() {
    let (set, _f) = broadcast(
        "fn round_budget(ctx) {\n\
         \x20   #{ proactive: ctx.last_loss, budget: ctx.rounds + 1, time: ctx.one_pass * 10, silence: 0.5 }\n\
         }",
    );
    let out = set.round_budget(&facts());
    assert_eq!(out.fallback, None);
    assert_eq!(
        out.value,
        Budget {
            proactive: 0.05,
            bytes: 4.0,
            time: Duration::from_secs_f64(53.6870912),
            silence: Duration::from_millis(500),
        }
    );
}

#[test]
fn a_script_error_names_the_script_line_and_column() {
    let (line, path) = fallback("fn round_budget(ctx) {\n    let x = ctx.lost;\n    #{}\n}");
    assert!(
        line.starts_with(&format!("{path}:2:17: round_budget: script error: ")),
        "{line}"
    );
    assert!(line.ends_with("; safe default used"), "{line}");
}

#[test]
fn an_out_of_range_value_names_the_key_and_the_range() {
    let (line, path) = fallback("fn round_budget(ctx) { #{ budget: 20 } }");
    assert_eq!(
        line,
        format!(
            "{path}: round_budget: budget 20 is out of range (1 to 16 × the artifact); safe default used"
        )
    );
}

#[test]
fn a_time_too_short_for_one_pass_falls_back() {
    let (line, _) = fallback("fn round_budget(ctx) { #{ time: 2 } }");
    assert!(
        line.contains("time 2 s is shorter than one first pass"),
        "{line}"
    );
}

#[test]
fn an_unknown_key_or_a_string_value_falls_back() {
    let (line, _) = fallback("fn round_budget(ctx) { #{ proactiv: 0.1 } }");
    assert!(line.contains("unknown key \"proactiv\""), "{line}");
    let (line, _) = fallback("fn round_budget(ctx) { #{ time: \"2m\" } }");
    assert!(line.contains("time is string; expected a number"), "{line}");
}

#[test]
fn unit_from_an_if_without_else_is_the_wrong_type() {
    let (line, _) = fallback("fn round_budget(ctx) { if ctx.round > 5 { #{} } }");
    assert!(
        line.contains("round_budget: returned (), expected #{ proactive"),
        "{line}"
    );
}

#[test]
fn a_limit_falls_back_naming_the_limit() {
    let (line, path) = fallback("fn round_budget(ctx) { loop {} }");
    // Whichever limit stops the loop first: the operations limit on an idle
    // machine, the 50 ms wall clock on a loaded one (seen in a debug build
    // beside five compilers).
    let named = ["operations", "wall-clock"]
        .map(|limit| format!("{path}: round_budget: {limit} limit hit; safe default used"));
    assert!(named.contains(&line), "{line}");
}

#[test]
fn writing_a_fact_is_an_error_and_changes_nothing() {
    let (set, _f) = broadcast("fn round_budget(ctx) { ctx.size = 1; #{} }");
    let f = facts();
    assert!(set.round_budget(&f).fallback.is_some());
    assert_eq!(f.size, MIB_64);
}

#[test]
fn a_script_without_the_entry_point_warns_at_load_and_falls_back() {
    let (set, _f) = broadcast("fn next_round(ctx) { 60 }");
    assert_eq!(set.warnings().len(), 1);
    assert!(
        set.warnings()[0].to_string().ends_with(
            "no fn round_budget(ctx); the broadcast policy falls back to its safe default"
        ),
        "{}",
        set.warnings()[0]
    );
    let out = set.round_budget(&facts());
    assert_eq!(out.fallback.unwrap().cause, FallbackCause::MissingFunction);
}

#[test]
fn one_script_may_answer_next_round_and_round_budget() {
    let mut f = tempfile::Builder::new().suffix(".rhai").tempfile().unwrap();
    f.write_all(b"fn next_round(ctx) { 60 }\nfn round_budget(ctx) { #{ budget: 4 } }\n")
        .unwrap();
    let set = PolicySet::load(&PolicyPaths {
        retry: Some(f.path().to_path_buf()),
        broadcast: Some(f.path().to_path_buf()),
        ..PolicyPaths::default()
    })
    .unwrap();
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
    assert_eq!(set.round_budget(&facts()).value.bytes, 4.0);
}
