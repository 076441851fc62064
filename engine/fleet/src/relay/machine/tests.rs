//! The relay core in memory: the round queue, the fetch's chunk rules, and
//! completions up and acks down.

#![allow(clippy::unwrap_used)]

use haifu_core::Digest;
use haifu_protocol::ArtifactHeader;
use haifu_protocol::Completion;
use haifu_protocol::CompletionAck;
use haifu_protocol::DataChunk;
use haifu_protocol::SessionSecret;
use haifu_protocol::StartRound;
use haifu_protocol::StopRounds;
use haifu_protocol::Via;
use jiff::Timestamp;

use super::*;

const D: Digest = Digest::from_bytes([7; 32]);

pub(super) fn core() -> RelayCore {
    let group = Group {
        addr: "239.1.1.1".parse().unwrap(),
        port: 5000,
    };
    RelayCore::new("r0".into(), group, Arc::new(Counters::default()))
}

pub(super) fn instruction(run: u64) -> Instruction {
    Instruction {
        run,
        artifact: ArtifactRef {
            name: "app".parse().unwrap(),
            version: "1.1.0".parse().unwrap(),
            digest: D,
        },
        size: 10,
        manifest: Vec::new(),
        start: Timestamp::UNIX_EPOCH,
        rounds: 3,
        rate_bps: 1_000_000,
        session_id: 1,
        session_key: SessionSecret([1; 32]),
        admitted: None,
    }
}

pub(super) fn master(c: &mut RelayCore, msg: Message, on_disk: bool) -> Vec<Effect> {
    c.handle(Event::FromMaster { msg, on_disk })
}

pub(super) fn client(c: &mut RelayCore, conn: ConnId, msg: Message) -> Vec<Effect> {
    c.handle(Event::FromClient { conn, msg })
}

/// Client `id`'s registration, with nothing installed.
pub(super) fn registration(id: &str) -> RegisterClient {
    RegisterClient {
        client: id.into(),
        relay: "r0".into(),
        installed: None,
        broadcast: None,
    }
}

/// The one effect in `e`, which must be a message to a client.
fn only_to_client(e: &[Effect]) -> (ConnId, &Message) {
    match e {
        [Effect::ToClient { conn, msg }] => (*conn, msg),
        _ => panic!("not one message to a client: {e:?}"),
    }
}

fn start(run: u64, round: u32) -> Message {
    Message::StartRound(StartRound {
        run,
        round,
        at: Timestamp::UNIX_EPOCH,
        budget: None,
    })
}

fn sent(run: u64, round: u32) -> Event {
    Event::RoundSent(RoundDone {
        run,
        round,
        datagrams: 1,
        bytes: 11,
        elapsed_ms: 1,
        listeners: None,
    })
}

fn broadcasts(e: &[Effect]) -> Vec<u32> {
    e.iter()
        .filter_map(|e| match e {
            Effect::Broadcast { round, .. } => Some(*round),
            _ => None,
        })
        .collect()
}

