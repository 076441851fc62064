//! `haifu relay`: between the master and one site's clients.
//!
//! - keeps a QUIC connection to the master (reconnecting with back-off),
//!   registers, and forwards its clients' version reports and completions
//!   up and the acks down;
//! - on an instruction, fetches the artifact from the master once (kept in
//!   `data/` under its digest, checked with sha3-256) and hands each client
//!   the run's session key and signed manifest;
//! - runs each round the master starts as a RaptorQ carousel through the
//!   multicast plugin, paced to the workflow's rate, and reports it done
//!   with its figures.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use haifu_carousel::{Pacer, SessionKey as CarouselKey};
use haifu_plugin_host::{DatagramGroup, Endpoint, Plugin};
use haifu_protocol::{
    ArtifactFetch, ArtifactRef, DataChunk, ErrorCode, Group, Hello, Instruction, Message,
    RegisterClient, RegisterRelay, Registered, Role, RoundDone, SessionKey,
};
use sha3::Digest as _;

use crate::FleetError;
use crate::common::{Shutdown, accept_loop, endpoint, plugins};
use crate::config::RelayConfig;
use crate::link::{self, Counters, Link};

/// A fetch in progress: chunks are written in order to a temporary file
/// and hashed as they come.
struct Fetch {
    transfer: u64,
    size: u64,
    received: u64,
    file: File,
    tmp: PathBuf,
    hasher: sha3::Sha3_256,
}

#[derive(Default)]
struct State {
    master: Option<Arc<Link>>,
    clients: HashMap<String, (Arc<Link>, Option<ArtifactRef>)>,
    /// The last version report of every client seen since start, connected
    /// or not: replayed to a master that (re)connects, so a report made
    /// while the master was away is not lost.
    reports: BTreeMap<String, Option<ArtifactRef>>,
    session: Option<Instruction>,
    /// The session's artifact, once here and checked.
    artifact: Option<PathBuf>,
    fetch: Option<Fetch>,
    /// Rounds to send, in order.
    queue: Vec<(u64, u32)>,
    /// Rounds sent, with their figures (resent when the master asks again).
    sent: BTreeMap<(u64, u32), RoundDone>,
    /// The round going out now.
    sending: Option<(u64, u32)>,
    /// Clients whose completion the master acked, per run.
    acked: BTreeMap<u64, BTreeSet<String>>,
}

struct Relay {
    cfg: RelayConfig,
    state: Mutex<State>,
    changed: Condvar,
    counters: Arc<Counters>,
    shutdown: Shutdown,
    transfers: AtomicU64,
    group: Group,
}

impl Relay {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn to_master(&self, msg: &Message) -> bool {
        let master = self.lock().master.clone();
        master.is_some_and(|m| m.send(msg).is_ok())
    }
}

/// Runs a relay until `shutdown` is set.
pub fn run(cfg: RelayConfig, shutdown: Shutdown) -> Result<(), FleetError> {
    std::fs::create_dir_all(&cfg.data).map_err(|source| FleetError::File {
        what: "data folder",
        path: cfg.data.clone(),
        source,
    })?;
    let (quic, multicast) = plugins(cfg.plugins.as_deref())?;
    let ep = Arc::new(endpoint(&quic, &cfg.tls, Some(cfg.listen))?);
    let group = Group {
        addr: cfg.multicast.group.ip(),
        port: cfg.multicast.group.port(),
    };
    let relay = Arc::new(Relay {
        cfg: cfg.clone(),
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        counters: Arc::new(Counters::default()),
        shutdown: shutdown.clone(),
        transfers: AtomicU64::new(1),
        group,
    });
    tracing::info!(
        name = %cfg.name,
        listen = %ep.local_addr().unwrap_or_default(),
        group = %cfg.multicast.group,
        "relay started"
    );
    let mut threads = Vec::new();
    {
        let relay = Arc::clone(&relay);
        let ep = Arc::clone(&ep);
        threads.push(spawn("master-link", move || master_link(&relay, &ep))?);
    }
    {
        let relay = Arc::clone(&relay);
        threads.push(spawn("broadcaster", move || {
            broadcaster(&relay, &multicast)
        })?);
    }
    let local = Hello::new(Role::Relay, cfg.name.clone());
    accept_loop(&ep, &shutdown, |conn| {
        let relay = Arc::clone(&relay);
        let local = local.clone();
        let _ = spawn("client", move || {
            let who = conn.peer_identity().to_owned();
            match link::accept(conn, local, &[Role::Client], Arc::clone(&relay.counters)) {
                Ok(l) => serve_client(&relay, Arc::new(l)),
                Err(e) => tracing::warn!(peer = %who, "client handshake failed: {e}"),
            }
        });
    });
    relay.changed.notify_all();
    for t in threads {
        let _ = t.join();
    }
    tracing::info!(counters = %relay.counters.snapshot(), "relay stopped");
    Ok(())
}

