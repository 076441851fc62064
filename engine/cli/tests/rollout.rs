//! A 3-stage rollout end to end with real processes on loopback: the
//! canary is relay-a's three clients, then half of the rest, then all.
//! A release whose post-install check fails on two canary clients (above
//! `max_failures: 1`) pauses the run after stage 1 with nothing installed
//! behind relay-b and relay-c, the audit shows the failures with their
//! kind and reason, and once the fix is in, the clients readmitted and the
//! run resumed, it goes through stages 2 and 3 to every client. A healthy
//! release goes through every stage, each started only after the one
//! before soaked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::fleet::{Fleet, Layout};
use jiff::Timestamp;
use serde_json::Value;

const ALL: [&str; 7] = ["a1", "a2", "a3", "b1", "b2", "c1", "c2"];
const RELAYS: [&str; 3] = ["relay-a", "relay-b", "relay-c"];
/// The canary and half soak 2 s each.
const SOAK_SECS: i64 = 2;
const STAGES: &str = r"stages:
  - name: canary
    relays: [relay-a]
    gate: {soak: 2s, max_failures: 1}
  - name: half
    percent: 50
    gate: {soak: 2s}
  - name: rest
    percent: 100
";

/// A fleet of three relays (relay-a: a1–a3; relay-b: b1, b2; relay-c:
/// c1, c2) on 1.1.0, installed by an unstaged run 1, and `staged.yaml`:
/// 1.2.0 in the three stages. `checked` clients run a post-install check
/// that refuses 1.2.0 until their marker file (`ID-fixed`) exists.
/// Returns the fleet and both versions' bytes.
fn fleet_on_v1(slot: u16, checked: &[&str]) -> (Fleet, Vec<u8>, Vec<u8>) {
    let mut f = Fleet::with(
        slot,
        &Layout {
            relays: &[
                ("relay-a", &["a1", "a2", "a3"]),
                ("relay-b", &["b1", "b2"]),
                ("relay-c", &["c1", "c2"]),
            ],
            ..Layout::default()
        },
    );
    std::fs::write(
        f.path("check.sh"),
        "[ \"$HAIFU_VERSION\" = 1.1.0 ] || [ -f \"$1\" ] || \
         { echo 'migration refused: the fix is not in' >&2; exit 3; }\n",
    )
    .unwrap();
    let check = f.path("check.sh");
    for id in checked {
        let config = f.path(&format!("{id}.yaml"));
        let text = std::fs::read_to_string(&config).unwrap();
        let marker = f.path(&format!("{id}-fixed"));
        std::fs::write(
            &config,
            format!(
                "{text}post_install: {{program: sh, args: ['{}', '{}']}}\n",
                check.display(),
                marker.display()
            ),
        )
        .unwrap();
    }
    let v1 = std::fs::read(f.artifact("app-1.bin", 192 << 10, 11)).unwrap();
    let mut v2 = v1.clone();
    for b in &mut v2[2000..5000] {
        *b ^= 0x3c;
    }
    std::fs::write(f.path("app-2.bin"), &v2).unwrap();
    f.workflow("v1", "app-1.bin", "1.1.0", &RELAYS, 2, 1, "200Mbit/s");
    f.workflow("v2", "app-2.bin", "1.2.0", &RELAYS, 3, 1, "200Mbit/s");
    // Starting now: a stage's soak that would pass the deadline pauses
    // the run (the helper's schedule ended long ago).
    let staged = std::fs::read_to_string(f.path("v2.yaml"))
        .unwrap()
        .replace(
            "start: 2026-01-01T00:00:00Z, deadline: 10m",
            &format!("start: {}, deadline: 10m", Timestamp::now()),
        )
        .replace("steps:", &format!("{STAGES}steps:"));
    std::fs::write(f.path("staged.yaml"), staged).unwrap();
    f.start_fleet(&ALL);
    let report = f.json(&["run", "v1.yaml", "--live", "--json"]);
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    (f, v1, v2)
}

/// The bytes of the version `id` runs now, from its install root.
fn current(f: &Fleet, id: &str) -> Vec<u8> {
    std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap()
}

fn ledger(f: &Fleet) -> PathBuf {
    f.home.join("ledger.sqlite")
}

