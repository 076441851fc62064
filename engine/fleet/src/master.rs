//! `haifu master`: the fleet's single source of truth.
//!
//! Threads:
//! - the **acceptor** takes QUIC connections from relays (and, for deltas,
//!   clients) and gives each a thread that reads its messages;
//! - the **recorder** owns a ledger connection and writes what arrives —
//!   completions, version reports, late joins — in group commits: one
//!   transaction per batch, and only after it commits are the batch's
//!   completions acknowledged;
//! - the **driver** finds live runs in the ledger (created by
//!   `haifu run --live`) and drives each through `haifu_runtime::driver`
//!   with a [`LiveFleet`], which instructs the relays and starts rounds.
//!
//! Everything durable is in the ledger, so a master killed at any moment and
//! started again carries on: relays reconnect, re-register, receive the
//! instruction and the current round again, and resent completions are
//! counted once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use haifu_core::{Digest, Manifest, SigningKey};
use haifu_ledger::{
    ClientTouch, ClientUpdate, FleetBatch, Ledger, RunFleet, RunStatus, Traffic, TrafficKind,
};
use haifu_plugin_host::Connection;
use haifu_protocol::{
    ArtifactFetch, ArtifactHeader, ArtifactRef, Completion, CompletionAck, DenyList, ErrorCode,
    Hello, Instruction, Message, RegisterClient, Registered, Role, SessionSecret, StartRound,
    StopRounds, Via,
};
use haifu_runtime::clock::{Clock, SystemClock};
use haifu_runtime::driver::{self, Env, Fleet};
use haifu_store::Store;
use jiff::Timestamp;

use crate::FleetError;
use crate::common::{Shutdown, accept_loop, endpoint, plugins, session_key};
use crate::config::{MasterConfig, TlsFiles};
use crate::link::{self, Counters, Link};
use crate::trust;

/// Default broadcast rate when a workflow sets none: 100 Mbit/s.
const DEFAULT_RATE_BPS: u64 = 100_000_000;

/// A relay connected now.
#[derive(Debug)]
struct RelayEntry {
    link: Arc<Link>,
    /// Which connection: a reconnect replaces the entry, and the old
    /// connection's thread must not remove the new one.
    serial: u64,
}

/// The master key's seed, from which every relay's session key is derived;
/// never printed.
#[derive(Clone)]
struct SessionSeed([u8; 32]);

impl std::fmt::Debug for SessionSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSeed(..)")
    }
}

/// The run being broadcast.
#[derive(Debug, Clone)]
struct ActiveRun {
    /// The instruction without its session: each relay gets its own key
    /// ([`ActiveRun::instruction_for`]).
    instruction: Instruction,
    seed: SessionSeed,
    /// The round on air (or the last one), and when it started.
    round: Option<(u32, Timestamp)>,
    /// Every round this master started for the run, in order, with its
    /// start: a completion is recorded in the round on air when the client
    /// finished decoding, not when its (maybe long) install ended.
    starts: Vec<(u32, Timestamp)>,
    /// The relays the workflow targets (empty: all).
    relays: Vec<String>,
}

#[derive(Debug, Default)]
struct HubState {
    relays: BTreeMap<String, RelayEntry>,
    /// The clients cut off, as last read from the ledger.
    denied: Vec<String>,
    active: Option<ActiveRun>,
    /// `(run, round, relay)` reported done.
    done: BTreeSet<(u64, u32, String)>,
    /// The relay each known client is registered behind (from the ledger
    /// at start, then as relays report clients): a relay speaks only for
    /// its own.
    bound: HashMap<String, String>,
    /// How many clients are registered behind each relay (bounded by
    /// `trust::MAX_CLIENTS_PER_RELAY`).
    behind: HashMap<String, usize>,
}

/// What the connection threads, the recorder and the driver share.
#[derive(Debug, Default)]
struct Hub {
    state: Mutex<HubState>,
    changed: Condvar,
    serial: AtomicU64,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ActiveRun {
    fn targets(&self, relay: &str) -> bool {
        self.relays.is_empty() || self.relays.iter().any(|r| r == relay)
    }

    fn artifact(&self) -> &ArtifactRef {
        &self.instruction.artifact
    }

    /// The instruction for `relay`, with the session key of that relay.
    fn instruction_for(&self, relay: &str) -> Instruction {
        let i = &self.instruction;
        let (session_id, secret) = session_key(&self.seed.0, i.run, &i.artifact.digest, relay);
        Instruction {
            session_id,
            session_key: SessionSecret(secret),
            ..i.clone()
        }
    }
}

/// What the recorder writes.
#[derive(Debug)]
enum Record {
    Completion {
        link: Arc<Link>,
        completion: Completion,
        /// The round it counts in, from the rounds this master started
        /// (`None`: the run is not on air here; the recorder asks the run's
        /// snapshot).
        round: Option<u32>,
        /// The relay the completion came through (a client's own word:
        /// `None`).
        relay: Option<String>,
        /// Whether the run is on air for that relay, so a client it does
        /// not list yet may join it.
        joinable: bool,
    },
    Report {
        touch: ClientTouch,
        join: Option<(i64, String, String)>,
        current: Option<i64>,
    },
    /// Bytes sent: a relay's round or fetch, a straggler's delta or copy.
    Traffic(Traffic),
}

/// Where the threads that send bytes record them.
#[derive(Clone)]
pub(crate) struct TrafficLog(Sender<Record>);

impl TrafficLog {
    /// Records `bytes` sent to `peer` for `run` (a run that does not exist
    /// is skipped by the ledger).
    pub(crate) fn record(
        &self,
        run: i64,
        peer: &str,
        kind: TrafficKind,
        round: Option<u32>,
        bytes: u64,
    ) {
        let _ = self.0.send(Record::Traffic(Traffic {
            run,
            peer: peer.to_owned(),
            kind,
            round,
            bytes,
        }));
    }
}

/// Runs the master until `shutdown` is set.
pub fn run(cfg: MasterConfig, shutdown: Shutdown) -> Result<(), FleetError> {
    let home = &cfg.home;
    // Everything that can be checked is checked before the home, the key,
    // the store or the ledger is created: a master that cannot start
    // leaves no new files behind.
    let tls = cfg.tls.clone().unwrap_or_else(|| {
        let ca = haifu_plugin_host::pki::ca_files(home);
        let mine = haifu_plugin_host::pki::cert_files(home, &cfg.name);
        TlsFiles {
            ca: ca.cert,
            cert: mine.cert,
            key: mine.key,
        }
    });
    for (what, p) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
        if !p.is_file() {
            return Err(FleetError::Start(format!(
                "tls.{what}: {} does not exist",
                p.display()
            )));
        }
    }
    let (quic, _multicast) = plugins(cfg.plugins.as_deref())?;
    haifu_store::create_private_dir(home)
        .map_err(|e| FleetError::Start(format!("home {}: {e}", home.display())))?;
    let ledger_path = home.join("ledger.sqlite");
    let key = haifu_store::load_or_create_master_key(&home.join("keys"))
        .map_err(|e| FleetError::Start(format!("master key: {e}")))?;
    let store =
        Store::open(home.join("store")).map_err(|e| FleetError::Start(format!("store: {e}")))?;
    // Open (and migrate) the ledger before anything listens; created 0600
    // first, since SQLite would use the umask (its -wal and -shm follow).
    haifu_store::create_private_file(&ledger_path)
        .map_err(|e| FleetError::Start(format!("ledger: {e}")))?;
    // And learn which relay each known client is behind.
    let bound: HashMap<String, String> = Ledger::open(&ledger_path)
        .and_then(|l| l.clients())
        .map_err(|e| FleetError::Start(format!("ledger: {e}")))?
        .into_iter()
        .filter_map(|c| c.relay.map(|r| (c.id, r)))
        .collect();
    let ep = Arc::new(endpoint(&quic, &tls, Some(cfg.listen))?);
    let addr = ep.local_addr().unwrap_or_else(|_| cfg.listen.to_string());
    tracing::info!(listen = %addr, name = %cfg.name, home = %home.display(), "master started");

