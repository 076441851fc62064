//! Broadcast rounds over a datagram group (steps 103-105), and the client's
//! side of them: receive, decode block by block into staging.
//!
//! The relay sends a round block by block with the repairs its listeners'
//! reports ask for ([`air_round`], decided by [`RepairRound`]), holding at
//! most two objects' encoders; the client writes each decoded block
//! straight to its offset in a [`Staging`] file, so neither side holds the
//! whole artifact.
//! Datagrams that fail authentication or do not belong to the session are
//! counted by kind and never decoded.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use haifu_carousel::{
    Accepted, ArtifactHasher, DecodedBlock, EncodeError, Next, OVERHEAD_LEN, ObjectEncoder,
    Outcome, Pacer, ReceivePlan, Receiver, RepairParams, RepairRound, Report, Sender, block_hash,
};
use haifu_core::{Digest, Manifest, PublicKey};
use haifu_install::{InstallError, Staging, Verified};
use haifu_plugin_host::{DatagramGroup, TransportError};

/// Why a round could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// The carousel refused (layout, round out of range).
    #[error("carousel: {0}")]
    Encode(#[from] EncodeError),
    /// The transport plugin failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// Reading an object of the artifact failed.
    #[error("reading the artifact at bytes {range:?}: {source}")]
    Read {
        /// The object's byte range.
        range: Range<u64>,
        /// Why.
        source: std::io::Error,
    },
    /// Writing a decoded block failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// The manifest's session cannot be laid out.
    #[error(transparent)]
    Session(#[from] haifu_runtime::session::SessionError),
    /// The thread that prepares repair encoders could not start.
    #[error("starting the encoder thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The round was stopped before its end (shutdown, or its run left
    /// the air).
    #[error("stopped after {datagrams} datagrams")]
    Stopped {
        /// Datagrams sent before the stop.
        datagrams: u64,
    },
}

/// What a relay sent in one round (the relay logs these per round).
#[derive(Debug, Clone, PartialEq)]
pub struct RoundStats {
    /// The round, from 1.
    pub round: u32,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Bytes sent, headers included.
    pub bytes: u64,
    /// How long the round took.
    pub elapsed: Duration,
    /// What the listeners did (empty lists for a blind round).
    pub outcome: Outcome<String>,
}

/// A listener's report while a round is on air, as it arrived.
#[derive(Debug, Clone)]
pub struct Heard {
    /// The listener (the client's id).
    pub listener: String,
    /// Its report.
    pub report: Report,
    /// When it arrived.
    pub at: Instant,
}

/// Where a round on air gets its listeners' reports: the next one, or
/// `None` when `timeout` passed with none.
pub type Reports<'a> = dyn FnMut(Duration) -> Option<Heard> + 'a;

/// Sends round `round` of `sender`'s session through `group` as one blind
/// pass, reading each object with `read_object(range)` and pacing with
/// `pacer` if given.
pub fn send_round(
    group: &DatagramGroup,
    sender: &Sender,
    round: u32,
    read_object: &mut dyn FnMut(Range<u64>) -> std::io::Result<Vec<u8>>,
    pacer: Option<&mut Pacer>,
) -> Result<RoundStats, BroadcastError> {
    let params = RepairParams::blind(sender.config().repair_overhead);
    air_round(
        group,
        sender,
        round,
        params,
        read_object,
        pacer,
        &mut |_| None,
        &|| false,
    )
}

/// Datagrams handed to the plugin in one call at most (sendmmsg): enough
/// to amortise the call at 1 Gbit/s, few enough that a batch is a small
/// burst (32 x 1,490 link bytes is 0.4 ms at 1 Gbit/s).
const SEND_BATCH: usize = 32;

/// Encoders kept for a round: the object being sent and the one before, so
/// a repair for the last blocks of an object does not re-encode it.
const ENCODERS_KEPT: usize = 2;

/// Sends round `round` of `sender`'s session through `group` with feedback
/// repair ([`RepairRound`]): the first pass block by block, the repairs
/// the reports from `reports` ask for, until the round's `params` end it.
/// Checks `stop()` after every batch sent and every wait (so it must be
/// cheap: a flag), and gives up with [`BroadcastError::Stopped`] when it
/// says so; at a slow rate a count of datagrams would leave an aborted
/// run on air for seconds.
#[allow(clippy::too_many_arguments)]
pub fn air_round(
    group: &DatagramGroup,
    sender: &Sender,
    round: u32,
    params: RepairParams,
    read_object: &mut dyn FnMut(Range<u64>) -> std::io::Result<Vec<u8>>,
    mut pacer: Option<&mut Pacer>,
    reports: &mut Reports<'_>,
    stop: &dyn Fn() -> bool,
) -> Result<RoundStats, BroadcastError> {
    let started = Instant::now();
    let plan = sender.plan()?;
    let datagram_len = OVERHEAD_LEN + usize::from(sender.shape().symbol_size);
    let mut air =
        RepairRound::new(&plan, round, params, datagram_len, started).map_err(EncodeError::from)?;
    let mut encoders: VecDeque<(u32, Arc<ObjectEncoder<'static>>)> = VecDeque::new();
    // Repair symbols need a block's RaptorQ encoder (~20 ms for 4,000
    // symbols): once repairs are expected, a second thread builds each
    // block's as its first pass begins, and the next one's, so the sending
    // thread never stalls the pacer for it.
    let (warm, warm_jobs) = mpsc::channel::<(Arc<ObjectEncoder<'static>>, u8)>();
    let warmer = std::thread::Builder::new()
        .name("encoder-warmer".into())
        .spawn(move || {
            for (encoder, sbn) in warm_jobs {
                encoder.prepare(sbn);
            }
        })
        .map_err(BroadcastError::Thread)?;
    let mut first_pass_block = None;
    let mut buf = Vec::with_capacity(datagram_len);
    let mut refused = 0u64;
    let mut take = |air: &mut RepairRound<String>, heard: Heard| {
        if !air.report(heard.listener.clone(), &heard.report, heard.at) {
            refused += 1;
            tracing::warn!(client = %heard.listener, "a report that contradicts the session; ignored");
        }
    };
    // Symbols decided but not yet on the wire, each in its own slot of
    // `batch`: one `send_batch` call (sendmmsg in the multicast plugin)
    // carries up to SEND_BATCH of them, as many as the pacer allows.
    let mut batch = vec![0u8; SEND_BATCH * datagram_len];
    let mut filled = 0usize;
    let mut datagrams = 0u64;
    let mut ended = false;
    while !ended || filled > 0 {
        // Reports that came meanwhile, without waiting.
        while let Some(h) = reports(Duration::ZERO) {
            take(&mut air, h);
        }
        let now = Instant::now();
        let room = match pacer.as_deref() {
            Some(p) => p.allowance(now, datagram_len).clamp(1, SEND_BATCH),
            None => SEND_BATCH,
        };
        // Fill the batch up to what may go now.
        while !ended && filled < room {
            let symbol = match air.next(now) {
                Next::Send(s) => s,
                Next::Wait(until) if filled == 0 => {
                    // Nothing to send: wait for a report (or the deadline),
                    // and look at the stop flag now and then.
                    let wait = until
                        .saturating_duration_since(now)
                        .min(Duration::from_millis(50));
                    if let Some(h) = reports(wait) {
                        take(&mut air, h);
                    }
                    if stop() {
                        return Err(BroadcastError::Stopped { datagrams });
                    }
                    break;
                }
                Next::Wait(_) => break,
                Next::End => {
                    ended = true;
                    break;
                }
            };
            if !encoders.iter().any(|(i, _)| *i == symbol.object) {
                let range = sender.object_range(symbol.object)?;
                let object = read_object(range.clone())
                    .map_err(|source| BroadcastError::Read { range, source })?;
                if encoders.len() >= ENCODERS_KEPT {
                    encoders.pop_front();
                }
                encoders.push_back((
                    symbol.object,
                    Arc::new(sender.object_encoder_owned(symbol.object, object)?),
                ));
            }
            let Some((_, encoder)) = encoders.iter().find(|(i, _)| *i == symbol.object) else {
                continue;
            };
            let block = (symbol.object, symbol.sbn);
            if !symbol.repair && first_pass_block != Some(block) {
                first_pass_block = Some(block);
                if round > 1 || air.repairs_expected() {
                    for sbn in [Some(symbol.sbn), symbol.sbn.checked_add(1)]
                        .into_iter()
                        .flatten()
                    {
                        // The warmer ends only with this function.
                        let _ = warm.send((Arc::clone(encoder), sbn));
                    }
                }
            }
            if encoder.write_symbol(symbol.sbn, symbol.esi, &mut buf) {
                debug_assert_eq!(buf.len(), datagram_len);
                batch[filled * datagram_len..][..datagram_len].copy_from_slice(&buf);
                filled += 1;
            }
        }
        if filled == 0 {
            continue;
        }
        // Wait for the pacer to let the whole batch go, then send it; what
        // the plugin did not take leads the next call.
        if let Some(p) = pacer.as_deref() {
            let at = p.next_send_for(Instant::now(), datagram_len, filled);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
        }
        let slots: Vec<&[u8]> = batch[..filled * datagram_len]
            .chunks_exact(datagram_len)
            .collect();
        let sent = group.send_batch(&slots)?;
        if let Some(p) = pacer.as_deref_mut() {
            p.handle_sent(Instant::now(), datagram_len, sent);
        }
        batch.copy_within(sent * datagram_len..filled * datagram_len, 0);
        filled -= sent;
        datagrams += sent as u64;
        if stop() {
            return Err(BroadcastError::Stopped { datagrams });
        }
    }
    drop(warm);
    // A build in progress ends in milliseconds; nothing else holds it.
    let _ = warmer.join();
    let (datagrams, bytes) = air.sent();
    let outcome = air.outcome();
    let stats = RoundStats {
        round,
        datagrams,
        bytes,
        elapsed: started.elapsed(),
        outcome,
    };
    tracing::info!(
        round,
        datagrams,
        bytes,
        repair_bytes = stats.outcome.repairs.1,
        repair_cycles = stats.outcome.cycles.0,
        repair_top_ups = stats.outcome.cycles.1,
        elapsed_ms = stats.elapsed.as_millis() as u64,
        ended = stats.outcome.reason.as_str(),
        listeners = stats.outcome.decoded.len() + stats.outcome.undecoded.len(),
        decoded = stats.outcome.decoded.len(),
        silent = stats.outcome.silent.len(),
        refused_reports = refused,
        "round on air ended"
    );
    Ok(stats)
}

/// What a client took in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Datagrams read from the group, whatever became of them.
    pub received: u64,
    /// Datagrams that carried a new symbol of the session.
    pub accepted: u64,
    /// Authentic datagrams that added nothing (repeats, decoded blocks).
    pub redundant: u64,
    /// Rejected datagrams, by reason (`bad_tag`, `foreign_session`,
    /// `shape_mismatch`, `block_hash_mismatch`, `symbol_conflict`, …).
    pub rejected: BTreeMap<&'static str, u64>,
    /// Whether every block decoded.
    pub complete: bool,
}

/// Out-of-order blocks the in-order hash keeps before giving up (and
/// leaving the whole file to be read again at the end): blocks complete
/// nearly in order, a few behind at most.
const LANDING_REORDER_BYTES: usize = 48 << 20;

/// Where a receiver's checked blocks land: the staging file, hashed in
/// artifact order as blocks are written (so verifying does not read the
/// file again) and flushed block by block (so making it durable at the end
/// is quick). Both are off the decoder's thread.
#[derive(Debug)]
pub struct Landing {
    staging: Staging,
    hasher: Option<ArtifactHasher>,
    /// The file's digest when it had to be read to compute it, until the
    /// next write.
    read_digest: Option<Digest>,
}

impl Landing {
    /// Blocks land in `staging`.
    pub fn new(staging: Staging) -> Self {
        Self {
            staging,
            hasher: Some(ArtifactHasher::new(LANDING_REORDER_BYTES)),
            read_digest: None,
        }
    }

    /// Writes a block at `offset`, hashes it in order, and starts its way
    /// to disk, but for the block that completes the hashed file: verifying
    /// makes that durable next, so it is not flushed twice.
    fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<(), InstallError> {
        self.staging.write_at(offset, data)?;
        self.read_digest = None;
        if let Some(h) = &mut self.hasher
            && !h.push(offset, data)
        {
            tracing::debug!(
                offset,
                "blocks too far out of order to hash as they land; the file is read again to verify"
            );
            self.hasher = None;
        }
        let len = self.staging.expected_len();
        if self.hasher.as_ref().is_some_and(|h| h.hashed() == len) {
            return Ok(());
        }
        self.staging.sync_written()
    }

    /// The landed file's sha3-256: from the blocks as they were hashed in
    /// order, or else read from the file.
    fn digest(&mut self) -> Result<Digest, InstallError> {
        let len = self.staging.expected_len();
        if let Some(d) = self.hasher.clone().and_then(|h| h.finish(len)) {
            return Ok(Digest::from_bytes(d));
        }
        if let Some(d) = self.read_digest {
            return Ok(d);
        }
        let (_, d) = self.staging.digest()?;
        self.read_digest = Some(d);
        Ok(d)
    }

    /// Whether the blocks landed so far make the artifact `manifest`
    /// signs (its sha3-256; the signature is checked by
    /// [`Landing::verify`]).
    pub fn matches(&mut self, manifest: &Manifest) -> Result<bool, InstallError> {
        Ok(self.digest()? == manifest.body.sha3_256)
    }

    /// The blocks of `plan` whose landed bytes differ from their signed
    /// hash (after [`Landing::matches`] said no): each block is read back
    /// and hashed. The in-order hash is spent: verifying reads the file.
    pub fn blame(&mut self, plan: &ReceivePlan) -> Result<Vec<(u32, u8)>, InstallError> {
        self.hasher = None;
        let mut bad = Vec::new();
        let mut buf = Vec::new();
        for object in 0..plan.shape().object_count() {
            let Ok(layout) = plan.object_layout(object) else {
                continue;
            };
            for b in &layout.blocks {
                let Some(want) = plan.block_hash(object, b.sbn) else {
                    continue;
                };
                buf.resize(usize::try_from(b.len).unwrap_or(usize::MAX), 0);
                self.staging.read_at(layout.offset + b.offset, &mut buf)?;
                if block_hash(&buf) != *want {
                    bad.push((object, b.sbn));
                }
            }
        }
        Ok(bad)
    }

    /// Checks the artifact against the signed manifest
    /// ([`Staging::verify`]), with the digest computed as blocks landed
    /// when every byte was hashed in order.
    pub fn verify(self, manifest: &Manifest, pinned: &PublicKey) -> Result<Verified, InstallError> {
        let len = self.staging.expected_len();
        let hashed = self
            .hasher
            .and_then(|h| h.finish(len))
            .map(Digest::from_bytes);
        match hashed.or(self.read_digest) {
            Some(digest) => self.staging.verify_hashed(manifest, pinned, digest),
            None => self.staging.verify(manifest, pinned),
        }
    }
}

/// A source of datagrams: fills the buffer with one and returns its length,
/// or `None` when `timeout` passed with nothing.
pub type DatagramSource<'a> =
    dyn FnMut(&mut [u8], Duration) -> Result<Option<usize>, TransportError> + 'a;

/// Decoded blocks queued for the checking thread (about 5.6 MB each at the
/// default layout) before decoding waits for it.
const CHECKS_IN_FLIGHT: usize = 4;

/// Receives from `next_datagram` until the session is complete or
/// `deadline` passes, landing each decoded block in `landing`.
/// `next_datagram(buf, timeout)` returns the length of one datagram, or
/// `None` when the timeout passed with nothing.
///
/// Decoding runs on this thread; each decoded block goes to a second
/// thread that checks its signed hash when it carries one (the receiver's
/// plan has them and the block is not left to the artifact's digest, see
/// [`Receiver::check_blocks_by_digest`]), writes it only if it matches and
/// hashes it into the artifact's digest: sha3-256 is slower than decoding,
/// so the two overlap instead of adding up. Every block handed to the
/// checker is settled before this returns.
pub fn receive_from(
    next_datagram: &mut DatagramSource<'_>,
    receiver: &mut Receiver,
    landing: &mut Landing,
    deadline: Instant,
) -> Result<ReceiveStats, BroadcastError> {
    receiver.defer_block_checks();
    let mut stats = ReceiveStats::default();
    let mut buf = vec![0u8; 2048];
    std::thread::scope(|scope| {
        let (blocks_tx, blocks_rx) =
            std::sync::mpsc::sync_channel::<DecodedBlock>(CHECKS_IN_FLIGHT);
        let (checked_tx, checked_rx) = std::sync::mpsc::channel::<(u32, u8, bool)>();
        let checker = scope.spawn(move || -> Result<(), InstallError> {
            for block in blocks_rx {
                let matches = block
                    .check
                    .is_none_or(|want| block_hash(&block.data) == want);
                // A block that fails is never written: what the staging
                // file holds was checked block by block.
                if matches {
                    landing.write_block(block.offset, &block.data)?;
                }
                if checked_tx.send((block.object, block.sbn, matches)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let settle = |receiver: &mut Receiver,
                      stats: &mut ReceiveStats,
                      (object, sbn, matches): (u32, u8, bool)| {
            if let Err(e) = receiver.block_checked(object, sbn, matches) {
                *stats.rejected.entry(e.kind()).or_default() += 1;
            }
        };
        let mut in_check = 0usize;
        let mut checker_gone = false;
        while !receiver.is_complete() && !checker_gone {
            for result in checked_rx.try_iter() {
                in_check = in_check.saturating_sub(1);
                settle(receiver, &mut stats, result);
            }
            if receiver.is_complete() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // While blocks are being checked, wake up often to settle them.
            let wait = if in_check > 0 {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(200)
            };
            if let Some(n) = next_datagram(&mut buf, left.min(wait))? {
                stats.received += 1;
                match receiver.handle_datagram(&buf[..n]) {
                    Ok(Accepted::Held | Accepted::BlockDecoded) => stats.accepted += 1,
                    Ok(_) => stats.redundant += 1,
                    Err(e) => *stats.rejected.entry(e.kind()).or_default() += 1,
                }
            }
            while let Some(block) = receiver.poll_block() {
                if blocks_tx.send(block).is_err() {
                    // The checker stopped on a write error: its join says why.
                    checker_gone = true;
                    break;
                }
                in_check += 1;
            }
        }
        drop(blocks_tx);
        let written = checker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        for result in checked_rx.try_iter() {
            settle(receiver, &mut stats, result);
        }
        written?;
        stats.complete = receiver.is_complete();
        Ok(stats)
    })
}

/// [`receive_from`] a datagram group.
pub fn receive(
    group: &DatagramGroup,
    receiver: &mut Receiver,
    landing: &mut Landing,
    deadline: Instant,
) -> Result<ReceiveStats, BroadcastError> {
    receive_from(
        &mut |buf, timeout| match group.recv(buf, Some(timeout)) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.is_timeout() => Ok(None),
            Err(e) => Err(e),
        },
        receiver,
        landing,
        deadline,
    )
}
