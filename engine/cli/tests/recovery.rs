//! Issue 17 with real processes on loopback: versions only move forward,
//! a run's report is final when it says so, and a restarted peer is back
//! within a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::fleet::{Fleet, Layout};
use serde_json::Value;

/// `v` with a few bytes changed at `at`, so deltas between versions are
/// small.
fn edited(v: &[u8], at: usize, xor: u8) -> Vec<u8> {
    let mut out = v.to_vec();
    for b in &mut out[at..at + 256] {
        *b ^= xor;
    }
    out
}

/// The downgrade of issue 17: `s1` misses run 2 (1.1.0 → 1.2.0); run 2
/// ends with its delta window closed, so nothing is served for it any more
/// (`s1` boots and stays on 1.1.0). Run 3 then takes everyone to 1.3.0;
/// `s1` restarted boots and stays on 1.3.0, the master sends no delta or
/// full copy at any point, and run 2's audit never changes.
#[test]
fn a_client_that_missed_a_run_and_then_moved_on_is_never_taken_back() {
    let mut f = Fleet::with(
        0,
        &Layout {
            relays: &[("relay-a", &["ok1", "s1"])],
            boot_check: true,
            ..Layout::default()
        },
    );
    let v1 = std::fs::read(f.artifact("app-1.bin", 1 << 20, 5)).unwrap();
    let v2 = edited(&v1, 300_000, 0x5a);
    let v3 = edited(&v2, 600_000, 0xa5);
    std::fs::write(f.path("app-2.bin"), &v2).unwrap();
    std::fs::write(f.path("app-3.bin"), &v3).unwrap();
    // The helper's schedule started long ago: each run's delta window
    // (`until: 2s`) is closed from the start, so a run ends at its audit.
    f.workflow("v1", "app-1.bin", "1.1.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.workflow("v2", "app-2.bin", "1.2.0", &["relay-a"], 1, 1, "200Mbit/s");
    f.workflow("v3", "app-3.bin", "1.3.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.start_fleet(&["ok1", "s1"]);
    let report = f.json(&["run", "v1.yaml", "--live", "--json"]);
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    let current = |f: &Fleet, id: &str| {
        std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap()
    };

    // s1 misses run 2.
    assert!(f.stop("s1"));
    let report = f.json(&["run", "v2.yaml", "--live", "--json"]);
    assert_eq!(report["undelivered"], 1, "{report:#}\n{}", f.dump());
    assert_eq!(f.json(&["status", "2", "--json"])["status"], "done");
    let audit2 = f.json(&["audit", "2", "--json"]);
    // Back after run 2 ended: its window is closed, nothing is served.
    f.start_clients(&["s1"]);
    f.wait_log("master", "peer connected peer=s1", 1, 30);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(current(&f, "s1"), v1, "s1 stays on 1.1.0\n{}", f.dump());

    // Run 3 takes everyone to 1.3.0.
    let report = f.json(&["run", "v3.yaml", "--live", "--json"]);
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    assert_eq!(current(&f, "s1"), v3);
    // s1 restarts: its boot check asks the master, which has nothing for it.
    assert!(f.stop("s1"));
    let asked = f.log("master").matches("peer connected peer=s1").count();
    f.start_clients(&["s1"]);
    f.wait_for(30, "s1's boot check at the master", || {
        f.log("master").matches("peer connected peer=s1").count() > asked
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(current(&f, "s1"), v3, "s1 stays on 1.3.0\n{}", f.dump());
    let master = f.log("master");
    assert!(
        !master.contains("sending a delta") && !master.contains("sending the full artifact"),
        "no delta or full copy is served\n{master}"
    );
    assert!(
        !f.log("s1").contains("installed from the master"),
        "{}",
        f.log("s1")
    );
    // The record is final; only the live view of each straggler (its last
    // contact, what it runs now) moves on.
    let record = |mut a: Value| {
        for r in a["relays"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("stragglers");
        }
        a
    };
    assert_eq!(
        record(f.json(&["audit", "2", "--json"])),
        record(audit2),
        "run 2's audit is final"
    );
    let fleet = f.haifu_ok(&["fleet", "list"]);
    assert!(
        fleet
            .lines()
            .any(|l| l.contains("s1") && l.contains("1.3.0")),
        "{fleet}"
    );
}

/// How many times [`a_killed_master_or_relay_is_back_and_the_run_moving_within_seconds`]
/// kills each daemon: `HAIFU_RECOVERY_KILLS` (default 2; the issue's
/// figures are taken with 10).
fn kills() -> usize {
    std::env::var("HAIFU_RECOVERY_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// The median and the worst of `v`, in milliseconds.
fn median_worst(v: &mut [u128]) -> (u128, u128) {
    v.sort_unstable();
    (v[v.len() / 2], v[v.len() - 1])
}

/// Fast recovery: the master is SIGKILLed while a run's rounds are on air
/// and started again at once; the relay is back and the next round on air
/// within a few seconds of the restart (measured from the relay's log as
/// the test reads it: the time from the restart to the relay's next
/// "round starting"). Then the relay is SIGKILLed and restarted: its client
/// is back behind it within a few seconds. Each time is printed; the
/// assertion is loose (CI machines are slow), the note reports the figures
/// of `HAIFU_RECOVERY_KILLS=10 cargo test -p haifu-cli --test recovery --
/// --nocapture killed`.
#[test]
fn a_killed_master_or_relay_is_back_and_the_run_moving_within_seconds() {
    let mut f = Fleet::with(
        1,
        &Layout {
            relays: &[("relay-a", &["away", "here"])],
            ..Layout::default()
        },
    );
    // Rounds follow each other closely: a round with no listener ends after
    // its pass, and the master waits only 300 ms for completions.
    let cfg = std::fs::read_to_string(f.path("master.yaml")).unwrap();
    std::fs::write(
        f.path("master.yaml"),
        cfg.replace("settle_ms: 1500", "settle_ms: 300"),
    )
    .unwrap();
    f.artifact("app-1.bin", 256 << 10, 3);
    f.workflow(
        "long",
        "app-1.bin",
        "1.0.0",
        &["relay-a"],
        100,
        0,
        "200Mbit/s",
    );
    f.start_master_and_relays();
    f.start_clients(&["away", "here"]);
    // `away` is targeted but gone: the run keeps sending rounds for it.
    assert!(f.stop("away"));
    f.settle();
    f.haifu_ok(&["run", "long.yaml", "--live", "--detach"]);
    let starting = |f: &Fleet| f.log("relay-a").matches("round starting").count();
    f.wait_for(60, "the first rounds", || starting(&f) >= 2);

    let (mut back, mut moving) = (Vec::new(), Vec::new());
    for k in 0..kills() {
        // At a different moment of the round each time.
        let seen = starting(&f);
        f.wait_for(30, "a round on air", || starting(&f) > seen);
        std::thread::sleep(Duration::from_millis(97 * k as u64 % 400));
        let connected = f.log("relay-a").matches("connected to the master").count();
        f.kill("master");
        f.start("master", "master");
        let restarted = std::time::Instant::now();
        let (mut relay_back, mut round_on_air) = (None, None);
        while round_on_air.is_none() || relay_back.is_none() {
            assert!(
                restarted.elapsed() < Duration::from_secs(60),
                "kill {k}: no recovery\n{}",
                f.dump()
            );
            let log = f.log("relay-a");
            // Only a round the relay starts after it is back with the new
            // master counts (not one it had queued from the old one).
            let after_back = log
                .match_indices("connected to the master")
                .nth(connected)
                .map(|(at, _)| &log[at..]);
            if relay_back.is_none() && after_back.is_some() {
                relay_back = Some(restarted.elapsed());
            }
            if round_on_air.is_none() && after_back.is_some_and(|l| l.contains("round starting")) {
                round_on_air = Some(restarted.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (relay_back, round_on_air) = (relay_back.unwrap(), round_on_air.unwrap());
        eprintln!(
            "recovery: master kill {k}: relay back after {} ms, next round on air after {} ms",
            relay_back.as_millis(),
            round_on_air.as_millis()
        );
        back.push(relay_back.as_millis());
        moving.push(round_on_air.as_millis());
    }
    let (median, worst) = median_worst(&mut moving);
    let (back_median, back_worst) = median_worst(&mut back);
    eprintln!(
        "recovery: {} master kills: relay back median {back_median} ms, worst {back_worst} ms; \
         next round on air median {median} ms, worst {worst} ms",
        moving.len()
    );
    // The issue asks for 3 s; loosely, for a loaded CI machine.
    assert!(worst < 6_000, "{moving:?}\n{}", f.dump());

    let mut client_back = Vec::new();
    for k in 0..kills() {
        let registered = f
            .log("relay-a")
            .matches("client registered client=here")
            .count();
        f.kill("relay-a");
        f.start("relay", "relay-a");
        let restarted = std::time::Instant::now();
        f.wait_for(60, "the client behind the restarted relay", || {
            f.log("relay-a")
                .matches("client registered client=here")
                .count()
                > registered
        });
        let t = restarted.elapsed().as_millis();
        eprintln!("recovery: relay kill {k}: its client back after {t} ms");
        client_back.push(t);
    }
    let (median, worst) = median_worst(&mut client_back);
    eprintln!(
        "recovery: {} relay kills: client back median {median} ms, worst {worst} ms",
        client_back.len()
    );
    assert!(worst < 6_000, "{client_back:?}\n{}", f.dump());
}

/// The master says so while a ledger commit waits: the ledger is held
/// locked by another writer for 3 s while a client completes; the master
/// logs the stall as it waits (not only afterwards), and the completion is
/// recorded once the lock is gone.
#[test]
fn a_locked_ledger_is_logged_while_the_commit_waits() {
    let mut f = Fleet::with(
        2,
        &Layout {
            relays: &[("relay-a", &["c1"])],
            ..Layout::default()
        },
    );
    f.artifact("app-1.bin", 256 << 10, 4);
    f.workflow("v1", "app-1.bin", "1.0.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.start_fleet(&["c1"]);
    f.haifu_ok(&["run", "v1.yaml", "--live", "--detach"]);
    // Another writer holds the ledger from the moment the round is on air.
    f.wait_log("relay-a", "round starting", 1, 60);
    let lock = rusqlite::Connection::open(f.home.join("ledger.sqlite")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let locked = std::time::Instant::now();
    f.wait_log("c1", "installed", 1, 60);
    f.wait_log("master", "a ledger commit is stalled", 1, 10);
    assert!(
        locked.elapsed() < Duration::from_secs(3),
        "logged while the lock is held"
    );
    std::thread::sleep(Duration::from_secs(3).saturating_sub(locked.elapsed()));
    lock.execute_batch("COMMIT").unwrap();
    f.wait_for(30, "c1's completion ack", || {
        !f.path("c1-root/completion.json").exists()
    });
    f.wait_for(60, "run 1 to finish", || {
        f.json(&["status", "1", "--json"])["status"] == "done"
    });
    let audit = f.json(&["audit", "1", "--json"]);
    assert_eq!(audit["run"]["counts"]["delivered"], 1, "{audit:#}");
}

/// A run's report is final only when it is: every client decodes round 1
/// and installs (its post-install takes 3 s), the relay is SIGKILLed as the
/// round ends, so the completions find no relay, and it stays down for 5 s,
/// longer than the master waits for a round's completions. The master does
/// not audit while the relay that carried the run is away: once it is back
/// its clients resend, and `haifu run --live` reports every client in round
/// 1, the round on air when they decoded.
#[test]
fn relays_killed_mid_round_with_every_client_installed_are_counted_in_their_round() {
    let clients = ["c1", "c2", "c3"];
    let mut f = Fleet::with(
        3,
        &Layout {
            relays: &[("relay-a", &clients)],
            client: "post_install: {program: sh, args: ['-c', 'sleep 3']}\n",
            ..Layout::default()
        },
    );
    f.artifact("app-1.bin", 1 << 20, 8);
    f.workflow("v1", "app-1.bin", "1.0.0", &["relay-a"], 1, 1, "200Mbit/s");
    f.start_fleet(&clients);
    let run = f
        .haifu()
        .args(["run", "v1.yaml", "--live", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    f.wait_log("relay-a", "round sent", 1, 60);
    f.kill("relay-a");
    for id in clients {
        f.wait_log(id, "installed; completion sent", 1, 30);
    }
    // Away for longer than the master waits for a round's completions.
    std::thread::sleep(Duration::from_secs(5));
    f.start("relay", "relay-a");
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", f.dump());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    assert_eq!(report["delivered_by_round"][0], 3, "{report:#}");
    let audit = f.json(&["audit", "1", "--json"]);
    let round_1: Vec<&str> = audit["relays"][0]["delivered_by_round"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(round_1, clients, "{audit:#}");
    let master = f.log("master");
    assert!(
        master.contains("waiting for completions in flight before the audit"),
        "{master}"
    );
}

/// A straggler's full copy is cut after 1 MiB (`testing.cut_catch_up_at`,
/// as a killed master or a lost link would cut it): the bytes it has are
/// kept, the next check a second later asks only for the rest
/// (`delta-resume`), and the version installs byte for byte.
#[test]
fn a_cut_catch_up_resumes_where_it_was_cut() {
    let mut f = Fleet::with(
        4,
        &Layout {
            relays: &[("relay-a", &["ok1"])],
            ..Layout::default()
        },
    );
    let s1 = format!("{}testing: {{cut_catch_up_at: 1048576}}\n", f.master_line());
    f.write_client("s1", "relay-a", f.relay_port("relay-a"), &s1);
    let v1 = std::fs::read(f.artifact("app-1.bin", 4 << 20, 6)).unwrap();
    f.workflow("v1", "app-1.bin", "1.0.0", &["relay-a"], 1, 1, "200Mbit/s");
    f.open_delta_window("v1");
    f.start_master_and_relays();
    f.start_clients(&["ok1", "s1"]);
    // s1 is away for the broadcast.
    assert!(f.stop("s1"));
    f.settle();
    f.haifu_ok(&["run", "v1.yaml", "--live", "--detach"]);
    f.wait_log(
        "master",
        r#"event="stragglers-listed" detail={"count":1}"#,
        1,
        60,
    );
    f.start("client", "s1");
    f.wait_log("s1", "transfer cut after", 1, 60);
    f.wait_log("s1", "installed from the master; completion sent", 1, 60);
    let s1 = f.log("s1");
    let resumed = s1
        .lines()
        .find(|l| l.contains("resuming the cut transfer from the master"))
        .unwrap_or_else(|| panic!("{s1}"));
    let field = |line: &str, name: &str| -> u64 {
        line.split(&format!("{name}="))
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    let at = field(resumed, "resume_at");
    assert!(at >= 1 << 20, "{resumed}");
    let master = f.log("master");
    let sent = master
        .lines()
        .find(|l| l.contains("resuming a cut transfer"))
        .unwrap_or_else(|| panic!("{master}"));
    assert_eq!(field(sent, "resume_at"), at, "{sent}");
    assert_eq!(field(sent, "bytes"), field(resumed, "size") - at, "{sent}");
    assert_eq!(
        std::fs::read(f.path("s1-root/current/artifact")).unwrap(),
        v1,
        "s1 runs 1.0.0 byte for byte"
    );
    assert!(!f.path("s1-root/catch-up.partial").exists());
}
