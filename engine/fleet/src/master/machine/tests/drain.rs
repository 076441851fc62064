//! The drain before a run's audit: the relays that carried it are back
//! and settled, and nothing waits to be written.

use super::*;

/// The wrong report this guards against: a relay that carried the run died with
/// completions on their way; the run's report waits for it to be back and
/// to have been back long enough for its clients to resend, and a relay
/// that never carried the run is not waited for.
#[test]
fn a_run_is_not_final_while_a_relay_that_carried_it_is_away_or_just_back() {
    use super::super::drain::Drain;
    let mut w = World::new();
    on_air(&mut w);
    let behind: std::collections::BTreeSet<String> = ["r0".to_owned(), "never".to_owned()].into();
    let none = std::collections::BTreeSet::new();
    // Connected, but silent since: it may have died a moment ago.
    assert_eq!(
        w.core.drain(1, &behind, &none, secs(200)),
        Drain::Unanswered(vec!["r0".into()])
    );
    // It answered the drain's ping: alive, and all it sent before is in.
    let answered = behind.clone();
    assert_eq!(
        w.core.drain(1, &behind, &answered, secs(200)),
        Drain::Drained
    );
    // r0 dies mid-round.
    w.on(secs(201), Event::Closed { conn: RELAY });
    assert_eq!(
        w.core.drain(1, &behind, &answered, secs(202)),
        Drain::Missing(vec!["r0".into()])
    );
    // Back: its clients need a moment to reconnect and resend.
    w.on(
        secs(220),
        Event::Connected {
            conn: 11,
            peer: "r0".into(),
            role: Role::Relay,
            delta: false,
            chunked: true,
            stages: true,
        },
    );
    w.on(
        secs(220),
        Event::Received {
            conn: 11,
            msg: register("r0"),
        },
    );
    assert_eq!(
        w.core.drain(1, &behind, &answered, secs(221)),
        Drain::Settling(vec!["r0".into()])
    );
    assert_eq!(
        w.core.drain(1, &behind, &answered, secs(223)),
        Drain::Drained
    );
    // A completion received is not final until it is durable.
    let e = w.on(
        secs(224),
        Event::Received {
            conn: 11,
            msg: completion("c0", Via::Round(1), secs(15)),
        },
    );
    assert_eq!(writes(&e).len(), 1);
    assert_eq!(
        w.core.drain(1, &behind, &answered, secs(224)),
        Drain::Writing
    );
    w.on(secs(225), Event::Committed);
    assert_eq!(
        w.core.drain(1, &behind, &answered, secs(225)),
        Drain::Drained
    );
    // Another run's relays are nobody's business here.
    w.on(secs(226), Event::Closed { conn: 11 });
    assert_eq!(w.core.drain(2, &behind, &none, secs(227)), Drain::Drained);
}
