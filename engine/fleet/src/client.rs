//! `haifu client`: one machine of the fleet.
//!
//! - keeps a QUIC connection to its relay (reconnecting with back-off) and
//!   reports its installed version on every connect;
//! - on a session key, checks the signed manifest against the pinned master
//!   key and, unless it already runs that version, joins the multicast group
//!   and gathers symbols across rounds until every block decodes;
//! - holds every datagram to the signed manifest's layout and every decoded
//!   block to its signed hash (any key holder can sign a datagram), and
//!   logs and counts what it refuses;
//! - verifies sha3-256 and the signature, installs atomically (the previous
//!   version kept), runs the post-install command, and only then sends its
//!   completion, resending until the master's ack arrives. The pending
//!   completion is kept on disk, so a restart resends it;
//! - a session whose bytes in hand reach no new high for
//!   `receive_stall_secs` stops holding back the boot check (the progress
//!   watchdog), so a straggler
//!   still asks the master for a delta; the delta or full copy is streamed
//!   to a staging file, never held in memory, and refused when announced
//!   or decoded larger than the signed manifest allows.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use haifu_carousel::{Receiver, SessionKey as CarouselKey};
use haifu_core::{Manifest, PublicKey};
use haifu_install::{InstallRoot, PostInstall};
use haifu_plugin_host::{Endpoint, Plugin};
use haifu_protocol::{
    ArtifactRef, Completion, DataChunk, Message, RegisterClient, Role, SessionKey, TransferError,
    Via,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::FleetError;
use crate::common::{Shutdown, endpoint, plugins};
use crate::config::ClientConfig;
use crate::link::{self, Counters, Link};

/// How often an unacknowledged completion is sent again.
const RESEND: Duration = Duration::from_secs(2);
/// The file, in the install root, holding a completion not yet acked.
const PENDING: &str = "completion.json";

/// A completion on disk until acked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Pending {
    run: u64,
    digest: String,
    round: u32,
    at: String,
    /// Installed from a delta (or the full artifact) sent by the master.
    #[serde(default)]
    delta: bool,
}

struct Client {
    cfg: ClientConfig,
    pinned: PublicKey,
    root: InstallRoot,
    link: Mutex<Option<Arc<Link>>>,
    /// The session a receiver works on (run), if any.
    receiving: Mutex<Option<u64>>,
    /// Set to stop the receiver (a new session replaced it).
    cancel: Mutex<Arc<AtomicBool>>,
    counters: Arc<Counters>,
    /// What hostile or useless traffic the receivers met.
    hostile: Hostile,
    /// Set while the current receiver has made no progress for
    /// `receive_stall_secs`: the boot check may run meanwhile.
    stalled: AtomicBool,
    /// Held while verifying and installing, so a broadcast and a delta
    /// finishing together install once.
    installing: Mutex<()>,
    shutdown: Shutdown,
    multicast: Plugin,
}

/// Counters of datagrams and sessions a client refused or gave up on,
/// logged when it stops.
#[derive(Debug, Default)]
struct Hostile {
    /// Authentic datagrams whose shape or block count is not the manifest's.
    shape_mismatch: AtomicU64,
    /// Decoded blocks that failed their signed hash.
    block_hash_mismatch: AtomicU64,
    /// Symbol ids that came with two different tags.
    symbol_conflict: AtomicU64,
    /// Times the progress watchdog fired.
    stalls: AtomicU64,
}

impl std::fmt::Display for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "shape_mismatch={} block_hash_mismatch={} symbol_conflict={} stalls={}",
            get(&self.shape_mismatch),
            get(&self.block_hash_mismatch),
            get(&self.symbol_conflict),
            get(&self.stalls)
        )
    }
}

