//! The master core in memory: every rule of the completion path, the
//! group commit and the relays' rounds, with a table of facts standing in
//! for the ledger.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use haifu_core::Digest;
use haifu_ledger::ClientUpdate;
use haifu_ledger::LedgerError;
use haifu_protocol::ArtifactFetch;
use haifu_protocol::ArtifactRef;
use haifu_protocol::Completion;
use haifu_protocol::DeltaBody;
use haifu_protocol::DeltaRequest;
use haifu_protocol::ErrorCode;
use haifu_protocol::Group;
use haifu_protocol::Instruction;
use haifu_protocol::Message;
use haifu_protocol::RegisterClient;
use haifu_protocol::RegisterRelay;
use haifu_protocol::Role;
use haifu_protocol::RoundBudget;
use haifu_protocol::RoundDone;
use haifu_protocol::RoundListeners;
use haifu_protocol::SessionSecret;
use haifu_protocol::Via;
use jiff::SignedDuration;
use jiff::Timestamp;

use super::super::filing::Facts;
use super::*;

/// The ledger as the core reads it.
#[derive(Default)]
struct Table {
    digests: HashMap<u64, Digest>,
    /// `(run, client)` → relay.
    listed: HashMap<(i64, String), String>,
    stragglers: HashMap<String, i64>,
    rounds: HashMap<i64, Vec<(u32, Timestamp)>>,
    relays: HashMap<String, String>,
    /// `(order, client)` whose outcome the ledger has.
    rollbacks_recorded: Vec<(u64, String)>,
}

impl Facts for Table {
    fn run_digest(&self, run: u64) -> Option<Digest> {
        self.digests.get(&run).copied()
    }
    fn run_client_relay(&self, run: i64, client: &str) -> Result<Option<String>, LedgerError> {
        Ok(self.listed.get(&(run, client.to_owned())).cloned())
    }
    fn straggler_run(&self, client: &str) -> Option<i64> {
        self.stragglers.get(client).copied()
    }
    fn rounds_started(&self, run: i64) -> Vec<(u32, Timestamp)> {
        self.rounds.get(&run).cloned().unwrap_or_default()
    }
    fn client_relay(&self, client: &str) -> Option<String> {
        self.relays.get(client).cloned()
    }
    fn straggler_target(&self, _: &str, _: Timestamp) -> Option<ArtifactRef> {
        None
    }
    fn rollback_recorded(&self, order: u64, client: &str) -> bool {
        self.rollbacks_recorded
            .contains(&(order, client.to_owned()))
    }
}

const D: Digest = Digest::from_bytes([7; 32]);
const RELAY: ConnId = 1;
const OTHER_RELAY: ConnId = 2;
const CLIENT: ConnId = 3;

fn t0() -> Timestamp {
    "2026-12-03T10:00:00Z".parse().unwrap()
}

fn secs(n: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(n)
}

/// Run 1 (digest D) lists c0, c1 behind r0 and c2 behind r1; r0 and r1
/// connected and registered, c0 connected directly.
struct World {
    core: MasterCore,
    facts: Table,
    counters: Arc<Counters>,
}

fn artifact() -> ArtifactRef {
    ArtifactRef {
        name: "app".parse().unwrap(),
        version: "1.1.0".parse().unwrap(),
        digest: D,
    }
}

fn active() -> ActiveRun {
    ActiveRun {
        budget: None,
        instruction: Instruction {
            run: 1,
            artifact: artifact(),
            size: 1000,
            manifest: Vec::new(),
            start: t0(),
            rounds: 3,
            rate_bps: 1_000_000,
            session_id: 0,
            session_key: SessionSecret([0; 32]),
        },
        seed: SessionSeed([9; 32]),
        round: None,
        starts: Vec::new(),
        relays: Vec::new(),
        broadcast: None,
        left_out: Default::default(),
    }
}

impl World {
    fn new() -> Self {
        let mut facts = Table::default();
        facts.digests.insert(1, D);
        for (c, r) in [("c0", "r0"), ("c1", "r0"), ("c2", "r1")] {
            facts.listed.insert((1, c.into()), r.into());
            facts.relays.insert(c.into(), r.into());
        }
        let bound = facts.relays.clone();
        let counters = Arc::new(Counters::default());
        let mut w = Self {
            core: MasterCore::new(Vec::new(), bound, Arc::clone(&counters)),
            facts,
            counters,
        };
        for (conn, name, role) in [
            (RELAY, "r0", Role::Relay),
            (OTHER_RELAY, "r1", Role::Relay),
            (CLIENT, "c0", Role::Client),
        ] {
            w.on(
                t0(),
                Event::Connected {
                    conn,
                    peer: name.into(),
                    role,
                    delta: true,
                    chunked: true,
                },
            );
        }
        for (conn, name) in [(RELAY, "r0"), (OTHER_RELAY, "r1")] {
            w.msg(conn, register(name));
        }
        w
    }

