//! Broken scripts fall back to the safe defaults, quickly, with a clear reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use haifu_policy::{
    ClientFacts, DEFAULT_ROUND_GAP, FallbackCause, LimitKind, NextRound, PolicyError, PolicyPaths,
    PolicySet, RoundFacts, ServiceFacts,
};
use jiff::Timestamp;

fn script(src: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".rhai").tempfile().unwrap();
    f.write_all(src.as_bytes()).unwrap();
    f
}

fn retry_set(src: &str) -> (PolicySet, tempfile::NamedTempFile) {
    let f = script(src);
    let set = PolicySet::load(&PolicyPaths {
        retry: Some(f.path().to_path_buf()),
        restrict: Some(f.path().to_path_buf()),
        disconnect: Some(f.path().to_path_buf()),
        ..PolicyPaths::default()
    })
    .unwrap();
    (set, f)
}

fn facts(delivered: u64) -> RoundFacts {
    RoundFacts {
        round: 1,
        rounds: 3,
        delivered,
        total: 10,
        now: "2026-12-01T02:30:00+09:00[Asia/Tokyo]".parse().unwrap(),
        start: "2026-12-01T02:00:00+09:00".parse().unwrap(),
        deadline: "2026-12-04T02:00:00+09:00".parse().unwrap(),
        window: Some((120, 300)),
    }
}

fn client(version: &str) -> ClientFacts {
    ClientFacts {
        id: "c1".into(),
        version: Some(version.parse().unwrap()),
        newest: "2.4.0".parse().unwrap(),
        behind: 1,
        last_contact: None,
        state: "undelivered".into(),
    }
}

fn service() -> ServiceFacts {
    ServiceFacts {
        name: "s".into(),
        since: "2.4.0".parse().unwrap(),
    }
}

#[test]
fn no_scripts_gives_every_safe_default() {
    let set = PolicySet::defaults();
    let out = set.next_round(&facts(5));
    assert_eq!(out.value, NextRound::Wait(DEFAULT_ROUND_GAP));
    assert_eq!(out.fallback.unwrap().cause, FallbackCause::NotConfigured);
    assert!(matches!(
        set.next_round(&facts(10)).value,
        NextRound::Stop { .. }
    ));
    let now = Timestamp::now();
    assert!(!set.allow(&client("2.3.0"), &service(), now).value.allow);
    assert!(set.allow(&client("2.4.0"), &service(), now).value.allow);
    let cut = set.disconnect(&client("1.0.0"), now);
    assert!(!cut.value.cut);
    assert_eq!(
        cut.fallback.unwrap().to_string(),
        "disconnect policy: disconnect: no disconnect script configured; safe default used"
    );
}

#[test]
fn missing_function_falls_back() {
    let (set, f) = retry_set("fn unrelated() { 1 }");
    assert_eq!(set.warnings().len(), 3);
    let out = set.next_round(&facts(5));
    assert_eq!(out.value, NextRound::Wait(DEFAULT_ROUND_GAP));
    let fb = out.fallback.unwrap();
    assert_eq!(fb.cause, FallbackCause::MissingFunction);
    assert_eq!(
        fb.to_string(),
        format!(
            "{}: next_round: no fn next_round(ctx); safe default used",
            f.path().display()
        )
    );
}

#[test]
fn runtime_error_falls_back_with_script_line_and_column() {
    let (set, f) = retry_set("fn next_round(ctx) {\n    let x = ctx.round;\n    x / 0\n}");
    let out = set.next_round(&facts(5));
    assert_eq!(out.value, NextRound::Wait(DEFAULT_ROUND_GAP));
    let fb = out.fallback.unwrap();
    let FallbackCause::Runtime { position, .. } = &fb.cause else {
        panic!("{fb:?}")
    };
    assert_eq!(*position, Some((3, 7)));
    assert!(
        fb.to_string().starts_with(&format!(
            "{}:3:7: next_round: script error: division by zero",
            f.path().display()
        )),
        "{fb}"
    );
}

#[test]
fn wrong_return_type_falls_back() {
    let (set, _f) = retry_set(
        "fn next_round(ctx) { \"soon\" }\nfn allow(c, s) { 1 }\nfn disconnect(c) { if c.behind > 100 { true } }",
    );
    let fb = set.next_round(&facts(5)).fallback.unwrap();
    assert!(matches!(fb.cause, FallbackCause::WrongType { .. }), "{fb}");
    assert!(fb.to_string().contains("returned string, expected"), "{fb}");
    let now = Timestamp::now();
    let out = set.allow(&client("2.4.0"), &service(), now);
    assert!(out.value.allow, "safe default allows a new-enough client");
    assert!(matches!(
        out.fallback.unwrap().cause,
        FallbackCause::WrongType { .. }
    ));
    // An `if` without `else` returns () -- never read as "cut".
    let out = set.disconnect(&client("2.4.0"), now);
    assert!(!out.value.cut);
    assert!(out.fallback.unwrap().to_string().contains("returned ()"));
}