impl Client {
    fn link(&self) -> MutexGuard<'_, Option<Arc<Link>>> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending_path(&self) -> PathBuf {
        self.cfg.install_root.join(PENDING)
    }

    fn pending(&self) -> Option<Pending> {
        let text = std::fs::read(self.pending_path()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn send_pending(&self) {
        let Some(p) = self.pending() else { return };
        let Ok(digest) = p.digest.parse() else { return };
        let Ok(at) = p.at.parse() else { return };
        let msg = Message::Completion(Completion {
            run: p.run,
            client: self.cfg.id.clone(),
            via: if p.delta {
                Via::Delta
            } else {
                Via::Round(p.round)
            },
            digest,
            at,
        });
        if let Some(l) = self.link().clone() {
            let _ = l.send(&msg);
        }
    }

    fn installed_ref(&self) -> Option<ArtifactRef> {
        let i = self.root.installed().ok()??;
        Some(ArtifactRef {
            name: i.name.parse().ok()?,
            version: i.version.parse().ok()?,
            digest: i.digest,
        })
    }
}

/// Runs a client until `shutdown` is set.
pub fn run(cfg: ClientConfig, shutdown: Shutdown) -> Result<(), FleetError> {
    let pinned =
        haifu_store::read_public_key(&cfg.master_key).map_err(FleetError::store("master_key"))?;
    let root = InstallRoot::open(&cfg.install_root).map_err(FleetError::install("install_root"))?;
    let (quic, multicast) = plugins(cfg.plugins.as_deref())?;
    let ep = Arc::new(endpoint(&quic, &cfg.tls, None)?);
    let client = Arc::new(Client {
        cfg: cfg.clone(),
        pinned,
        root,
        link: Mutex::new(None),
        receiving: Mutex::new(None),
        cancel: Mutex::new(Arc::new(AtomicBool::new(false))),
        counters: Arc::new(Counters::default()),
        hostile: Hostile::default(),
        stalled: AtomicBool::new(false),
        installing: Mutex::new(()),
        shutdown: shutdown.clone(),
        multicast,
    });
    let installed = client.installed_ref();
    tracing::info!(
        id = %cfg.id,
        relay = %cfg.relay.address,
        installed = ?installed.as_ref().map(|i| i.version.to_string()),
        "client started"
    );
    if cfg.master.is_some() {
        let client = Arc::clone(&client);
        let ep = Arc::clone(&ep);
        std::thread::Builder::new()
            .name("boot-check".into())
            .spawn(move || boot_checks(&client, &ep))
            .map_err(FleetError::thread("boot-check"))?;
    }
    relay_link(&client, &ep);
    client
        .cancel
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .store(true, Ordering::SeqCst);
    tracing::info!(counters = %client.counters.snapshot(), hostile = %client.hostile, "client stopped");
    Ok(())
}

fn relay_link(client: &Arc<Client>, ep: &Endpoint) {
    let cfg = &client.cfg;
    let mut backoff = Duration::from_millis(200);
    while !client.shutdown.is_set() {
        let link = match link::connect(
            ep,
            &cfg.relay.address.to_string(),
            &cfg.relay.name,
            Role::Client,
            &cfg.id,
            Arc::clone(&client.counters),
        ) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                tracing::warn!(relay = %cfg.relay.address, "cannot reach the relay: {e}");
                client.shutdown.sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        // A completion not yet acked goes first: the version report that
        // follows must not make it look as if the client already had it.
        *client.link() = Some(Arc::clone(&link));
        client.send_pending();
        let reg = Message::RegisterClient(RegisterClient {
            client: cfg.id.clone(),
            relay: cfg.relay.name.clone(),
            installed: client.installed_ref(),
        });
        if link.send(&reg).is_err() {
            *client.link() = None;
            continue;
        }
        tracing::info!(relay = %cfg.relay.address, "connected to the relay");
        let mut last_resend = Instant::now() - RESEND;
        let end = loop {
            if client.shutdown.is_set() {
                break None;
            }
            if last_resend.elapsed() >= RESEND {
                client.send_pending();
                last_resend = Instant::now();
            }
            match link.recv(Duration::from_millis(300)) {
                Ok(Some(m)) => from_relay(client, &link, m),
                Ok(None) => {}
                Err(e) => break Some(e),
            }
        };
        *client.link() = None;
        if let Some(e) = end {
            tracing::warn!("relay connection lost: {e}");
        }
    }
}

fn from_relay(client: &Arc<Client>, link: &Arc<Link>, msg: Message) {
    match msg {
        Message::Registered(_) => {}
        Message::SessionKey(s) => session(client, s),
        Message::CompletionAck(a) => {
            let matches = client.pending().is_some_and(|p| {
                p.run == a.run && a.client == client.cfg.id && p.digest == a.digest.to_hex()
            });
            if matches {
                let _ = std::fs::remove_file(client.pending_path());
                tracing::info!(run = a.run, "completion acknowledged by the master");
            }
        }
        Message::Ping { nonce } => {
            let _ = link.send(&Message::Pong { nonce });
        }
        Message::Pong { .. } => {}
        Message::Error(e) => {
            tracing::warn!(code = ?e.code, about = e.about, "relay reports: {}", e.reason)
        }
        other => link.unexpected(&other),
    }
}

fn session(client: &Arc<Client>, s: SessionKey) {
    let manifest = match Manifest::from_json(&s.manifest) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(run = s.run, "session manifest unreadable: {e}");
            return;
        }
    };
    if let Err(e) = manifest.verify(&client.pinned) {
        tracing::warn!(run = s.run, "session manifest refused: {e}");
        return;
    }
    if manifest.body.name != client.cfg.artifact {
        tracing::debug!(run = s.run, artifact = %manifest.body.name, "not this client's artifact");
        return;
    }
    // A completion for this run not yet acked is resent as it is: the
    // client completed in the rounds, it did not "already have" it.
    if client.pending().is_some_and(|p| p.run == s.run) {
        return;
    }
    // Nor while this run's receiver is installing.
    if *client.receiving.lock().unwrap_or_else(|p| p.into_inner()) == Some(s.run) {
        return;
    }
    if client
        .root
        .installed()
        .ok()
        .flatten()
        .is_some_and(|i| i.digest == manifest.body.sha3_256)
    {
        tracing::info!(run = s.run, version = %manifest.body.version, "already installed; taking no part");
        // Say so: the version report marks this client as already current
        // in the run.
        let report = Message::RegisterClient(RegisterClient {
            client: client.cfg.id.clone(),
            relay: client.cfg.relay.name.clone(),
            installed: client.installed_ref(),
        });
        if let Some(l) = client.link().clone() {
            let _ = l.send(&report);
        }
        return;
    }
    let mut receiving = client.receiving.lock().unwrap_or_else(|p| p.into_inner());
    if *receiving == Some(s.run) {
        return;
    }
    // A new session replaces the old receiver.
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let mut c = client.cancel.lock().unwrap_or_else(|p| p.into_inner());
        c.store(true, Ordering::SeqCst);
        *c = Arc::clone(&cancel);
    }
    *receiving = Some(s.run);
    client.stalled.store(false, Ordering::SeqCst);
    drop(receiving);
    let client = Arc::clone(client);
    let spawned = std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            let run = s.run;
            match receive(&client, &s, &manifest, &cancel) {
                Ok(true) => {}
                Ok(false) => tracing::info!(run, "receiving stopped"),
                Err(e) => tracing::error!(run, "receiving failed: {e}"),
            }
            let mut r = client.receiving.lock().unwrap_or_else(|p| p.into_inner());
            if *r == Some(run) {
                *r = None;
                client.stalled.store(false, Ordering::SeqCst);
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the receiver: {e}");
    }
}