    fn on(&mut self, now: Timestamp, e: Event) -> Vec<Effect> {
        self.core.handle(now, e, &self.facts)
    }

    fn msg(&mut self, conn: ConnId, msg: Message) -> Vec<Effect> {
        self.on(secs(100), Event::Received { conn, msg })
    }

    fn refused(&self) -> u64 {
        self.counters
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn register(name: &str) -> Message {
    Message::RegisterRelay(RegisterRelay {
        relay: name.into(),
        clients: 2,
        group: Group {
            addr: "239.1.1.1".parse().unwrap(),
            port: 5000,
        },
        broadcast: None,
    })
}

fn completion(client: &str, via: Via, at: Timestamp) -> Message {
    Message::Completion(Completion {
        run: 1,
        client: client.into(),
        via,
        digest: D,
        at,
    })
}

fn sends(effects: &[Effect]) -> Vec<(ConnId, &Message)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { conn, msg } => Some((*conn, msg)),
            _ => None,
        })
        .collect()
}

fn writes(effects: &[Effect]) -> Vec<&FleetBatch> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Write(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn acks(effects: &[Effect]) -> Vec<(ConnId, String)> {
    sends(effects)
        .into_iter()
        .filter_map(|(c, m)| match m {
            Message::CompletionAck(a) => Some((c, a.client.clone())),
            _ => None,
        })
        .collect()
}

fn error(effects: &[Effect]) -> Option<(ErrorCode, String)> {
    sends(effects).into_iter().find_map(|(_, m)| match m {
        Message::Error(e) => Some((e.code, e.reason.clone())),
        _ => None,
    })
}

/// The round the single completion in `b` is filed under.
fn filed_round(b: &FleetBatch) -> Option<u32> {
    match &b.updates[..] {
        [(1, ClientUpdate::Completed { round, .. })] => *round,
        other => panic!("not one completion: {other:?}"),
    }
}

/// Run 1 on air with rounds 1 (t0+10 s) and 2 (t0+60 s) started.
fn on_air(w: &mut World) {
    w.on(t0(), Event::OnAir(Box::new(active())));
    w.on(
        secs(10),
        Event::RoundStarted {
            round: 1,
            budget: None,
        },
    );
    w.on(
        secs(60),
        Event::RoundStarted {
            round: 2,
            budget: None,
        },
    );
}

#[test]
fn a_completion_is_acknowledged_only_once_its_write_committed() {
    let mut w = World::new();
    on_air(&mut w);
    let e = w.msg(RELAY, completion("c0", Via::Round(9), secs(30)));
    assert!(acks(&e).is_empty(), "no ack before the write: {e:?}");
    let b = writes(&e);
    assert_eq!(b.len(), 1);
    // Filed under the round on air when it decoded (1), not the client's 9.
    assert_eq!(filed_round(b[0]), Some(1));
    assert!(!w.core.is_idle());
    let e = w.on(secs(101), Event::Committed);
    assert_eq!(acks(&e), vec![(RELAY, "c0".to_owned())]);
    assert!(w.core.is_idle());
}

#[test]
fn completions_arriving_during_a_write_go_into_the_next_one() {
    let mut w = World::new();
    on_air(&mut w);
    let first = w.msg(RELAY, completion("c0", Via::Round(1), secs(70)));
    assert_eq!(writes(&first).len(), 1);
    let e1 = w.msg(RELAY, completion("c1", Via::Round(1), secs(70)));
    let e2 = w.msg(OTHER_RELAY, completion("c2", Via::Round(1), secs(70)));
    assert!(writes(&e1).is_empty() && writes(&e2).is_empty());
    // The first commit acks c0 only and starts the next write with both.
    let e = w.on(secs(101), Event::Committed);
    assert_eq!(acks(&e), vec![(RELAY, "c0".to_owned())]);
    let next = writes(&e);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].updates.len(), 2);
    let e = w.on(secs(102), Event::Committed);
    assert_eq!(
        acks(&e),
        vec![(RELAY, "c1".to_owned()), (OTHER_RELAY, "c2".to_owned())]
    );
}

