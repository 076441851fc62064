//! Failures after install: only from the client's own relay or the client
//! itself, only for a run of that digest that targets it, acked after the
//! write; a forged one refused and counted; a readmitted client told so.

use haifu_ledger::ClientState;
use haifu_protocol::FailureAck;
use haifu_protocol::FailureKind;
use haifu_protocol::InstallFailed;

use super::*;

fn failed(run: u64, client: &str, digest: Digest) -> Message {
    Message::InstallFailed(InstallFailed {
        run,
        client: client.into(),
        digest,
        kind: FailureKind::PostInstall,
        reason: "exited with exit status: 3; last output: schema is newer".into(),
        at: secs(40),
    })
}

fn failure_acks(effects: &[Effect]) -> Vec<(ConnId, &FailureAck)> {
    sends(effects)
        .into_iter()
        .filter_map(|(c, m)| match m {
            Message::FailureAck(a) => Some((c, a)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failure_from_the_clients_relay_is_written_then_acknowledged() {
    let mut w = World::new();
    on_air(&mut w);
    let e = w.msg(RELAY, failed(1, "c1", D));
    assert!(
        failure_acks(&e).is_empty(),
        "no ack before the write: {e:?}"
    );
    let b = writes(&e);
    assert_eq!(b.len(), 1);
    let f = &b[0].failures[..];
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].run, f[0].client.as_str(), f[0].kind),
        (1, "c1", haifu_ledger::FailureKind::PostInstall)
    );
    assert!(f[0].reason.starts_with("exited with exit status: 3"));
    // A resend while it is written: nothing more, its ack follows.
    let e = w.msg(RELAY, failed(1, "c1", D));
    assert!(writes(&e).is_empty() && failure_acks(&e).is_empty());
    let e = w.on(secs(101), Event::Committed);
    let acks = failure_acks(&e);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].0, RELAY);
    assert_eq!((acks[0].1.run, acks[0].1.readmitted), (1, false));
    assert!(w.core.is_idle(), "nothing else to write");
    // Recorded (the ack was lost): acked again, nothing written.
    w.facts.states.insert((1, "c1".into()), ClientState::Failed);
    let e = w.msg(RELAY, failed(1, "c1", D));
    assert!(writes(&e).is_empty());
    assert_eq!(failure_acks(&e).len(), 1);
    assert_eq!(w.refused(), 0);
}

#[test]
fn a_forged_failure_is_refused_counted_and_never_written() {
    let mut w = World::new();
    on_air(&mut w);
    // r1 speaking for c0, who is behind r0.
    let e = w.msg(OTHER_RELAY, failed(1, "c0", D));
    assert!(writes(&e).is_empty() && failure_acks(&e).is_empty());
    assert_eq!(error(&e).unwrap().0, ErrorCode::Unexpected);
    assert_eq!(w.refused(), 1);
    // c0, on its own connection, speaking for c1.
    let e = w.msg(CLIENT, failed(1, "c1", D));
    assert!(writes(&e).is_empty());
    assert_eq!(w.refused(), 2);
    // Another version than the run's, a run that does not target the
    // client, a run that does not exist.
    let e = w.msg(RELAY, failed(1, "c1", Digest::from_bytes([8; 32])));
    assert!(writes(&e).is_empty());
    w.facts.digests.insert(2, D);
    let e = w.msg(RELAY, failed(2, "c1", D));
    assert!(writes(&e).is_empty());
    let e = w.msg(RELAY, failed(99, "c1", D));
    assert!(writes(&e).is_empty());
    assert_eq!(w.refused(), 5);
    // The client itself, on its own connection, is believed.
    let e = w.msg(CLIENT, failed(1, "c0", D));
    assert_eq!(writes(&e).len(), 1);
}

#[test]
fn a_failure_of_the_masters_copy_is_filed_under_the_run_on_air() {
    let mut w = World::new();
    on_air(&mut w);
    let e = w.msg(RELAY, failed(0, "c1", D));
    assert_eq!(writes(&e)[0].failures[0].run, 1);
    let e = w.on(secs(101), Event::Committed);
    assert_eq!(failure_acks(&e)[0].1.run, 1, "the ack names the run");
    // Not the run's digest: refused.
    let e = w.msg(RELAY, failed(0, "c0", Digest::from_bytes([8; 32])));
    assert!(writes(&e).is_empty());
    assert_eq!(w.refused(), 1);
}

#[test]
fn a_readmitted_client_is_told_on_its_next_version_report() {
    let mut w = World::new();
    on_air(&mut w);
    let report = |installed: Option<ArtifactRef>| {
        Message::RegisterClient(RegisterClient {
            client: "c1".into(),
            relay: "r0".into(),
            installed,
            broadcast: None,
        })
    };
    // Failed: its reports are answered with nothing about it.
    w.facts.states.insert((1, "c1".into()), ClientState::Failed);
    assert!(failure_acks(&w.msg(RELAY, report(None))).is_empty());
    // Readmitted by an operator (pending again): told, through its relay.
    w.facts.states.remove(&(1, "c1".into()));
    w.on(secs(101), Event::Committed);
    let e = w.msg(RELAY, report(None));
    let acks = failure_acks(&e);
    assert_eq!(acks.len(), 1, "{e:?}");
    assert_eq!(acks[0].0, RELAY);
    assert!(acks[0].1.readmitted);
    assert_eq!((acks[0].1.run, acks[0].1.digest), (1, D));
    // One that runs the run's version is not.
    assert!(failure_acks(&w.msg(RELAY, report(Some(artifact())))).is_empty());
    // Nor one whose failure is being written.
    w.on(secs(102), Event::Committed);
    w.msg(RELAY, failed(1, "c1", D));
    assert!(failure_acks(&w.msg(RELAY, report(None))).is_empty());
}

/// A resumed stage's broadcast can be shorter than the client's period of
/// asking: the next round's start tells a readmitted client at once.
#[test]
fn a_readmitted_client_is_told_when_the_next_round_starts() {
    let mut w = World::new();
    on_air(&mut w);
    w.msg(RELAY, failed(1, "c1", D));
    w.on(secs(101), Event::Committed);
    w.facts.states.insert((1, "c1".into()), ClientState::Failed);
    let round = |w: &mut World, at: i64, round: u32| {
        w.on(
            secs(at),
            Event::RoundStarted {
                round,
                budget: None,
            },
        )
    };
    // Still failed: a round's start says nothing of it.
    assert!(failure_acks(&round(&mut w, 110, 3)).is_empty());
    // Readmitted by an operator (pending again): told, through its relay,
    // with the round's start.
    w.facts.states.remove(&(1, "c1".into()));
    let e = round(&mut w, 120, 4);
    let acks = failure_acks(&e);
    assert_eq!(acks.len(), 1, "{e:?}");
    assert_eq!(acks[0].0, RELAY);
    assert!(acks[0].1.readmitted);
    assert_eq!(
        (acks[0].1.run, acks[0].1.client.as_str(), acks[0].1.digest),
        (1, "c1", D)
    );
    // Once.
    assert!(failure_acks(&round(&mut w, 130, 5)).is_empty());
}
