//! The fleet as real processes on loopback: `haifu master`, `haifu relay`
//! and `haifu client`, control over the QUIC plugin, rounds over the
//! multicast plugin, both loaded from their `.so` files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::fleet::{Fleet, Layout, base_port, http_get};
use serde_json::Value;

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every client name in `relays[*].field` (flattening per-round lists).
fn collect(audit: &Value, field: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in audit["relays"].as_array().unwrap() {
        let v = &r[field];
        if field == "delivered_by_round" {
            for round in v.as_array().unwrap() {
                out.extend(names(round));
            }
        } else {
            out.extend(names(v));
        }
    }
    out
}

fn round_of(audit: &Value, client: &str) -> Option<usize> {
    for r in audit["relays"].as_array().unwrap() {
        for (i, round) in r["delivered_by_round"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            if names(round).contains(client) {
                return Some(i + 1);
            }
        }
    }
    None
}

/// Sends forged datagrams (the carousel's format, the session's id, a key
/// that is not the session's) into both groups until `stop` is set.
fn forger(
    plugins: std::path::PathBuf,
    groups: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, Option<String>)> {
    std::thread::spawn(move || {
        let set = haifu_plugin_host::load_dir(&plugins).unwrap();
        let p = set.get("multicast").unwrap();
        let outs: Vec<_> = groups
            .iter()
            .map(|g| {
                p.open_group(&format!(
                    "group={g}\ninterface=127.0.0.1\nloopback=true\njoin=false"
                ))
                .unwrap()
            })
            .collect();
        // A small forged artifact: its datagrams have the carousel's format
        // and the session's id; only the key (the tag) is wrong.
        let len = 256 << 10;
        let fake = vec![0x5au8; len];
        let sender = haifu_carousel::Sender::new(
            haifu_carousel::CarouselKey::new(1, [7; 32]),
            len as u64,
            haifu_carousel::CarouselConfig::default(),
        )
        .unwrap();
        let datagrams = sender.encode_round(&fake, 1).unwrap();
        let mut sent = 0u64;
        let mut error = None;
        let mut i = 0usize;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            for _ in 0..200 {
                let d = &datagrams[i % datagrams.len()];
                for g in &outs {
                    match g.send(d) {
                        Ok(()) => sent += 1,
                        Err(e) => error = Some(e.to_string()),
                    }
                }
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (sent, error)
    })
}

/// The scenario of the method: a master, two relays with ten clients each,
/// three rounds; every client drops 10% of datagrams (some 20%); in each
/// round 30% of the clients are offline (never started, started late,
/// stopped between rounds); forged datagrams are injected throughout.
/// Every client that listens to a round finishes in that round (feedback
/// repair); the later rounds are for those that were offline.
#[test]
fn three_rounds_with_loss_and_offline_clients_audit_lists_exactly_the_others() {
    let mut f = Fleet::with(
        0,
        &Layout {
            relays: &[("relay-a", &[]), ("relay-b", &[])],
            ..Layout::default()
        },
    );
    let (port_a, port_b) = (f.relay_port("relay-a"), f.relay_port("relay-b"));
    let all: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    // Groups of clients (see the doc comment): A online throughout; B
    // registered, then off for every round; C started after round 1; D
    // online for rounds 1-2, stopped before round 3; E online for round 1
    // with 20% loss (more than a blind round's repair share), killed after
    // it, back for round 3.
    let a = ["c00", "c01", "c02", "c03", "c10", "c11", "c12", "c13"];
    let b = ["c04", "c14", "c05"];
    let c = ["c15", "c06", "c16"];
    let d = ["c07", "c17", "c08"];
    let e = ["c18", "c09", "c19"];
    for (i, id) in all.iter().enumerate() {
        let (relay, port) = if i < 10 {
            ("relay-a", port_a)
        } else {
            ("relay-b", port_b)
        };
        let drop = if e.contains(&id.as_str()) { 0.2 } else { 0.1 };
        f.write_client(
            id,
            relay,
            port,
            &format!("testing: {{drop_datagrams: {drop}, seed: {i}}}\n"),
        );
    }
    f.artifact("app-1.bin", 3 << 20, 11);
    f.workflow(
        "rollout",
        "app-1.bin",
        "1.0.0",
        &["relay-a", "relay-b"],
        3,
        4,
        "100Mbit/s",
    );

    f.start_master_and_relays();
    let online: Vec<&str> = a.iter().chain(&b).chain(&d).chain(&e).copied().collect();
    f.start_clients(&online);
    // B goes offline before the run.
    for id in b {
        assert!(f.stop(id), "{id} stops cleanly on SIGTERM");
    }
    f.settle();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let forging = forger(
        f.plugins.clone(),
        vec![f.group_addr("relay-a"), f.group_addr("relay-b")],
        std::sync::Arc::clone(&stop),
    );

    let id = f.haifu_ok(&["run", "rollout.yaml", "--live", "--detach"]);
    let run: i64 = id.trim().parse().unwrap();
    assert_eq!(run, 1);

    f.wait_log(
        "master",
        r#"event="round-finished" detail={"completed":"#,
        1,
        120,
    );
    // Between rounds 1 and 2: E is killed, C starts.
    for id in e {
        f.kill(id);
    }
    for id in c {
        f.start("client", id);
    }
    f.wait_log(
        "master",
        r#"event="round-finished" detail={"completed":"#,
        2,
        120,
    );
    // Between rounds 2 and 3: D stops, E comes back.
    for id in d {
        assert!(f.stop(id), "{id} stops cleanly on SIGTERM");
    }
    for id in e {
        f.start("client", id);
    }
    f.wait_for(120, "run 1 to finish", || {
        f.json(&["status", "1", "--json"])["status"] == "done"
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (forged, error) = forging.join().unwrap();
    assert!(
        forged > 1000,
        "forged datagrams were sent: {forged} ({error:?})"
    );

    let audit = f.json(&["audit", "1", "--json"]);
    let delivered = collect(&audit, "delivered_by_round");
    let undelivered = collect(&audit, "undelivered");
    let expect_done: BTreeSet<String> = a
        .iter()
        .chain(&c)
        .chain(&d)
        .chain(&e)
        .map(|s| (*s).to_owned())
        .collect();
    let expect_not: BTreeSet<String> = b.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(delivered, expect_done, "{audit:#}\n{}", f.dump());
    assert_eq!(undelivered, expect_not, "{audit:#}");
    // Everyone listening to round 1 finished in round 1, at 10% and 20%
    // loss and with forged datagrams on the group.
    for id in a.iter().chain(&d).chain(&e) {
        assert_eq!(round_of(&audit, id), Some(1), "{id}: {audit:#}");
    }
    // C was offline in round 1: it completed in round 2 or 3.
    for id in c {
        assert!(round_of(&audit, id).unwrap() >= 2, "{id}: {audit:#}");
    }
    // Stragglers are listed with their last contact and installed version.
    for r in audit["relays"].as_array().unwrap() {
        for s in r["stragglers"].as_array().unwrap() {
            assert!(s["last_contact"].is_string(), "{s}");
            assert!(s["version"].is_null(), "{s}");
        }
    }
    // Forged datagrams were counted and never decoded into anything.
    for id in a {
        let log = f.log(id);
        let line = log
            .lines()
            .find(|l| l.contains("all blocks decoded"))
            .unwrap_or_else(|| panic!("{id} decoded:\n{log}"));
        assert!(line.contains("bad_tag"), "{id}: {line}");
        let installed = std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap();
        assert_eq!(installed, std::fs::read(f.path("app-1.bin")).unwrap());
    }
    // The live view ends with the run and shows each relay's rounds.
    let view = f.haifu_ok(&["status", "1", "--watch"]);
    assert!(
        view.contains("round 3") && view.contains("relay-b"),
        "{view}"
    );
    let all = view.lines().find(|l| l.starts_with("all ")).unwrap();
    assert!(all.trim_end().ends_with(" 20"), "{view}");
    // The relays logged each round's figures.
    let relay_log = f.log("relay-a");
    assert!(
        relay_log.contains("round sent run=1 round=3"),
        "{relay_log}"
    );
    assert!(relay_log.contains("clients_done="), "{relay_log}");
    // Clean shutdown on SIGTERM.
    for id in a.iter().chain(&c).chain(&e) {
        assert!(f.stop(id), "{id} exits 0 on SIGTERM");
    }
    assert!(f.stop("relay-a") && f.stop("relay-b") && f.stop("master"));
}

/// A relay killed mid-round resumes the round; a client killed during its
/// post-install keeps its old version and completes later; the master
/// killed with SIGKILL mid-run resumes it with no completion lost or
/// counted twice.
#[test]
fn relay_restart_client_killed_mid_install_and_master_sigkill_lose_nothing() {
    let mut f = Fleet::with(
        1,
        &Layout {
            relays: &[("relay-a", &[])],
            ..Layout::default()
        },
    );
    let port = f.relay_port("relay-a");
    let clients = ["k1", "n1", "n2", "n3"];
    let marker = f.path("k1-post-install.log");
    for id in clients {
        let extra = if id == "k1" {
            // Records each start, then takes a while: the test kills the
            // client inside it.
            format!(
                "post_install: {{program: sh, args: ['-c', 'echo started >> {}; sleep 4']}}\n",
                marker.display()
            )
        } else {
            String::new()
        };
        f.write_client(id, "relay-a", port, &extra);
    }
    f.artifact("app-1.bin", 2 << 20, 1);
    f.artifact("app-2.bin", 16 << 20, 2);
    f.workflow("v1", "app-1.bin", "1.0.0", &["relay-a"], 3, 2, "200Mbit/s");
    f.workflow("v2", "app-2.bin", "2.0.0", &["relay-a"], 5, 2, "40Mbit/s");
    f.start_fleet(&clients);
    let out = f.haifu_ok(&["run", "v1.yaml", "--live", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "done", "{report:#}");
    let ones: u64 = report["delivered_by_round"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(ones, 4, "{report:#}\n{}", f.dump());

    // Run 2: 16 MiB at 40 Mbit/s, a round of about 3.5 s.
    let id = f.haifu_ok(&["run", "v2.yaml", "--live", "--detach"]);
    assert_eq!(id.trim(), "2");
    f.wait_log("relay-a", "round starting run=2 round=1", 1, 60);
    std::thread::sleep(Duration::from_millis(1200));
    f.kill("relay-a");
    f.start("relay", "relay-a");
    // The restarted relay is instructed again and resumes round 1.
    f.wait_log("relay-a", "round sent run=2 round=1", 1, 60);

    // k1 installs 2.0.0: inside its post-install command, SIGKILL.
    f.wait_for(60, "k1's second post-install", || {
        std::fs::read_to_string(&marker)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    });
    f.kill("k1");
    let current = std::fs::read_link(f.path("k1-root/current")).unwrap();
    assert!(
        current.to_string_lossy().contains("app-1.0.0"),
        "k1 still runs 1.0.0: {current:?}"
    );
    assert_eq!(
        std::fs::read(f.path("k1-root/current/artifact")).unwrap(),
        std::fs::read(f.path("app-1.bin")).unwrap()
    );

    // Some completions of run 2 are durable and acked: SIGKILL the master.
    f.wait_log("n1", "completion acknowledged by the master run=2", 1, 60);
    f.kill("master");
    std::thread::sleep(Duration::from_millis(500));
    f.start("master", "master");
    f.start("client", "k1");
    // The restarted master resets the connection its last run left open
    // (its QUIC reset and connection-id keys come from its certificate's
    // key), so the relay reconnects at its next keep-alive instead of
    // waiting out its idle timeout.
    f.wait_log("relay-a", "master connection lost: transport: plugin \"quic\": conn_recv: connection closed: reset by peer", 1, 30);

    f.wait_for(120, "run 2 to finish", || {
        f.json(&["status", "2", "--json"])["status"] == "done"
    });
    let audit = f.json(&["audit", "2", "--json"]);
    let mut seen = Vec::new();
    for r in audit["relays"].as_array().unwrap() {
        for round in r["delivered_by_round"].as_array().unwrap() {
            seen.extend(names(round));
        }
        for field in ["undelivered", "pending", "delta", "current"] {
            assert!(names(&r[field]).is_empty(), "{field}: {audit:#}");
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec!["k1", "n1", "n2", "n3"],
        "each exactly once: {audit:#}"
    );
    let status = f.json(&["status", "2", "--json"]);
    assert_eq!(status["report"]["clients"], 4, "{status:#}");
    for id in clients {
        // Every completion was acked (nothing left to resend) and installed.
        f.wait_for(20, &format!("{id}'s ack"), || {
            !f.path(&format!("{id}-root/completion.json")).exists()
        });
        assert_eq!(
            std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap(),
            std::fs::read(f.path("app-2.bin")).unwrap(),
            "{id}"
        );
    }
    let post = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(
        post.lines().count(),
        3,
        "k1's post-install ran again after the kill"
    );

    // The same version again: every client already has it, says so, and
    // takes no part; no install, no post-install.
    let out = f.haifu_ok(&["run", "v2.yaml", "--live", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["already_current"], 4, "{report:#}\n{}", f.dump());
    assert_eq!(report["undelivered"], 0, "{report:#}");
    let post = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(post.lines().count(), 3, "no install, no post-install");
}

/// A client cut off at the deadline is deny-listed: refused at the QUIC
/// handshake by its relay, denied by the gate, listed as cut off; readmitted,
/// it connects again. (The workflow's broadcast policy also sets the round's
/// budget: checked on the way.)
#[test]
fn a_cut_off_client_is_refused_until_readmitted() {
    let api = format!("127.0.0.1:{}", base_port(2) + 15);
    let mut f = Fleet::with(
        2,
        &Layout {
            master: &format!("api: {api}\n"),
            relays: &[("relay-a", &["ok1", "gone1"])],
            ..Layout::default()
        },
    );
    f.artifact("app-1.bin", 1 << 20, 5);
    f.workflow("cut", "app-1.bin", "1.0.0", &["relay-a"], 1, 1, "100Mbit/s");
    // Cut off whoever did not get it.
    std::fs::write(
        f.path("cut-off.rhai"),
        "fn disconnect(client) {\n\
           if client.state == \"delivered\" { return #{ cut: false, reason: \"has it\" }; }\n\
           #{ cut: true, reason: `${client.id} missed every round` }\n}\n",
    )
    .unwrap();
    // A round budget from the facts: 4 x the artifact for 1 planned round.
    std::fs::write(
        f.path("wide.rhai"),
        "fn round_budget(ctx) {\n\
           #{ proactive: 0.05, budget: ctx.rounds + 3, silence: 2 }\n}\n",
    )
    .unwrap();
    let wf = std::fs::read_to_string(f.path("cut.yaml")).unwrap();
    std::fs::write(
        f.path("cut.yaml"),
        wf.replace(
            "policies: {retry: cut.rhai}",
            "policies: {retry: cut.rhai, disconnect: cut-off.rhai, broadcast: wide.rhai}",
        ),
    )
    .unwrap();
    f.start_master_and_relays();
    f.start_clients(&["ok1", "gone1"]);
    assert!(f.stop("gone1"));
    f.settle();
    let out = f.haifu_ok(&["run", "cut.yaml", "--live", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["disconnected"], 1, "{report:#}\n{}", f.dump());
    // The master asked the broadcast policy and sent its answer.
    let master = f.log("master");
    assert!(
        master.contains("proactive_permille: 50, bytes_permille: 4000,")
            && master.contains("silence_ms: 2000,")
            && master.contains("policy=true"),
        "{}",
        f.dump()
    );

    // Listed as cut off, denied by the gate, refused by the relay.
    let fleet = f.json(&["fleet", "list", "--json"]);
    let gone = fleet
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "gone1")
        .unwrap();
    assert!(
        gone["denied_reason"]
            .as_str()
            .unwrap()
            .contains("missed every round"),
        "{fleet:#}"
    );
    let gate = f
        .haifu()
        .args(["gate", "--client", "gone1", "--service", "pos", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        gate.status.code(),
        Some(3),
        "the gate denies a cut-off client"
    );
    // The HTTP API says the same.
    f.haifu_ok(&[
        "service",
        "set",
        "pos",
        "--artifact",
        "app",
        "--since",
        "1.0.0",
    ]);
    let token = f
        .haifu_ok(&[
            "api", "token", "create", "--name", "test", "--scope", "read",
        ])
        .trim()
        .to_owned();
    let (code, body) = http_get(&api, &token, "/v1/gate?client=gone1&service=pos");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["allow"], false, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("disconnected"),
        "{v}"
    );
    let (_, body) = http_get(&api, &token, "/v1/gate?client=ok1&service=pos");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["allow"],
        true,
        "{body}"
    );
    let (_, body) = http_get(&api, &token, "/v1/gate?client=nobody&service=pos");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["allow"] == false && v["reason"].as_str().unwrap().contains("unknown client"),
        "{v}"
    );
    let (code, body) = http_get(&api, &token, "/v1/gate?client=ok1");
    assert_eq!(code, 400, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
    let (code, body) = http_get(&api, &token, "/v1/runs/1/audit");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("missed every round"), "{body}");
    assert_eq!(http_get(&api, &token, "/v1/runs/99").0, 404);
    assert_eq!(http_get(&api, &token, "/v1/runs/x").0, 400);
    let (code, body) = http_get(&api, &token, "/v1/fleet");
    assert!(code == 200 && body.contains("gone1"), "{body}");
    let (code, body) = http_get(&api, &token, "/v1/runs/1");
    assert!(code == 200 && body.contains("\"report\""), "{body}");

    f.wait_log("relay-a", "deny list applied denied=1", 1, 30);
    f.start("client", "gone1");
    f.wait_log("gone1", "cannot reach the relay", 1, 60);
    assert_eq!(
        f.log("relay-a")
            .matches("client registered client=gone1")
            .count(),
        1,
        "refused at the handshake"
    );

    // Readmitted: it connects and reports in again.
    let out = f.haifu_ok(&["fleet", "readmit", "gone1"]);
    assert!(out.contains("readmitted"), "{out}");
    f.wait_log("relay-a", "deny list applied denied=0", 1, 30);
    f.wait_log("relay-a", "client registered client=gone1", 2, 60);
    let list = f.haifu_ok(&["fleet", "list"]);
    assert!(list.contains("ok1") && list.contains("app 1.0.0"), "{list}");
}

/// A straggler that missed the broadcast boots after the audit, asks the
/// master, and gets only the difference: it installs the new version byte
/// for byte and the audit records it as delivered by delta.
#[test]
fn a_straggler_boots_and_takes_a_delta() {
    let mut f = Fleet::with(
        3,
        &Layout {
            relays: &[("relay-a", &["ok1", "s1", "s2"])],
            boot_check: true,
            ..Layout::default()
        },
    );
    let v1 = f.artifact("app-1.bin", 2 << 20, 9);
    // 2.0.0: a small change in the middle and a little more at the end.
    let mut new = std::fs::read(&v1).unwrap();
    for b in &mut new[1_000_000..1_000_200] {
        *b ^= 0x5a;
    }
    new.extend_from_slice(&[7u8; 4096]);
    std::fs::write(f.path("app-2.bin"), &new).unwrap();
    f.workflow("v1", "app-1.bin", "1.0.0", &["relay-a"], 2, 1, "200Mbit/s");
    let start = jiff::Timestamp::now();
    std::fs::write(
        f.path("v2.rhai"),
        "fn next_round(ctx) { #{ stop: true, reason: \"one round\" } }\n",
    )
    .unwrap();
    std::fs::write(
        f.path("v2.yaml"),
        format!(
            "name: v2\nartifact: {{name: app, version: 2.0.0, path: app-2.bin}}\n\
             targets: {{relays: [relay-a]}}\nschedule: {{start: {start}, deadline: 40s}}\n\
             transports: {{broadcast: multicast, unicast: quic}}\nrate: 200Mbit/s\n\
             policies: {{retry: v2.rhai}}\n\
             steps:\n  - register\n  - broadcast: {{rounds: 1}}\n  - audit\n  - delta: {{until: 35s}}\n  - disconnect\n"
        ),
    )
    .unwrap();
    f.start_fleet(&["ok1", "s1", "s2"]);
    let out = f.haifu_ok(&["run", "v1.yaml", "--live", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());

    // s1 and s2 are off during 2.0.0's broadcast.
    assert!(f.stop("s1"));
    assert!(f.stop("s2"));
    let id = f.haifu_ok(&["run", "v2.yaml", "--live", "--detach"]);
    assert_eq!(id.trim(), "2");
    f.wait_log(
        "master",
        r#"event="stragglers-listed" detail={"count":2}"#,
        1,
        60,
    );
    // s2 boots first: the master builds the delta and caches it.
    f.start("client", "s2");
    f.wait_log("s2", "installed from the master; completion sent", 1, 60);
    let cached: Vec<_> = std::fs::read_dir(f.home.join("deltas"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    // The cached delta is damaged: s1 refuses it, keeps 1.0.0, and retries.
    let good = std::fs::read(&cached[0]).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    bad.truncate(bad.len() - 7);
    std::fs::write(&cached[0], &bad).unwrap();
    // A service that 2.0.0 brings: s1, still on 1.0.0, is kept from it.
    f.haifu_ok(&[
        "service",
        "set",
        "refund",
        "--artifact",
        "app",
        "--since",
        "2.0.0",
    ]);
    let gate = |f: &Fleet, id: &str| {
        f.haifu()
            .args(["gate", "--client", id, "--service", "refund"])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(gate(&f, "s1"), Some(3), "denied on 1.0.0");
    assert_eq!(gate(&f, "ok1"), Some(0), "allowed on 2.0.0");
    f.start("client", "s1");
    f.wait_log("s1", "delta refused", 1, 60);
    assert_eq!(
        std::fs::read(f.path("s1-root/current/artifact")).unwrap(),
        std::fs::read(&v1).unwrap(),
        "s1 still runs 1.0.0 intact"
    );
    std::fs::write(&cached[0], &good).unwrap();
    f.wait_log("s1", "installed from the master; completion sent", 1, 60);
    f.wait_for(30, "s1's completion ack", || {
        !f.path("s1-root/completion.json").exists()
    });
    assert_eq!(
        std::fs::read(f.path("s1-root/current/artifact")).unwrap(),
        new,
        "s1 runs 2.0.0 byte for byte"
    );
    assert_eq!(gate(&f, "s1"), Some(0), "allowed once updated");
    let log = f.log("master");
    let line = log
        .lines()
        .find(|l| l.contains("sending a delta"))
        .unwrap_or_else(|| panic!("{log}"));
    let field = |name: &str| -> u64 {
        line.split(&format!("{name}="))
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    assert!(
        field("delta_bytes") * 20 < field("full_bytes"),
        "the delta is much smaller: {line}"
    );
    f.wait_for(90, "run 2 to finish", || {
        f.json(&["status", "2", "--json"])["status"] == "done"
    });
    let audit = f.json(&["audit", "2", "--json"]);
    assert_eq!(
        collect(&audit, "delta"),
        BTreeSet::from(["s1".to_owned(), "s2".to_owned()]),
        "{audit:#}"
    );
    assert_eq!(
        collect(&audit, "delivered_by_round"),
        BTreeSet::from(["ok1".to_owned()]),
        "{audit:#}"
    );
    // What it cost on the wire, from the ledger: one round from the relay,
    // its fetch of the artifact, and the stragglers' deltas (s1 was sent
    // the damaged one too).
    let t = &audit["traffic"];
    let full = new.len() as u64;
    assert_eq!(t["multicast_by_round"].as_array().unwrap().len(), 1, "{t}");
    assert!(t["multicast_bytes"].as_u64().unwrap() >= full, "{t}");
    assert!(t["fetch_bytes"].as_u64().unwrap() > 0, "{t}");
    assert!(t["deltas"].as_u64().unwrap() >= 3, "{t}");
    assert_eq!(t["fulls"], 0, "{t}");
    let per_delta = t["delta_bytes"].as_u64().unwrap() / t["deltas"].as_u64().unwrap();
    assert!(per_delta * 20 < full, "{t}");
    // Each delta sent names its method in the master's log, and the audit
    // counts the bsdiff ones apart (ledger kind delta-bsdiff).
    let log = f.log("master");
    let sent = |method: &str| {
        log.lines()
            .filter(|l| l.contains("sending a delta"))
            .filter(|l| {
                l.split_whitespace()
                    .any(|w| w == format!("method={method}"))
            })
            .count() as u64
    };
    // The damaged copy's header may be what was damaged: "unreadable".
    let (bsdiff, deltas) = (sent("bsdiff"), t["deltas"].as_u64().unwrap());
    assert_eq!(
        bsdiff + sent("patch-from") + sent("unreadable"),
        deltas,
        "every delta sent names its method:\n{log}"
    );
    assert_eq!(t["bsdiff_deltas"].as_u64(), Some(bsdiff), "{t}\n{log}");
    let text = f.haifu_ok(&["audit", "2"]);
    assert!(
        text.contains("traffic") && text.contains("delta(s)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "deltas by method         patch-from {} (",
            deltas - bsdiff
        )) && text.contains(&format!(", bsdiff {bsdiff} (")),
        "{text}"
    );
}

/// A key holder on the group during round 1 (any client holds the session
/// key): for each real datagram of block 1 it sends a twin with garbage
/// bytes under the same symbol id, and after the first real datagrams of
/// block 0 garbage under ids the relay never uses. Only round 1's ids are
/// answered, so round 2 is clean. Returns (twins, fresh) sent.
fn key_holder_forger(
    plugins: std::path::PathBuf,
    group: String,
    key: haifu_carousel::CarouselKey,
    len: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    use haifu_carousel::datagram::write_datagram;
    use haifu_carousel::{CarouselConfig, Sender, SymbolHeader, parse_datagram};
    let open = |join: bool| {
        let set = haifu_plugin_host::load_dir(&plugins).unwrap();
        let p = set.get("multicast").unwrap();
        p.open_group(&format!(
            "group={group}\ninterface=127.0.0.1\nloopback=true\njoin={join}"
        ))
        .unwrap()
    };
    let (rx, tx) = (open(true), open(false));
    std::thread::spawn(move || {
        let config = CarouselConfig::default();
        let sender = Sender::new(key.clone(), len, config).unwrap();
        let layout = sender.object_layout(0).unwrap();
        assert!(layout.block_count() >= 2, "{layout:?}");
        let round1: Vec<u32> = layout
            .blocks
            .iter()
            .map(|b| config.symbols_per_round(b.symbols))
            .collect();
        let mut answered = std::collections::HashSet::new();
        let (mut twins, mut fresh) = (0u64, 0u64);
        let mut buf = vec![0u8; 2048];
        let mut garbage = 0x2545_f491_4f6c_dd1du64;
        let mut forge = |h: &SymbolHeader| {
            let mut out = Vec::new();
            let data: Vec<u8> = (0..h.shape.symbol_size)
                .map(|_| {
                    garbage ^= garbage << 13;
                    garbage ^= garbage >> 7;
                    garbage ^= garbage << 17;
                    garbage as u8
                })
                .collect();
            write_datagram(&key, h, &data, &mut out);
            tx.send(&out).unwrap();
        };
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok(n) = rx.recv(&mut buf, Some(Duration::from_millis(100))) else {
                continue;
            };
            let Ok(s) = parse_datagram(&buf[..n], &key) else {
                continue;
            };
            let h = s.header;
            let in_round1 = h.object == 0 && h.esi < round1[usize::from(h.sbn)];
            if !in_round1 || !answered.insert((h.sbn, h.esi)) {
                continue;
            }
            if h.sbn == 1 && h.esi % 8 == 0 {
                forge(&h);
                twins += 1;
            } else if h.sbn == 0 && h.esi < 40 {
                forge(&SymbolHeader {
                    esi: h.esi + 5_000_000,
                    ..h
                });
                fresh += 1;
            }
        }
        (twins, fresh)
    })
}

/// Issue 11: a key holder forges valid-tag garbage during round 1. Every
/// honest client still completes, in round 1 or 2, with the right bytes,
/// and counts what it threw away. A client whose session takes nothing
/// (it drops every datagram) is let go by the progress watchdog: its boot
/// check asks the master, which streams it the full copy once the audit
/// lists it as a straggler.
#[test]
fn a_key_holder_poisons_round_one_and_costs_only_its_blocks() {
    use sha3::Digest as _;
    let mut f = Fleet::with(
        4,
        &Layout {
            relays: &[("relay-a", &["h1", "h2"])],
            ..Layout::default()
        },
    );
    let deaf = format!(
        "{}receive_stall_secs: 2\ntesting: {{drop_datagrams: 1.0}}\n",
        f.master_line()
    );
    f.write_client("deaf", "relay-a", f.relay_port("relay-a"), &deaf);
    // 12 MiB: one object of three blocks at the default layout.
    let data = std::fs::read(f.artifact("app-1.bin", 12 << 20, 21)).unwrap();
    f.workflow(
        "poison",
        "app-1.bin",
        "1.0.0",
        &["relay-a"],
        2,
        1,
        "200Mbit/s",
    );
    f.start_master_and_relays();
    f.start_clients(&["h1", "h2", "deaf"]);
    // The session key every client of relay-a in run 1 gets, as a key
    // holder has it.
    let seed = haifu_store::load_or_create_master_key(&f.home.join("keys"))
        .unwrap()
        .to_seed();
    let digest = haifu_core::Digest::from_bytes(sha3::Sha3_256::digest(&data).into());
    let (id, secret) = haifu_fleet::common::session_key(&seed, 1, &digest, "relay-a");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let forging = key_holder_forger(
        f.plugins.clone(),
        f.group_addr("relay-a"),
        haifu_carousel::CarouselKey::new(id, secret),
        data.len() as u64,
        std::sync::Arc::clone(&stop),
    );
    f.settle();
    // The deaf client is served while the run's delta window is open.
    f.open_delta_window("poison");
    let run = f.haifu_ok(&["run", "poison.yaml", "--live", "--detach"]);
    assert_eq!(run.trim(), "1");

    // The deaf client's watchdog lets its boot check run; once the audit
    // lists it, the master streams it the whole artifact.
    f.wait_log("deaf", "the session made no progress", 1, 60);
    f.wait_log("deaf", "installed from the master; completion sent", 1, 90);
    f.wait_for(120, "run 1 to finish", || {
        f.json(&["status", "1", "--json"])["status"] == "done"
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (twins, fresh) = forging.join().unwrap();
    assert!(
        twins > 0 && fresh > 0,
        "forged: {twins} twins, {fresh} fresh"
    );

    let audit = f.json(&["audit", "1", "--json"]);
    for id in ["h1", "h2"] {
        let round = round_of(&audit, id);
        assert!(
            matches!(round, Some(1 | 2)),
            "{id} in round {round:?}: {audit:#}\n{}",
            f.dump()
        );
        let installed = std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap();
        assert!(installed == data, "{id} installed the signed bytes");
        let log = f.log(id);
        let line = log
            .lines()
            .find(|l| l.contains("all blocks decoded"))
            .unwrap_or_else(|| panic!("{id} decoded:\n{log}"));
        assert!(
            line.contains("block_hash_mismatch") || line.contains("symbol_conflict"),
            "{id} counted the forgery: {line}"
        );
        assert!(log.contains("a key holder is forging"), "{id}:\n{log}");
    }
    assert_eq!(
        collect(&audit, "delta"),
        BTreeSet::from(["deaf".to_owned()]),
        "{audit:#}"
    );
    let deaf = f.log("deaf");
    assert!(
        deaf.contains("kind=\"full\"") || deaf.contains("kind=full"),
        "{deaf}"
    );
    assert!(std::fs::read(f.path("deaf-root/current/artifact")).unwrap() == data);
    for id in ["h1", "h2", "deaf", "relay-a", "master"] {
        assert!(f.stop(id), "{id} exits 0 on SIGTERM");
    }
}