#[test]
fn a_failed_write_is_written_again_with_what_came_meanwhile_and_acked_after() {
    let mut w = World::new();
    on_air(&mut w);
    w.msg(RELAY, completion("c0", Via::Round(1), secs(30)));
    let report = Message::RegisterClient(RegisterClient {
        client: "c1".into(),
        relay: "r0".into(),
        installed: None,
        broadcast: None,
    });
    assert!(
        writes(&w.msg(RELAY, report)).is_empty(),
        "one write at a time"
    );
    let e = w.on(secs(101), Event::CommitFailed);
    assert!(acks(&e).is_empty());
    let again = writes(&e);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].updates.len(), again[0].touches.len()), (1, 1));
    assert_eq!(acks(&w.on(secs(102), Event::Committed)).len(), 1);
    assert!(w.core.is_idle());
}

#[test]
fn a_duplicate_is_written_again_and_acknowledged_again() {
    // The ledger counts a client once per run; the core need not remember.
    let mut w = World::new();
    on_air(&mut w);
    for _ in 0..2 {
        let e = w.msg(RELAY, completion("c0", Via::Round(1), secs(30)));
        assert_eq!(writes(&e).len(), 1);
        assert_eq!(acks(&w.on(secs(101), Event::Committed)).len(), 1);
    }
}

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

