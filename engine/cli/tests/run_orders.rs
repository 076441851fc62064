//! `haifu run pause|resume|abort` through the real binary on a live run no
//! master drives yet: each order recorded with who and why, shown by
//! `status` and `audit`, and each refused order a one-line error that
//! writes nothing. (That a driver honours them is the runtime's
//! `driver::orders` tests, in virtual time.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

mod common;
use common::{json, ok, run};

fn refused(home: &std::path::Path, args: &[&str], says: &str) {
    let out = run(home, args);
    assert_eq!(out.status.code(), Some(1), "haifu {args:?} succeeded");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(says), "haifu {args:?}: {err}");
}

#[test]
fn operators_pause_resume_and_abort_a_run_and_every_order_is_audited() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path();
    fs::write(home.join("a.tar"), b"the artifact").unwrap();
    let wf = home.join("t.yaml");
    fs::write(
        &wf,
        "name: t\nartifact: { name: app, version: 1.0.0, path: a.tar }\ntargets: { relays: [r] }\n\
schedule: { start: 2030-12-01T00:00:00Z, deadline: 72h }\ntransports: { broadcast: multicast, unicast: quic }\n\
steps:\n  - register\n  - broadcast: { rounds: 3 }\n  - audit\n  - delta: { until: deadline }\n  - disconnect\n",
    )
    .unwrap();
    let id = ok(home, &["run", wf.to_str().unwrap(), "--live", "--detach"]);
    let id = id.trim();
    ok(
        home,
        &[
            "run",
            "pause",
            id,
            "--by",
            "alice",
            "--reason",
            "shop hours",
        ],
    );
    refused(home, &["run", "pause", id], "is already paused (by alice");
    let status = json(home, &["status", id, "--json"]);
    assert_eq!(status["paused"]["by"], "alice");
    assert_eq!(status["paused"]["reason"], "shop hours");
    assert!(ok(home, &["status"]).contains(" paused "));
    ok(home, &["run", "resume", id, "--by", "bob"]);
    refused(
        home,
        &["run", "resume", id],
        "is not paused; nothing to resume",
    );
    ok(
        home,
        &["run", "abort", id, "--by", "carol", "--reason", "bad build"],
    );
    for order in ["pause", "resume", "abort"] {
        refused(home, &["run", order, id], "it is failed, not running");
    }
    refused(home, &["run", "pause", "99"], "run 99 does not exist");
    let status = json(home, &["status", id, "--json"]);
    assert_eq!(status["status"], "failed");
    assert_eq!(status["failure"], "aborted by carol: bad build");
    let audit = json(home, &["audit", id, "--json"]);
    let orders: Vec<(String, String)> = audit["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["order"].as_str().unwrap().into(),
                o["by"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [("pause", "alice"), ("resume", "bob"), ("abort", "carol")]
        .map(|(o, b)| (o.to_owned(), b.to_owned()));
    assert_eq!(orders, want);
    let text = ok(home, &["audit", id]);
    assert!(text.contains("pause by alice: shop hours"), "{text}");
}