fn spawn(
    name: &'static str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, FleetError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(FleetError::thread(name))
}

/// Keeps the master connection up and reads from it.
fn master_link(relay: &Arc<Relay>, ep: &Endpoint) {
    let cfg = &relay.cfg;
    let mut backoff = Duration::from_millis(200);
    while !relay.shutdown.is_set() {
        let link = match link::connect(
            ep,
            &cfg.master.address.to_string(),
            &cfg.master.name,
            Role::Relay,
            &cfg.name,
            Arc::clone(&relay.counters),
        ) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                tracing::warn!(master = %cfg.master.address, "cannot reach the master: {e}");
                relay.shutdown.sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        let clients = u32::try_from(relay.lock().clients.len()).unwrap_or(u32::MAX);
        let reg = Message::RegisterRelay(RegisterRelay {
            relay: cfg.name.clone(),
            clients,
            group: relay.group,
        });
        if link.send(&reg).is_err() {
            continue;
        }
        // Replay the clients' version reports: the master may be new.
        let reports: Vec<Message> = {
            let mut st = relay.lock();
            st.master = Some(Arc::clone(&link));
            st.reports
                .iter()
                .map(|(id, installed)| {
                    Message::RegisterClient(RegisterClient {
                        client: id.clone(),
                        relay: cfg.name.clone(),
                        installed: installed.clone(),
                    })
                })
                .collect()
        };
        for r in &reports {
            let _ = link.send(r);
        }
        tracing::info!(master = %cfg.master.address, "connected to the master");
        let end = loop {
            if relay.shutdown.is_set() {
                break None;
            }
            match link.recv(Duration::from_millis(500)) {
                Ok(Some(m)) => from_master(relay, &link, ep, m),
                Ok(None) => {}
                Err(e) => break Some(e),
            }
        };
        relay.lock().master = None;
        if let Some(e) = end {
            tracing::warn!("master connection lost: {e}");
        }
    }
}

