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
use haifu_protocol::ArtifactRef;
use haifu_protocol::DeltaRequest;
use haifu_protocol::DenyList;
use haifu_protocol::ErrorCode;
use haifu_protocol::ErrorMessage;
use haifu_protocol::Instruction;
use haifu_protocol::Message;
use haifu_protocol::Role;
use haifu_protocol::RoundBudget;
use haifu_protocol::SessionSecret;
use haifu_protocol::StartRound;
use haifu_protocol::StopRounds;
use jiff::Timestamp;

use super::filing::Facts;
use crate::common::session_key;
use crate::link::Counters;
use crate::trust;

/// Deltas served at once; more requests are answered "busy" and retried by
/// the client, so stragglers booting together cannot start a thread and a
/// delta build each.
pub(crate) const MAX_DELTAS_SERVING: usize = 4;

/// A connection, as the shell numbers them (never reused).
pub(crate) type ConnId = u64;

/// The master key's seed, from which every relay's session key is derived;
/// never printed.
#[derive(Clone)]
pub(crate) struct SessionSeed(pub(crate) [u8; 32]);

impl std::fmt::Debug for SessionSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSeed(..)")
    }
}

/// The run being broadcast.
#[derive(Debug, Clone)]
pub(crate) struct ActiveRun {
    /// The instruction without its session: each relay gets its own key
    /// ([`ActiveRun::instruction_for`]).
    pub(crate) instruction: Instruction,
    pub(crate) seed: SessionSeed,
    /// The round on air (or the last one), and when it started.
    pub(crate) round: Option<(u32, Timestamp)>,
    /// The budget of the round on air, for relays with feedback repair.
    pub(crate) budget: Option<RoundBudget>,
    /// Every round this master started for the run, in order, with its
    /// start: a completion is recorded in the round on air when the client
    /// finished decoding, not when its (maybe long) install ended.
    pub(crate) starts: Vec<(u32, Timestamp)>,
    /// The relays the workflow targets (empty: all).
    pub(crate) relays: Vec<String>,
    /// The workflow's `transports.broadcast`, when it is held to one: a
    /// relay or client that names another plugin is left out.
    pub(crate) broadcast: Option<RunBroadcast>,
    /// Targeted relays left out because they broadcast with another plugin.
    pub(crate) left_out: BTreeSet<String>,
}

/// The broadcast transport a run is held to, and where its workflow says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunBroadcast {
    /// The plugin name.
    pub(crate) plugin: String,
    /// `FILE:LINE:COLUMN` of `transports.broadcast` in the workflow.
    pub(crate) at: String,
}

impl RunBroadcast {
    /// Whether a peer that named `plugin` (or nothing: a peer without
    /// `transport-names`, taken to use the default) can take part.
    pub(crate) fn admits(&self, plugin: Option<&str>) -> bool {
        plugin.is_none_or(|p| p.replace('-', "_") == self.plugin.replace('-', "_"))
    }

    /// The one-line reason a `who` broadcasting with `plugin` is left out.
    pub(crate) fn refusal(&self, who: &str, plugin: &str) -> String {
        format!(
            "{}: transports.broadcast is {:?} but {who} broadcasts with {plugin:?}: left out of this run",
            self.at, self.plugin
        )
    }
}

impl ActiveRun {
    /// Whether the run is broadcast by `relay`.
    pub(crate) fn targets(&self, relay: &str) -> bool {
        (self.relays.is_empty() || self.relays.iter().any(|r| r == relay))
            && !self.left_out.contains(relay)
    }

    fn artifact(&self) -> &ArtifactRef {
        &self.instruction.artifact
    }

    /// The instruction for `relay`, with the session key of that relay.
    pub(crate) fn instruction_for(&self, relay: &str) -> Instruction {
        let i = &self.instruction;
        let (session_id, secret) = session_key(&self.seed.0, i.run, &i.artifact.digest, relay);
        Instruction {
            session_id,
            session_key: SessionSecret(secret),
            ..i.clone()
        }
    }
}