fn to_master(e: &[Effect]) -> Vec<&Message> {
    e.iter()
        .filter_map(|e| match e {
            Effect::ToMaster(m) => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn rounds_go_out_one_at_a_time_in_order_once_the_artifact_is_here() {
    let mut c = core();
    c.handle(Event::MasterUp);
    let e = master(&mut c, Message::Instruction(instruction(1)), false);
    assert!(e.iter().any(|e| matches!(e, Effect::FetchStart { .. })));
    // Queued, not sent: the artifact is not here yet.
    assert!(broadcasts(&master(&mut c, start(1, 1), false)).is_empty());
    assert!(broadcasts(&master(&mut c, start(1, 2), false)).is_empty());
    // The fetch finishes: round 1 goes out, round 2 waits for it.
    assert_eq!(
        broadcasts(&c.handle(Event::Fetched {
            transfer: 1,
            ok: true
        })),
        vec![1]
    );
    let e = c.handle(sent(1, 1));
    assert!(matches!(to_master(&e)[..], [Message::RoundDone(d)] if d.round == 1));
    assert_eq!(broadcasts(&e), vec![2]);
}

#[test]
fn a_round_already_sent_is_reported_again_not_sent_again() {
    // The master restarted and starts the round on air again.
    let mut c = core();
    c.handle(Event::MasterUp);
    master(&mut c, Message::Instruction(instruction(1)), true);
    assert_eq!(broadcasts(&master(&mut c, start(1, 1), false)), vec![1]);
    // While on air: not queued twice.
    assert!(broadcasts(&master(&mut c, start(1, 1), false)).is_empty());
    c.handle(sent(1, 1));
    c.handle(Event::MasterDown);
    c.handle(Event::MasterUp);
    let e = master(&mut c, start(1, 1), false);
    assert!(broadcasts(&e).is_empty());
    assert!(matches!(to_master(&e)[..], [Message::RoundDone(d)] if d.round == 1));
}

#[test]
fn stopped_rounds_and_rounds_of_another_run_are_dropped() {
    let mut c = core();
    master(&mut c, Message::Instruction(instruction(1)), false);
    master(&mut c, start(1, 1), false);
    master(&mut c, Message::StopRounds(StopRounds { run: 1 }), false);
    assert!(
        broadcasts(&c.handle(Event::Fetched {
            transfer: 1,
            ok: true
        }))
        .is_empty()
    );
    // A new run's instruction with its artifact on disk: only its rounds.
    master(&mut c, Message::Instruction(instruction(2)), true);
    assert!(broadcasts(&master(&mut c, start(1, 2), false)).is_empty());
    assert_eq!(broadcasts(&master(&mut c, start(2, 1), false)), vec![1]);
}

/// An abort on the master stops the round on air, not only the rounds to
/// come: the broadcaster is told to cut it short, and once it has, the
/// run's rounds still queued are gone and a new run's go out.
#[test]
fn stopping_a_run_cuts_its_round_on_air_short() {
    let mut c = core();
    c.handle(Event::MasterUp);
    master(&mut c, Message::Instruction(instruction(1)), true);
    assert_eq!(broadcasts(&master(&mut c, start(1, 1), false)), vec![1]);
    master(&mut c, start(1, 2), false);
    let stop = |c: &mut RelayCore, run| master(c, Message::StopRounds(StopRounds { run }), false);
    // Another run's stop leaves the round on air alone.
    assert!(stop(&mut c, 9).is_empty());
    let e = stop(&mut c, 1);
    assert!(
        matches!(e[..], [Effect::StopAir { run: 1, round: 1 }]),
        "{e:?}"
    );
    let e = c.handle(Event::RoundStopped { run: 1, round: 1 });
    assert!(broadcasts(&e).is_empty(), "round 2 was dropped: {e:?}");
    assert!(
        to_master(&e).is_empty(),
        "a stopped round is not reported done"
    );
    master(&mut c, Message::Instruction(instruction(2)), true);
    assert_eq!(broadcasts(&master(&mut c, start(2, 1), false)), vec![1]);
    // Nothing on air of run 1 any more: a late stop orders nothing.
    assert!(stop(&mut c, 1).is_empty());
}

#[test]
fn a_chunk_out_of_order_or_before_the_header_ends_the_fetch() {
    let mut c = core();
    c.handle(Event::MasterUp);
    master(&mut c, Message::Instruction(instruction(1)), false);
    let chunk = |offset, bytes: &[u8], last| {
        Message::DataChunk(DataChunk {
            transfer: 1,
            offset,
            bytes: bytes.to_vec(),
            last,
        })
    };
    let e = master(&mut c, chunk(0, b"abcde", false), false);
    assert!(matches!(
        e[..],
        [
            Effect::ToMaster(Message::Error(_)),
            Effect::FetchDrop { transfer: 1 }
        ]
    ));
    // A new instruction starts a new fetch (transfer 2).
    master(&mut c, Message::StopRounds(StopRounds { run: 1 }), false);
    master(&mut c, Message::Instruction(instruction(1)), false);
    let header = Message::ArtifactHeader(ArtifactHeader {
        transfer: 2,
        size: 10,
        manifest: Vec::new(),
    });
    assert!(master(&mut c, header, false).is_empty());
    let chunk = |offset, bytes: &[u8], last| {
        Message::DataChunk(DataChunk {
            transfer: 2,
            offset,
            bytes: bytes.to_vec(),
            last,
        })
    };
    let e = master(&mut c, chunk(0, b"abcde", false), false);
    assert!(matches!(e[..], [Effect::FetchWrite { transfer: 2, .. }]));
    // Offset 7 after 5 bytes: refused before a byte is written.
    let e = master(&mut c, chunk(7, b"fgh", true), false);
    assert!(
        matches!(
            e[..],
            [
                Effect::ToMaster(Message::Error(_)),
                Effect::FetchDrop { transfer: 2 }
            ]
        ),
        "{e:?}"
    );
}

#[test]
fn a_fetch_resumes_after_a_restart_from_the_artifact_on_disk() {
    // A relay restarted after its fetch finished finds the file and fetches
    // nothing; one that restarted mid-fetch fetches again.
    let mut c = core();
    let e = master(&mut c, Message::Instruction(instruction(1)), true);
    assert!(!e.iter().any(|e| matches!(e, Effect::FetchStart { .. })));
    assert_eq!(broadcasts(&master(&mut c, start(1, 1), false)), vec![1]);
    let mut c = core();
    let e = master(&mut c, Message::Instruction(instruction(1)), false);
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::FetchStart { transfer: 1 }))
    );
}