fn from_master(relay: &Arc<Relay>, link: &Arc<Link>, ep: &Endpoint, msg: Message) {
    match msg {
        Message::Registered(_) => {}
        Message::DenyList(d) => {
            // The plugin refuses them at the handshake from now on and
            // closes their live connections.
            match ep.set_denied(&d.identities) {
                Ok(()) => tracing::info!(denied = d.identities.len(), "deny list applied"),
                Err(e) => tracing::error!("applying the deny list: {e}"),
            }
            let mut st = relay.lock();
            for id in &d.identities {
                st.clients.remove(id);
            }
        }
        Message::Instruction(i) => instruction(relay, link, i),
        Message::StartRound(s) => {
            let mut st = relay.lock();
            if let Some(done) = st.sent.get(&(s.run, s.round)).cloned() {
                // Already sent (the master restarted and asks again).
                let _ = link.send(&Message::RoundDone(done));
            } else if st.sending != Some((s.run, s.round)) && !st.queue.contains(&(s.run, s.round))
            {
                tracing::info!(run = s.run, round = s.round, "round queued");
                st.queue.push((s.run, s.round));
                relay.changed.notify_all();
            }
        }
        Message::StopRounds(s) => {
            let mut st = relay.lock();
            st.queue.retain(|(run, _)| *run != s.run);
            if st.session.as_ref().is_some_and(|i| i.run == s.run) {
                tracing::info!(
                    run = s.run,
                    acked = st.acked.get(&s.run).map_or(0, BTreeSet::len),
                    "rounds stopped"
                );
                st.session = None;
            }
        }
        Message::CompletionAck(a) => {
            let client = {
                let mut st = relay.lock();
                st.acked.entry(a.run).or_default().insert(a.client.clone());
                st.clients.get(&a.client).map(|(l, _)| Arc::clone(l))
            };
            // Sent without the relay's lock: a slow client stalls no one.
            if let Some(client) = client {
                let _ = client.send(&Message::CompletionAck(a));
            }
        }
        Message::ArtifactHeader(h) => {
            let mut st = relay.lock();
            let ok = st.fetch.as_ref().is_some_and(|f| f.transfer == h.transfer);
            if !ok {
                link.unexpected(&Message::ArtifactHeader(h));
                return;
            }
            let expected = st.session.as_ref().map(|i| i.size);
            if let Some(f) = st.fetch.as_mut() {
                if expected != Some(h.size) {
                    tracing::warn!(
                        transfer = h.transfer,
                        size = h.size,
                        "artifact size differs from the instruction"
                    );
                    st.fetch = None;
                    return;
                }
                f.size = h.size;
            }
        }
        Message::DataChunk(c) => chunk(relay, link, &c),
        Message::Ping { nonce } => {
            let _ = link.send(&Message::Pong { nonce });
        }
        Message::Pong { .. } => {}
        Message::Error(e) => {
            tracing::warn!(code = ?e.code, about = e.about, "master reports: {}", e.reason);
            let mut st = relay.lock();
            if st.fetch.as_ref().is_some_and(|f| f.transfer == e.about)
                && let Some(f) = st.fetch.take()
            {
                let _ = std::fs::remove_file(&f.tmp);
            }
        }
        other => link.unexpected(&other),
    }
}

fn artifact_path(data: &Path, a: &ArtifactRef) -> PathBuf {
    data.join(a.digest.to_hex())
}

fn instruction(relay: &Arc<Relay>, link: &Arc<Link>, i: Instruction) {
    let path = artifact_path(&relay.cfg.data, &i.artifact);
    let mut st = relay.lock();
    let same = st.session.as_ref().is_some_and(|s| s.run == i.run);
    tracing::info!(
        run = i.run,
        artifact = %i.artifact.name,
        version = %i.artifact.version,
        size = i.size,
        rounds = i.rounds,
        rate_bps = i.rate_bps,
        "instruction"
    );
    if !same {
        st.artifact = None;
        st.fetch = None;
    }
    st.session = Some(i.clone());
    if path.is_file() {
        st.artifact = Some(path);
    } else if st.fetch.is_none() {
        let transfer = relay.transfers.fetch_add(1, Ordering::Relaxed);
        let tmp = relay
            .cfg
            .data
            .join(format!(".fetch-{}-{transfer}", std::process::id()));
        match File::create(&tmp) {
            Ok(file) => {
                st.fetch = Some(Fetch {
                    transfer,
                    size: 0,
                    received: 0,
                    file,
                    tmp,
                    hasher: sha3::Sha3_256::new(),
                });
                let _ = link.send(&Message::ArtifactFetch(ArtifactFetch {
                    transfer,
                    run: i.run,
                    artifact: i.artifact.clone(),
                }));
                tracing::info!(transfer, "fetching the artifact from the master");
            }
            Err(e) => tracing::error!("cannot create {}: {e}", tmp.display()),
        }
    }
    // Every connected client learns the session.
    let key = session_message(&i, relay.group);
    for (client, _) in st.clients.values() {
        let _ = client.send(&key);
    }
    relay.changed.notify_all();
}

fn session_message(i: &Instruction, group: Group) -> Message {
    Message::SessionKey(SessionKey {
        run: i.run,
        session_id: i.session_id,
        key: i.session_key.clone(),
        group,
        manifest: i.manifest.clone(),
    })
}

