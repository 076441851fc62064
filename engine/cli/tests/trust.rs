//! Issue 11's attacks, replayed against real processes: a terminal's
//! certificate and a rogue relay's try to speak for others, and every claim
//! is refused with a protocol error, counted, and never recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::fleet::{Fleet, Layout, base_port, http_get};
use haifu_plugin_host::{Connection, Endpoint, Plugin};
use haifu_protocol::{
    ArtifactFetch, ArtifactRef, Completion, ErrorCode, Group, Hello, Message, RefusalCode,
    RegisterClient, RegisterRelay, Role, RoundDone, RoundListeners, Via,
};
use serde_json::Value;

const T: Option<Duration> = Some(Duration::from_secs(10));

fn endpoint(f: &Fleet, quic: &Plugin, name: &str) -> Endpoint {
    let certs = f.home.join("certs");
    quic.open_endpoint(&format!(
        "ca={}\ncert={}\nkey={}\nthreads=1\n",
        f.home.join("ca/ca.crt").display(),
        certs.join(format!("{name}.crt")).display(),
        certs.join(format!("{name}.key")).display(),
    ))
    .unwrap()
}

fn send(c: &Connection, m: &Message) {
    c.send(&m.encode().unwrap(), T).unwrap();
}

fn recv(c: &Connection) -> Message {
    Message::decode(&c.recv(T).unwrap()).unwrap()
}

/// The next message that is not a deny list, registration or end of rounds.
fn answer(c: &Connection) -> Message {
    loop {
        match recv(c) {
            Message::DenyList(_) | Message::Registered(_) | Message::StopRounds(_) => {}
            other => return other,
        }
    }
}

/// Connects to the master as `name` claiming `role`; returns the
/// connection after the hello exchange and the master's answer.
fn hello(f: &Fleet, quic: &Plugin, name: &str, role: Role) -> (Endpoint, Connection, Message) {
    let ep = endpoint(f, quic, name);
    let addr = format!("127.0.0.1:{}", f.master_port);
    let conn = ep.connect(&addr, "master", T).unwrap();
    send(&conn, &Message::Hello(Hello::new(role, name)));
    let answer = recv(&conn);
    (ep, conn, answer)
}