#[test]
fn completions_go_up_only_for_the_client_itself_and_acks_come_down() {
    let mut c = core();
    c.handle(Event::ClientUp {
        conn: 5,
        client: "c0".into(),
    });
    // Registered (naming another relay) while the master is away: the
    // report is replayed later, naming this one.
    let report = Message::RegisterClient(RegisterClient {
        relay: "anything".into(),
        ..registration("c0")
    });
    let e = client(&mut c, 5, report);
    assert!(to_master(&e).is_empty());
    let e = c.handle(Event::MasterUp);
    let m = to_master(&e);
    assert!(matches!(m[0], Message::RegisterRelay(_)));
    assert!(matches!(m[1], Message::RegisterClient(r) if r.client == "c0" && r.relay == "r0"));
    let completion = |client: &str| {
        Message::Completion(Completion {
            run: 1,
            client: client.into(),
            via: Via::Round(1),
            digest: D,
            at: Timestamp::UNIX_EPOCH,
        })
    };
    let e = client(&mut c, 5, completion("c1"));
    assert!(to_master(&e).is_empty(), "for another client: {e:?}");
    let e = client(&mut c, 5, completion("c0"));
    assert_eq!(to_master(&e).len(), 1);
    let ack = Message::CompletionAck(CompletionAck {
        run: 1,
        client: "c0".into(),
        digest: D,
    });
    let e = master(&mut c, ack, false);
    assert!(matches!(e[..], [Effect::ToClient { conn: 5, .. }]));
    assert_eq!(c.acked(1), 1);
}

#[test]
fn a_rollback_order_goes_only_from_the_master_to_its_client_and_the_report_back() {
    let mut c = core();
    c.handle(Event::MasterUp);
    for (conn, id) in [(1, "c0"), (2, "c1")] {
        c.handle(Event::ClientUp {
            conn,
            client: id.into(),
        });
        client(&mut c, conn, Message::RegisterClient(registration(id)));
    }
    let order = |client: &str| {
        Message::Rollback(haifu_protocol::Rollback {
            order: 3,
            client: client.into(),
            artifact: "app".parse().unwrap(),
            to: None,
            through_run: 1,
        })
    };
    let e = master(&mut c, order("c1"), false);
    assert!(matches!(only_to_client(&e), (2, Message::Rollback(_))));
    // A client that sends an order is refused; nothing goes anywhere else.
    let e = client(&mut c, 1, order("c1"));
    assert!(matches!(only_to_client(&e), (1, Message::Error(_))));
    let report = |client: &str| {
        Message::RollbackReport(haifu_protocol::RollbackReport {
            order: 3,
            client: client.into(),
            outcome: haifu_protocol::RollbackOutcome::Refused {
                reason: "no previous version kept".into(),
            },
            at: "2026-12-04T10:00:00Z".parse().unwrap(),
        })
    };
    // c0 may not report for c1; c1's own report goes up.
    let e = client(&mut c, 1, report("c1"));
    assert!(matches!(only_to_client(&e), (1, Message::Error(_))));
    let e = client(&mut c, 2, report("c1"));
    assert!(
        matches!(&e[..], [Effect::ToMaster(Message::RollbackReport(_))]),
        "{e:?}"
    );
    let ack = Message::RollbackAck(haifu_protocol::RollbackAck {
        order: 3,
        client: "c1".into(),
    });
    let e = master(&mut c, ack, false);
    assert!(matches!(only_to_client(&e), (2, Message::RollbackAck(_))));
}

