//! Operators' orders through the master's HTTP API, against real `haifu
//! master`, relay and client processes: who may give them, what each
//! answers, and that the master honours them on a live run (a pause
//! between rounds holds the next round back, an abort stops the round on
//! air within about a second).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::fleet::{Fleet, Layout, http_post};
use serde_json::Value;

fn token(f: &Fleet, name: &str, scope: &str) -> String {
    f.haifu_ok(&["api", "token", "create", "--name", name, "--scope", scope])
        .trim()
        .to_owned()
}

/// `POST path` with `token` and `body`: the status and the JSON answer.
fn post(api: &str, token: Option<&str>, path: &str, body: &str) -> (u16, Value) {
    let (code, text) = http_post(api, token, path, body);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {code} {text:?}"));
    (code, v)
}

/// The orders the audit lists for `run`: (order, by, reason).
fn orders(f: &Fleet, run: &str) -> Vec<(String, String, Option<String>)> {
    let audit = f.json(&["audit", run, "--json"]);
    audit["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["order"].as_str().unwrap().to_owned(),
                o["by"].as_str().unwrap().to_owned(),
                o["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// With no relay and a start years ahead, the master drives a run that
/// only waits: every answer of the three endpoints, and that a refused
/// order (no token, a read token, an order the run's standing does not
/// allow) writes nothing.
#[test]
fn orders_need_an_admin_token_and_answer_with_the_run_s_standing() {
    let mut f = Fleet::new(0);
    let api = format!("127.0.0.1:{}", f.master_port + 15);
    f.write_master(&format!("api: {api}\n"));
    f.start("master", "master");
    f.wait_for(30, "the API", || std::net::TcpStream::connect(&api).is_ok());
    let read = token(&f, "dashboard", "read");
    let admin = token(&f, "ops", "admin");
    std::fs::write(f.path("a.tar"), b"the artifact").unwrap();
    std::fs::write(
        f.path("later.yaml"),
        "name: later\nartifact: {name: app, version: 1.0.0, path: a.tar}\ntargets: {relays: [r]}\n\
         schedule: {start: 2030-12-01T00:00:00Z, deadline: 72h}\n\
         transports: {broadcast: multicast, unicast: quic}\n\
         steps:\n  - register\n  - broadcast: {rounds: 3}\n  - audit\n  - delta: {until: deadline}\n  - disconnect\n",
    )
    .unwrap();
    let run = f.haifu_ok(&["run", "later.yaml", "--live", "--detach"]);
    let run = run.trim();
    let path = |order: &str| format!("/v1/runs/{run}/{order}");

    let (code, body) = post(&api, None, &path("pause"), "");
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(&api, Some(&read), &path("abort"), "");
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("needs admin"),
        "{body}"
    );
    let (code, body) = post(&api, Some(&admin), &path("pause"), "{\"reason\": 7}");
    assert_eq!(code, 400, "{body}");
    assert_eq!(orders(&f, run), [], "a refused order writes nothing");

    let (code, body) = post(
        &api,
        Some(&admin),
        &path("pause"),
        "{\"reason\": \"shop hours\"}",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "running");
    assert_eq!(body["by"], "api:ops");
    assert_eq!(body["paused"]["by"], "api:ops");
    assert_eq!(body["paused"]["reason"], "shop hours");
    let (code, body) = post(&api, Some(&admin), &path("pause"), "");
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is already paused (by api:ops"),
        "{body}"
    );
    let status = f.json(&["status", run, "--json"]);
    assert_eq!(status["paused"]["by"], "api:ops", "{status}");

    let (code, body) = post(&api, Some(&admin), &path("resume"), "");
    assert_eq!((code, &body["paused"]), (200, &Value::Null), "{body}");
    let (code, body) = post(&api, Some(&admin), &path("resume"), "");
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("is not paused"),
        "{body}"
    );

    let (code, body) = post(
        &api,
        Some(&admin),
        &path("abort"),
        "{\"reason\": \"bad build\"}",
    );
    assert_eq!(
        (code, &body["status"]),
        (200, &Value::from("failed")),
        "{body}"
    );
    for order in ["pause", "resume", "abort"] {
        let (code, body) = post(&api, Some(&admin), &path(order), "");
        assert_eq!(code, 409, "{order}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("it is failed, not running"),
            "{body}"
        );
    }
    let (code, body) = post(&api, Some(&admin), "/v1/runs/99/pause", "");
    assert_eq!(code, 404, "{body}");
    let (code, _) = post(&api, Some(&admin), "/v1/runs/x/pause", "");
    assert_eq!(code, 400);

    let status = f.json(&["status", run, "--json"]);
    assert_eq!(
        status["failure"], "aborted by api:ops: bad build",
        "{status}"
    );
    let by = |o: &str, r: Option<&str>| {
        (
            "".to_owned() + o,
            "api:ops".to_owned(),
            r.map(str::to_owned),
        )
    };
    assert_eq!(
        orders(&f, run),
        [
            by("pause", Some("shop hours")),
            by("resume", None),
            by("abort", Some("bad build")),
        ]
    );
}

/// `haifu status --watch --interval 0.3` into a pipe, read on a thread.
fn watcher(f: &Fleet) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = f
        .haifu()
        .args(["status", "--watch", "--interval", "0.3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let read = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut out, &mut text).unwrap();
        text
    });
    (child, read)
}

/// What the watch drew, once it ended by itself (every run it showed has
/// ended) within `secs`.
fn watched(
    f: &Fleet,
    w: (std::process::Child, std::thread::JoinHandle<String>),
    secs: u64,
) -> String {
    let (mut child, read) = w;
    f.wait_for(secs, "the watch to end with its runs", || {
        child.try_wait().unwrap().is_some()
    });
    assert!(child.wait().unwrap().success());
    read.join().unwrap()
}