    if let Some(a) = cfg.api {
        crate::api::spawn(
            a,
            cfg.api_limits.clone(),
            ledger_path.clone(),
            shutdown.clone(),
        )?;
    }
    let hub = Arc::new(Hub::default());
    {
        let mut st = hub.lock();
        for relay in bound.values() {
            *st.behind.entry(relay.clone()).or_default() += 1;
        }
        st.bound = bound;
    }
    let relays_allowed: Arc<[String]> = cfg.relays.clone().into();
    let deltas_serving = Arc::new(AtomicUsize::new(0));
    let counters = Arc::new(Counters::default());
    let (tx, rx) = mpsc::channel::<Record>();

    let recorder = {
        let path = ledger_path.clone();
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || recorder(&path, &rx, &shutdown))
            .map_err(|e| FleetError::Start(format!("recorder thread: {e}")))?
    };
    {
        let hub = Arc::clone(&hub);
        let shutdown = shutdown.clone();
        let path = ledger_path.clone();
        let ep = Arc::clone(&ep);
        let every = Duration::from_millis(cfg.poll_ms);
        std::thread::Builder::new()
            .name("deny-list".into())
            .spawn(move || deny_list(&path, &ep, &hub, &shutdown, every))
            .map_err(|e| FleetError::Start(format!("deny-list thread: {e}")))?;
    }
    {
        let hub = Arc::clone(&hub);
        let shutdown = shutdown.clone();
        let store = store.clone();
        let path = ledger_path.clone();
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("driver".into())
            .spawn(move || drive_runs(&cfg, &path, &store, &key, &hub, &shutdown))
            .map_err(|e| FleetError::Start(format!("driver thread: {e}")))?;
    }

    {
        let shutdown = shutdown.clone();
        let store = store.clone();
        let path = ledger_path.clone();
        let dir = home.join("deltas");
        std::thread::Builder::new()
            .name("delta-prebuild".into())
            .spawn(move || crate::deltas::prebuild(&store, &path, &dir, &shutdown))
            .map_err(|e| FleetError::Start(format!("delta-prebuild thread: {e}")))?;
    }

    let local = Hello::new(Role::Master, cfg.name.clone());
    accept_loop(&ep, &shutdown, |conn| {
        let peer = Peer {
            relays_allowed: Arc::clone(&relays_allowed),
            deltas_serving: Arc::clone(&deltas_serving),
            hub: Arc::clone(&hub),
            tx: tx.clone(),
            counters: Arc::clone(&counters),
            store: store.clone(),
            ledger_path: ledger_path.clone(),
            shutdown: shutdown.clone(),
        };
        let local = local.clone();
        let spawned = std::thread::Builder::new()
            .name("peer".into())
            .spawn(move || peer.serve(conn, local));
        if let Err(e) = spawned {
            tracing::error!("cannot start a connection thread: {e}");
        }
    });
    tracing::info!(counters = %counters.snapshot(), "master stopping");
    drop(tx);
    // The recorder commits what it holds, then ends.
    let _ = recorder.join();
    drop(ep);
    tracing::info!("master stopped");
    Ok(())
}

/// Deltas served at once; more requests are answered "busy" and retried by
/// the client, so stragglers booting together cannot start a thread and a
/// delta build each.
const MAX_DELTAS_SERVING: usize = 4;

/// One connection's reader.
struct Peer {
    /// The master config's `relays:` (empty: any relay-role certificate).
    relays_allowed: Arc<[String]>,
    /// Deltas being served now.
    deltas_serving: Arc<AtomicUsize>,
    hub: Arc<Hub>,
    tx: Sender<Record>,
    counters: Arc<Counters>,
    store: Store,
    ledger_path: std::path::PathBuf,
    shutdown: Shutdown,
}