fn chunk(relay: &Arc<Relay>, link: &Arc<Link>, c: &DataChunk) {
    let mut st = relay.lock();
    let Some(f) = st.fetch.as_mut().filter(|f| f.transfer == c.transfer) else {
        link.unexpected(&Message::DataChunk(c.clone()));
        return;
    };
    let end = c.offset + c.bytes.len() as u64;
    let bad = if c.offset != f.received {
        Some("chunk out of order")
    } else if end > f.size {
        Some("chunk past the announced size")
    } else if c.last && end != f.size {
        Some("final chunk short of the size")
    } else {
        None
    };
    if let Some(why) = bad {
        link.error(ErrorCode::TransferFailed, c.transfer, why);
        if let Some(f) = st.fetch.take() {
            let _ = std::fs::remove_file(&f.tmp);
        }
        return;
    }
    if let Err(e) = f.file.write_all(&c.bytes) {
        tracing::error!("writing {}: {e}", f.tmp.display());
        if let Some(f) = st.fetch.take() {
            let _ = std::fs::remove_file(&f.tmp);
        }
        return;
    }
    f.hasher.update(&c.bytes);
    f.received = end;
    if !c.last {
        return;
    }
    let Some(f) = st.fetch.take() else { return };
    let Some(session) = st.session.clone() else {
        let _ = std::fs::remove_file(&f.tmp);
        return;
    };
    let digest: [u8; 32] = f.hasher.finalize().into();
    if &digest != session.artifact.digest.as_bytes() {
        tracing::error!("the fetched artifact's sha3-256 is not the instruction's; discarded");
        let _ = std::fs::remove_file(&f.tmp);
        return;
    }
    let path = artifact_path(&relay.cfg.data, &session.artifact);
    // The file, then its name: a relay that crashes right after must not
    // find a renamed file whose folder entry never reached the disk.
    let done = f
        .file
        .sync_all()
        .and_then(|()| std::fs::rename(&f.tmp, &path))
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let dir = path.parent().unwrap_or(&relay.cfg.data);
            haifu_store::sync_dir(dir).map_err(|e| e.to_string())
        });
    match done {
        Ok(()) => {
            tracing::info!(bytes = f.size, path = %path.display(), "artifact fetched and checked");
            st.artifact = Some(path);
            relay.changed.notify_all();
        }
        Err(e) => tracing::error!("keeping the artifact: {e}"),
    }
}

/// A client's connection: registration, completions up, acks down.
fn serve_client(relay: &Arc<Relay>, link: Arc<Link>) {
    let id = link.peer().to_owned();
    tracing::debug!(client = %id, "client connected");
    let end = loop {
        if relay.shutdown.is_set() {
            break None;
        }
        let msg = match link.recv(Duration::from_millis(500)) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => break Some(e),
        };
        match msg {
            Message::RegisterClient(mut r) => {
                if r.client != id {
                    link.error(
                        ErrorCode::Unexpected,
                        0,
                        format!("client id {:?} is not the certificate's {id:?}", r.client),
                    );
                    continue;
                }
                r.relay = relay.cfg.name.clone();
                let session = {
                    let mut st = relay.lock();
                    st.clients
                        .insert(id.clone(), (Arc::clone(&link), r.installed.clone()));
                    st.reports.insert(id.clone(), r.installed.clone());
                    st.session.clone()
                };
                tracing::info!(
                    client = %id,
                    installed = ?r.installed.as_ref().map(|i| i.version.to_string()),
                    "client registered"
                );
                let _ = link.send(&Message::Registered(Registered {
                    target: session.as_ref().map(|s| s.artifact.clone()),
                }));
                if let Some(s) = &session {
                    let _ = link.send(&session_message(s, relay.group));
                }
                relay.to_master(&Message::RegisterClient(r));
            }
            Message::Completion(c) => {
                if c.client != id {
                    link.error(
                        ErrorCode::Unexpected,
                        c.run,
                        "completion for another client",
                    );
                    continue;
                }
                if !relay.to_master(&Message::Completion(c.clone())) {
                    // No master now: the client resends until acked.
                    tracing::debug!(client = %id, "completion held back: no master connection");
                }
            }
            Message::Ping { nonce } => {
                let _ = link.send(&Message::Pong { nonce });
            }
            Message::Pong { .. } => {}
            Message::Error(e) => {
                tracing::warn!(client = %id, code = ?e.code, "client reports: {}", e.reason);
            }
            other => link.unexpected(&other),
        }
    };
    let mut st = relay.lock();
    if st
        .clients
        .get(&id)
        .is_some_and(|(l, _)| Arc::ptr_eq(l, &link))
    {
        st.clients.remove(&id);
    }
    drop(st);
    if let Some(e) = end.filter(|e| !e.is_closed()) {
        tracing::debug!(client = %id, "client connection lost: {e}");
    }
}

