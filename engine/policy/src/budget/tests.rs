#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rhai::{Array, Dynamic, Map};

use super::*;

const MIB_64: u64 = 64 * 1024 * 1024;
const MBIT_100: u64 = 100_000_000;

fn facts(size: u64, rate: u64) -> BudgetFacts {
    BudgetFacts {
        round: 1,
        rounds: 3,
        size,
        rate,
        remaining: 8,
        last_loss: None,
        last_decoded: None,
        now: "2026-12-01T02:30:00+09:00[Asia/Tokyo]".parse().unwrap(),
        start: "2026-12-01T02:00:00+09:00".parse().unwrap(),
        deadline: "2026-12-04T02:00:00+09:00".parse().unwrap(),
        window: None,
    }
}

fn map(pairs: &[(&str, Dynamic)]) -> Dynamic {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert((*k).into(), v.clone());
    }
    Dynamic::from_map(m)
}

fn convert(pairs: &[(&str, Dynamic)]) -> Result<Budget, FallbackCause> {
    budget_from(map(pairs), &facts(MIB_64, MBIT_100))
}

/// The message of a refused answer.
fn refused(pairs: &[(&str, Dynamic)]) -> String {
    match convert(pairs) {
        Err(FallbackCause::BadValue(why)) => why,
        other => panic!("expected a bad value, got {other:?}"),
    }
}

/// The master's budget before it became a policy (drive.rs at 7892c51),
/// kept here to pin the safe default to it.
fn before_the_policy(size: u64, rate_bps: u64) -> (u32, u32, u64, u32) {
    const BYTES_PERMILLE: u32 = 3000;
    let bits = size as f64 * f64::from(BYTES_PERMILLE) / 1000.0 * 8.0;
    let secs = bits / rate_bps.max(1) as f64 * 1.5 + 10.0;
    (
        20,
        BYTES_PERMILLE,
        (secs * 1000.0).min(u64::MAX as f64) as u64,
        1000,
    )
}

#[test]
fn the_safe_default_is_the_masters_budget_before_policies() {
    for (size, rate) in [
        (MIB_64, MBIT_100),
        (MIB_64, 1_000_000_000),
        (1, 1),
        (0, 0),
        (3 * 1024 * 1024 * 1024 + 17, 20_000_000),
        (u64::MAX, 1),
    ] {
        let b = Budget::safe_default(size, rate);
        let got = (
            (b.proactive * 1000.0).round() as u32,
            (b.bytes * 1000.0).round() as u32,
            b.time.as_millis() as u64,
            b.silence.as_millis() as u32,
        );
        assert_eq!(
            got,
            before_the_policy(size, rate),
            "{size} B at {rate} bit/s"
        );
    }
    // 64 MiB at 100 Mbit/s: 3 x 536,870,912 bits take 16.1 s; x 1.5 + 10 s.
    assert_eq!(
        Budget::safe_default(MIB_64, MBIT_100).time,
        Duration::from_millis(34_159)
    );
}

#[test]
fn every_key_is_read_as_int_or_float() {
    let b = convert(&[
        ("proactive", Dynamic::from_float(0.05)),
        ("budget", Dynamic::from_int(5)),
        ("time", Dynamic::from_int(120)),
        ("silence", Dynamic::from_float(2.5)),
    ])
    .unwrap();
    assert_eq!(
        b,
        Budget {
            proactive: 0.05,
            bytes: 5.0,
            time: Duration::from_secs(120),
            silence: Duration::from_millis(2500),
        }
    );
    let b = convert(&[("proactive", Dynamic::from_int(0))]).unwrap();
    assert_eq!(b.proactive, 0.0);
}

#[test]
fn a_missing_key_takes_its_default_and_time_follows_the_budget() {
    let default = Budget::safe_default(MIB_64, MBIT_100);
    assert_eq!(convert(&[]).unwrap(), default);
    let b = convert(&[("budget", Dynamic::from_float(5.0))]).unwrap();
    assert_eq!(b.proactive, Budget::DEFAULT_PROACTIVE);
    assert_eq!(b.silence, Budget::DEFAULT_SILENCE);
    // 5 x 536,870,912 bits at 100 Mbit/s = 26.84 s; x 1.5 + 10 s.
    assert_eq!(b.time, Duration::from_millis(50_265));
    assert_eq!(b.time, Budget::default_time(MIB_64, MBIT_100, 5.0));
}

#[test]
fn the_bounds_are_inclusive() {
    let b = convert(&[
        ("proactive", Dynamic::from_float(1.0)),
        ("budget", Dynamic::from_int(16)),
        ("time", Dynamic::from_int(86_400)),
        ("silence", Dynamic::from_float(0.1)),
    ])
    .unwrap();
    assert_eq!((b.proactive, b.bytes), (1.0, 16.0));
    assert_eq!(b.time, Duration::from_secs(86_400));
    assert_eq!(b.silence, Duration::from_millis(100));
    let b = convert(&[
        ("proactive", Dynamic::from_int(0)),
        ("budget", Dynamic::from_int(1)),
        ("silence", Dynamic::from_int(60)),
    ])
    .unwrap();
    assert_eq!(b.bytes, 1.0);
    assert_eq!(b.silence, Duration::from_secs(60));
    // 1 s is allowed when one pass takes less.
    let tiny = budget_from(
        map(&[("time", Dynamic::from_int(1))]),
        &facts(1000, MBIT_100),
    );
    assert_eq!(tiny.unwrap().time, Duration::from_secs(1));
}