impl Peer {
    fn serve(self, conn: Connection, local: Hello) {
        let who = conn.peer_identity().to_owned();
        let link = match link::accept(
            conn,
            local,
            &[Role::Relay, Role::Client],
            Arc::clone(&self.counters),
        ) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                tracing::warn!(peer = %who, "handshake failed: {e}");
                return;
            }
        };
        if link.session().peer_role == Role::Relay
            && let Err(r) = trust::relay_allowed(&self.relays_allowed, link.peer())
        {
            self.refuse(&link, 0, &r);
            return;
        }
        tracing::info!(peer = link.peer(), role = ?link.session().peer_role, "peer connected");
        let serial = self.hub.serial.fetch_add(1, Ordering::Relaxed);
        let end = loop {
            if self.shutdown.is_set() {
                break None;
            }
            match link.recv(Duration::from_millis(500)) {
                Ok(Some(m)) => self.handle(&link, serial, m),
                Ok(None) => {}
                Err(e) => break Some(e),
            }
        };
        let mut st = self.hub.lock();
        if st
            .relays
            .get(link.peer())
            .is_some_and(|r| r.serial == serial)
        {
            st.relays.remove(link.peer());
            self.hub.changed.notify_all();
        }
        drop(st);
        match end {
            Some(e) if !e.is_closed() => tracing::warn!(peer = link.peer(), "connection lost: {e}"),
            _ => tracing::info!(peer = link.peer(), "peer disconnected"),
        }
    }

    /// Answers a claim this peer may not make: an `Error` naming why,
    /// counted and logged; nothing of it is recorded.
    fn refuse(&self, link: &Link, about: u64, why: &trust::Refusal) {
        Counters::bump(&self.counters.refused);
        tracing::warn!(peer = link.peer(), "refused: {why}");
        link.error(ErrorCode::Unexpected, about, why.to_string());
    }

    fn handle(&self, link: &Arc<Link>, serial: u64, msg: Message) {
        let is_relay = link.session().peer_role == Role::Relay;
        let is_client = link.session().peer_role == Role::Client;
        match msg {
            Message::RegisterRelay(r) if is_relay => {
                if r.relay != link.peer() {
                    link.error(
                        ErrorCode::Unexpected,
                        0,
                        format!("relay name {:?} is not the certificate's", r.relay),
                    );
                    return;
                }
                let _ = link.send(&Message::Registered(Registered { target: None }));
                let mut st = self.hub.lock();
                let _ = link.send(&Message::DenyList(DenyList {
                    identities: st.denied.clone(),
                }));
                st.relays.insert(
                    r.relay.clone(),
                    RelayEntry {
                        link: Arc::clone(link),
                        serial,
                    },
                );
                tracing::info!(relay = %r.relay, clients = r.clients, group = ?r.group, "relay registered");
                // A relay that (re)joins mid-run gets the instruction and the
                // round on air: it resumes the broadcast.
                if let Some(active) = st.active.clone().filter(|a| a.targets(&r.relay)) {
                    let _ = link.send(&Message::Instruction(active.instruction_for(&r.relay)));
                    if let Some((round, at)) = active.round {
                        let run = active.instruction.run;
                        if !st.done.contains(&(run, round, r.relay.clone())) {
                            let _ = link.send(&Message::StartRound(StartRound { run, round, at }));
                        }
                    }
                }
                self.hub.changed.notify_all();
            }
            Message::RegisterClient(c) if is_relay => self.client_report(link, c),
            // A client talks to the master directly only as a straggler:
            // its version report, then a delta request.
            Message::RegisterClient(c) if is_client => {
                if let Err(r) = trust::client_speaks_for(link.peer(), &c.client) {
                    return self.refuse(link, 0, &r);
                }
                let target = Ledger::open(&self.ledger_path)
                    .ok()
                    .and_then(|l| crate::deltas::target_for(&l, &c.client))
                    .and_then(|(_, m)| crate::deltas::artifact_ref(&m))
                    .filter(|t| c.installed.as_ref() != Some(t));
                let _ = self.tx.send(Record::Report {
                    touch: ClientTouch {
                        client: c.client.clone(),
                        relay: None,
                        artifact: c.installed.as_ref().map(|i| i.name.to_string()),
                        version: c.installed.as_ref().map(|i| i.version.to_string()),
                        at: Timestamp::now().to_string(),
                    },
                    join: None,
                    current: None,
                });
                let _ = link.send(&Message::Registered(Registered { target }));
            }
            Message::DeltaRequest(r) if is_client && link.session().has("delta") => {
                if let Err(why) = trust::client_speaks_for(link.peer(), &r.client) {
                    return self.refuse(link, r.transfer, &why);
                }
                // A slot, or "busy": the client asks again on its next check.
                let taken = self.deltas_serving.fetch_add(1, Ordering::SeqCst);
                if taken >= MAX_DELTAS_SERVING {
                    self.deltas_serving.fetch_sub(1, Ordering::SeqCst);
                    let _ = link.send(&Message::DeltaResponse(haifu_protocol::DeltaResponse {
                        transfer: r.transfer,
                        to: r.to,
                        body: haifu_protocol::DeltaBody::Refused {
                            reason: format!(
                                "busy: {MAX_DELTAS_SERVING} deltas are being served; ask again"
                            ),
                        },
                    }));
                    return;
                }
                let slot = ServingSlot(Arc::clone(&self.deltas_serving));
                let link = Arc::clone(link);
                let store = self.store.clone();
                let path = self.ledger_path.clone();
                let dir = self
                    .ledger_path
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("deltas");
                let traffic = TrafficLog(self.tx.clone());
                let spawned = std::thread::Builder::new()
                    .name("delta".into())
                    .spawn(move || {
                        let _slot = slot;
                        crate::deltas::serve(&link, &store, &path, &dir, &r, &traffic);
                    });
                if let Err(e) = spawned {
                    tracing::error!("cannot start a delta thread: {e}");
                }
            }
            Message::Completion(c) if is_relay || is_client => {
                let relay = is_relay.then(|| link.peer().to_owned());
                let st = self.hub.lock();
                let allowed = match &relay {
                    Some(relay) => trust::relay_completes_for(
                        st.bound.get(&c.client).map(String::as_str),
                        relay,
                        &c.client,
                    ),
                    None => trust::client_speaks_for(link.peer(), &c.client),
                };
                if let Err(why) = allowed {
                    drop(st);
                    return self.refuse(link, c.run, &why);
                }
                // A relay relays what its clients received from its own
                // broadcast; deltas come from the clients themselves.
                if relay.is_some() && (c.via == Via::Delta || c.run == 0) {
                    drop(st);
                    return link.unexpected(&Message::Completion(c));
                }
                let on_air = st.active.as_ref().filter(|a| a.instruction.run == c.run);
                let round =
                    on_air.and_then(|a| trust::completion_round(c.run, &a.starts, c.at).ok());
                let joinable =
                    on_air.is_some_and(|a| relay.as_deref().is_none_or(|r| a.targets(r)));
                drop(st);
                let _ = self.tx.send(Record::Completion {
                    link: Arc::clone(link),
                    completion: c,
                    round,
                    relay,
                    joinable,
                });
            }
            Message::RoundDone(d) if is_relay => {
                let mut st = self.hub.lock();
                let checked = match st
                    .active
                    .as_ref()
                    .filter(|a| a.instruction.run == d.run && a.targets(link.peer()))
                {
                    Some(a) => {
                        trust::round_report(d.run, d.round, d.bytes, &a.starts, a.instruction.size)
                    }
                    None => Err(trust::Refusal::NotOnAir {
                        run: d.run,
                        round: d.round,
                    }),
                };
                if let Err(why) = checked {
                    drop(st);
                    return self.refuse(link, d.run, &why);
                }
                tracing::info!(
                    relay = link.peer(),
                    run = d.run,
                    round = d.round,
                    datagrams = d.datagrams,
                    bytes = d.bytes,
                    elapsed_ms = d.elapsed_ms,
                    "relay finished a round"
                );
                TrafficLog(self.tx.clone()).record(
                    i64::try_from(d.run).unwrap_or(i64::MAX),
                    link.peer(),
                    TrafficKind::Multicast,
                    Some(d.round),
                    d.bytes,
                );
                st.done.insert((d.run, d.round, link.peer().to_owned()));
                self.hub.changed.notify_all();
            }
            Message::ArtifactFetch(f) if is_relay && link.session().has("chunked-transfer") => {
                // Only the artifact of a run this relay is instructed for.
                let instructed = self.hub.lock().active.as_ref().is_some_and(|a| {
                    a.instruction.run == f.run
                        && a.targets(link.peer())
                        && *a.artifact() == f.artifact
                });
                if !instructed {
                    let why = trust::Refusal::NotInstructed {
                        relay: link.peer().to_owned(),
                    };
                    Counters::bump(&self.counters.refused);
                    tracing::warn!(peer = link.peer(), "refused: {why}");
                    link.error(ErrorCode::UnknownArtifact, f.transfer, why.to_string());
                    return;
                }
                let link = Arc::clone(link);
                let store = self.store.clone();
                let path = self.ledger_path.clone();
                let traffic = TrafficLog(self.tx.clone());
                let _ = std::thread::Builder::new()
                    .name("fetch".into())
                    .spawn(move || serve_fetch(&link, &store, &path, &f, &traffic));
            }
            Message::Ping { nonce } => {
                let _ = link.send(&Message::Pong { nonce });
            }
            Message::Pong { .. } => {}
            Message::Error(e) => {
                tracing::warn!(peer = link.peer(), code = ?e.code, about = e.about, "peer reports: {}", e.reason);
            }
            other => link.unexpected(&other),
        }
    }

    /// A client's version report, forwarded by its relay: recorded; a
    /// client of a live run joins it, or is marked as already current.
    fn client_report(&self, link: &Arc<Link>, c: RegisterClient) {
        let relay = link.peer().to_owned();
        if c.relay != relay {
            link.error(
                ErrorCode::Unexpected,
                0,
                format!(
                    "client {:?} reported by {relay:?}, not by {:?}",
                    c.client, c.relay
                ),
            );
            return;
        }
        let bound = self.hub.lock().bound.get(&c.client).cloned();
        if let Err(why) = trust::relay_speaks_for(bound.as_deref(), &relay, &c.client) {
            // The operator may have moved it since (`haifu fleet move`):
            // the ledger has the last word. Read without the hub's lock, so
            // a relay repeating refused reports slows nobody else.
            let moved = Ledger::open(&self.ledger_path)
                .ok()
                .and_then(|l| l.client(&c.client).ok().flatten())
                .and_then(|row| row.relay)
                .is_some_and(|r| r == relay);
            if !moved {
                return self.refuse(link, 0, &why);
            }
        }
        let mut st = self.hub.lock();
        let before = st.bound.get(&c.client).cloned();
        if before.as_deref() != Some(relay.as_str()) {
            // Registered now (first report, or moved here): counted against
            // the relay's bound.
            let registered = st.behind.get(&relay).copied().unwrap_or(0);
            if let Err(why) = trust::relay_registers(&relay, registered, &c.client) {
                drop(st);
                return self.refuse(link, 0, &why);
            }
            *st.behind.entry(relay.clone()).or_default() += 1;
            if let Some(old) = before.and_then(|o| st.behind.get_mut(&o)) {
                *old = old.saturating_sub(1);
            }
            st.bound.insert(c.client.clone(), relay.clone());
        }
        let (join, current) = match st.active.as_ref().filter(|a| a.targets(&relay)) {
            Some(a) => {
                let run = i64::try_from(a.instruction.run).unwrap_or(i64::MAX);
                let has = c.installed.as_ref().is_some_and(|i| i == a.artifact());
                (
                    Some((run, c.client.clone(), relay.clone())),
                    has.then_some(run),
                )
            }
            None => (None, None),
        };
        drop(st);
        let touch = ClientTouch {
            client: c.client.clone(),
            relay: Some(relay),
            artifact: c.installed.as_ref().map(|i| i.name.to_string()),
            version: c.installed.as_ref().map(|i| i.version.to_string()),
            at: Timestamp::now().to_string(),
        };
        let _ = self.tx.send(Record::Report {
            touch,
            join,
            current,
        });
    }
}