/// Receives the session's broadcast until complete (then installs and
/// completes: `Ok(true)`) or cancelled (`Ok(false)`).
fn receive(
    client: &Client,
    s: &SessionKey,
    manifest: &Manifest,
    cancel: &AtomicBool,
) -> Result<bool, FleetError> {
    let cfg = &client.cfg;
    let mut gcfg = format!(
        "group={}:{}\nloopback=true\njoin=true\n",
        fmt_ip(s.group.addr),
        s.group.port
    );
    if let Some(i) = &cfg.multicast.interface {
        gcfg.push_str(&format!("interface={i}\n"));
    }
    let group = client
        .multicast
        .open_group(&gcfg)
        .map_err(|source| FleetError::Transport {
            what: "multicast group",
            source,
        })?;
    // The layout and block hashes come from the signed manifest, never from
    // a datagram: every client of every relay holds the session key.
    let plan = haifu_runtime::session::receive_plan(manifest)?;
    let hashed = plan.has_block_hashes();
    let mut receiver = Receiver::new(CarouselKey::new(s.session_id, s.key.0), plan);
    let mut staging = client
        .root
        .stage(manifest.body.size)
        .map_err(FleetError::install("staging"))?;
    tracing::info!(run = s.run, version = %manifest.body.version, size = manifest.body.size, block_hashes = hashed, "receiving");
    let stall = Duration::from_secs(cfg.receive_stall_secs);
    let mut last_progress = Instant::now();
    let mut best = 0u64;
    let drop_rate = cfg.testing.drop_datagrams;
    let mut rng = cfg.testing.seed ^ 0x9e37_79b9_7f4a_7c15 ^ u64::from(s.session_id);
    let started = Instant::now();
    let mut total = crate::broadcast::ReceiveStats::default();
    // A reader thread drains the socket into a queue, so the kernel buffer
    // does not overflow while a block decodes on this thread.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(32_768);
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let reading = Arc::clone(&reading);
        std::thread::Builder::new()
            .name("datagrams".into())
            .spawn(move || {
                let mut buf = vec![0u8; 2048];
                let mut overflow = 0u64;
                while reading.load(Ordering::Relaxed) {
                    let n = match group.recv(&mut buf, Some(Duration::from_millis(200))) {
                        Ok(n) => n,
                        Err(e) if e.is_timeout() => continue,
                        Err(e) => {
                            tracing::warn!("multicast receive: {e}");
                            break;
                        }
                    };
                    if drop_rate > 0.0 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        if (rng >> 11) as f64 / (1u64 << 53) as f64 <= drop_rate {
                            continue;
                        }
                    }
                    if tx.try_send(buf[..n].to_vec()).is_err() {
                        overflow += 1;
                    }
                }
                if overflow > 0 {
                    tracing::warn!(overflow, "datagrams dropped: the decoder fell behind");
                }
            })
            .map_err(FleetError::thread("datagram reader"))?
    };
    let stop_reader = |reading: &AtomicBool| reading.store(false, Ordering::Relaxed);
    // Whatever way this function returns, the reader stops.
    let _stop_on_return = StopOnDrop(Arc::clone(&reading));
    while !receiver_done(&receiver) {
        if cancel.load(Ordering::SeqCst) || client.shutdown.is_set() {
            stop_reader(&reading);
            let _ = reader.join();
            return Ok(false);
        }
        let mut next = |buf: &mut [u8], timeout: Duration| match rx.recv_timeout(timeout) {
            Ok(d) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(Some(n))
            }
            Err(_) => Ok(None),
        };
        let stats = crate::broadcast::receive_from(
            &mut next,
            &mut receiver,
            &mut staging,
            Instant::now() + Duration::from_millis(500),
        )?;
        total.accepted += stats.accepted;
        total.redundant += stats.redundant;
        note_hostile(client, s, &stats.rejected);
        for (k, v) in stats.rejected {
            *total.rejected.entry(k).or_default() += v;
            client
                .counters
                .rejected_datagrams
                .fetch_add(v, Ordering::Relaxed);
        }
        // The progress watchdog. Progress is a new high of the bytes in
        // hand (blocks decoded and checked, plus symbols held): silence,
        // refused datagrams and repeats do not raise it, and neither does a
        // key holder who keeps poisoning blocks, since each poisoned block
        // starts over from nothing.
        let p = receiver.progress();
        let in_hand = p.bytes_done + p.symbols_held * u64::from(p.shape.symbol_size);
        if in_hand > best {
            best = in_hand;
            last_progress = Instant::now();
            if client.stalled.swap(false, Ordering::SeqCst) {
                tracing::info!(run = s.run, "the session makes progress again");
            }
        } else if last_progress.elapsed() >= stall && !client.stalled.swap(true, Ordering::SeqCst) {
            client.hostile.stalls.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                run = s.run,
                relay = %cfg.relay.address,
                stall_secs = cfg.receive_stall_secs,
                bytes_in_hand = in_hand,
                accepted = p.symbols_accepted,
                rejected = ?total.rejected,
                "the session made no progress; letting the boot check ask the master"
            );
        }
    }
    stop_reader(&reading);
    let _ = reader.join();
    // The master files the completion under the round on air now, not
    // when the install below ends.
    let decoded_at = Timestamp::now();
    tracing::info!(
        run = s.run,
        accepted = total.accepted,
        redundant = total.redundant,
        rejected = ?total.rejected,
        secs = started.elapsed().as_secs_f64(),
        "all blocks decoded"
    );
    let _installing = client.installing.lock().unwrap_or_else(|p| p.into_inner());
    if client
        .root
        .installed()
        .ok()
        .flatten()
        .is_some_and(|i| i.digest == manifest.body.sha3_256)
    {
        // The boot check got it from the master while this session stalled.
        tracing::info!(
            run = s.run,
            "already installed from the master; dropping the broadcast copy"
        );
        return Ok(false);
    }
    let verified = staging
        .verify(manifest, &client.pinned)
        .map_err(FleetError::install("verifying the artifact"))?;
    let post = post_install(cfg);
    let installed = client
        .root
        .install(verified, post.as_ref())
        .map_err(FleetError::install("installing"))?;
    let pending = Pending {
        run: s.run,
        digest: installed.digest.to_hex(),
        round: 0,
        at: decoded_at.to_string(),
        delta: false,
    };
    write_pending(&client.pending_path(), &pending)?;
    tracing::info!(run = s.run, version = %installed.version, "installed; completion sent");
    client.send_pending();
    let _ = client.root.gc();
    Ok(true)
}