#[test]
fn out_of_range_values_are_refused_naming_the_key_and_range() {
    for (key, value, want) in [
        (
            "proactive",
            -0.01,
            "proactive -0.01 is out of range (0 to 1)",
        ),
        ("proactive", 1.5, "proactive 1.5 is out of range (0 to 1)"),
        (
            "budget",
            0.5,
            "budget 0.5 is out of range (1 to 16 × the artifact)",
        ),
        (
            "budget",
            17.0,
            "budget 17 is out of range (1 to 16 × the artifact)",
        ),
        ("time", 0.5, "time 0.5 is out of range (1 to 86400 s)"),
        (
            "time",
            86_401.0,
            "time 86401 is out of range (1 to 86400 s)",
        ),
        (
            "silence",
            0.05,
            "silence 0.05 is out of range (0.1 to 60 s)",
        ),
        ("silence", 61.0, "silence 61 is out of range (0.1 to 60 s)"),
    ] {
        assert_eq!(refused(&[(key, Dynamic::from_float(value))]), want);
    }
    assert_eq!(
        refused(&[("budget", Dynamic::from_int(-3))]),
        "budget -3 is out of range (1 to 16 × the artifact)"
    );
}

#[test]
fn nan_and_infinity_are_refused() {
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for key in ["proactive", "budget", "time", "silence"] {
            let why = refused(&[(key, Dynamic::from_float(v))]);
            assert!(why.starts_with(key), "{why}");
        }
    }
}

#[test]
fn huge_integers_are_refused_not_wrapped() {
    assert!(refused(&[("time", Dynamic::from_int(i64::MAX))]).starts_with("time "));
    assert!(refused(&[("silence", Dynamic::from_int(i64::MIN))]).starts_with("silence "));
}

#[test]
fn a_budget_that_cannot_carry_the_first_pass_is_refused() {
    assert_eq!(
        refused(&[
            ("proactive", Dynamic::from_float(0.25)),
            ("budget", Dynamic::from_float(1.2)),
        ]),
        "budget 1.2 cannot carry the first pass: it needs at least 1 + proactive = 1.25"
    );
    // The default proactive share counts too.
    assert!(refused(&[("budget", Dynamic::from_int(1))]).starts_with("budget 1 cannot"));
    assert!(
        convert(&[
            ("proactive", Dynamic::from_int(0)),
            ("budget", Dynamic::from_int(1)),
        ])
        .is_ok()
    );
}

#[test]
fn a_time_shorter_than_one_first_pass_is_refused() {
    // 64 MiB at 100 Mbit/s: 5.37 s a pass, 5.48 s with 2 % proactive.
    assert_eq!(
        refused(&[("time", Dynamic::from_int(5))]),
        "time 5 s is shorter than one first pass of the artifact at the rate (5.5 s)"
    );
    assert_eq!(
        convert(&[("time", Dynamic::from_int(6))]).unwrap().time,
        Duration::from_secs(6)
    );
    // With more proactive repair the pass is longer: 5.37 x 1.2 = 6.44 s.
    assert!(
        refused(&[
            ("time", Dynamic::from_int(6)),
            ("proactive", Dynamic::from_float(0.2)),
        ])
        .starts_with("time 6 s is shorter")
    );
    // A pass longer than a day leaves no time a script may give.
    let slow = facts(100 * 1024 * 1024 * 1024, 1_000_000);
    let out = budget_from(map(&[("time", Dynamic::from_int(86_400))]), &slow);
    assert!(matches!(out, Err(FallbackCause::BadValue(_))), "{out:?}");
}

#[test]
fn an_unknown_key_is_refused_and_a_long_one_clipped() {
    assert_eq!(
        refused(&[("budgt", Dynamic::from_int(3))]),
        "unknown key \"budgt\"; known: proactive, budget, time, silence"
    );
    let long = "k".repeat(10_000);
    let why = refused(&[(long.as_str(), Dynamic::from_int(3))]);
    assert!(why.len() < 120, "{why}");
    assert!(why.contains(&format!("{}…", "k".repeat(32))), "{why}");
}

#[test]
fn a_value_that_is_not_a_number_is_refused() {
    for (value, kind) in [
        (Dynamic::from("3"), "string"),
        (Dynamic::TRUE, "bool"),
        (Dynamic::UNIT, "()"),
        (Dynamic::from_array(Array::new()), "array"),
        (map(&[]), "map"),
    ] {
        assert_eq!(
            refused(&[("budget", value)]),
            format!("budget is {kind}; expected a number")
        );
    }
}

#[test]
fn an_answer_that_is_not_a_map_is_the_wrong_type() {
    for (d, kind) in [
        (Dynamic::UNIT, "()"),
        (Dynamic::from_int(3), "i64"),
        (Dynamic::from("default"), "string"),
        (Dynamic::from_array(Array::new()), "array"),
    ] {
        match budget_from(d, &facts(MIB_64, MBIT_100)) {
            Err(FallbackCause::WrongType { expected, got }) => {
                assert_eq!(got, kind);
                assert!(expected.starts_with("#{ proactive"), "{expected}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_zero_rate_or_size_never_panics() {
    for (size, rate) in [(0, 0), (u64::MAX, 0), (u64::MAX, u64::MAX)] {
        let f = facts(size, rate);
        let _ = budget_from(map(&[("time", Dynamic::from_int(60))]), &f);
        let b = Budget::safe_default(size, rate);
        assert!(b.time >= Duration::from_secs(10));
    }
}