#[test]
fn negative_wait_is_not_stop() {
    let (set, _f) = retry_set("fn next_round(ctx) { -1 }");
    let out = set.next_round(&facts(5));
    assert_eq!(out.value, NextRound::Wait(DEFAULT_ROUND_GAP));
    assert!(matches!(
        out.fallback.unwrap().cause,
        FallbackCause::BadValue(_)
    ));
}

fn assert_limit(src: &str, want: fn(&LimitKind) -> bool) {
    let (set, _f) = retry_set(src);
    let started = Instant::now();
    let out = set.next_round(&facts(5));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert_eq!(out.value, NextRound::Wait(DEFAULT_ROUND_GAP));
    let fb = out.fallback.unwrap();
    match &fb.cause {
        FallbackCause::Limit(kind) if want(kind) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn infinite_loop_ends_fast_on_the_operations_limit() {
    assert_limit("fn next_round(ctx) { loop {} }", |k| {
        *k == LimitKind::Operations
    });
    let (set, _f) = retry_set("fn next_round(ctx) { loop {} }");
    assert!(
        set.next_round(&facts(5))
            .fallback
            .unwrap()
            .to_string()
            .ends_with("next_round: operations limit hit; safe default used")
    );
}

#[test]
fn unbounded_recursion_ends_on_the_call_depth_limit() {
    assert_limit(
        "fn down(n) { down(n + 1) }\nfn next_round(ctx) { down(0) }",
        |k| *k == LimitKind::CallDepth,
    );
}

#[test]
fn string_blow_up_ends_on_the_size_limit() {
    assert_limit(
        "fn next_round(ctx) { let s = \"xx\"; loop { s += s; } }",
        |k| matches!(k, LimitKind::DataSize(_)),
    );
}

#[test]
fn array_blow_up_ends_on_the_size_limit() {
    assert_limit(
        "fn next_round(ctx) { let a = []; loop { a.push(1); } }",
        |k| matches!(k, LimitKind::DataSize(_)),
    );
}

#[test]
fn syntax_error_at_load_names_the_script_position() {
    let f = script("fn next_round(ctx) {\n    ctx.round +\n}\n");
    let errs = PolicySet::load(&PolicyPaths {
        retry: Some(f.path().to_path_buf()),
        restrict: Some(f.path().to_path_buf()),
        ..PolicyPaths::default()
    })
    .unwrap_err();
    assert_eq!(errs.len(), 1, "a file named twice is reported once");
    let PolicyError::Syntax { line, column, .. } = &errs[0] else {
        panic!("{:?}", errs[0])
    };
    assert_eq!((*line, *column), (3, 1));
    assert!(
        errs[0]
            .to_string()
            .starts_with(&format!("{}:3:1: ", f.path().display()))
    );
}

#[test]
fn unreadable_script_is_a_load_error() {
    let errs = PolicySet::load(&PolicyPaths {
        disconnect: Some("/nonexistent/cut.rhai".into()),
        ..PolicyPaths::default()
    })
    .unwrap_err();
    assert!(
        errs[0]
            .to_string()
            .starts_with("/nonexistent/cut.rhai: cannot read policy: "),
        "{}",
        errs[0]
    );
}

#[test]
fn scripts_cannot_mutate_the_facts_they_are_given() {
    // The facts are getters without setters: writing one is a script error,
    // so the safe default answers, and the engine's facts are untouched.
    let (set, _f) = retry_set("fn next_round(ctx) { ctx.round = 99; ctx.round }");
    let f = facts(5);
    let out = set.next_round(&f);
    assert!(out.fallback.is_some(), "{out:?}");
    assert_ne!(out.value, NextRound::Wait(Duration::from_secs(99)));
    assert_eq!(f.round, 1);
}

#[test]
fn a_policy_set_is_shared_across_threads() {
    let (set, _f) = retry_set("fn next_round(ctx) { ctx.round * 60 }");
    let set = std::sync::Arc::new(set);
    let handles: Vec<_> = (1..=4)
        .map(|r| {
            let set = std::sync::Arc::clone(&set);
            std::thread::spawn(move || {
                let mut f = facts(5);
                f.round = r;
                set.next_round(&f).value
            })
        })
        .collect();
    for (r, h) in (1..=4u64).zip(handles) {
        assert_eq!(
            h.join().unwrap(),
            NextRound::Wait(Duration::from_secs(r * 60))
        );
    }
}
