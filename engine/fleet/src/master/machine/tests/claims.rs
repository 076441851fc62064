//! What peers claim, checked before anything is written: completions
//! (unknown run, wrong digest, whom a relay or a client speaks for, the
//! round they are filed under, late joins) and delta requests.

use super::*;

#[test]
fn an_unknown_run_or_a_wrong_digest_is_refused_and_not_written() {
    let mut w = World::new();
    on_air(&mut w);
    let mut c = Completion {
        run: 5,
        client: "c0".into(),
        via: Via::Round(1),
        digest: D,
        at: secs(30),
    };
    let e = w.msg(RELAY, Message::Completion(c.clone()));
    assert_eq!(error(&e).unwrap().0, ErrorCode::UnknownRun);
    assert!(writes(&e).is_empty());
    c.run = 1;
    c.digest = Digest::from_bytes([8; 32]);
    let e = w.msg(RELAY, Message::Completion(c));
    let (code, why) = error(&e).unwrap();
    assert_eq!(code, ErrorCode::Unexpected);
    assert!(why.contains("digest"), "{why}");
    assert!(writes(&e).is_empty() && w.core.is_idle());
}

#[test]
fn a_relay_speaks_only_for_its_own_clients() {
    let mut w = World::new();
    on_air(&mut w);
    // c2 is behind r1.
    let e = w.msg(RELAY, completion("c2", Via::Round(1), secs(30)));
    assert!(error(&e).unwrap().1.contains("registered behind"), "{e:?}");
    assert!(writes(&e).is_empty());
    assert_eq!(w.refused(), 1);
    // And never relays a delta completion.
    let e = w.msg(RELAY, completion("c0", Via::Delta, secs(30)));
    assert!(error(&e).is_some() && writes(&e).is_empty());
}

#[test]
fn a_client_speaks_only_for_itself() {
    let mut w = World::new();
    on_air(&mut w);
    let e = w.msg(CLIENT, completion("c1", Via::Round(1), secs(30)));
    assert!(error(&e).unwrap().1.contains("only for itself"));
    assert_eq!(w.refused(), 1);
}

#[test]
fn a_straggler_delta_of_run_0_is_filed_under_its_straggler_run() {
    let mut w = World::new();
    w.facts.stragglers.insert("c0".into(), 1);
    let mut c = Completion {
        run: 0,
        client: "c0".into(),
        via: Via::Delta,
        digest: D,
        at: secs(30),
    };
    let e = w.msg(CLIENT, Message::Completion(c.clone()));
    let b = writes(&e);
    assert_eq!(filed_round(b[0]), None, "a delta counts in no round");
    w.on(secs(101), Event::Committed);
    // No straggler run left: acknowledged at once, nothing written.
    w.facts.stragglers.clear();
    c.at = secs(40);
    let e = w.msg(CLIENT, Message::Completion(c));
    assert!(writes(&e).is_empty());
    assert_eq!(acks(&e), vec![(CLIENT, "c0".to_owned())]);
}

#[test]
fn a_completion_after_the_run_left_the_air_counts_in_the_snapshot_round() {
    let mut w = World::new();
    on_air(&mut w);
    w.on(secs(90), Event::OffAir);
    w.facts.rounds.insert(1, vec![(1, secs(10)), (2, secs(60))]);
    let e = w.msg(RELAY, completion("c1", Via::Round(1), secs(61)));
    assert_eq!(filed_round(writes(&e)[0]), Some(2));
    // And a run that started no round at all refuses it.
    w.facts.rounds.clear();
    w.on(secs(101), Event::Committed);
    let e = w.msg(RELAY, completion("c1", Via::Round(1), secs(61)));
    assert!(error(&e).unwrap().1.contains("no round"));
}

#[test]
fn a_client_not_in_the_run_joins_only_while_it_is_on_air_for_its_relay() {
    let mut w = World::new();
    w.facts.relays.insert("c9".into(), "r0".into());
    let report = Message::RegisterClient(RegisterClient {
        client: "c9".into(),
        relay: "r0".into(),
        installed: None,
        broadcast: None,
    });
    w.msg(RELAY, report);
    w.on(secs(101), Event::Committed);
    let e = w.msg(RELAY, completion("c9", Via::Round(1), secs(30)));
    assert!(error(&e).unwrap().1.contains("does not list"), "{e:?}");
    on_air(&mut w);
    let e = w.msg(RELAY, completion("c9", Via::Round(1), secs(30)));
    let b = writes(&e);
    assert_eq!(b[0].joins, vec![(1, "c9".into(), "r0".into())]);
}

#[test]
fn at_most_four_deltas_are_served_at_once() {
    let mut w = World::new();
    let request = DeltaRequest {
        transfer: 1,
        client: "c0".into(),
        name: "app".parse().unwrap(),
        from: Digest::from_bytes([1; 32]),
        to: D,
        resume_at: 0,
    };
    for _ in 0..MAX_DELTAS_SERVING {
        let e = w.msg(CLIENT, Message::DeltaRequest(request.clone()));
        assert!(matches!(e[..], [Effect::Delta { .. }]));
    }
    let e = w.msg(CLIENT, Message::DeltaRequest(request.clone()));
    let busy = sends(&e).into_iter().any(|(_, m)| {
        matches!(m, Message::DeltaResponse(r) if matches!(&r.body, DeltaBody::Refused { reason } if reason.starts_with("busy")))
    });
    assert!(busy, "{e:?}");
    w.on(secs(101), Event::DeltaDone);
    let e = w.msg(CLIENT, Message::DeltaRequest(request));
    assert!(matches!(e[..], [Effect::Delta { .. }]));
}
