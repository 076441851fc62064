//! A staged run: each relay's instruction names only its own admitted
//! clients, a relay without `stages` is never instructed for it, and a
//! client outside the admitted ones can claim no round completion and is
//! offered no delta.

use super::super::stages::admitted_in;
use super::*;

fn staged() -> Box<ActiveRun> {
    Box::new(ActiveRun {
        staged: true,
        ..active()
    })
}

fn admit(w: &mut World, clients: &[&str]) -> Vec<Effect> {
    w.on(
        secs(5),
        Event::Admit {
            run: 1,
            clients: clients.iter().map(|c| (*c).to_owned()).collect(),
        },
    )
}

/// `(connection, admitted clients)` of each instruction in `e`.
fn instructions(e: &[Effect]) -> Vec<(ConnId, Vec<String>)> {
    sends(e)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::Instruction(_)))
        .map(|(c, m)| (c, admitted_in(m).expect("a staged instruction").to_vec()))
        .collect()
}

#[test]
fn a_client_not_admitted_cannot_report_a_failure_of_the_staged_run() {
    let mut w = World::new();
    admit(&mut w, &["c0"]);
    w.on(t0(), Event::OnAir(staged()));
    let failed = |client: &str| {
        Message::InstallFailed(haifu_protocol::InstallFailed {
            run: 1,
            client: client.into(),
            digest: D,
            kind: haifu_protocol::FailureKind::Health,
            reason: "exited with exit status: 1".into(),
            at: secs(6),
        })
    };
    let e = w.msg(RELAY, failed("c1"));
    assert!(writes(&e).is_empty(), "{e:?}");
    assert_eq!(w.refused(), 1);
    let e = w.msg(RELAY, failed("c0"));
    assert_eq!(writes(&e)[0].failures.len(), 1, "{e:?}");
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|c| (*c).to_owned()).collect()
}

fn delta_request(client: &str) -> Message {
    Message::DeltaRequest(DeltaRequest {
        transfer: 1,
        client: client.into(),
        name: "app".parse().unwrap(),
        from: Digest::from_bytes([1; 32]),
        to: D,
        resume_at: 0,
    })
}

#[test]
fn each_relay_is_told_only_its_own_admitted_clients_and_more_as_stages_advance() {
    let mut w = World::new();
    // Admitted before the run goes on air: kept for its instructions.
    admit(&mut w, &["c0"]);
    let e = w.on(t0(), Event::OnAir(staged()));
    assert_eq!(
        instructions(&e),
        vec![(RELAY, names(&["c0"])), (OTHER_RELAY, Vec::new())],
        "r1 learns nothing of r0's clients, and holds the key from c2"
    );
    // The next stage: every client admitted so far.
    let e = admit(&mut w, &["c0", "c1", "c2"]);
    assert_eq!(
        instructions(&e),
        vec![(RELAY, names(&["c0", "c1"])), (OTHER_RELAY, names(&["c2"]))]
    );
    // A relay that reconnects is instructed with its list again.
    w.on(secs(70), Event::Closed { conn: OTHER_RELAY });
    w.on(
        secs(71),
        Event::Connected {
            conn: 11,
            peer: "r1".into(),
            role: Role::Relay,
            delta: true,
            chunked: true,
            stages: true,
        },
    );
    let e = w.msg(11, register("r1"));
    assert_eq!(instructions(&e), vec![(11, names(&["c2"]))]);
}

