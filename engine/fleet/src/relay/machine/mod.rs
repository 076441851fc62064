//! The relay's decisions, without I/O: [`RelayCore`] takes events (the
//! master link came up or went down, a message from the master or a client,
//! a fetch finished, a round was sent) and returns effects (send to the
//! master or a client, write a fetched chunk, send a round, apply a deny
//! list). The shell (`relay::shell`) owns the links, the files and the
//! broadcaster thread and carries the effects out.
//!
//! What it keeps: the session (the master's instruction), the fetch of its
//! artifact (chunks checked by the protocol's cursor before a byte is
//! written), the round queue (one round on air at a time, each sent once
//! per start and its figures kept for a master that asks again), and the
//! clients' last version reports (replayed to a master that reconnects).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;

use haifu_protocol::ArtifactRef;
use haifu_protocol::ChunkCursor;
use haifu_protocol::ClientLabels;
use haifu_protocol::ErrorCode;
use haifu_protocol::ErrorMessage;
use haifu_protocol::Feedback;
use haifu_protocol::Group;
use haifu_protocol::Instruction;
use haifu_protocol::Message;
use haifu_protocol::RegisterClient;
use haifu_protocol::RegisterRelay;
use haifu_protocol::RoundBudget;
use haifu_protocol::RoundDone;
use haifu_protocol::SessionKey;

use crate::link::Counters;

/// A client connection, as the shell numbers them (never reused).
pub(crate) type ConnId = u64;

/// What happened, as the shell tells the core.
#[derive(Debug)]
pub(crate) enum Event {
    /// The link to the master is up (a new connection each time).
    MasterUp,
    /// The link to the master is down.
    MasterDown,
    /// A message from the master. An instruction comes with whether its
    /// artifact is already in the data folder.
    FromMaster { msg: Message, on_disk: bool },
    /// A client finished its handshake with this certificate identity.
    ClientUp { conn: ConnId, client: String },
    /// A client connection ended.
    ClientDown { conn: ConnId },
    /// A message from a client.
    FromClient { conn: ConnId, msg: Message },
    /// The shell could not write a chunk of `transfer`.
    FetchFailed { transfer: u64 },
    /// The shell checked `transfer`'s bytes against the digest and kept
    /// them (`ok`), or discarded them.
    Fetched { transfer: u64, ok: bool },
    /// A round went out.
    RoundSent(RoundDone),
    /// A round could not be sent.
    RoundFailed { run: u64, round: u32 },
    /// A round was cut short by [`Effect::StopAir`].
    RoundStopped { run: u64, round: u32 },
}

/// What the shell must do.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Send to the master (dropped when the link is down).
    ToMaster(Message),
    /// Send to a client (dropped if it has gone).
    ToClient { conn: ConnId, msg: Message },
    /// Refuse these identities at the handshake and close their links.
    Deny(Vec<String>),
    /// Open a temporary file for `transfer` (the request to the master
    /// follows as a `ToMaster`).
    FetchStart { transfer: u64 },
    /// Append a checked chunk to `transfer`'s file.
    FetchWrite { transfer: u64, bytes: Vec<u8> },
    /// All of `transfer` is written: check it against `artifact` and keep
    /// it, then report `Fetched`.
    FetchFinish {
        transfer: u64,
        artifact: ArtifactRef,
    },
    /// Discard `transfer`'s file.
    FetchDrop { transfer: u64 },
    /// Send this round of `session` (the broadcaster reports `RoundSent`)
    /// within `budget` (a blind pass without one).
    Broadcast {
        round: u32,
        session: Box<Instruction>,
        budget: Option<RoundBudget>,
    },
    /// A listening client's needs, for the round on air.
    Feedback { client: String, feedback: Feedback },
    /// Cut the round on air short (its run left the air: the master
    /// stopped its rounds, an operator aborted it); the broadcaster
    /// reports `RoundStopped`. Undone by the next `Broadcast`.
    StopAir { run: u64, round: u32 },
}

/// The fetch of the session's artifact.
#[derive(Debug)]
struct Fetch {
    transfer: u64,
    /// The chunks' order and bounds, from the header's size on (`None`
    /// before the header).
    cursor: Option<ChunkCursor>,
}

/// The relay's state and rules.
#[derive(Debug)]
pub(crate) struct RelayCore {
    name: String,
    group: Group,
    master_up: bool,
    /// Clients connected and registered now, and their connection.
    clients: HashMap<String, ConnId>,
    /// Connections by id, with the certificate's identity.
    conns: HashMap<ConnId, String>,
    /// The last version report of every client seen since start: replayed
    /// to a master that (re)connects, so a report made while it was away
    /// is not lost.
    reports: BTreeMap<String, (Option<ArtifactRef>, Option<String>)>,
    /// The last labels of every client that sent some, replayed after the
    /// reports.
    labels: BTreeMap<String, ClientLabels>,
    /// The transport plugin this relay broadcasts with, named in its
    /// registration (`transport-names`).
    broadcast: Option<String>,
    session: Option<Instruction>,
    /// Whether the session's artifact is here and checked.
    artifact_ready: bool,
    fetch: Option<Fetch>,
    next_transfer: u64,
    /// Rounds to send, in order, with their budgets.
    queue: Vec<(u64, u32, Option<RoundBudget>)>,
    /// Rounds sent, with their figures (resent when the master asks again).
    sent: BTreeMap<(u64, u32), RoundDone>,
    /// The round going out now.
    sending: Option<(u64, u32)>,
    /// Clients whose completion the master acked, per run.
    acked: BTreeMap<u64, BTreeSet<String>>,
    counters: Arc<Counters>,
}