/// A delta slot, given back when the serving thread ends however it ends.
struct ServingSlot(Arc<AtomicUsize>);

impl Drop for ServingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Streams a run's artifact to a relay: header, then 1 MiB chunks read
/// (and verified) from the store.
fn serve_fetch(
    link: &Link,
    store: &Store,
    ledger_path: &std::path::Path,
    f: &ArtifactFetch,
    traffic: &TrafficLog,
) {
    let fail = |reason: String| {
        tracing::warn!(
            relay = link.peer(),
            transfer = f.transfer,
            "fetch failed: {reason}"
        );
        link.error(ErrorCode::TransferFailed, f.transfer, reason);
    };
    let manifest = match Ledger::open(ledger_path)
        .and_then(|l| l.manifest(f.artifact.name.as_str(), &f.artifact.version.to_string()))
    {
        Ok(Some(m)) if m.body.sha3_256 == f.artifact.digest => m,
        Ok(_) => {
            link.error(
                ErrorCode::UnknownArtifact,
                f.transfer,
                format!(
                    "{} {} is not registered with that digest",
                    f.artifact.name, f.artifact.version
                ),
            );
            return;
        }
        Err(e) => return fail(format!("ledger: {e}")),
    };
    let mut reader = match store.open_object(&manifest.body.sha3_256) {
        Ok(r) => r,
        Err(e) => return fail(format!("store: {e}")),
    };
    let header = Message::ArtifactHeader(ArtifactHeader {
        transfer: f.transfer,
        size: manifest.body.size,
        manifest: manifest.to_json().into_bytes(),
    });
    if link.send(&header).is_err() {
        return;
    }
    let started = Instant::now();
    let mut offset = 0u64;
    let mut buf = vec![0u8; haifu_protocol::limits::MAX_CHUNK_LEN];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return fail(format!("reading {}: {e}", manifest.body.sha3_256)),
            }
        }
        let last = offset + filled as u64 >= manifest.body.size || filled < buf.len();
        let chunk = Message::DataChunk(haifu_protocol::DataChunk {
            transfer: f.transfer,
            offset,
            bytes: buf[..filled].to_vec(),
            last,
        });
        if link.send(&chunk).is_err() {
            return;
        }
        offset += filled as u64;
        if last {
            break;
        }
    }
    tracing::info!(
        relay = link.peer(),
        bytes = offset,
        ms = started.elapsed().as_millis() as u64,
        "artifact sent to relay"
    );
    traffic.record(
        i64::try_from(f.run).unwrap_or(i64::MAX),
        link.peer(),
        TrafficKind::Fetch,
        None,
        offset,
    );
}

