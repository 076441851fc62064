//! A session's broadcast: datagrams in, checked blocks into staging, then
//! verify and install, with a watchdog for sessions that make no progress.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use haifu_carousel::CarouselKey;
use haifu_carousel::Receiver;
use haifu_core::Manifest;
use haifu_protocol::SessionKey;
use jiff::Timestamp;

use super::Client;
use super::catch_up::post_install;
use super::datagrams::Datagrams;
use super::datagrams::Packed;
use super::listening::Listening;
use super::listening::REPORT_EVERY;
use super::listening::feedback;
use super::machine::Event;
use super::outbox::Pending;
use crate::FleetError;

/// Starts a receiver for a session the core admitted; a new session
/// replaces the old receiver.
pub(super) fn start(client: &Arc<Client>, s: SessionKey, manifest: Manifest) {
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let mut c = client.cancel.lock().unwrap_or_else(|p| p.into_inner());
        c.store(true, Ordering::SeqCst);
        *c = Arc::clone(&cancel);
    }
    client.stalled.store(false, Ordering::SeqCst);
    let run = s.run;
    let receiver = Arc::clone(client);
    let spawned = std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            let client = receiver;
            // The receiver's lines, and the install they lead to, name
            // the run.
            let _run = tracing::info_span!("run", run).entered();
            match receive(&client, &s, &manifest, &cancel) {
                Ok(true) => {}
                Ok(false) => tracing::info!(run, "receiving stopped"),
                Err(e) => {
                    client.metrics.session_failed(&e);
                    tracing::error!(run, "receiving failed: {e}");
                }
            }
            if client.core().receiving() == Some(run) {
                client.stalled.store(false, Ordering::SeqCst);
            }
            client.handle(Event::ReceiverEnded { run });
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the receiver: {e}");
        client.handle(Event::ReceiverEnded { run });
    }
}

