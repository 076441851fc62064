//! The master's decisions, without I/O: [`MasterCore`] takes events (a
//! peer connected, a message arrived, the run went on air, a round started,
//! a ledger write committed) with the time, and returns effects (send this
//! message on that connection, write these rows, serve this fetch). It owns
//! no socket, thread, clock, file or database: what it reads from the ledger
//! comes through [`Facts`], and the daemon's shell (`master::hub`) carries
//! the effects out. Tested in memory here and in the fleet simulation.
//!
//! Writes are group commits: one write is in flight at a time, everything
//! that arrives meanwhile goes into the next, and a completion is
//! acknowledged only when the write that holds it has committed.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;

use haifu_core::Digest;
use haifu_ledger::FleetBatch;
use haifu_ledger::Traffic;
use haifu_protocol::ArtifactFetch;
use haifu_protocol::DeltaRequest;
use haifu_protocol::DenyList;
use haifu_protocol::ErrorCode;
use haifu_protocol::ErrorMessage;
use haifu_protocol::Message;
use haifu_protocol::Role;
use haifu_protocol::RoundBudget;
use jiff::Timestamp;

use super::filing::Facts;
use crate::link::Counters;
use crate::trust;

/// Deltas served at once; more requests are answered "busy" and retried by
/// the client, so stragglers booting together cannot start a thread and a
/// delta build each.
pub(crate) const MAX_DELTAS_SERVING: usize = 4;

/// A connection, as the shell numbers them (never reused).
pub(crate) type ConnId = u64;

/// What happened, as the shell tells the core.
#[derive(Debug)]
pub(crate) enum Event {
    /// A peer finished its handshake with this certificate identity and
    /// role; `delta`, `chunked` and `stages` are the features both sides
    /// have.
    Connected {
        conn: ConnId,
        peer: String,
        role: Role,
        delta: bool,
        chunked: bool,
        stages: bool,
    },
    /// The connection ended.
    Closed { conn: ConnId },
    /// A message arrived.
    Received { conn: ConnId, msg: Message },
    /// The clients cut off, as now in the ledger (at most one deny list).
    Denied(Vec<String>),
    /// The rollback orders not yet reported on, as now in the ledger
    /// (bounded by the reader).
    Rollbacks(Vec<haifu_protocol::Rollback>),
    /// The driver put a run on air.
    OnAir(Box<ActiveRun>),
    /// The driver started a round of the run on air, with this budget for
    /// relays with feedback repair.
    RoundStarted {
        round: u32,
        budget: Option<RoundBudget>,
    },
    /// The run's rounds are over: relays stop offering it.
    OffAir,
    /// The driver admitted these clients of staged run `run` (every one
    /// admitted so far).
    Admit { run: u64, clients: Vec<String> },
    /// Bytes sent by a fetch or delta transfer the shell carried out.
    Traffic(Traffic),
    /// A delta transfer the shell carried out ended (its slot is free).
    DeltaDone,
    /// The write in flight is durable.
    Committed,
    /// The write in flight failed (rolled back): it is written again.
    CommitFailed,
}

/// What the shell must do.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Send `msg` on `conn` (dropped if it has closed).
    Send { conn: ConnId, msg: Message },
    /// Close `conn`.
    Close { conn: ConnId },
    /// Write these rows in one transaction, then report `Committed` or
    /// `CommitFailed`.
    Write(FleetBatch),
    /// Stream the artifact to a relay.
    Fetch { conn: ConnId, fetch: ArtifactFetch },
    /// Build or find and send a straggler's delta, then report `DeltaDone`.
    Delta { conn: ConnId, request: DeltaRequest },
}

#[derive(Debug)]
struct Peer {
    name: String,
    role: Role,
    delta: bool,
    chunked: bool,
    /// Whether it may be instructed for a staged run (feature `stages`).
    stages: bool,
}