/// Sends queued rounds, one at a time.
fn broadcaster(relay: &Arc<Relay>, multicast: &Plugin) {
    let cfg = &relay.cfg.multicast;
    let mut gcfg = format!(
        "group={}\nloopback=true\njoin=false\nttl={}\n",
        cfg.group, cfg.ttl
    );
    if let Some(i) = &cfg.interface {
        gcfg.push_str(&format!("interface={i}\n"));
    }
    let group = match multicast.open_group(&gcfg) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("cannot open the multicast group {}: {e}", cfg.group);
            relay.shutdown.trigger();
            return;
        }
    };
    loop {
        let (run, round, session, path) = {
            let mut st = relay.lock();
            loop {
                if relay.shutdown.is_set() {
                    return;
                }
                let ready = st.queue.first().copied().and_then(|(run, round)| {
                    let s = st.session.clone().filter(|s| s.run == run)?;
                    let p = st.artifact.clone()?;
                    Some((run, round, s, p))
                });
                if let Some(r) = ready {
                    st.queue.remove(0);
                    st.sending = Some((r.0, r.1));
                    break r;
                }
                // Rounds of a run that is no longer the session are dropped.
                let session_run = st.session.as_ref().map(|s| s.run);
                st.queue.retain(|(run, _)| Some(*run) == session_run);
                st = relay
                    .changed
                    .wait_timeout(st, Duration::from_millis(300))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        };
        let done = send_one(relay, &group, run, round, &session, &path);
        let mut st = relay.lock();
        st.sending = None;
        match done {
            Ok(d) => {
                st.sent.insert((run, round), d.clone());
                let acked = st.acked.get(&run).map_or(0, BTreeSet::len);
                let master = st.master.clone();
                drop(st);
                tracing::info!(
                    run,
                    round,
                    datagrams = d.datagrams,
                    bytes = d.bytes,
                    ratio = format_args!("{:.4}", d.bytes as f64 / session.size.max(1) as f64),
                    elapsed_ms = d.elapsed_ms,
                    clients_done = acked,
                    "round sent"
                );
                if let Some(m) = master {
                    let _ = m.send(&Message::RoundDone(d));
                }
            }
            Err(e) => tracing::error!(run, round, "round failed: {e}"),
        }
    }
}

fn send_one(
    relay: &Relay,
    group: &DatagramGroup,
    run: u64,
    round: u32,
    session: &Instruction,
    path: &Path,
) -> Result<RoundDone, FleetError> {
    let key = CarouselKey::new(session.session_id, session.session_key.0);
    // The layout is the signed manifest's, the one its clients decode with.
    let manifest = haifu_core::Manifest::from_json(&session.manifest)?;
    let sender = haifu_runtime::session::sender_for(key, &manifest)?;
    let file = File::open(path).map_err(|source| FleetError::File {
        what: "the fetched artifact",
        path: path.to_path_buf(),
        source,
    })?;
    let mut read = |r: std::ops::Range<u64>| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; usize::try_from(r.end - r.start).unwrap_or(0)];
        file.read_exact_at(&mut buf, r.start)?;
        Ok(buf)
    };
    let mut pacer = Pacer::new(session.rate_bps.max(1), 64 * 1024)?;
    tracing::info!(run, round, "round starting");
    let started = Instant::now();
    let stop = || relay.shutdown.is_set();
    let stats = crate::broadcast::send_round_until(
        group,
        &sender,
        round,
        &mut read,
        Some(&mut pacer),
        &stop,
    )?;
    Ok(RoundDone {
        run,
        round,
        datagrams: stats.datagrams,
        bytes: stats.bytes,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}