/// Keeps the cut-off clients refused: reads the ledger's deny list every
/// `every`, and when it changes applies it to the master's own endpoint and
/// sends it to every relay (a relay that registers later gets it then).
fn deny_list(
    path: &std::path::Path,
    ep: &haifu_plugin_host::Endpoint,
    hub: &Hub,
    shutdown: &Shutdown,
    every: Duration,
) {
    let ledger = match Ledger::open(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("deny list cannot open the ledger: {e}");
            return;
        }
    };
    let mut last: Option<Vec<String>> = None;
    while !shutdown.is_set() {
        match ledger.denied() {
            Ok(all) => {
                if last.as_ref() != Some(&all) {
                    // The master refuses every one of them, and so does the
                    // gate; a relay's list is bounded by one message.
                    if let Err(e) = ep.set_denied(&all) {
                        tracing::error!("applying the deny list: {e}");
                    }
                    let max = haifu_protocol::limits::MAX_DENIED;
                    if all.len() > max {
                        tracing::warn!(
                            denied = all.len(),
                            "more clients cut off than one deny list carries; relays refuse the first {max} at the handshake"
                        );
                    }
                    let for_relays: Vec<String> = all.iter().take(max).cloned().collect();
                    let msg = Message::DenyList(DenyList {
                        identities: for_relays.clone(),
                    });
                    let mut st = hub.lock();
                    // What a relay that registers later is sent: it must
                    // encode, so never more than one message carries.
                    st.denied = for_relays;
                    for r in st.relays.values() {
                        let _ = r.link.send(&msg);
                    }
                    drop(st);
                    tracing::info!(denied = all.len(), "deny list updated");
                    last = Some(all);
                }
            }
            Err(e) => tracing::error!("reading the deny list: {e}"),
        }
        shutdown.sleep(every);
    }
}

/// The recorder: batches what arrives into one transaction, then acks.
fn recorder(path: &std::path::Path, rx: &Receiver<Record>, shutdown: &Shutdown) {
    let mut ledger = match Ledger::open(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("recorder cannot open the ledger: {e}");
            shutdown.trigger();
            return;
        }
    };
    let mut runs: HashMap<u64, Digest> = HashMap::new();
    let mut total = 0u64;
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut items = vec![first];
        while items.len() < 8192 {
            match rx.try_recv() {
                Ok(r) => items.push(r),
                Err(_) => break,
            }
        }
        let mut batch = FleetBatch::default();
        let mut acks: Vec<(Arc<Link>, CompletionAck)> = Vec::new();
        for item in items {
            match item {
                Record::Report {
                    touch,
                    join,
                    current,
                } => {
                    if let Some(j) = join {
                        batch.joins.push(j);
                    }
                    if let Some(run) = current {
                        batch.updates.push((
                            run,
                            ClientUpdate::Current {
                                client: touch.client.clone(),
                                at: touch.at.clone(),
                            },
                        ));
                    }
                    batch.touches.push(touch);
                }
                Record::Traffic(t) => batch.traffic.push(t),
                Record::Completion {
                    link,
                    completion: c,
                    round,
                    relay,
                    joinable,
                } => {
                    match file_completion(&ledger, &mut runs, c, round, relay.as_deref(), joinable)
                    {
                        Filed::Record {
                            run,
                            join,
                            update,
                            ack,
                        } => {
                            batch.joins.extend(join);
                            batch.updates.push((run, update));
                            acks.push((link, ack));
                        }
                        Filed::AckOnly(ack) => acks.push((link, ack)),
                        Filed::Refused {
                            code,
                            about,
                            reason,
                        } => {
                            tracing::warn!(peer = link.peer(), "completion refused: {reason}");
                            link.error(code, about, reason);
                        }
                    }
                }
            }
        }
        if batch.is_empty() {
            // Only acks for completions with nothing left to record.
            for (link, ack) in acks {
                let _ = link.send(&Message::CompletionAck(ack));
            }
            continue;
        }
        match ledger.apply_fleet(&batch) {
            Ok(n) => {
                total += n;
                tracing::debug!(
                    completions = acks.len(),
                    new = n,
                    reports = batch.touches.len(),
                    total,
                    "recorded"
                );
                // Durable: now, and only now, the acks.
                for (link, ack) in acks {
                    let _ = link.send(&Message::CompletionAck(ack));
                }
            }
            // Nothing is acked: the clients resend.
            Err(e) => tracing::error!("recording {} items failed: {e}", acks.len()),
        }
        if shutdown.is_set() && rx.try_recv().is_err() {
            // Senders may still hold the channel; what they send after
            // shutdown is resent by the clients to the next master.
            break;
        }
    }
}

/// What the recorder does with one completion.
#[derive(Debug)]
enum Filed {
    /// Write `update` (after joining the client to the run where `join`
    /// says), then send `ack`.
    Record {
        run: i64,
        join: Option<(i64, String, String)>,
        update: ClientUpdate,
        ack: CompletionAck,
    },
    /// Nothing to write; acknowledged so the client stops resending.
    AckOnly(CompletionAck),
    /// Refused: an error to the peer; nothing written or acknowledged.
    Refused {
        code: ErrorCode,
        about: u64,
        reason: String,
    },
}