fn receiver_done(r: &Receiver) -> bool {
    r.is_complete()
}

/// Logs datagrams that prove a key holder is forging. The multicast plugin
/// does not give a datagram's source address, so the relay the client
/// listens to and the group are what can be named.
fn note_hostile(client: &Client, s: &SessionKey, rejected: &std::collections::BTreeMap<&str, u64>) {
    let get = |k: &str| rejected.get(k).copied().unwrap_or(0);
    let (shape, blocks, conflicts) = (
        get("shape_mismatch"),
        get("block_hash_mismatch"),
        get("symbol_conflict"),
    );
    let h = &client.hostile;
    h.shape_mismatch.fetch_add(shape, Ordering::Relaxed);
    h.block_hash_mismatch.fetch_add(blocks, Ordering::Relaxed);
    h.symbol_conflict.fetch_add(conflicts, Ordering::Relaxed);
    if shape + blocks + conflicts > 0 {
        tracing::warn!(
            run = s.run,
            relay = %client.cfg.relay.address,
            group = %format_args!("{}:{}", fmt_ip(s.group.addr), s.group.port),
            shape_mismatch = shape,
            block_hash_mismatch = blocks,
            symbol_conflict = conflicts,
            "authentic datagrams that contradict the signed manifest: a key holder is forging; the bad blocks are gathered again"
        );
    }
}