impl RelayCore {
    /// A relay named `name` broadcasting to `group`.
    pub(crate) fn new(name: String, group: Group, counters: Arc<Counters>) -> Self {
        Self {
            name,
            group,
            master_up: false,
            clients: HashMap::new(),
            conns: HashMap::new(),
            reports: BTreeMap::new(),
            labels: BTreeMap::new(),
            broadcast: None,
            session: None,
            artifact_ready: false,
            fetch: None,
            next_transfer: 1,
            queue: Vec::new(),
            sent: BTreeMap::new(),
            sending: None,
            acked: BTreeMap::new(),
            counters,
        }
    }

    /// The clients whose completion the master acknowledged for `run`.
    pub(crate) fn acked(&self, run: u64) -> usize {
        self.acked.get(&run).map_or(0, BTreeSet::len)
    }

    /// Names the transport plugin this relay broadcasts with, for its
    /// registration.
    pub(crate) fn with_broadcast(mut self, plugin: String) -> Self {
        self.broadcast = Some(plugin);
        self
    }

    /// Takes one event; returns what to do, in order.
    pub(crate) fn handle(&mut self, event: Event) -> Vec<Effect> {
        let mut out = Vec::new();
        match event {
            Event::MasterUp => {
                self.master_up = true;
                let clients = u32::try_from(self.clients.len()).unwrap_or(u32::MAX);
                out.push(Effect::ToMaster(Message::RegisterRelay(RegisterRelay {
                    relay: self.name.clone(),
                    clients,
                    group: self.group,
                    broadcast: self.broadcast.clone(),
                })));
                // Replay the clients' version reports: the master may be new.
                for (client, (installed, broadcast)) in &self.reports {
                    out.push(Effect::ToMaster(self.report(
                        client,
                        installed.clone(),
                        broadcast.clone(),
                    )));
                }
                for l in self.labels.values() {
                    out.push(Effect::ToMaster(Message::ClientLabels(l.clone())));
                }
            }
            Event::MasterDown => self.master_up = false,
            Event::FromMaster { msg, on_disk } => self.master_said(&mut out, msg, on_disk),
            Event::ClientUp { conn, client } => {
                self.conns.insert(conn, client);
            }
            Event::ClientDown { conn } => {
                if let Some(id) = self.conns.remove(&conn)
                    && self.clients.get(&id) == Some(&conn)
                {
                    self.clients.remove(&id);
                }
            }
            Event::FromClient { conn, msg } => self.client_said(&mut out, conn, msg),
            Event::FetchFailed { transfer } => {
                if self.fetch.as_ref().is_some_and(|f| f.transfer == transfer) {
                    self.fetch = None;
                    out.push(Effect::FetchDrop { transfer });
                }
            }
            Event::Fetched { transfer, ok } => {
                // Only the session's own fetch makes its artifact ready (a
                // new instruction may have replaced it meanwhile).
                if ok && self.fetch.as_ref().is_none_or(|f| f.transfer == transfer) {
                    self.artifact_ready = self.session.is_some();
                }
                if self.fetch.as_ref().is_some_and(|f| f.transfer == transfer) {
                    self.fetch = None;
                }
            }
            Event::RoundSent(done) => {
                self.sending = None;
                self.sent.insert((done.run, done.round), done.clone());
                if self.master_up {
                    out.push(Effect::ToMaster(Message::RoundDone(done)));
                }
            }
            Event::RoundFailed { run, round } | Event::RoundStopped { run, round } => {
                if self.sending == Some((run, round)) {
                    self.sending = None;
                }
            }
        }
        self.next_round(&mut out);
        out
    }

    /// Starts the next queued round when nothing is on air, the session
    /// is its run's and the artifact is here; rounds of a run that is no
    /// longer the session are dropped.
    fn next_round(&mut self, out: &mut Vec<Effect>) {
        let session_run = self.session.as_ref().map(|s| s.run);
        self.queue.retain(|(run, _, _)| Some(*run) == session_run);
        if self.sending.is_some() || !self.artifact_ready {
            return;
        }
        let (Some(session), Some(&(run, round, budget))) = (&self.session, self.queue.first())
        else {
            return;
        };
        self.queue.remove(0);
        self.sending = Some((run, round));
        out.push(Effect::Broadcast {
            round,
            session: Box::new(session.clone()),
            budget,
        });
    }

    fn report(
        &self,
        client: &str,
        installed: Option<ArtifactRef>,
        broadcast: Option<String>,
    ) -> Message {
        Message::RegisterClient(RegisterClient {
            client: client.to_owned(),
            relay: self.name.clone(),
            installed,
            broadcast,
        })
    }

    fn unexpected(&self, msg: &Message) -> Message {
        Counters::bump(&self.counters.unexpected);
        tracing::warn!(
            tag = format_args!("{:#04x}", msg.tag()),
            "unexpected message"
        );
        error(
            ErrorCode::Unexpected,
            0,
            format!("message {:#04x} is not expected here", msg.tag()),
        )
    }

    fn session_key(&self, i: &Instruction) -> Message {
        Message::SessionKey(SessionKey {
            run: i.run,
            session_id: i.session_id,
            key: i.session_key.clone(),
            group: self.group,
            manifest: i.manifest.clone(),
        })
    }
}

fn error(code: ErrorCode, about: u64, reason: String) -> Message {
    Message::Error(ErrorMessage {
        code,
        about,
        reason,
    })
}

mod admission;
mod clients;
mod master;

#[cfg(test)]
mod tests;