/// Decides how a completion is filed, from the ledger and the master's own
/// knowledge only: the run must exist and be of that digest, must list the
/// client behind the relay it came through (or be on air for that relay, so
/// the client joins), and a broadcast completion counts in a round this
/// master started, never in a number the client sent.
fn file_completion(
    ledger: &Ledger,
    digests: &mut HashMap<u64, Digest>,
    mut c: Completion,
    round: Option<u32>,
    relay: Option<&str>,
    joinable: bool,
) -> Filed {
    let ack = CompletionAck {
        run: c.run,
        client: c.client.clone(),
        digest: c.digest,
    };
    let refused = |code, about, reason: String| Filed::Refused {
        code,
        about,
        reason,
    };
    // Run 0 by delta: the run that lists the client as a straggler (a
    // client on boot does not know it).
    if c.run == 0 && c.via == Via::Delta {
        match ledger.straggler_run(&c.client) {
            Ok(Some((run, _, _))) => c.run = u64::try_from(run).unwrap_or(0),
            // Nothing left to record: ack so it stops.
            _ => return Filed::AckOnly(ack),
        }
    }
    // Only found digests are cached: a run whose version is registered
    // later is found then.
    let digest = match digests.get(&c.run) {
        Some(d) => Some(*d),
        None => {
            let d = run_digest(ledger, c.run);
            if let Some(d) = d {
                digests.insert(c.run, d);
            }
            d
        }
    };
    let (Some(digest), Ok(run)) = (digest, i64::try_from(c.run)) else {
        return refused(
            ErrorCode::UnknownRun,
            c.run,
            format!("run {} is unknown", c.run),
        );
    };
    if digest != c.digest {
        return refused(
            ErrorCode::Unexpected,
            c.run,
            format!(
                "client {} completed with a digest that is not run {}'s",
                c.client, c.run
            ),
        );
    }
    let listed = match ledger.run_client_relay(run, &c.client) {
        Ok(l) => l,
        Err(e) => return refused(ErrorCode::Internal, c.run, format!("ledger: {e}")),
    };
    let not_in_run = || {
        let why = trust::Refusal::NotInRun {
            run: c.run,
            client: c.client.clone(),
            relay: relay.unwrap_or("-").to_owned(),
        };
        refused(ErrorCode::Unexpected, c.run, why.to_string())
    };
    let join = match (listed, relay) {
        (Some(behind), Some(relay)) if behind != relay => return not_in_run(),
        (Some(_), _) => None,
        // A client that reported in while another run was on air joins
        // this one now, so its completion is recorded, not just acked.
        (None, _) if joinable => {
            Some((run, c.client.clone(), relay.unwrap_or(&c.client).to_owned()))
        }
        (None, _) => return not_in_run(),
    };
    let round = match c.via {
        Via::Delta => None,
        Via::Round(_) => {
            let round = round.map(Ok).unwrap_or_else(|| {
                let starts = ledger
                    .run(run)
                    .ok()
                    .flatten()
                    .and_then(|row| haifu_runtime::machine::RunState::of_run(&row).ok())
                    .map(|s| trust::numbered(&s.rounds_started()))
                    .unwrap_or_default();
                trust::completion_round(c.run, &starts, c.at)
            });
            match round {
                Ok(r) => Some(r),
                Err(why) => return refused(ErrorCode::Unexpected, c.run, why.to_string()),
            }
        }
    };
    Filed::Record {
        run,
        join,
        update: ClientUpdate::Completed {
            client: c.client,
            round,
            at: Timestamp::now().to_string(),
        },
        ack,
    }
}

fn run_digest(ledger: &Ledger, run: u64) -> Option<Digest> {
    let id = i64::try_from(run).ok()?;
    let row = ledger.run(id).ok()??;
    ledger
        .manifest(&row.artifact, &row.version)
        .ok()?
        .map(|m| m.body.sha3_256)
}