/// Receives the session's broadcast until complete (then installs and
/// completes: `Ok(true)`) or cancelled (`Ok(false)`).
pub(super) fn receive(
    client: &Arc<Client>,
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
    // With block hashes, the blocks are checked all at once by the
    // artifact's digest, computed as they land: each byte is hashed once.
    // Only if it fails are the blocks hashed one by one, to find and
    // gather again the ones a key holder poisoned.
    let blame_plan = hashed.then(|| plan.clone());
    let mut receiver = Receiver::new(CarouselKey::new(s.session_id, s.key.0), plan);
    if hashed {
        receiver.check_blocks_by_digest();
    }
    let mut landing = crate::broadcast::Landing::new(
        client
            .root
            .stage(manifest.body.size)
            .map_err(FleetError::install("staging"))?,
    );
    tracing::info!(run = s.run, version = %manifest.body.version, size = manifest.body.size, block_hashes = hashed, "receiving");
    let mut watchdog = Watchdog::new(Duration::from_secs(cfg.receive_stall_secs));
    let seed = cfg.testing.seed ^ 0x9e37_79b9_7f4a_7c15 ^ u64::from(s.session_id);
    let source = Datagrams::new(group, cfg.testing.drop_datagrams, seed);
    let started = Instant::now();
    let mut total = crate::broadcast::ReceiveStats::default();
    let mut listening = Listening::default();
    // A reader thread drains the socket into a queue (`Datagrams::pump`),
    // so the kernel buffer does not overflow while a block decodes on this
    // thread. Unbounded channel, bounded by `queued`: batches vary in
    // size, and the bound is on datagrams.
    let (tx, rx) = std::sync::mpsc::channel::<Packed>();
    let queued = Arc::new(AtomicUsize::new(0));
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let reading = Arc::clone(&reading);
        let queued = Arc::clone(&queued);
        std::thread::Builder::new()
            .name("datagrams".into())
            .spawn(move || source.pump(&reading, &queued, READER_QUEUE_DATAGRAMS, &tx))
            .map_err(FleetError::thread("datagram reader"))?
    };
    let stop_reader = |reading: &AtomicBool| reading.store(false, Ordering::Relaxed);
    // Whatever way this function returns, the reader stops.
    let _stop_on_return = StopOnDrop(Arc::clone(&reading));
    let mut current = Packed::default();
    // Until the digest says the blocks are right, the relay is not told
    // they are all decoded.
    let mut digest_pending = hashed;
    'session: loop {
        while !receiver_done(&receiver) {
            if cancel.load(Ordering::SeqCst) || client.shutdown.is_set() {
                stop_reader(&reading);
                let _ = reader.join();
                return Ok(false);
            }
            let mut next = |buf: &mut [u8], timeout: Duration| loop {
                if let Some(d) = current.next_datagram() {
                    let n = d.len().min(buf.len());
                    buf[..n].copy_from_slice(&d[..n]);
                    return Ok(Some(n));
                }
                match rx.recv_timeout(timeout) {
                    Ok(p) => {
                        queued.fetch_sub(p.len(), Ordering::Relaxed);
                        current = p;
                    }
                    Err(_) => return Ok(None),
                }
            };
            let stats = crate::broadcast::receive_from(
                &mut next,
                &mut receiver,
                &mut landing,
                Instant::now() + REPORT_EVERY,
            )?;
            report(
                client,
                s,
                &mut listening,
                &receiver,
                queued.load(Ordering::Relaxed),
                digest_pending,
            );
            tally(client, s, &stats, &receiver, &mut total);
            watchdog.look(client, s, &receiver, &total);
        }
        let Some(plan) = &blame_plan else {
            break 'session;
        };
        let landed = (&mut landing, &mut receiver, &mut total);
        match check_by_digest(client, s, manifest, plan, landed)? {
            Verdict::Right => {
                digest_pending = false;
                break 'session;
            }
            // The verification below refuses it.
            Verdict::Wrong => break 'session,
            Verdict::Reopened => {}
        }
    }
    // The master files the completion under the round on air now, not
    // when the install below ends.
    let decoded_at = Timestamp::now();
    // The relay stops repairing for this client now, not at its next tick.
    report(client, s, &mut listening, &receiver, 0, digest_pending);
    // The reader notices within its receive timeout (up to 200 ms once the
    // air is quiet): it is joined after the install, not waited for here.
    stop_reader(&reading);
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
    let verified = landing
        .verify(manifest, &client.pinned)
        .map_err(FleetError::install("verifying the artifact"))?;
    let post = post_install(cfg);
    let installed = match client.root.install(verified, post.as_ref()) {
        Ok(i) => i,
        Err(e) => {
            super::health::install_error(client, s.run, manifest.body.sha3_256, &e);
            return Err(FleetError::install("installing")(e));
        }
    };
    let pending = Pending {
        run: s.run,
        digest: installed.digest.to_hex(),
        round: 0,
        at: decoded_at.to_string(),
        delta: false,
    };
    tracing::info!(run = s.run, version = %installed.version, "installed; completion sent");
    if let Some(now) = super::installed_ref(&client.root) {
        client.handle(Event::Installed {
            installed: now,
            pending,
        });
    }
    super::health::watch(client, s.run, installed.digest);
    let _ = client.root.gc();
    let _ = reader.join();
    Ok(true)
}

/// Adds what one stretch of receiving took in to the session's `total`,
/// the client's metrics and counters, and logs forgery.
fn tally(
    client: &Arc<Client>,
    s: &SessionKey,
    stats: &crate::broadcast::ReceiveStats,
    receiver: &Receiver,
    total: &mut crate::broadcast::ReceiveStats,
) {
    client.metrics.received(s.run, stats, receiver);
    total.received += stats.received;
    total.accepted += stats.accepted;
    total.redundant += stats.redundant;
    note_hostile(client, s, &stats.rejected);
    for (&k, &v) in &stats.rejected {
        *total.rejected.entry(k).or_default() += v;
        client
            .counters
            .rejected_datagrams
            .fetch_add(v, Ordering::Relaxed);
    }
}

/// The progress watchdog. Progress is a new high of the bytes in hand
/// (blocks decoded and checked, plus symbols held): silence, refused
/// datagrams and repeats do not raise it, and neither does a key holder who
/// keeps poisoning blocks, since each poisoned block starts over from
/// nothing. After `stall` without progress the client is marked stalled
/// (its boot check then asks the master), until progress resumes.
struct Watchdog {
    stall: Duration,
    best: u64,
    last_progress: Instant,
}

impl Watchdog {
    fn new(stall: Duration) -> Self {
        Self {
            stall,
            best: 0,
            last_progress: Instant::now(),
        }
    }

