//! The master core in memory: every rule of the completion path, the
//! group commit, the relays' rounds, the drain before an audit and
//! rollback orders, with a table of facts standing in for the ledger. This
//! file is the harness (the facts, a fleet of two relays and a client, and
//! readers of effects); each subject has its own file.

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
    /// `(run, client)` whose state is not pending (every listed client
    /// is pending otherwise).
    states: HashMap<(i64, String), haifu_ledger::ClientState>,
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
    fn run_client_state(&self, run: i64, client: &str) -> Option<haifu_ledger::ClientState> {
        let key = (run, client.to_owned());
        self.listed.get(&key)?;
        Some(
            self.states
                .get(&key)
                .copied()
                .unwrap_or(haifu_ledger::ClientState::Pending),
        )
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
            admitted: None,
        },
        seed: SessionSeed([9; 32]),
        round: None,
        starts: Vec::new(),
        relays: Vec::new(),
        broadcast: None,
        left_out: Default::default(),
        staged: false,
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
                    stages: true,
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

mod claims;
mod commit;
mod drain;
mod failures;
mod labels;
mod relays;
mod rollback;
mod stages;