/// The driver thread: drives every live run the ledger holds, oldest
/// first, one at a time.
fn drive_runs(
    cfg: &MasterConfig,
    path: &std::path::Path,
    store: &Store,
    key: &SigningKey,
    hub: &Arc<Hub>,
    shutdown: &Shutdown,
) {
    let mut ledger = match Ledger::open(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("driver cannot open the ledger: {e}");
            shutdown.trigger();
            return;
        }
    };
    let mut broken: BTreeSet<i64> = BTreeSet::new();
    while !shutdown.is_set() {
        let runs = match ledger.runs() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("listing runs: {e}");
                shutdown.sleep(Duration::from_millis(cfg.poll_ms));
                continue;
            }
        };
        // Oldest first (the ledger lists runs newest first).
        let next = runs
            .into_iter()
            .filter(|r| {
                r.status == RunStatus::Running && r.fleet.is_live() && !broken.contains(&r.id)
            })
            .min_by_key(|r| r.id);
        match next {
            Some(r) => {
                if let Err(e) = drive_one(
                    cfg,
                    &mut ledger,
                    store,
                    key,
                    hub,
                    shutdown,
                    r.id,
                    &r.workflow,
                ) {
                    tracing::error!(run = r.id, "run cannot be driven: {e}");
                    broken.insert(r.id);
                }
                let mut st = hub.lock();
                if let Some(a) = st.active.take() {
                    for relay in st.relays.values() {
                        let _ = relay.link.send(&Message::StopRounds(StopRounds {
                            run: a.instruction.run,
                        }));
                    }
                }
            }
            None => {
                shutdown.sleep(Duration::from_millis(cfg.poll_ms));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn drive_one(
    cfg: &MasterConfig,
    ledger: &mut Ledger,
    store: &Store,
    key: &SigningKey,
    hub: &Arc<Hub>,
    shutdown: &Shutdown,
    id: i64,
    workflow: &str,
) -> Result<(), FleetError> {
    let plan = haifu_spec::load_and_validate(std::path::Path::new(workflow)).map_err(|errs| {
        FleetError::Run(format!(
            "{workflow}: {}",
            errs.first().map(ToString::to_string).unwrap_or_default()
        ))
    })?;
    let policies = haifu_policy::PolicySet::load(&plan.policies.paths()).map_err(|errs| {
        FleetError::Run(format!(
            "{workflow}: {}",
            errs.first().map(ToString::to_string).unwrap_or_default()
        ))
    })?;
    tracing::info!(run = id, workflow, "driving run");
    let mut fleet = LiveFleet {
        hub: Arc::clone(hub),
        run: id,
        key: SigningKey::from_seed(key.to_seed()),
        ledger_path: ledger.path().to_owned(),
        rate_bps: plan.rate.unwrap_or(DEFAULT_RATE_BPS),
        relays: plan.targets.relays.clone(),
        rounds: 0,
        start: plan.schedule.start,
        round_grace: Duration::from_secs(cfg.round_grace_secs),
        settle: Duration::from_millis(cfg.settle_ms),
        shutdown: shutdown.clone(),
        instructed: false,
    };
    fleet.rounds = plan_rounds(&plan);
    let clock = StoppableClock {
        shutdown: shutdown.clone(),
    };
    let mut env = Env {
        ledger,
        store,
        key,
        policies: &policies,
        clock: &clock,
    };
    driver::resume(&mut env, id, &plan, &mut fleet).map_err(|e| FleetError::Run(e.to_string()))
}

fn plan_rounds(plan: &haifu_spec::Plan) -> u32 {
    plan.steps
        .iter()
        .find_map(|s| match s {
            haifu_spec::Step::Broadcast(b) => Some(b.rounds.value),
            _ => None,
        })
        .unwrap_or(0)
}

/// The system clock, except that a sleep ends the process's driving on
/// shutdown: the driver thread parks there until the process exits (every
/// transition before it is durable, so nothing is lost).
#[derive(Debug)]
struct StoppableClock {
    shutdown: Shutdown,
}

impl Clock for StoppableClock {
    fn now(&self) -> Timestamp {
        SystemClock.now()
    }

    fn sleep_until(&self, at: Timestamp) {
        loop {
            let left = at.duration_since(SystemClock.now());
            if left <= jiff::SignedDuration::ZERO {
                return;
            }
            let left = Duration::try_from(left).unwrap_or(Duration::from_secs(1));
            if self.shutdown.sleep(left.min(Duration::from_millis(500))) {
                park_forever();
            }
        }
    }
}

fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// The real fleet behind the run driver: relays instructed over QUIC,
/// completions recorded by the recorder as they arrive.
#[derive(Debug)]
pub struct LiveFleet {
    hub: Arc<Hub>,
    run: i64,
    key: SigningKey,
    ledger_path: std::path::PathBuf,
    rate_bps: u64,
    relays: Vec<String>,
    rounds: u32,
    start: Timestamp,
    round_grace: Duration,
    settle: Duration,
    shutdown: Shutdown,
    instructed: bool,
}

impl LiveFleet {
    /// Sets the hub's active run (once per drive) so relays get the
    /// instruction, and registering clients join.
    fn instruct(&mut self) -> Option<ActiveRun> {
        if self.instructed {
            return self.hub.lock().active.clone();
        }
        let ledger = Ledger::open(&self.ledger_path).ok()?;
        let row = ledger.run(self.run).ok()??;
        let manifest: Manifest = ledger.manifest(&row.artifact, &row.version).ok()??;
        let artifact = ArtifactRef {
            name: manifest.body.name.parse().ok()?,
            version: manifest.body.version.parse().ok()?,
            digest: manifest.body.sha3_256,
        };
        let run = u64::try_from(self.run).ok()?;
        // The session is per relay (`ActiveRun::instruction_for`).
        let instruction = Instruction {
            run,
            artifact,
            size: manifest.body.size,
            manifest: manifest.to_json().into_bytes(),
            start: self.start,
            rounds: self.rounds,
            rate_bps: self.rate_bps,
            session_id: 0,
            session_key: SessionSecret([0; 32]),
        };
        let active = ActiveRun {
            instruction,
            seed: SessionSeed(self.key.to_seed()),
            round: None,
            starts: Vec::new(),
            relays: self.relays.clone(),
        };
        let mut st = self.hub.lock();
        st.active = Some(active.clone());
        for (name, r) in &st.relays {
            if active.targets(name) {
                let _ = r
                    .link
                    .send(&Message::Instruction(active.instruction_for(name)));
            }
        }
        self.instructed = true;
        Some(active)
    }
}

impl Fleet for LiveFleet {
    fn describe(&self) -> RunFleet {
        RunFleet::Live
    }

    fn targets(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn broadcast_round(
        &mut self,
        round: u32,
        pending: &[String],
        clock: &dyn Clock,
    ) -> Vec<String> {
        let Some(active) = self.instruct() else {
            tracing::error!(
                run = self.run,
                "the run's artifact is not registered; no round sent"
            );
            return Vec::new();
        };
        if pending.is_empty() {
            return Vec::new();
        }
        let run = active.instruction.run;
        let at = clock.now();
        let expected = round_seconds(&active.instruction);
        let deadline = Instant::now() + Duration::from_secs_f64(expected) + self.round_grace;
        let mut st = self.hub.lock();
        if let Some(a) = st.active.as_mut() {
            a.round = Some((round, at));
            a.starts.retain(|(n, _)| *n != round);
            a.starts.push((round, at));
        }
        st.done.retain(|(r, n, _)| *r == run && *n == round);
        let start = Message::StartRound(StartRound { run, round, at });
        let mut sent = 0;
        for (name, r) in &st.relays {
            if active.targets(name) {
                sent += usize::from(r.link.send(&start).is_ok());
            }
        }
        tracing::info!(
            run,
            round,
            relays = sent,
            expected_s = expected,
            "round started"
        );
        // Wait for every targeted relay connected now to report the round
        // (a relay that reconnects gets the round again on registering).
        loop {
            let waiting: Vec<String> = st
                .relays
                .keys()
                .filter(|n| active.targets(n) && !st.done.contains(&(run, round, (*n).clone())))
                .cloned()
                .collect();
            let any_done = st.done.iter().any(|(r, n, _)| *r == run && *n == round);
            if (waiting.is_empty() && any_done) || self.shutdown.is_set() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(run, round, waiting = ?waiting, "round timed out waiting for relays");
                break;
            }
            st = self
                .hub
                .changed
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(500)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        drop(st);
        // Completions of clients that decoded at the end of the round are
        // still in flight: give them a moment before the policy looks.
        self.shutdown.sleep(self.settle);
        Vec::new()
    }

    fn delta_boots(
        &mut self,
        _stragglers: &[String],
        _not_before: Timestamp,
        _until: Timestamp,
    ) -> Vec<(String, Timestamp)> {
        // Rounds are over: relays stop offering the session to clients.
        let mut st = self.hub.lock();
        if let Some(a) = st.active.as_ref() {
            let run = a.instruction.run;
            for r in st.relays.values() {
                let _ = r.link.send(&Message::StopRounds(StopRounds { run }));
            }
        }
        st.active = None;
        // Deltas on boot are served by the master's unicast path (issue 6);
        // the live fleet records none here.
        Vec::new()
    }

    fn last_contact(&self, _: &str, _: &[Timestamp], _: Timestamp) -> Option<Timestamp> {
        // The recorder writes every contact to the ledger, which the driver
        // reads already.
        None
    }
}

/// Seconds a round takes at the instruction's rate (carousel bytes).
fn round_seconds(i: &Instruction) -> f64 {
    let ratio =
        haifu_carousel::loss::round_ratio(i.size, &haifu_carousel::CarouselConfig::default())
            .unwrap_or(1.2);
    let bits = i.size as f64 * ratio * 8.0;
    bits / i.rate_bps.max(1) as f64
}

/// The clients a live run targets: every fleet member the ledger knows
/// (from their version reports), not cut off, behind a targeted relay.
pub fn live_targets(
    ledger: &Ledger,
    relays: &[String],
) -> Result<Vec<(String, String)>, FleetError> {
    let clients = ledger
        .clients()
        .map_err(|e| FleetError::Run(format!("ledger: {e}")))?;
    Ok(clients
        .into_iter()
        .filter(|c| c.denied_reason.is_none())
        .filter_map(|c| c.relay.map(|r| (c.id, r)))
        .filter(|(_, r)| relays.is_empty() || relays.contains(r))
        .collect())
}

/// The fleet a `haifu run --live` creates its run with: the known clients.
#[derive(Debug)]
pub struct LiveTargets(pub Vec<(String, String)>);

impl Fleet for LiveTargets {
    fn describe(&self) -> RunFleet {
        RunFleet::Live
    }

    fn targets(&self) -> Vec<(String, String)> {
        self.0.clone()
    }

    fn broadcast_round(&mut self, _: u32, _: &[String], _: &dyn Clock) -> Vec<String> {
        Vec::new()
    }

    fn delta_boots(
        &mut self,
        _: &[String],
        _: Timestamp,
        _: Timestamp,
    ) -> Vec<(String, Timestamp)> {
        Vec::new()
    }

    fn last_contact(&self, _: &str, _: &[Timestamp], _: Timestamp) -> Option<Timestamp> {
        None
    }
}

/// The completion and round-report paths from a peer's message through the
/// master's checks into the ledger and the audit, with arbitrary values
/// where a peer chooses them (issue 11): nothing panics, nothing sizes
/// memory, and only what the rules allow is recorded.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fuzz {
    use super::*;
    use haifu_ledger::NewRun;
    use haifu_runtime::machine::RunState;
    use haifu_spec::steps::broadcast::{Phase, State as Broadcast};
    use haifu_spec::steps::machine::StepState;
    use proptest::prelude::*;

    const CLIENTS: [&str; 4] = ["c0", "c1", "c2", "c3"];
    const RELAYS: [&str; 3] = ["relay-0", "relay-1", "relay-x"];

    /// A claim as a peer may make it.
    #[derive(Debug, Clone)]
    struct Claim {
        client: String,
        relay: Option<&'static str>,
        run: u64,
        round: Option<u32>,
        via_round: Option<u32>,
        right_digest: bool,
        at_secs: i64,
        joinable: bool,
    }

    fn claim() -> impl Strategy<Value = Claim> {
        (
            prop_oneof![
                (0..CLIENTS.len()).prop_map(|i| CLIENTS[i].to_owned()),
                "[a-z]{1,8}",
            ],
            prop_oneof![Just(None), (0..RELAYS.len()).prop_map(|i| Some(RELAYS[i]))],
            prop_oneof![4 => Just(1u64), 1 => Just(0u64), 1 => any::<u64>()],
            // What the hub computed: only rounds the master started.
            prop_oneof![Just(None), (1u32..=2).prop_map(Some)],
            prop_oneof![Just(None), any::<u32>().prop_map(Some)],
            any::<bool>(),
            -10_000_000_000i64..10_000_000_000,
            any::<bool>(),
        )
            .prop_map(
                |(client, relay, run, round, via_round, right_digest, at_secs, joinable)| Claim {
                    client,
                    relay,
                    run,
                    round,
                    via_round,
                    right_digest,
                    at_secs,
                    joinable,
                },
            )
    }

    fn digest(b: u8) -> Digest {
        Digest::from_bytes([b; 32])
    }

    /// A ledger with run 1: c0, c1 behind relay-0, c2 behind relay-1 (c3
    /// is in no run), two rounds started.
    fn ledger() -> (tempfile::TempDir, Ledger, i64) {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        let t0: Timestamp = "2026-11-28T10:00:00Z".parse().unwrap();
        let state = RunState {
            step: 1,
            current: Some(StepState::Broadcast(Broadcast {
                phase: Phase::RoundOpen { round: 2 },
                started: vec![t0, t0 + jiff::SignedDuration::from_secs(60)],
                stopped_early: None,
            })),
            finished: Vec::new(),
            finished_at: None,
        };
        let clients: Vec<(String, String)> =
            [("c0", "relay-0"), ("c1", "relay-0"), ("c2", "relay-1")]
                .iter()
                .map(|(c, r)| ((*c).to_owned(), (*r).to_owned()))
                .collect();
        let run = l
            .create_run(&NewRun {
                workflow: "w.yaml",
                name: "w",
                artifact: "app",
                version: "1.0.0",
                fleet: &RunFleet::Live,
                state: &serde_json::to_string(&state).unwrap(),
                next_wake: None,
                clients: &clients,
            })
            .unwrap();
        (dir, l, run)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn peer_claims_through_the_recorder_keep_the_ledger_sound(
            claims in proptest::collection::vec(claim(), 1..40),
            reports in proptest::collection::vec((any::<u32>(), any::<u64>()), 0..8),
        ) {
            let (_dir, mut l, run) = ledger();
            let mut digests = HashMap::from([(1u64, digest(7))]);
            let started = trust::numbered(
                &RunState::of_run(&l.run(run).unwrap().unwrap())
                    .unwrap()
                    .rounds_started(),
            );
            let listed = |c: &str| match c {
                "c0" | "c1" => Some("relay-0"),
                "c2" => Some("relay-1"),
                _ => None,
            };
            let mut batch = FleetBatch::default();
            for c in &claims {
                let completion = Completion {
                    run: c.run,
                    client: c.client.clone(),
                    via: c.via_round.map_or(Via::Delta, Via::Round),
                    digest: if c.right_digest { digest(7) } else { digest(8) },
                    at: Timestamp::from_second(c.at_secs).unwrap(),
                };
                match file_completion(&l, &mut digests, completion, c.round, c.relay, c.joinable) {
                    Filed::Record { run: r, join, update, .. } => {
                        prop_assert_eq!(r, run);
                        prop_assert!(c.right_digest);
                        // Through a relay: only behind it, or joining a run
                        // on air for it.
                        if let Some(relay) = c.relay {
                            prop_assert!(listed(&c.client) == Some(relay) || (listed(&c.client).is_none() && c.joinable));
                        }
                        if let ClientUpdate::Completed { round: Some(n), .. } = &update {
                            prop_assert!(started.iter().any(|(s, _)| s == n), "round {} never started", n);
                        }
                        batch.joins.extend(join);
                        batch.updates.push((r, update));
                    }
                    Filed::AckOnly(_) | Filed::Refused { .. } => {}
                }
            }
            for (round, bytes) in reports {
                if trust::round_report(1, round, bytes, &started, 1 << 20).is_ok() {
                    batch.traffic.push(Traffic {
                        run,
                        peer: "relay-0".into(),
                        kind: TrafficKind::Multicast,
                        round: Some(round),
                        bytes,
                    });
                }
            }
            l.apply_fleet(&batch).unwrap();
            let audit = l.audit(run).unwrap().unwrap();
            for r in &audit.relays {
                prop_assert!(r.delivered_by_round.len() <= 2);
                prop_assert!(r.delivered_unknown_round.is_empty());
            }
            let traffic = l.traffic(run).unwrap();
            prop_assert!(traffic.multicast_by_round.len() <= 2);
            haifu_runtime::report::Report::from_ledger(&l, run).unwrap();
        }
    }
}