/// `haifu status RUN --json`, or Null while it fails.
fn status(f: &Fleet, run: &str) -> Value {
    let out = f.haifu().args(["status", run, "--json"]).output().unwrap();
    if !out.status.success() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until run `run`'s last stage has been decided `proceed` (the
/// rollout is complete; the run itself goes on to its deadline for
/// stragglers) and returns its audit.
fn wait_rolled_out(f: &Fleet, run: &str, secs: u64) -> Value {
    let audit = || {
        let out = f.haifu().args(["audit", run, "--json"]).output().unwrap();
        if !out.status.success() {
            return Value::Null;
        }
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    f.wait_for(secs, &format!("run {run}'s last stage to proceed"), || {
        let a = audit();
        a["stages"]
            .as_array()
            .and_then(|s| s.last())
            .and_then(|s| s["decisions"].as_array())
            .and_then(|d| d.last())
            .is_some_and(|d| d["decide"] == "proceed")
    });
    audit()
}

/// The run's events of `kinds`, oldest first: (ledger time, kind, detail).
fn events(f: &Fleet, run: &str, kinds: &[&str]) -> Vec<(Timestamp, String, Value)> {
    let db = rusqlite::Connection::open_with_flags(
        ledger(f),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db
        .prepare("SELECT at, kind, detail FROM events WHERE subject = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([format!("run:{run}")], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .filter(|(_, kind, _)| kinds.contains(&kind.as_str()))
    .map(|(at, kind, detail)| {
        (
            at.parse().unwrap(),
            kind,
            serde_json::from_str(&detail).unwrap(),
        )
    })
    .collect()
}

/// The audit's stages: (name, started, targeted, delivered, failed).
fn stage_rows(audit: &Value) -> Vec<(String, bool, u64, u64, u64)> {
    audit["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                !s["started"].is_null(),
                s["targeted"].as_u64().unwrap(),
                s["delivered"].as_u64().unwrap(),
                s["failed"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_bad_release_pauses_after_the_canary_and_a_readmitted_fix_goes_through_every_stage() {
    let (f, v1, v2) = fleet_on_v1(0, &["a2", "a3"]);
    let run = f.haifu_ok(&["run", "staged.yaml", "--live", "--detach"]);
    let run = run.trim();
    assert_eq!(run, "2");

    f.wait_for(90, "the advance policy's pause", || {
        !status(&f, run)["paused"].is_null()
    });
    let st = status(&f, run);
    assert_eq!(st["status"], "running", "{st:#}");
    assert_eq!(st["paused"]["by"], "advance policy", "{st:#}");
    let why = st["paused"]["reason"].as_str().unwrap();
    assert!(
        why.starts_with("2 of 3 clients failed") && why.ends_with("more than max_failures 1"),
        "{st:#}"
    );
    let text = f.haifu_ok(&["status", run]);
    assert!(
        text.contains("paused by advance policy at")
            && text.contains(why)
            && text.contains(&format!("haifu run resume {run}")),
        "{text}"
    );

    let audit = f.json(&["audit", run, "--json"]);
    let rows = stage_rows(&audit);
    assert_eq!(rows.len(), 3, "{audit:#}");
    assert_eq!(rows[0], ("canary".into(), true, 3, 1, 2), "{audit:#}");
    for row in &rows[1..] {
        assert!(!row.1, "a stage after the canary started: {audit:#}");
        assert_eq!((row.3, row.4), (0, 0), "{audit:#}");
    }
    assert_eq!(rows[1].2 + rows[2].2, 4, "relay-b's and relay-c's clients");
    assert_eq!(
        audit["stages"][0]["failures"]["post-install"], 2,
        "{audit:#}"
    );
    let last = audit["stages"][0]["decisions"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last["decide"], "pause", "{audit:#}");
    assert_eq!(last["reason"], why);
    // Each failure with its kind and reason, under relay-a.
    let relay_a = audit["relays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["relay"] == "relay-a")
        .unwrap_or_else(|| panic!("{audit:#}"));
    let failed = relay_a["failed"].as_array().unwrap();
    let mut who: Vec<&str> = failed
        .iter()
        .map(|c| c["client"].as_str().unwrap())
        .collect();
    who.sort_unstable();
    assert_eq!(who, ["a2", "a3"], "{audit:#}");
    for c in failed {
        assert_eq!(c["kind"], "post-install", "{c}");
        let reason = c["reason"].as_str().unwrap();
        assert!(
            reason.contains("exit status: 3") && reason.contains("the fix is not in"),
            "{reason}"
        );
    }
    let text = f.haifu_ok(&["audit", run]);
    assert!(
        text.contains("failed post-install: 2")
            && text.contains("a2 (post-install: exited with exit status: 3")
            && text.contains(&format!("pause: {why}")),
        "{text}"
    );

    // Nothing reached the later stages, on disk as in the ledger: their
    // install roots keep 1.1.0 and their clients never installed again.
    // A moment for anything that would still arrive.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(current(&f, "a1"), v2);
    for id in ["a2", "a3", "b1", "b2", "c1", "c2"] {
        assert_eq!(current(&f, id), v1, "{id}\n{}", f.dump());
    }
    for id in ["b1", "b2", "c1", "c2"] {
        assert_eq!(
            f.log(id).matches("installed; completion sent").count(),
            1,
            "{id} installed only 1.1.0:\n{}",
            f.log(id)
        );
    }
    assert!(
        status(&f, run)["paused"]["by"] == "advance policy",
        "still paused"
    );

    // The fix is in: readmitted and resumed, the run goes on.
    for id in ["a2", "a3"] {
        std::fs::write(f.path(&format!("{id}-fixed")), b"").unwrap();
        let out = f.haifu_ok(&["fleet", "readmit", id, "--by", "ops"]);
        assert!(
            out.contains(&format!("{id} readmitted to run {run}")),
            "{out}"
        );
    }
    f.haifu_ok(&["run", "resume", run, "--by", "ops"]);
    let audit = wait_rolled_out(&f, run, 90);
    f.wait_for(30, "every client on 1.2.0", || {
        ALL.iter().all(|id| current(&f, id) == v2)
    });
    let st = status(&f, run);
    assert!(
        st["paused"].is_null() && st["status"] == "running",
        "{st:#}"
    );
    let rows = stage_rows(&audit);
    assert_eq!(
        rows.iter().map(|r| (r.1, r.3, r.4)).collect::<Vec<_>>(),
        [(true, 3, 0), (true, 2, 0), (true, 2, 0)],
        "{audit:#}"
    );
    for s in audit["stages"].as_array().unwrap() {
        let last = s["decisions"].as_array().unwrap().last().unwrap();
        assert_eq!(last["decide"], "proceed", "{s:#}");
    }
    let orders: Vec<(&str, &str)> = audit["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["order"].as_str().unwrap(), o["by"].as_str().unwrap()))
        .collect();
    assert_eq!(orders, [("pause", "advance policy"), ("resume", "ops")]);
}

#[test]
fn a_healthy_release_goes_through_every_stage_each_after_its_soak() {
    let (f, _, v2) = fleet_on_v1(1, &[]);
    let run = f.haifu_ok(&["run", "staged.yaml", "--live", "--detach"]);
    let run = run.trim();
    let audit = wait_rolled_out(&f, run, 90);
    f.wait_for(30, "every client on 1.2.0", || {
        ALL.iter().all(|id| current(&f, id) == v2)
    });
    assert!(status(&f, run)["paused"].is_null());
    let rows = stage_rows(&audit);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["canary", "half", "rest"], "{audit:#}");
    let counts: Vec<(u64, u64, u64)> = rows.iter().map(|r| (r.2, r.3, r.4)).collect();
    assert_eq!(counts, [(3, 3, 0), (2, 2, 0), (2, 2, 0)], "{audit:#}");

    // Each stage's broadcast ends with the retry policy's stop; the next
    // stage starts no earlier than that plus the stage's soak, and only
    // after the stage was decided `proceed`.
    let evs = events(&f, run, &["stage-started", "stage-decided", "next-round"]);
    let mut started = Vec::new();
    let mut broadcast_over = Vec::new();
    let mut proceeded = Vec::new();
    for (at, kind, d) in &evs {
        match kind.as_str() {
            "stage-started" => {
                let t: Timestamp = d["at"].as_str().unwrap().parse().unwrap();
                started.push(t);
                broadcast_over.push(None);
                proceeded.push(None);
            }
            "next-round" if d.get("stop").is_some() => {
                *broadcast_over.last_mut().unwrap() = Some(*at);
            }
            "stage-decided" => {
                assert_eq!(d["stage"].as_u64(), Some(started.len() as u64), "{d}");
                // `wait` while soaking, then `proceed`.
                assert!(d["decide"] == "wait" || d["decide"] == "proceed", "{d}");
                if d["decide"] == "proceed" {
                    let t: Timestamp = d["at"].as_str().unwrap().parse().unwrap();
                    *proceeded.last_mut().unwrap() = Some(t);
                }
            }
            _ => {}
        }
    }
    assert_eq!(started.len(), 3, "{evs:#?}");
    for k in 0..2 {
        let over = broadcast_over[k].unwrap_or_else(|| panic!("stage {k}: {evs:#?}"));
        let decided = proceeded[k].unwrap_or_else(|| panic!("stage {k}: {evs:#?}"));
        let soaked = decided.duration_since(over).as_secs_f64();
        assert!(
            soaked >= SOAK_SECS as f64 - 0.05,
            "stage {} proceeded {soaked} s after its broadcast: {evs:#?}",
            k + 1
        );
        assert!(started[k + 1] >= decided, "{evs:#?}");
        assert!(
            started[k + 1].duration_since(over).as_secs_f64() >= SOAK_SECS as f64 - 0.05,
            "{evs:#?}"
        );
    }
    assert!(proceeded[2].is_some(), "the last stage passed: {evs:#?}");
}