/// The master's state and rules.
#[derive(Debug)]
pub(crate) struct MasterCore {
    /// The master config's `relays:` (empty: any relay-role certificate).
    relays_allowed: Vec<String>,
    conns: HashMap<ConnId, Peer>,
    /// Registered relays: a reconnect replaces the entry.
    relays: BTreeMap<String, ConnId>,
    /// When each registered relay registered last.
    relay_since: HashMap<String, Timestamp>,
    /// `(run, relay)`: relays this master sent a run's instruction, so
    /// completions of that run may come through them.
    instructed: BTreeSet<(u64, String)>,
    /// The broadcast plugin each registered relay named (`transport-names`).
    relay_plugins: HashMap<String, String>,
    /// The clients cut off, as last read from the ledger.
    denied: Vec<String>,
    active: Option<ActiveRun>,
    /// `(run, round, relay)` reported done.
    done: BTreeSet<(u64, u32, String)>,
    /// What relays said of their listeners, per `(run, round)`: clients
    /// that decoded (their completions follow once they have installed)
    /// and the worst loss rate measured, per mille.
    listeners: BTreeMap<(u64, u32), (u64, u32)>,
    /// Completions made durable, per run, since this master started.
    recorded: BTreeMap<u64, u64>,
    /// The relay each known client is registered behind (from the ledger
    /// at start, then as relays report clients): a relay speaks only for
    /// its own.
    bound: HashMap<String, String>,
    /// How many clients are registered behind each relay (bounded by
    /// `trust::MAX_CLIENTS_PER_RELAY`).
    behind: HashMap<String, usize>,
    /// Digests of runs found (a run registered later is found then).
    digests: HashMap<u64, Digest>,
    deltas_serving: usize,
    /// Rows for the next write, and the acks they carry.
    next: FleetBatch,
    /// The acks (completions' and rollback reports') the next write holds.
    next_acks: Vec<(ConnId, Message)>,
    /// The write in flight and the acks it carries (`None`: no write in
    /// flight); kept so a failed write is written again.
    in_flight: Option<(FleetBatch, Vec<(ConnId, Message)>)>,
    /// Rollback orders not yet reported on, as last read from the ledger.
    orders: rollback::Orders,
    /// The staged run on air (or about to be) and who it admits.
    stages: stages::Admissions,
    /// Clients whose failure in a run this master recorded (or acked
    /// again), by run: each holds the version back until told it was
    /// readmitted, which a round's start tells it (`failures.rs`).
    held: BTreeMap<(u64, String), haifu_core::Digest>,
    counters: Arc<Counters>,
}

impl MasterCore {
    /// A core that knows which relay each client is behind (`bound`, from
    /// the ledger) and which relays may connect (`relays_allowed`).
    pub(crate) fn new(
        relays_allowed: Vec<String>,
        bound: HashMap<String, String>,
        counters: Arc<Counters>,
    ) -> Self {
        let mut behind: HashMap<String, usize> = HashMap::new();
        for relay in bound.values() {
            *behind.entry(relay.clone()).or_default() += 1;
        }
        Self {
            relays_allowed,
            conns: HashMap::new(),
            relays: BTreeMap::new(),
            relay_since: HashMap::new(),
            instructed: BTreeSet::new(),
            relay_plugins: HashMap::new(),
            denied: Vec::new(),
            active: None,
            done: BTreeSet::new(),
            listeners: BTreeMap::new(),
            recorded: BTreeMap::new(),
            bound,
            behind,
            digests: HashMap::new(),
            deltas_serving: 0,
            next: FleetBatch::default(),
            next_acks: Vec::new(),
            in_flight: None,
            orders: rollback::Orders::default(),
            stages: stages::Admissions::default(),
            held: BTreeMap::new(),
            counters,
        }
    }

    /// The run on air.
    pub(crate) fn active(&self) -> Option<&ActiveRun> {
        self.active.as_ref()
    }