#[test]
fn a_relay_without_stages_is_never_instructed_for_a_staged_run() {
    let mut w = World::new();
    w.on(secs(1), Event::Closed { conn: OTHER_RELAY });
    w.on(
        secs(2),
        Event::Connected {
            conn: 11,
            peer: "r1".into(),
            role: Role::Relay,
            delta: true,
            chunked: true,
            stages: false,
        },
    );
    w.msg(11, register("r1"));
    admit(&mut w, &["c0"]);
    let e = w.on(t0(), Event::OnAir(staged()));
    assert_eq!(instructions(&e), vec![(RELAY, names(&["c0"]))]);
    // Left out: no round for it, and no round waits for it.
    let e = w.on(
        secs(10),
        Event::RoundStarted {
            round: 1,
            budget: None,
        },
    );
    assert!(sends(&e).iter().all(|(c, _)| *c == RELAY), "{e:?}");
    assert_eq!(w.core.round_waiting(1, 1).0, names(&["r0"]));
    // Its clients cannot have decoded: a round completion is refused.
    let before = w.refused();
    let e = w.msg(11, completion("c2", Via::Round(1), secs(30)));
    assert!(error(&e).is_some() && writes(&e).is_empty(), "{e:?}");
    assert_eq!(w.refused(), before + 1);
    // Admitting more, or its coming back, does not instruct it either.
    let e = admit(&mut w, &["c0", "c1", "c2"]);
    assert_eq!(instructions(&e), vec![(RELAY, names(&["c0", "c1"]))]);
    let e = w.msg(11, register("r1"));
    assert!(instructions(&e).is_empty(), "{e:?}");
}

#[test]
fn a_round_completion_from_a_client_not_admitted_is_refused_and_counted() {
    let mut w = World::new();
    w.on(t0(), Event::OnAir(staged()));
    admit(&mut w, &["c0"]);
    w.on(
        secs(10),
        Event::RoundStarted {
            round: 1,
            budget: None,
        },
    );
    let before = w.refused();
    let e = w.msg(RELAY, completion("c1", Via::Round(1), secs(30)));
    let (code, why) = error(&e).unwrap();
    assert_eq!(code, ErrorCode::Unexpected);
    assert!(why.contains("not admitted to staged run 1"), "{why}");
    assert!(acks(&e).is_empty() && writes(&e).is_empty());
    assert_eq!(w.refused(), before + 1);
    // The admitted one is recorded.
    let e = w.msg(RELAY, completion("c0", Via::Round(1), secs(30)));
    assert!(error(&e).is_none(), "{e:?}");
    assert_eq!(writes(&e).len(), 1);
    // So is c1 once its stage is admitted.
    admit(&mut w, &["c0", "c1"]);
    let e = w.msg(RELAY, completion("c1", Via::Round(1), secs(30)));
    assert!(error(&e).is_none(), "{e:?}");
}

#[test]
fn a_client_not_admitted_is_offered_no_delta() {
    let mut w = World::new();
    w.on(t0(), Event::OnAir(staged()));
    admit(&mut w, &["c2"]);
    let e = w.msg(CLIENT, delta_request("c0"));
    let refused = sends(&e).into_iter().any(|(_, m)| {
        matches!(m, Message::DeltaResponse(r) if matches!(&r.body, DeltaBody::Refused { reason } if reason.contains("not admitted")))
    });
    assert!(refused, "{e:?}");
    assert!(!e.iter().any(|e| matches!(e, Effect::Delta { .. })));
    // Still after the rounds, until its stage is admitted.
    w.on(secs(200), Event::OffAir);
    let e = w.msg(CLIENT, delta_request("c0"));
    assert!(!e.iter().any(|e| matches!(e, Effect::Delta { .. })));
    admit(&mut w, &["c2", "c0"]);
    let e = w.msg(CLIENT, delta_request("c0"));
    assert!(matches!(e[..], [Effect::Delta { .. }]), "{e:?}");
}

#[test]
fn an_admitted_client_that_registers_behind_a_relay_later_is_added_to_its_list() {
    let mut w = World::new();
    w.on(t0(), Event::OnAir(staged()));
    admit(&mut w, &["c0", "c9"]);
    let e = w.msg(
        RELAY,
        Message::RegisterClient(RegisterClient {
            client: "c9".into(),
            relay: "r0".into(),
            installed: None,
            broadcast: None,
        }),
    );
    assert_eq!(instructions(&e), vec![(RELAY, names(&["c0", "c9"]))]);
}

#[test]
fn an_unstaged_run_admits_everyone_and_sends_the_older_instruction() {
    let mut w = World::new();
    let e = w.on(t0(), Event::OnAir(Box::new(active())));
    let plain = sends(&e)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::Instruction(i) if i.admitted.is_none()))
        .count();
    assert_eq!(plain, 2);
    let e = w.msg(CLIENT, delta_request("c0"));
    assert!(matches!(e[..], [Effect::Delta { .. }]), "{e:?}");
}