fn fmt_ip(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// Writes the pending completion atomically (temp file, fsync, rename).
fn write_pending(path: &std::path::Path, p: &Pending) -> Result<(), FleetError> {
    let text = serde_json::to_vec(p)?;
    haifu_store::write_atomic(path, &text, true)
        .map_err(FleetError::store("the pending completion"))
}

/// What a boot check found.
enum Check {
    /// Nothing to fetch.
    UpToDate,
    /// Installed from the master; completion sent.
    Installed,
}

/// On start and every 30 s while idle: asks the master whether a finished
/// broadcast left this client behind, and if so fetches and installs the
/// difference. A failure (a truncated or corrupted delta, say) leaves the
/// installed version as it was and is retried 10 s later.
fn boot_checks(client: &Arc<Client>, ep: &Endpoint) {
    while !client.shutdown.is_set() {
        // A receiver holds the check back only while it makes progress.
        let stalled = client.stalled.load(Ordering::SeqCst);
        let busy = (client
            .receiving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
            && !stalled)
            || client.pending().is_some();
        let wait = if busy {
            Duration::from_secs(5)
        } else {
            match boot_check(client, ep) {
                // A stalled session is a sign this client is behind: ask
                // again soon, the master lists stragglers at the audit.
                Ok(Check::UpToDate) if stalled => Duration::from_secs(5),
                Ok(Check::UpToDate) => Duration::from_secs(30),
                Ok(Check::Installed) => Duration::from_secs(30),
                Err(e) => {
                    tracing::warn!("boot check: {e}; the installed version is unchanged, retrying");
                    Duration::from_secs(10)
                }
            }
        };
        client.shutdown.sleep(wait);
    }
}

fn boot_check(client: &Client, ep: &Endpoint) -> Result<Check, String> {
    use haifu_protocol::{DeltaBody, DeltaRequest};
    let cfg = &client.cfg;
    let Some(master) = &cfg.master else {
        return Ok(Check::UpToDate);
    };
    let link = link::connect(
        ep,
        &master.address.to_string(),
        &master.name,
        Role::Client,
        &cfg.id,
        Arc::clone(&client.counters),
    )
    .map_err(|e| format!("master: {e}"))?;
    let installed = client.installed_ref();
    link.send(&Message::RegisterClient(RegisterClient {
        client: cfg.id.clone(),
        relay: cfg.relay.name.clone(),
        installed: installed.clone(),
    }))
    .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = |what: &str| -> Result<Message, String> {
        loop {
            if Instant::now() > deadline {
                return Err(format!("no {what} from the master"));
            }
            match link.recv(Duration::from_millis(500)) {
                Ok(Some(Message::Ping { nonce })) => {
                    let _ = link.send(&Message::Pong { nonce });
                }
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let target = match next("answer")? {
        Message::Registered(r) => r.target,
        other => return Err(format!("unexpected answer {:#04x}", other.tag())),
    };
    let Some(target) = target.filter(|t| Some(t) != installed.as_ref()) else {
        return Ok(Check::UpToDate);
    };
    if target.name.as_str() != cfg.artifact {
        return Ok(Check::UpToDate);
    }
    let base = client.root.base_for_delta().map_err(|e| e.to_string())?;
    let from = base
        .as_ref()
        .map_or(haifu_core::Digest::from_bytes([0; 32]), |(d, _)| *d);
    // Any id unique to this client's requests will do.
    let transfer = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    link.send(&Message::DeltaRequest(DeltaRequest {
        transfer,
        client: cfg.id.clone(),
        name: target.name.clone(),
        from,
        to: target.digest,
    }))
    .map_err(|e| e.to_string())?;
    let (size, manifest, is_delta) = match next("delta response")? {
        Message::DeltaResponse(r) if r.transfer == transfer => match r.body {
            DeltaBody::Delta { size, manifest } => (size, manifest, true),
            DeltaBody::Full { size, manifest } => (size, manifest, false),
            DeltaBody::Refused { reason } => return Err(format!("master refused: {reason}")),
        },
        other => return Err(format!("unexpected answer {:#04x}", other.tag())),
    };
    let manifest = Manifest::from_json(&manifest).map_err(|e| format!("manifest: {e}"))?;
    manifest
        .verify(&client.pinned)
        .map_err(|e| format!("manifest refused: {e}"))?;
    if manifest.body.sha3_256 != target.digest {
        return Err("the manifest is not the target's".into());
    }
    // Bounded before anything is sized by it: a delta is sent only when
    // smaller than the full copy, and the full copy is the artifact
    // compressed, so neither can be larger than the signed size allows.
    let cap = transfer_cap(manifest.body.size);
    if size > cap {
        return Err(format!(
            "transfer refused: {}",
            TransferError::TooLarge {
                transfer,
                size,
                max: cap
            }
        ));
    }
    // Streamed to a staging file (sparse, removed when dropped), never
    // held in memory.
    let mut payload = client
        .root
        .stage(size)
        .map_err(|e| format!("staging the transfer: {e}"))?;
    let mut incoming = Incoming::new(transfer, size);
    loop {
        match next("data")? {
            Message::DataChunk(c) => {
                let last = incoming.check(&c).map_err(|e| format!("transfer: {e}"))?;
                payload
                    .write_at(c.offset, &c.bytes)
                    .map_err(|e| format!("staging the transfer: {e}"))?;
                if last {
                    break;
                }
            }
            other => {
                return Err(format!(
                    "unexpected message {:#04x} in a transfer",
                    other.tag()
                ));
            }
        }
    }
    let payload_file = std::fs::File::open(payload.path())
        .map_err(|e| format!("{}: {e}", payload.path().display()))?;
    let payload_reader = std::io::BufReader::with_capacity(1 << 20, payload_file);
    // The output goes straight to the artifact's staging file, which
    // refuses any byte past the signed size.
    let mut staging = client
        .root
        .stage(manifest.body.size)
        .map_err(|e| format!("staging: {e}"))?;
    if is_delta {
        let Some((installed, base_path)) = &base else {
            return Err("a delta came but nothing is installed".into());
        };
        let old = std::fs::read(base_path).map_err(|e| format!("{}: {e}", base_path.display()))?;
        // The installed version's digest was checked when it was installed:
        // the base is not hashed again (a damaged base still cannot pass,
        // the result is checked against the delta's target and then against
        // the signed manifest).
        let reader = haifu_delta::PatchReader::new(payload_reader)
            .map_err(|e| format!("delta refused: {e}"))?;
        reader
            .check_target(&manifest.body.sha3_256, manifest.body.size)
            .map_err(|e| format!("delta refused: {e}"))?;
        reader
            .apply_checked(
                &old,
                haifu_delta::BaseCheck::Known(*installed),
                &mut staging,
            )
            .map_err(|e| format!("delta refused: {e}"))?;
    } else {
        haifu_delta::decode_full(payload_reader, &mut staging, manifest.body.size)
            .map_err(|e| format!("full artifact refused: {e}"))?;
    }
    drop(payload);
    let _installing = client.installing.lock().unwrap_or_else(|p| p.into_inner());
    let verified = staging
        .verify(&manifest, &client.pinned)
        .map_err(|e| format!("verify: {e}"))?;
    let post = post_install(cfg);
    let done = client
        .root
        .install(verified, post.as_ref())
        .map_err(|e| format!("install: {e}"))?;
    write_pending(
        &client.pending_path(),
        &Pending {
            run: 0,
            digest: done.digest.to_hex(),
            round: 0,
            at: Timestamp::now().to_string(),
            delta: true,
        },
    )
    .map_err(|e| e.to_string())?;
    // A receiver still on this version (stalled) has nothing left to do.
    client
        .cancel
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .store(true, Ordering::SeqCst);
    tracing::info!(
        version = %done.version,
        bytes = size,
        artifact_bytes = manifest.body.size,
        kind = if is_delta { "delta" } else { "full" },
        "installed from the master; completion sent"
    );
    // Completion straight to the master; the relay path resends if needed.
    client.send_pending();
    let _ = link.send(&Message::Completion(Completion {
        run: 0,
        client: cfg.id.clone(),
        via: Via::Delta,
        digest: done.digest,
        at: Timestamp::now(),
    }));
    if let Ok(Message::CompletionAck(a)) = next("ack")
        && a.client == cfg.id
        && a.digest == done.digest
    {
        let _ = std::fs::remove_file(client.pending_path());
        tracing::info!("completion acknowledged by the master (delta)");
    }
    let _ = client.root.gc();
    Ok(Check::Installed)
}

/// The most bytes a straggler accepts for an artifact of `size` bytes: the
/// size plus zstd's worst-case expansion (a block header per 128 KiB, the
/// frame header and checksum) and the delta container's header and chunk
/// records, rounded up generously. A delta is only sent when smaller than
/// the full copy, so one bound serves both.
fn transfer_cap(size: u64) -> u64 {
    size.saturating_add(size / 128).saturating_add(1 << 20)
}

/// The order and bounds of one transfer's chunks, checked before a byte is
/// written: the same rules as the protocol's reassembly, without holding
/// the bytes.
#[derive(Debug)]
struct Incoming {
    transfer: u64,
    size: u64,
    received: u64,
    done: bool,
}

impl Incoming {
    fn new(transfer: u64, size: u64) -> Self {
        Self {
            transfer,
            size,
            received: 0,
            done: false,
        }
    }

    /// Checks `c` and counts it; true for the last chunk.
    fn check(&mut self, c: &DataChunk) -> Result<bool, TransferError> {
        if c.transfer != self.transfer {
            return Err(TransferError::WrongTransfer {
                expected: self.transfer,
                got: c.transfer,
            });
        }
        if self.done {
            return Err(TransferError::Finished {
                transfer: self.transfer,
            });
        }
        if c.offset != self.received {
            return Err(TransferError::OutOfOrder {
                expected: self.received,
                got: c.offset,
            });
        }
        let end = self.received.saturating_add(c.bytes.len() as u64);
        if end > self.size {
            return Err(TransferError::Overrun {
                end,
                size: self.size,
            });
        }
        if c.last && end != self.size {
            return Err(TransferError::Short {
                end,
                size: self.size,
            });
        }
        self.received = end;
        self.done = c.last;
        Ok(c.last)
    }
}

fn post_install(cfg: &ClientConfig) -> Option<PostInstall> {
    cfg.post_install.as_ref().map(|p| {
        let mut pi = PostInstall::new(p.program.clone());
        pi.args = p.args.clone();
        pi.timeout = jiff::SignedDuration::from_secs(i64::try_from(p.timeout_secs).unwrap_or(300));
        pi
    })
}

/// Clears the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn chunk(transfer: u64, offset: u64, len: usize, last: bool) -> DataChunk {
        DataChunk {
            transfer,
            offset,
            last,
            bytes: vec![0; len],
        }
    }

    #[test]
    fn a_transfer_announcing_more_than_the_manifest_allows_is_refused_before_allocating() {
        // An 8 GiB announcement for a 1 MiB artifact: boot_check refuses it
        // by this bound before staging anything.
        let size = 1 << 20;
        assert!(8 << 30 > transfer_cap(size));
        // A full copy of incompressible bytes, or of nothing, still fits.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let z = zstd::encode_all(&random[..], 3).unwrap();
        assert!(z.len() as u64 > size);
        assert!(z.len() as u64 <= transfer_cap(size));
        assert!(zstd::encode_all(&[][..], 3).unwrap().len() as u64 <= transfer_cap(0));
    }

    #[test]
    fn chunks_are_checked_against_the_announced_size_and_order() {
        let mut t = Incoming::new(7, 100);
        assert!(!t.check(&chunk(7, 0, 60, false)).unwrap());
        assert!(matches!(
            t.check(&chunk(8, 60, 10, false)),
            Err(TransferError::WrongTransfer { .. })
        ));
        assert!(matches!(
            t.check(&chunk(7, 50, 10, false)),
            Err(TransferError::OutOfOrder { .. })
        ));
        assert!(matches!(
            t.check(&chunk(7, 60, 41, false)),
            Err(TransferError::Overrun { .. })
        ));
        assert!(matches!(
            t.check(&chunk(7, 60, 30, true)),
            Err(TransferError::Short { .. })
        ));
        assert!(t.check(&chunk(7, 60, 40, true)).unwrap());
        assert!(matches!(
            t.check(&chunk(7, 100, 0, true)),
            Err(TransferError::Finished { .. })
        ));
    }
}
