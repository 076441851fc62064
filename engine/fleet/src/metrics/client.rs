//! A client's metrics: the datagrams it took in (received; accepted,
//! redundant, rejected by reason), the blocks it decoded, its installs and
//! acknowledged completions, and at scrape time its link, its outbox, what
//! it runs and how often its progress watchdog fired.

use std::sync::{Arc, Mutex, OnceLock};

use haifu_carousel::Receiver;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::families::{counters, gauge_value, gauges};
use super::{Daemon, Exporter};
use crate::broadcast::ReceiveStats;
use crate::link::Counters;

/// What a client's scrape reads from the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientView {
    /// Whether the link to the relay is up.
    pub relay_connected: bool,
    /// Whether a session is being received.
    pub receiving: bool,
    /// Completions kept on disk until the master acknowledges them.
    pub pending: u64,
    /// The artifact and version installed now.
    pub installed: Option<(String, String)>,
    /// Times the progress watchdog fired.
    pub stalls: u64,
}

type ViewFn = Box<dyn Fn() -> ClientView + Send + Sync>;

/// The carousel's reasons for refusing a datagram
/// (`haifu_carousel::ReceiveError::kind`).
const REJECTED: [&str; 10] = [
    "bad_tag",
    "foreign_session",
    "shape_mismatch",
    "block_hash_mismatch",
    "symbol_conflict",
    "malformed",
    "truncated",
    "too_long",
    "bad_magic",
    "unsupported_version",
];

/// `reason=…` of a rejected datagram (the carousel's kinds).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// `via="broadcast"|"master"`, `outcome="ok"|"failed"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Install {
    via: &'static str,
    outcome: &'static str,
}

/// `via="broadcast"|"master"` of an older version refused.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Offered {
    via: &'static str,
}

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A broadcast session.
    Broadcast,
    /// A delta or full copy from the master (the catch-up).
    Master,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Master => "master",
        }
    }
}

/// A client's registry and the counters its threads bump.
pub struct ClientMetrics {
    received: Counter,
    accepted: Counter,
    redundant: Counter,
    rejected: Family<Reason, Counter>,
    blocks: Counter,
    decoded_bytes: Counter,
    installs: Family<Install, Counter>,
    acked: Counter,
    older: Family<Offered, Counter>,
    /// The session last seen and its blocks and bytes decoded then: the
    /// receiver's progress is per session, the counters are not.
    seen: Mutex<(u64, u64, u64)>,
    view: Arc<OnceLock<ViewFn>>,
    exporter: Exporter,
}

impl std::fmt::Debug for ClientMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetrics").finish_non_exhaustive()
    }
}

impl ClientMetrics {
    /// A client's metrics; `links` are its control links' counters.
    pub fn new(links: Arc<Counters>) -> Self {
        let mut r = Registry::default();
        super::process::register(&mut r, Daemon::Client, links);
        let received = Counter::default();
        r.register(
            "haifu_client_datagrams_received",
            "Broadcast datagrams read from the multicast group, whatever became of them \
             (accepted, redundant or rejected; a datagram may also arrive after its session \
             decoded and be counted here alone)",
            received.clone(),
        );
        let accepted = Counter::default();
        r.register(
            "haifu_client_datagrams_accepted",
            "Broadcast datagrams that brought a new symbol of the session",
            accepted.clone(),
        );
        let redundant = Counter::default();
        r.register(
            "haifu_client_datagrams_redundant",
            "Authentic broadcast datagrams that added nothing (repeats, blocks already decoded)",
            redundant.clone(),
        );
        let rejected = Family::<Reason, Counter>::default();
        r.register(
            "haifu_client_datagrams_rejected",
            "Broadcast datagrams refused, by reason: bad_tag (forged, or another session's \
             key), foreign_session, shape_mismatch, block_hash_mismatch and symbol_conflict \
             (a key holder forging), and malformed, truncated, too_long, bad_magic, \
             unsupported_version",
            rejected.clone(),
        );
        let blocks = Counter::default();
        r.register(
            "haifu_client_blocks_decoded",
            "Source blocks decoded from broadcasts (a block that failed its signed hash and \
             was gathered again counts again)",
            blocks.clone(),
        );
        let decoded_bytes = Counter::default();
        r.register_with_unit(
            "haifu_client_decoded",
            "Bytes of artifacts decoded from broadcasts",
            Unit::Bytes,
            decoded_bytes.clone(),
        );
        let installs = Family::<Install, Counter>::default();
        r.register(
            "haifu_client_installs",
            "Installs, by where the version came from (broadcast; master: a delta or full \
             copy) and outcome (ok; failed: did not verify, apply or install, the previous \
             version kept)",
            installs.clone(),
        );
        let acked = Counter::default();
        r.register(
            "haifu_client_completions_acknowledged",
            "Completions the master acknowledged (recorded in its ledger)",
            acked.clone(),
        );
        let older = Family::<Offered, Counter>::default();
        r.register(
            "haifu_client_older_versions_refused",
            "Versions older than the installed one that were offered and refused (versions \
             only move forward), by where the offer came from (broadcast: a session; master: \
             the straggler path)",
            older.clone(),
        );
        // Every series from the start at 0, so rate() and alerts see the
        // first increment.
        for reason in REJECTED {
            let _ = rejected.get_or_create(&Reason { reason });
        }
        for via in [Via::Broadcast, Via::Master] {
            let _ = older.get_or_create(&Offered { via: via.as_str() });
            for outcome in ["ok", "failed"] {
                let _ = installs.get_or_create(&Install {
                    via: via.as_str(),
                    outcome,
                });
            }
        }
        let view: Arc<OnceLock<ViewFn>> = Arc::default();
        r.register_collector(Box::new(Now(Arc::clone(&view))));
        Self {
            received,
            accepted,
            redundant,
            rejected,
            blocks,
            decoded_bytes,
            installs,
            acked,
            older,
            seen: Mutex::new((0, 0, 0)),
            view,
            exporter: Exporter::new(r),
        }
    }