    /// The targeted relays connected now that have not reported `round`
    /// of `run` done, and whether any has.
    pub(crate) fn round_waiting(&self, run: u64, round: u32) -> (Vec<String>, bool) {
        let targeted = |n: &String| self.active.as_ref().is_some_and(|a| a.targets(n));
        let waiting = self
            .relays
            .keys()
            .filter(|n| targeted(n) && !self.done.contains(&(run, round, (*n).clone())))
            .cloned()
            .collect();
        let any = self.done.iter().any(|(r, n, _)| *r == run && *n == round);
        (waiting, any)
    }

    /// Completions of `run` made durable since this master started.
    pub(crate) fn recorded(&self, run: u64) -> u64 {
        self.recorded.get(&run).copied().unwrap_or(0)
    }

    /// What the relays that reported `round` of `run` said of their
    /// listeners: how many decoded, and the worst loss (per mille); `None`
    /// when none said (relays without feedback repair).
    pub(crate) fn round_listeners(&self, run: u64, round: u32) -> Option<(u64, u32)> {
        self.listeners.get(&(run, round)).copied()
    }

    /// Whether nothing waits to be written or acknowledged.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.next.is_empty()
    }

    /// Takes one event at `now`; returns what to do, in order.
    pub(crate) fn handle(
        &mut self,
        now: Timestamp,
        event: Event,
        facts: &dyn Facts,
    ) -> Vec<Effect> {
        let mut out = Out(Vec::new());
        match event {
            Event::Connected {
                conn,
                peer,
                role,
                delta,
                chunked,
                stages,
            } => {
                if role == Role::Relay
                    && let Err(why) = trust::relay_allowed(&self.relays_allowed, &peer)
                {
                    self.refuse(&mut out, conn, &peer, 0, &why);
                    out.0.push(Effect::Close { conn });
                } else {
                    tracing::info!(peer = %peer, role = ?role, "peer connected");
                    let p = Peer {
                        name: peer,
                        role,
                        delta,
                        chunked,
                        stages,
                    };
                    self.conns.insert(conn, p);
                }
            }
            Event::Closed { conn } => {
                if let Some(p) = self.conns.remove(&conn)
                    && self.relays.get(&p.name) == Some(&conn)
                {
                    self.relays.remove(&p.name);
                    self.relay_since.remove(&p.name);
                    self.relay_plugins.remove(&p.name);
                }
            }
            Event::Received { conn, msg } => self.received(&mut out, now, conn, msg, facts),
            Event::Denied(identities) => {
                self.denied = identities;
                let msg = Message::DenyList(DenyList {
                    identities: self.denied.clone(),
                });
                for conn in self.relays.values() {
                    out.send(*conn, msg.clone());
                }
            }
            Event::Rollbacks(orders) => self.rollback_orders(&mut out, orders),
            Event::OnAir(active) => self.on_air(&mut out, active),
            Event::RoundStarted { round, budget } => {
                self.round_started(&mut out, now, round, budget);
                self.tell_readmitted(&mut out, facts);
            }
            Event::OffAir => self.off_air(&mut out),
            Event::Admit { run, clients } => self.admit(&mut out, run, clients),
            Event::Traffic(t) => self.next.traffic.push(t),
            Event::DeltaDone => self.deltas_serving = self.deltas_serving.saturating_sub(1),
            Event::Committed => self.committed(&mut out),
            Event::CommitFailed => self.commit_failed(),
        }
        self.write_next(&mut out);
        out.0
    }
}

/// The effects of one event, being collected.
struct Out(Vec<Effect>);

impl Out {
    fn send(&mut self, conn: ConnId, msg: Message) {
        self.0.push(Effect::Send { conn, msg });
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, about: u64, reason: String) {
        let msg = Message::Error(ErrorMessage {
            code,
            about,
            reason,
        });
        self.send(conn, msg);
    }
}

mod claims;
mod commit;
pub(crate) mod drain;
mod failures;
mod labels;
mod on_air;
mod rollback;
mod stages;

pub(crate) use on_air::{ActiveRun, RunBroadcast, SessionSeed};

#[cfg(test)]
mod tests;