/// A client's labels go up only when they are its own, and are replayed
/// after its report to a master that reconnects.
#[test]
fn labels_go_up_only_for_the_client_itself_and_are_replayed() {
    let mut c = core();
    c.handle(Event::ClientUp {
        conn: 5,
        client: "c0".into(),
    });
    let labels = |client: &str| {
        Message::ClientLabels(haifu_protocol::ClientLabels {
            client: client.into(),
            labels: [("ring".to_owned(), "canary".to_owned())].into(),
        })
    };
    let e = c.handle(Event::FromClient {
        conn: 5,
        msg: labels("c1"),
    });
    assert!(to_master(&e).is_empty());
    assert!(
        e.iter().any(
            |e| matches!(e, Effect::ToClient { msg: Message::Error(m), .. }
            if m.reason.contains("not the certificate's"))
        ),
        "{e:?}"
    );
    c.handle(Event::FromClient {
        conn: 5,
        msg: Message::RegisterClient(RegisterClient {
            client: "c0".into(),
            relay: "r0".into(),
            installed: None,
            broadcast: None,
        }),
    });
    let e = c.handle(Event::FromClient {
        conn: 5,
        msg: labels("c0"),
    });
    assert!(to_master(&e).is_empty(), "no master yet");
    let e = c.handle(Event::MasterUp);
    let m = to_master(&e);
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(matches!(m[1], Message::RegisterClient(_)));
    assert!(matches!(m[2], Message::ClientLabels(l) if l.client == "c0"));
    let e = c.handle(Event::FromClient {
        conn: 5,
        msg: labels("c0"),
    });
    assert!(matches!(to_master(&e)[..], [Message::ClientLabels(_)]));
}

#[test]
fn a_failure_goes_up_only_for_the_client_itself_and_its_ack_comes_down_to_it() {
    let mut c = core();
    for (conn, id) in [(5, "c0"), (6, "c1")] {
        c.handle(Event::ClientUp {
            conn,
            client: id.into(),
        });
        client(&mut c, conn, Message::RegisterClient(registration(id)));
    }
    c.handle(Event::MasterUp);
    let failed = |client: &str| {
        Message::InstallFailed(haifu_protocol::InstallFailed {
            run: 1,
            client: client.into(),
            digest: D,
            kind: haifu_protocol::FailureKind::PostInstall,
            reason: "exited with exit status: 1".into(),
            at: Timestamp::UNIX_EPOCH,
        })
    };
    // c0 forging c1's failure: refused to c0, nothing goes up.
    let e = client(&mut c, 5, failed("c1"));
    assert!(to_master(&e).is_empty(), "forged: {e:?}");
    let (conn, msg) = only_to_client(&e);
    assert_eq!(conn, 5);
    assert!(matches!(msg, Message::Error(m) if m.code == ErrorCode::Unexpected));
    // Its own goes up as it is.
    let e = client(&mut c, 5, failed("c0"));
    assert_eq!(to_master(&e), vec![&failed("c0")]);
    // No master: held back (the client resends).
    c.handle(Event::MasterDown);
    assert!(to_master(&client(&mut c, 5, failed("c0"))).is_empty());
    // The master's word goes to the client it names, and only to it.
    let ack = |client: &str| {
        Message::FailureAck(haifu_protocol::FailureAck {
            run: 1,
            client: client.into(),
            digest: D,
            readmitted: false,
        })
    };
    let e = master(&mut c, ack("c1"), false);
    assert_eq!(only_to_client(&e), (6, &ack("c1")));
    assert!(master(&mut c, ack("nobody"), false).is_empty());
}
