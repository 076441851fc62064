//! Frames drawn from a real ledger's rows with a fixed `now`.

#![allow(clippy::unwrap_used)]

use haifu_ledger::{ClientUpdate, Ledger, RunOrder, Transition};
use serde_json::json;

use super::*;

const NOW: &str = "2026-12-05T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// A ledger holding a live run of three clients (two behind relay-a, one
/// behind relay-b), c1 delivered in round 1, at `current` (the current
/// step's snapshot) with `next_wake`.
fn run_at(current: serde_json::Value, next_wake: Option<&str>) -> (tempfile::TempDir, Ledger, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let id = haifu_ledger::testing::TestRun::new()
        .clients([("c1", "relay-a"), ("c2", "relay-a"), ("c3", "relay-b")])
        .create(&mut l)
        .unwrap();
    let state = json!({ "step": 1, "finished": [], "current": current }).to_string();
    l.transition(
        id,
        &Transition {
            state,
            status: RunStatus::Running,
            next_wake: next_wake.map(str::to_owned),
            updates: vec![ClientUpdate::Completed {
                client: "c1".into(),
                round: Some(1),
                at: "2026-12-05T11:59:30Z".into(),
            }],
            events: Vec::new(),
        },
    )
    .unwrap();
    (dir, l, id)
}

fn facts(l: &Ledger, id: i64) -> RunFacts {
    let row = l.run(id).unwrap().unwrap();
    let state = RunState::of_run(&row).unwrap();
    let failure = l.failure(id).unwrap();
    RunFacts {
        row,
        state,
        failure,
    }
}

#[test]
fn a_round_on_air_shows_since_when_and_who_has_the_version() {
    let (_d, l, id) = run_at(
        json!({ "step": "broadcast", "phase": "round_open", "round": 2,
                "started": ["2026-12-05T11:58:00Z", "2026-12-05T11:59:15Z"],
                "stopped_early": null }),
        None,
    );
    let text = run_block(&facts(&l, id), now());
    assert_eq!(
        text,
        format!(
            "run {id}  w  app 1.0.0  running  step 2 (broadcast)\n  \
             round 2 on air for 45 s (since 2026-12-05T11:59:15Z)\n  \
             delivered 1 of 3 · pending 2 · undelivered 0 · cut off 0\n"
        )
    );
}

#[test]
fn countdowns_to_the_next_round_the_window_s_end_and_the_deadline() {
    let block = |current, wake| {
        let (_d, l, id) = run_at(current, wake);
        run_block(&facts(&l, id), now())
    };
    let next = block(
        json!({ "step": "broadcast", "phase": "waiting", "at": "2026-12-05T12:01:05Z",
                "started": ["2026-12-05T11:58:00Z"], "stopped_early": null }),
        Some("2026-12-05T12:01:05Z"),
    );
    assert!(
        next.contains("\n  round 2 in 1 min 05 s (at 2026-12-05T12:01:05Z)\n"),
        "{next}"
    );
    let window = block(
        json!({ "step": "delta", "until": "2026-12-05T14:03:00Z" }),
        Some("2026-12-05T14:03:00Z"),
    );
    assert!(
        window.contains("\n  delta window ends in 2 h 03 min (at "),
        "{window}"
    );
    let deadline = block(
        json!({ "step": "disconnect", "done": false }),
        Some("2026-12-05T12:00:30Z"),
    );
    assert!(
        deadline.contains("\n  deadline (cut-off) in 30 s (at "),
        "{deadline}"
    );
    let late = block(
        json!({ "step": "disconnect", "done": false }),
        Some("2026-12-05T11:50:00Z"),
    );
    assert!(
        late.contains("deadline (cut-off) overdue by 10 min 00 s: is the driver"),
        "{late}"
    );
}

#[test]
fn a_paused_run_says_paused_by_whom_and_why_and_an_aborted_one_how_it_ended() {
    let (_d, mut l, id) = run_at(
        json!({ "step": "broadcast", "phase": "waiting", "at": "2026-12-05T11:59:00Z",
                "started": ["2026-12-05T11:58:00Z"], "stopped_early": null }),
        Some("2026-12-05T11:59:00Z"),
    );
    l.order_run(id, RunOrder::Pause, "api:ops", Some("shop hours"))
        .unwrap();
    let text = run_block(&facts(&l, id), now());
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("  PAUSED  step 2 (broadcast)"), "{text}");
    assert_eq!(
        lines[1], "  round 2 was due 1 min 00 s ago; waits for the resume",
        "{text}"
    );
    assert!(
        lines[3].starts_with("  PAUSED by api:ops at ")
            && lines[3].ends_with(&format!(": shop hours (haifu run resume {id})")),
        "{text}"
    );
    l.order_run(id, RunOrder::Abort, "alice", Some("bad build"))
        .unwrap();
    let text = frame(&[facts(&l, id)], now());
    assert_eq!(
        text,
        format!(
            "run {id}  w  app 1.0.0  failed  step 2 (broadcast)\n  \
             failed: aborted by alice: bad build\n  \
             delivered 1 of 3 · pending 2 · undelivered 0 · cut off 0\n"
        )
    );
    assert_eq!(frame(&[], now()), "no run is running\n");
}

#[test]
fn the_relay_table_counts_each_round_and_the_last_minute() {
    let (_d, l, id) = run_at(
        json!({ "step": "broadcast", "phase": "round_open", "round": 1,
                "started": ["2026-12-05T11:58:00Z"], "stopped_early": null }),
        None,
    );
    let run = facts(&l, id);
    let clients = l.run_clients(id).unwrap();
    let text = relay_table(&run.state, &clients, now());
    let lines: Vec<&str> = text.lines().collect();
    let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        cells(lines[1]),
        ["relay-a", "1", "1", "0", "0", "0", "0", "2"]
    );
    assert_eq!(
        cells(lines[2]),
        ["relay-b", "0", "1", "0", "0", "0", "0", "1"]
    );
    assert_eq!(cells(lines[3]), ["all", "1", "2", "0", "0", "0", "0", "3"]);
    assert_eq!(lines[4], "completions in the last minute: 1");
    // A minute later, none.
    let later = now() + jiff::SignedDuration::from_secs(60);
    assert!(relay_table(&run.state, &clients, later).ends_with("last minute: 0\n"));
}
