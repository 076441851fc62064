//! The relays' side of a run: who may connect, the instruction and the
//! round on reconnect, round reports, fetches, and each round's budget.

use super::*;

#[test]
fn a_relay_not_listed_is_refused_and_closed() {
    let counters = Arc::new(Counters::default());
    let mut core = MasterCore::new(vec!["r0".into()], HashMap::new(), counters);
    let e = core.handle(
        t0(),
        Event::Connected {
            conn: 7,
            peer: "rogue".into(),
            role: Role::Relay,
            delta: false,
            chunked: true,
            stages: true,
        },
        &Table::default(),
    );
    assert!(
        error(&e)
            .unwrap()
            .1
            .contains("not one of this master's relays")
    );
    assert!(matches!(e.last(), Some(Effect::Close { conn: 7 })));
}

#[test]
fn a_relay_that_reconnects_mid_round_gets_the_instruction_and_the_round() {
    let mut w = World::new();
    on_air(&mut w);
    w.on(secs(70), Event::Closed { conn: RELAY });
    w.on(
        secs(71),
        Event::Connected {
            conn: 11,
            peer: "r0".into(),
            role: Role::Relay,
            delta: false,
            chunked: true,
            stages: true,
        },
    );
    let e = w.msg(11, register("r0"));
    let kinds: Vec<u8> = sends(&e).iter().map(|(_, m)| m.tag()).collect();
    let tag = |m: Message| m.tag();
    assert!(kinds.contains(&tag(Message::Instruction(active().instruction))));
    let round = sends(&e).into_iter().find_map(|(_, m)| match m {
        Message::StartRound(s) => Some(s.round),
        _ => None,
    });
    assert_eq!(round, Some(2));
    // Each relay has its own session key.
    let key = |e: &[Effect]| {
        sends(e).into_iter().find_map(|(_, m)| match m {
            Message::Instruction(i) => Some(i.session_key.0),
            _ => None,
        })
    };
    let e1 = w.msg(OTHER_RELAY, register("r1"));
    assert_ne!(key(&e), key(&e1));
}

#[test]
fn a_round_report_must_name_a_round_on_air_and_plausible_bytes() {
    let mut w = World::new();
    on_air(&mut w);
    let done = |round, bytes| {
        Message::RoundDone(RoundDone {
            run: 1,
            round,
            datagrams: 10,
            bytes,
            elapsed_ms: 5,
            listeners: None,
        })
    };
    assert_eq!(w.core.round_waiting(1, 2).0.len(), 2);
    let e = w.msg(RELAY, done(7, 1000));
    assert!(error(&e).unwrap().1.contains("not on air"));
    let e = w.msg(RELAY, done(2, u64::MAX));
    assert!(error(&e).is_some());
    let e = w.msg(RELAY, done(2, 1100));
    assert!(error(&e).is_none());
    assert_eq!(writes(&e)[0].traffic[0].bytes, 1100);
    assert_eq!(w.core.round_waiting(1, 2), (vec!["r1".to_owned()], true));
    assert_eq!(w.refused(), 2);
}

#[test]
fn a_fetch_is_served_only_for_the_run_the_relay_is_instructed_for() {
    let mut w = World::new();
    let fetch = ArtifactFetch {
        transfer: 4,
        run: 1,
        artifact: artifact(),
    };
    let e = w.msg(RELAY, Message::ArtifactFetch(fetch.clone()));
    assert_eq!(error(&e).unwrap().0, ErrorCode::UnknownArtifact);
    on_air(&mut w);
    let e = w.msg(RELAY, Message::ArtifactFetch(fetch));
    assert!(matches!(e[..], [Effect::Fetch { conn: RELAY, .. }]));
}

#[test]
fn a_rounds_budget_goes_to_relays_and_their_listeners_are_capped_by_whom_they_speak_for() {
    let mut w = World::new();
    w.on(t0(), Event::OnAir(Box::new(active())));
    let budget = RoundBudget {
        proactive_permille: 20,
        bytes_permille: 3000,
        time_ms: 9000,
        silence_ms: 1000,
        assumed_loss_permille: 0,
    };
    let e = w.on(
        secs(10),
        Event::RoundStarted {
            round: 1,
            budget: Some(budget),
        },
    );
    let starts: Vec<_> = sends(&e)
        .into_iter()
        .filter_map(|(_, m)| match m {
            Message::StartRound(s) => Some(s.budget),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![Some(budget), Some(budget)]);
    // A relay that reconnects mid-round gets the same budget.
    let e = w.msg(RELAY, register("r0"));
    assert!(
        sends(&e)
            .into_iter()
            .any(|(_, m)| matches!(m, Message::StartRound(s) if s.budget == Some(budget)))
    );
    let done = |decoded, loss| {
        Message::RoundDone(RoundDone {
            run: 1,
            round: 1,
            datagrams: 10,
            bytes: 1100,
            elapsed_ms: 5,
            listeners: Some(RoundListeners {
                listening: decoded,
                decoded,
                silent: 0,
                repair_bytes: 100,
                max_loss_permille: loss,
                ended: 0,
            }),
        })
    };
    assert_eq!(w.core.round_listeners(1, 1), None);
    // r0 has two clients behind it: it cannot say a million decoded.
    w.msg(RELAY, done(1_000_000, 80));
    assert_eq!(w.core.round_listeners(1, 1), Some((2, 80)));
    // Said twice, counted once; a loss beyond 100% is 100%.
    w.msg(RELAY, done(2, 80));
    w.msg(OTHER_RELAY, done(1, u32::MAX));
    assert_eq!(w.core.round_listeners(1, 1), Some((3, 1000)));
    // Completions made durable are counted for the driver's wait.
    assert_eq!(w.core.recorded(1), 0);
    w.msg(CLIENT, completion("c0", Via::Round(1), secs(11)));
    // The round figures' write, then the completion's.
    w.on(secs(12), Event::Committed);
    assert_eq!(w.core.recorded(1), 0);
    w.on(secs(12), Event::Committed);
    assert_eq!(w.core.recorded(1), 1);
}