/// What happened, as the shell tells the core.
#[derive(Debug)]
pub(crate) enum Event {
    /// A peer finished its handshake with this certificate identity and
    /// role; `delta` and `chunked` are the features both sides have.
    Connected {
        conn: ConnId,
        peer: String,
        role: Role,
        delta: bool,
        chunked: bool,
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
            counters,
        }
    }

    /// Why `relay` cannot carry `active` (it named another broadcast
    /// plugin than the run's workflow), if it cannot.
    fn wrong_broadcast(&self, active: &ActiveRun, relay: &str) -> Option<String> {
        let held = active.broadcast.as_ref()?;
        let theirs = self.relay_plugins.get(relay)?;
        (!held.admits(Some(theirs))).then(|| held.refusal(&format!("relay {relay:?}"), theirs))
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
            Event::OnAir(mut active) => {
                for (name, conn) in &self.relays {
                    if !active.targets(name) {
                        continue;
                    }
                    if let Some(why) = self.wrong_broadcast(&active, name) {
                        active.left_out.insert(name.clone());
                        tracing::error!(run = active.instruction.run, relay = %name, "{why}");
                        out.error(*conn, ErrorCode::Unexpected, 0, why);
                        continue;
                    }
                    out.send(*conn, Message::Instruction(active.instruction_for(name)));
                    self.instructed
                        .insert((active.instruction.run, name.clone()));
                }
                let run = active.instruction.run;
                self.instructed.retain(|(r, _)| *r == run);
                self.active = Some(*active);
            }
            Event::RoundStarted { round, budget } => {
                self.round_started(&mut out, now, round, budget);
            }
            Event::OffAir => {
                if let Some(a) = self.active.take() {
                    let run = a.instruction.run;
                    for conn in self.relays.values() {
                        out.send(*conn, Message::StopRounds(StopRounds { run }));
                    }
                }
            }
            Event::Traffic(t) => self.next.traffic.push(t),
            Event::DeltaDone => self.deltas_serving = self.deltas_serving.saturating_sub(1),
            Event::Committed => {
                // Durable: now, and only now, the acks.
                let (_, acks) = self.in_flight.take().unwrap_or_default();
                for (conn, ack) in acks {
                    match &ack {
                        Message::CompletionAck(a) => *self.recorded.entry(a.run).or_default() += 1,
                        Message::RollbackAck(a) => self.orders.recorded(a.order),
                        _ => {}
                    }
                    out.send(conn, ack);
                }
            }
            Event::CommitFailed => {
                // The transaction rolled back: written again, first, with
                // whatever arrived meanwhile. Version reports and round
                // figures are sent once; dropping them would lose them.
                if let Some((mut batch, mut acks)) = self.in_flight.take() {
                    tracing::error!(
                        completions = acks.len(),
                        "a ledger write failed; writing it again"
                    );
                    append(&mut batch, std::mem::take(&mut self.next));
                    acks.append(&mut self.next_acks);
                    self.next = batch;
                    self.next_acks = acks;
                }
            }
        }
        if self.in_flight.is_none() && !self.next.is_empty() {
            let batch = std::mem::take(&mut self.next);
            let acks = std::mem::take(&mut self.next_acks);
            self.in_flight = Some((batch.clone(), acks));
            out.0.push(Effect::Write(batch));
        }
        out.0
    }

    fn round_started(
        &mut self,
        out: &mut Out,
        now: Timestamp,
        round: u32,
        budget: Option<RoundBudget>,
    ) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        a.round = Some((round, now));
        a.budget = budget;
        a.starts.retain(|(n, _)| *n != round);
        a.starts.push((round, now));
        let run = a.instruction.run;
        self.done.retain(|(r, n, _)| *r == run && *n == round);
        self.listeners.retain(|(r, _), _| *r == run);
        let start = Message::StartRound(StartRound {
            run,
            round,
            at: now,
            budget,
        });
        for (name, conn) in &self.relays {
            if a.targets(name) {
                out.send(*conn, start.clone());
            }
        }
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

/// Appends `more`'s rows after `batch`'s.
fn append(batch: &mut FleetBatch, more: FleetBatch) {
    let FleetBatch {
        touches,
        joins,
        updates,
        events,
        traffic,
        rollbacks,
        labels,
    } = more;
    batch.touches.extend(touches);
    batch.joins.extend(joins);
    batch.updates.extend(updates);
    batch.events.extend(events);
    batch.traffic.extend(traffic);
    batch.rollbacks.extend(rollbacks);
    batch.labels.extend(labels);
}

mod claims;
pub(crate) mod drain;
mod labels;
mod rollback;

#[cfg(test)]
mod tests;