    fn look(
        &mut self,
        client: &Client,
        s: &SessionKey,
        receiver: &Receiver,
        total: &crate::broadcast::ReceiveStats,
    ) {
        let p = receiver.progress();
        let in_hand = p.bytes_done + p.symbols_held * u64::from(p.shape.symbol_size);
        if in_hand > self.best {
            self.best = in_hand;
            self.last_progress = Instant::now();
            if client.stalled.swap(false, Ordering::SeqCst) {
                tracing::info!(run = s.run, "the session makes progress again");
            }
        } else if self.last_progress.elapsed() >= self.stall
            && !client.stalled.swap(true, Ordering::SeqCst)
        {
            client.hostile.stalls.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                run = s.run,
                relay = %client.cfg.relay.address,
                stall_secs = self.stall.as_secs(),
                bytes_in_hand = in_hand,
                accepted = p.symbols_accepted,
                rejected = ?total.rejected,
                "the session made no progress; letting the boot check ask the master"
            );
        }
    }
}

/// What the artifact's digest says of the blocks landed.
enum Verdict {
    /// The artifact is the one signed.
    Right,
    /// Blocks differ from their signed hash: they were put back to be
    /// gathered again.
    Reopened,
    /// The whole differs but no block does: nothing to gather again.
    Wrong,
}

/// Checks every landed block at once by the artifact's sha3-256; if that
/// fails, hashes the blocks one by one and reopens in the receiver those a
/// key holder poisoned (logged, and counted in the session's total and the
/// client's metrics as `block_hash_mismatch`).
fn check_by_digest(
    client: &Arc<Client>,
    s: &SessionKey,
    manifest: &Manifest,
    plan: &haifu_carousel::ReceivePlan,
    (landing, receiver, total): (
        &mut crate::broadcast::Landing,
        &mut Receiver,
        &mut crate::broadcast::ReceiveStats,
    ),
) -> Result<Verdict, FleetError> {
    if landing
        .matches(manifest)
        .map_err(FleetError::install("hashing the artifact"))?
    {
        return Ok(Verdict::Right);
    }
    let bad = landing
        .blame(plan)
        .map_err(FleetError::install("hashing the artifact's blocks"))?;
    if bad.is_empty() {
        return Ok(Verdict::Wrong);
    }
    for &(object, sbn) in &bad {
        receiver.reopen_block(object, sbn);
    }
    let n = bad.len() as u64;
    let blamed = std::collections::BTreeMap::from([("block_hash_mismatch", n)]);
    note_hostile(client, s, &blamed);
    *total.rejected.entry("block_hash_mismatch").or_default() += n;
    client.metrics.blocks_reopened(s.run, n, receiver);
    client
        .counters
        .rejected_datagrams
        .fetch_add(n, Ordering::Relaxed);
    Ok(Verdict::Reopened)
}

/// Datagrams queued between the reader and the decoder before the reader
/// drops what comes (and says so): 32,768, about 47 MB, 3.8 s at
/// 100 Mbit/s, long enough for a block to decode on a busy machine.
const READER_QUEUE_DATAGRAMS: usize = 32_768;

/// Tells the core what `receiver` holds, when `listening` says it is time;
/// while `digest_pending`, a receiver with every block decoded is not
/// reported done (it asks for nothing, but the round waits for its verdict).
fn report(
    client: &Arc<Client>,
    s: &SessionKey,
    listening: &mut Listening,
    receiver: &Receiver,
    backlog: usize,
    digest_pending: bool,
) {
    let mut report = receiver.report(haifu_protocol::limits::MAX_FEEDBACK_BLOCKS);
    report.done &= !digest_pending;
    if let Some(report) = listening.tick(Instant::now(), report, backlog) {
        client.handle(Event::Listening(feedback(s, report)));
    }
}

pub(super) fn receiver_done(r: &Receiver) -> bool {
    r.is_complete()
}

/// Logs datagrams that prove a key holder is forging. The multicast plugin
/// does not give a datagram's source address, so the relay the client
/// listens to and the group are what can be named.
pub(super) fn note_hostile(
    client: &Client,
    s: &SessionKey,
    rejected: &std::collections::BTreeMap<&str, u64>,
) {
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

pub(super) fn fmt_ip(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// Clears the flag when dropped.
pub(super) struct StopOnDrop(pub(super) Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}