fn refused(m: Message, code: ErrorCode, says: &str) {
    match m {
        Message::Error(e) => {
            assert_eq!(e.code, code, "{e:?}");
            assert!(e.reason.contains(says), "{:?} lacks {says:?}", e.reason);
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

fn audit(f: &Fleet) -> Value {
    f.json(&["audit", "1", "--json"])
}

#[test]
fn a_fleet_member_speaks_only_for_itself() {
    let api = format!("127.0.0.1:{}", base_port(7) + 50);
    let mut f = Fleet::with(
        7,
        &Layout {
            master: &format!("api: {api}\n"),
            relays: &[("relay-a", &["a1", "a2"])],
            ..Layout::default()
        },
    );
    // The attackers' certificates: a terminal, and a relay of the fleet that
    // the run does not target.
    f.issue("mallory", "client");
    f.issue("relay-x", "relay");
    let art = f.artifact("app.bin", 1 << 20, 5);
    f.workflow("v1", "app.bin", "1.0.0", &["relay-a"], 3, 3, "20Mbit/s");
    f.start_master_and_relays();
    f.start_clients(&["a1", "a2"]);
    // a2 is off for the whole run: nothing may mark it delivered.
    assert!(f.stop("a2"));
    let id = f.haifu_ok(&["run", "v1.yaml", "--live", "--detach"]);
    assert_eq!(id.trim(), "1");
    f.wait_log("master", "round started", 1, 60);
    let manifest = f.json(&["manifest", "app", "1.0.0"]);
    let digest: haifu_core::Digest = manifest["sha3_256"].as_str().unwrap().parse().unwrap();
    let artifact = ArtifactRef {
        name: "app".parse().unwrap(),
        version: "1.0.0".parse().unwrap(),
        digest,
    };
    let completion = |client: &str, round: u32| Completion {
        run: 1,
        client: client.into(),
        via: Via::Round(round),
        digest,
        at: jiff::Timestamp::now(),
    };

    let set = haifu_plugin_host::load_dir(&f.plugins).unwrap();
    let quic = set.get("quic").unwrap().clone();

    // 1. A terminal's certificate claiming the relay role is refused at
    //    the hello.
    let (_ep, _c, answer_) = hello(&f, &quic, "mallory", Role::Relay);
    match answer_ {
        Message::HelloRefused(r) => {
            assert_eq!(r.code, RefusalCode::Denied);
            assert!(r.reason.contains("grants the client role"), "{}", r.reason);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // 2. A relay of the fleet speaking for another relay's clients.
    let (_ep, x, welcome) = hello(&f, &quic, "relay-x", Role::Relay);
    assert!(matches!(welcome, Message::Welcome(_)), "{welcome:?}");
    send(
        &x,
        &Message::RegisterRelay(RegisterRelay {
            relay: "relay-x".into(),
            clients: 1,
            group: Group {
                addr: "239.255.93.99".parse().unwrap(),
                port: 9,
            },
            broadcast: None,
        }),
    );
    // It reports a1 as behind itself (to take it out of its real relay's
    // runs): refused.
    send(
        &x,
        &Message::RegisterClient(RegisterClient {
            client: "a1".into(),
            relay: "relay-x".into(),
            installed: None,
            broadcast: None,
        }),
    );
    refused(
        answer(&x),
        ErrorCode::Unexpected,
        "registered behind relay \"relay-a\"",
    );
    // It completes for a2, which received nothing: refused.
    send(&x, &Message::Completion(completion("a2", 1)));
    refused(
        answer(&x),
        ErrorCode::Unexpected,
        "registered behind relay \"relay-a\"",
    );
    // It reports a round of its own with absurd numbers: refused.
    send(
        &x,
        &Message::RoundDone(RoundDone {
            run: 1,
            round: u32::MAX,
            datagrams: u64::MAX,
            bytes: u64::MAX,
            elapsed_ms: 1,
            listeners: Some(RoundListeners {
                listening: u32::MAX,
                decoded: u32::MAX,
                silent: 0,
                repair_bytes: u64::MAX,
                max_loss_permille: u32::MAX,
                ended: u8::MAX,
            }),
        }),
    );
    refused(answer(&x), ErrorCode::Unexpected, "not on air");
    // It fetches the run's artifact, which it was never instructed for.
    send(
        &x,
        &Message::ArtifactFetch(ArtifactFetch {
            transfer: 9,
            run: 1,
            artifact: artifact.clone(),
        }),
    );
    refused(answer(&x), ErrorCode::UnknownArtifact, "no run to fetch");
    // It was never sent the run's instruction (its session key).
    send(&x, &Message::Ping { nonce: 5 });
    assert_eq!(answer(&x), Message::Pong { nonce: 5 });

    // 3. The terminal as a client: it may not speak for a2 ...
    let (_ep, m, welcome) = hello(&f, &quic, "mallory", Role::Client);
    assert!(matches!(welcome, Message::Welcome(_)), "{welcome:?}");
    send(&m, &Message::Completion(completion("a2", 1)));
    refused(answer(&m), ErrorCode::Unexpected, "only for itself");
    // ... and its own word about a round is not taken: a completion "in
    // round u32::MAX" is filed under a round this master started.
    send(&m, &Message::Completion(completion("mallory", u32::MAX)));
    match answer(&m) {
        Message::CompletionAck(a) => assert_eq!(a.client, "mallory"),
        other => panic!("expected an ack, got {other:?}"),
    }

    // The honest client completes; the run ends with a2 a straggler.
    f.wait_log("a1", "installed; completion sent", 1, 60);
    f.wait_log("master", "event=\"stragglers-listed\"", 1, 90);
    let a = audit(&f);
    let text = a.to_string();
    let relay_a = a["relays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["relay"] == "relay-a")
        .unwrap_or_else(|| panic!("{a:#}"));
    let delivered: Vec<&str> = relay_a["delivered_by_round"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(delivered, ["a1"], "{a:#}");
    assert!(
        relay_a["undelivered"].to_string().contains("a2"),
        "a2 never completed: {a:#}"
    );
    assert!(!text.contains("delivered_unknown_round"), "{a:#}");
    // mallory's completion counts in one of the run's rounds (at most 3).
    let rounds = a["relays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["delivered_by_round"].as_array().unwrap().len())
        .max()
        .unwrap();
    assert!((1..=3).contains(&rounds), "{a:#}");
    // Nothing relay-x said reached the ledger: a1 is still behind relay-a.
    let fleet = f.json(&["fleet", "list", "--json"]);
    let a1 = fleet
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "a1")
        .unwrap();
    assert_eq!(a1["relay"], "relay-a", "{fleet:#}");
    // The status readers work on this ledger.
    f.haifu_ok(&["status", "1"]);
    // A ledger that already holds a completion under round u32::MAX (as a
    // master that trusted its peers wrote them) still reads, over the API
    // too: the row is filed as "unknown round", nothing is sized by it.
    // Written into the row as that master did (run 1 has finished: this
    // build would keep a completion coming now beside its record, as late).
    {
        let l = rusqlite::Connection::open(f.home.join("ledger.sqlite")).unwrap();
        let n = l
            .execute(
                "UPDATE run_clients SET state = 'delivered', round = 4294967295,
                        completed_at = '2026-12-03T00:00:00Z'
                 WHERE run_id = 1 AND client = 'a2'",
                [],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let token = f.haifu_ok(&["api", "token", "create", "--name", "ops", "--scope", "read"]);
    let (status, body) = http_get(&api, token.trim(), "/v1/runs/1/audit");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""delivered_unknown_round":["a2"]"#),
        "{body}"
    );
    let (status, _) = http_get(&api, "hfu_wrong", "/v1/runs/1/audit");
    assert_eq!(status, 401);
    f.haifu_ok(&["audit", "1"]);
    f.haifu_ok(&["status", "1"]);
    // Once the operator moves a1, relay-x may speak for it.
    f.haifu_ok(&["fleet", "move", "a1", "--relay", "relay-x"]);
    send(
        &x,
        &Message::RegisterClient(RegisterClient {
            client: "a1".into(),
            relay: "relay-x".into(),
            installed: None,
            broadcast: None,
        }),
    );
    send(&x, &Message::Ping { nonce: 6 });
    assert_eq!(
        answer(&x),
        Message::Pong { nonce: 6 },
        "accepted, not refused"
    );
    assert!(f.stop("master"));
    let log = f.log("master");
    let refused_count = log
        .lines()
        .find(|l| l.contains("master stopping"))
        .and_then(|l| l.split("\"refused\":").nth(1))
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{log}"));
    // Five claims refused (a1 moved, a2 completed twice, the round, the
    // fetch); the false relay hello is counted as a dropped peer.
    assert_eq!(refused_count, 5, "{log}");
    assert!(log.contains("\"dropped\":1"), "{log}");
    drop(art);
}