    /// What `/metrics` encodes.
    pub fn exporter(&self) -> Exporter {
        self.exporter.clone()
    }

    /// Where the scrape reads the client's state from (set once; later
    /// calls are ignored).
    pub fn watch(&self, view: impl Fn() -> ClientView + Send + Sync + 'static) {
        let _ = self.view.set(Box::new(view));
    }

    /// A stretch of session `run`'s broadcast was taken in: its datagrams,
    /// and the receiver's progress since the last call.
    pub fn received(&self, run: u64, stats: &ReceiveStats, receiver: &Receiver) {
        self.received.inc_by(stats.received);
        self.accepted.inc_by(stats.accepted);
        self.redundant.inc_by(stats.redundant);
        for (reason, n) in &stats.rejected {
            self.rejected.get_or_create(&Reason { reason }).inc_by(*n);
        }
        let p = receiver.progress();
        let blocks = blocks_done(receiver);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (last_run, last_blocks, last_bytes) = *seen;
        // A new session, or a new receiver for the same run, starts from
        // nothing: count all it has.
        let fresh = run != last_run || blocks < last_blocks || p.bytes_done < last_bytes;
        let (b0, y0) = if fresh {
            (0, 0)
        } else {
            (last_blocks, last_bytes)
        };
        self.blocks.inc_by(blocks - b0);
        self.decoded_bytes.inc_by(p.bytes_done - y0);
        *seen = (run, blocks, p.bytes_done);
    }

    /// `n` blocks of session `run` failed their signed hash once the
    /// artifact's digest had failed, and were put back in `receiver`: they
    /// count as `block_hash_mismatch`, and what was decoded before is not
    /// counted again (the blocks gathered again are, when they decode).
    pub fn blocks_reopened(&self, run: u64, n: u64, receiver: &Receiver) {
        self.rejected
            .get_or_create(&Reason {
                reason: "block_hash_mismatch",
            })
            .inc_by(n);
        let bytes = receiver.progress().bytes_done;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = (run, blocks_done(receiver), bytes);
    }

    /// An install ended.
    pub fn installed(&self, via: Via, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.installs
            .get_or_create(&Install {
                via: via.as_str(),
                outcome,
            })
            .inc();
    }

    /// A broadcast session failed: counted as a failed install when the
    /// version did not verify or install (a lost socket is not an install).
    pub fn session_failed(&self, e: &crate::FleetError) {
        if matches!(e, crate::FleetError::Install { .. }) {
            self.installed(Via::Broadcast, false);
        }
    }

    /// A version older than the installed one was offered and refused.
    pub fn refused_older(&self, via: Via) {
        self.older
            .get_or_create(&Offered { via: via.as_str() })
            .inc();
    }

    /// The master acknowledged a completion.
    pub fn acknowledged(&self) {
        self.acked.inc();
    }
}

/// The client's state at scrape time.
struct Now(Arc<OnceLock<ViewFn>>);

impl std::fmt::Debug for Now {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Now").finish_non_exhaustive()
    }
}

impl Collector for Now {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let v = self.0.get().map(|f| f()).unwrap_or_default();
        gauges(
            &mut enc,
            "haifu_client_relay_connected",
            "1 while the client's link to its relay is up, else 0.",
            None,
            &[(Vec::new(), i64::from(v.relay_connected))],
        )?;
        gauges(
            &mut enc,
            "haifu_client_receiving",
            "1 while a broadcast session is being received, else 0.",
            None,
            &[(Vec::new(), i64::from(v.receiving))],
        )?;
        gauges(
            &mut enc,
            "haifu_client_completions_pending",
            "Completions kept on disk and resent until the master acknowledges them.",
            None,
            &[(Vec::new(), gauge_value(v.pending))],
        )?;
        counters(
            &mut enc,
            "haifu_client_stalls",
            "Times a session made no progress for receive_stall_secs (the boot check may then \
             ask the master).",
            None,
            &[(Vec::new(), v.stalls)],
        )?;
        let info = enc.encode_descriptor(
            "haifu_client_installed",
            "The artifact and version installed now (always 1; absent before the first \
             install).",
            None,
            MetricType::Info,
        )?;
        if let Some((artifact, version)) = v.installed {
            Info::new(vec![("artifact", artifact), ("version", version)]).encode(info)?;
        }
        Ok(())
    }
}

/// Blocks `receiver` has decoded, over all objects.
fn blocks_done(receiver: &Receiver) -> u64 {
    (0..receiver.progress().objects)
        .filter_map(|i| receiver.object_progress(i))
        .map(|o| u64::from(o.blocks_done))
        .sum()
}