/// Issue 17's wrong report: a relay that carried the run died with
/// completions on their way; the run's report waits for it to be back and
/// to have been back long enough for its clients to resend, and a relay
/// that never carried the run is not waited for.
#[test]
fn a_run_is_not_final_while_a_relay_that_carried_it_is_away_or_just_back() {
    use super::drain::Drain;
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

fn order(n: u64, client: &str) -> haifu_protocol::Rollback {
    haifu_protocol::Rollback {
        order: n,
        client: client.into(),
        artifact: "app".parse().unwrap(),
        to: None,
        through_run: 1,
    }
}

fn report(n: u64, client: &str) -> Message {
    Message::RollbackReport(haifu_protocol::RollbackReport {
        order: n,
        client: client.into(),
        outcome: haifu_protocol::RollbackOutcome::Done {
            version: "1.0.0".parse().unwrap(),
            digest: D,
        },
        at: secs(5),
    })
}

fn orders_sent(effects: &[Effect]) -> Vec<(ConnId, u64)> {
    sends(effects)
        .into_iter()
        .filter_map(|(c, m)| match m {
            Message::Rollback(o) => Some((c, o.order)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_rollback_order_goes_to_the_clients_relay_only_and_again_when_it_registers() {
    let mut w = World::new();
    let e = w.on(
        secs(1),
        Event::Rollbacks(vec![order(5, "c0"), order(6, "c2")]),
    );
    assert_eq!(orders_sent(&e), vec![(RELAY, 5), (OTHER_RELAY, 6)]);
    // The same list again sends nothing new.
    let e = w.on(
        secs(2),
        Event::Rollbacks(vec![order(5, "c0"), order(6, "c2")]),
    );
    assert!(orders_sent(&e).is_empty());
    // r0 reconnects: c0's order goes again; and when c0 reports in.
    let e = w.msg(RELAY, register("r0"));
    assert_eq!(orders_sent(&e), vec![(RELAY, 5)]);
    let e = w.msg(
        RELAY,
        Message::RegisterClient(RegisterClient {
            client: "c0".into(),
            relay: "r0".into(),
            installed: None,
            broadcast: None,
        }),
    );
    assert_eq!(orders_sent(&e), vec![(RELAY, 5)]);
}

#[test]
fn a_rollback_report_is_acked_only_once_durable_and_recorded_once() {
    let mut w = World::new();
    w.on(secs(1), Event::Rollbacks(vec![order(5, "c0")]));
    let e = w.msg(RELAY, report(5, "c0"));
    let batch = writes(&e);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].rollbacks.len(), 1);
    assert_eq!(batch[0].rollbacks[0].outcome, Ok("1.0.0".to_owned()));
    let rollback_acks = |e: &[Effect]| {
        sends(e)
            .into_iter()
            .filter(|(_, m)| matches!(m, Message::RollbackAck(_)))
            .count()
    };
    assert_eq!(rollback_acks(&e), 0, "no ack before the commit");
    // A resend while it is written: nothing more to write.
    let e = w.msg(RELAY, report(5, "c0"));
    assert!(writes(&e).is_empty());
    let e = w.on(secs(3), Event::Committed);
    assert_eq!(rollback_acks(&e), 1);
    // A stale read of the ledger still listing it sends it no more, and a
    // resend after the ack is acked again without a write.
    let e = w.on(secs(4), Event::Rollbacks(vec![order(5, "c0")]));
    assert!(orders_sent(&e).is_empty());
    let e = w.msg(RELAY, report(5, "c0"));
    assert!(writes(&e).is_empty());
    assert_eq!(rollback_acks(&e), 1);
}

#[test]
fn a_rollback_report_from_another_relay_or_for_an_unknown_order_is_refused() {
    let mut w = World::new();
    w.on(secs(1), Event::Rollbacks(vec![order(5, "c0")]));
    // r1 does not have c0 behind it.
    let e = w.msg(OTHER_RELAY, report(5, "c0"));
    assert!(writes(&e).is_empty());
    assert!(
        error(&e).unwrap().1.contains("registered behind relay"),
        "{e:?}"
    );
    // c1 is behind r0, but order 5 is c0's; order 9 was never given.
    let e = w.msg(RELAY, report(5, "c1"));
    assert!(writes(&e).is_empty());
    assert!(
        error(&e).unwrap().1.contains("no rollback order 5"),
        "{e:?}"
    );
    let e = w.msg(RELAY, report(9, "c0"));
    assert!(writes(&e).is_empty());
    // A client may not send one to the master at all, nor anyone an order.
    let e = w.msg(CLIENT, report(5, "c0"));
    assert!(writes(&e).is_empty());
    assert!(error(&e).is_some());
    let e = w.msg(RELAY, Message::Rollback(order(5, "c0")));
    assert!(error(&e).is_some());
    assert_eq!(w.refused(), 3);
}

#[test]
fn a_rollback_report_recorded_before_a_restart_is_acked_again() {
    let mut w = World::new();
    // The ledger has order 5's outcome; this master never sent it.
    w.facts.rollbacks_recorded.push((5, "c0".into()));
    let e = w.msg(RELAY, report(5, "c0"));
    assert!(writes(&e).is_empty());
    assert!(
        sends(&e)
            .iter()
            .any(|(c, m)| *c == RELAY && matches!(m, Message::RollbackAck(a) if a.order == 5))
    );
    assert_eq!(w.refused(), 0);
}

fn labels(client: &str, pairs: &[(&str, &str)]) -> Message {
    Message::ClientLabels(haifu_protocol::ClientLabels {
        client: client.into(),
        labels: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
}

/// A client speaks only for itself; a relay forwards only for a client
/// registered behind it; a pair outside the rules refuses the whole set.
/// Nothing refused reaches the ledger.
#[test]
fn labels_are_taken_only_for_the_client_speaking_and_only_when_they_are_well_formed() {
    let mut w = World::new();
    let e = w.msg(RELAY, labels("c0", &[("ring", "canary")]));
    assert_eq!(error(&e), None);
    let batch = writes(&e);
    assert_eq!(batch[0].labels.len(), 1);
    assert_eq!(batch[0].labels[0].client, "c0");
    assert_eq!(batch[0].labels[0].labels["ring"], "canary");
    w.on(secs(101), Event::Committed);

    let e = w.msg(CLIENT, labels("c1", &[("ring", "canary")]));
    let (code, why) = error(&e).unwrap();
    assert_eq!(code, ErrorCode::Unexpected);
    assert!(why.contains("may speak only for itself"), "{why}");
    assert!(writes(&e).is_empty());

    let e = w.msg(OTHER_RELAY, labels("c0", &[("ring", "canary")]));
    let (_, why) = error(&e).unwrap();
    assert!(why.contains("registered behind relay \"r0\""), "{why}");
    assert!(writes(&e).is_empty());

    let e = w.msg(RELAY, labels("c1", &[("ring", "two words")]));
    let (_, why) = error(&e).unwrap();
    assert!(
        why.starts_with("labels of client \"c1\": label value"),
        "{why}"
    );
    assert!(writes(&e).is_empty());
    assert_eq!(w.refused(), 3);

    let e = w.msg(CLIENT, labels("c0", &[("site", "s1")]));
    assert_eq!(error(&e), None, "its own connection speaks for itself");
    assert_eq!(writes(&e)[0].labels[0].labels["site"], "s1");
}