/// `haifu status RUN --json`.
fn status(f: &Fleet, run: &str) -> Value {
    f.json(&["status", run, "--json"])
}

/// A live fleet (one relay, a client listening and one away, so a run
/// needs more than one round): paused through the API as its first round
/// ends, no second round starts while paused and a read token cannot
/// resume it; resumed, the run goes on and completes. Then a run whose
/// round takes many seconds is aborted through the API while the round is
/// on air: the relay stops it within a couple of seconds, never finishing
/// it, and the run is failed in the token's name.
#[test]
fn a_live_run_is_paused_between_rounds_resumed_and_aborted_on_air_through_the_api() {
    let api_port = common::fleet::base_port(1) + 15;
    let api = format!("127.0.0.1:{api_port}");
    let mut f = Fleet::with(
        1,
        &Layout {
            master: &format!("api: {api}\n"),
            relays: &[("relay-a", &["c1", "c2"])],
            ..Layout::default()
        },
    );
    let read = token(&f, "dashboard", "read");
    let admin = token(&f, "ops", "admin");
    f.artifact("small.bin", 256 << 10, 3);
    f.workflow(
        "small",
        "small.bin",
        "1.0.0",
        &["relay-a"],
        3,
        3,
        "100Mbit/s",
    );
    f.start_fleet(&["c1", "c2"]);
    // c2 is away: round 1 does not deliver everyone, so round 2 is due.
    assert!(f.stop("c2"));
    let run = f.haifu_ok(&["run", "small.yaml", "--live", "--detach"]);
    let run = run.trim().to_owned();
    let path = |run: &str, order: &str| format!("/v1/runs/{run}/{order}");

    f.wait_log("relay-a", &format!("round sent run={run} round=1"), 1, 90);
    let (code, body) = post(
        &api,
        Some(&admin),
        &path(&run, "pause"),
        "{\"reason\": \"shop hours\"}",
    );
    assert_eq!(code, 200, "{body}");
    let watch = watcher(&f);
    // The retry policy asks for round 2 three seconds after round 1; the
    // pause holds it back however long it lasts.
    let round2 = format!("round starting run={run} round=2");
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        !f.log("relay-a").contains(&round2),
        "round 2 started while paused\n{}",
        f.dump()
    );
    let (code, body) = post(&api, Some(&read), &path(&run, "resume"), "");
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        status(&f, &run)["paused"]["by"],
        "api:ops",
        "nothing changed"
    );
    let (code, body) = post(&api, Some(&admin), &path(&run, "resume"), "");
    assert_eq!(code, 200, "{body}");
    f.wait_log("relay-a", &round2, 1, 30);
    f.wait_for(90, "the resumed run to complete", || {
        status(&f, &run)["status"] == "done"
    });
    // Not a terminal: one plain frame after another, the run PAUSED in
    // some with who and why, then on with its rounds, and done in the last.
    let frames = watched(&f, watch, 10);
    assert!(frames.starts_with("--- "), "{frames}");
    assert!(
        frames.contains("PAUSED by api:ops at ")
            && frames.contains(&format!(": shop hours (haifu run resume {run})")),
        "{frames}"
    );
    assert!(
        frames.contains("round 3 on air") || frames.contains("round 3 in "),
        "{frames}"
    );
    let last = frames.rsplit("--- ").next().unwrap();
    assert!(
        last.contains(&format!("run {run}  small  app 1.0.0  done")),
        "{frames}"
    );
    assert!(!frames.contains('\x1b'), "no screen clearing into a pipe");

    // A round of about 14 s: 6 MiB at 4 Mbit/s.
    f.artifact("big.bin", 6 << 20, 5);
    f.workflow("big", "big.bin", "1.1.0", &["relay-a"], 1, 1, "4Mbit/s");
    let run = f.haifu_ok(&["run", "big.yaml", "--live", "--detach"]);
    let run = run.trim().to_owned();
    f.wait_log(
        "relay-a",
        &format!("round starting run={run} round=1"),
        1,
        90,
    );
    let watch = watcher(&f);
    std::thread::sleep(Duration::from_secs(2));
    let (code, body) = post(&api, Some(&read), &path(&run, "abort"), "");
    assert_eq!(code, 403, "{body}");
    assert_eq!(status(&f, &run)["status"], "running", "nothing changed");
    let aborted = Instant::now();
    let (code, body) = post(
        &api,
        Some(&admin),
        &path(&run, "abort"),
        "{\"reason\": \"bad build\"}",
    );
    assert_eq!(
        (code, &body["status"]),
        (200, &Value::from("failed")),
        "{body}"
    );
    let stopped = format!("round stopped: its run left the air run={run} round=1");
    f.wait_log("relay-a", &stopped, 1, 10);
    let took = aborted.elapsed();
    eprintln!(
        "the relay stopped the round {took:?} after the abort was sent (log polled every 100 ms)"
    );
    assert!(
        took < Duration::from_secs(3),
        "the round stopped {took:?} after the abort"
    );
    assert!(
        !f.log("relay-a")
            .contains(&format!("round sent run={run} round=1")),
        "the round ran to its end\n{}",
        f.dump()
    );
    f.wait_log(
        "master",
        "run aborted: its round is stopped on the relays",
        1,
        5,
    );
    let st = status(&f, &run);
    assert_eq!(st["status"], "failed", "{st}");
    assert_eq!(st["failure"], "aborted by api:ops: bad build", "{st}");
    let frames = watched(&f, watch, 10);
    assert!(frames.contains("round 1 on air for"), "{frames}");
    let last = frames.rsplit("--- ").next().unwrap();
    assert!(
        last.contains("failed: aborted by api:ops: bad build"),
        "{frames}"
    );
}
