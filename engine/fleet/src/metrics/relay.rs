//! A relay's metrics: the rounds it sent (datagrams, bytes by round, repair
//! symbols, duration), its fetches from the master, and at scrape time its
//! links (master, clients) and deny list.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::families::{gauge_value, gauges};
use super::{Daemon, Exporter};
use crate::link::Counters;

/// What a relay's scrape reads from the daemon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayView {
    /// Whether the link to the master is up.
    pub master_connected: bool,
    /// Client links up.
    pub clients_connected: u64,
}

type ViewFn = Box<dyn Fn() -> RelayView + Send + Sync>;

/// `outcome="sent"|"failed"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// `outcome="decoded"|"undecoded"|"silent"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Listeners {
    outcome: &'static str,
}

/// `round="n"` of a round's bytes: rounds a run can have
/// ([`haifu_core::MAX_ROUNDS`]), anything else as `other`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Round {
    round: String,
}

impl Round {
    fn of(round: u32) -> Self {
        let round = match haifu_core::round_index(round) {
            Some(_) => round.to_string(),
            None => "other".to_owned(),
        };
        Self { round }
    }
}

/// A relay's registry and the counters its threads bump.
pub struct RelayMetrics {
    rounds: Family<Outcome, Counter>,
    datagrams: Counter,
    bytes: Counter,
    round_bytes: Family<Round, Counter>,
    repairs: Counter,
    round_seconds: Histogram,
    repair_bytes: Counter,
    listeners: Family<Listeners, Counter>,
    fetched: Counter,
    fetches: Family<Outcome, Counter>,
    view: Arc<OnceLock<ViewFn>>,
    denied: Arc<AtomicU64>,
    exporter: Exporter,
}

impl std::fmt::Debug for RelayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayMetrics").finish_non_exhaustive()
    }
}

impl RelayMetrics {
    /// A relay's metrics; `links` are its control links' counters.
    pub fn new(links: Arc<Counters>) -> Self {
        let mut r = Registry::default();
        super::process::register(&mut r, Daemon::Relay, links);
        let rounds = Family::<Outcome, Counter>::default();
        r.register(
            "haifu_relay_rounds",
            "Carousel rounds this relay ran, by outcome (sent, failed)",
            rounds.clone(),
        );
        let datagrams = Counter::default();
        r.register(
            "haifu_relay_datagrams_sent",
            "Carousel datagrams sent to the multicast group (source and repair symbols)",
            datagrams.clone(),
        );
        let bytes = Counter::default();
        r.register_with_unit(
            "haifu_relay_multicast_sent",
            "Bytes sent to the multicast group in rounds, datagram headers included (what the \
             master's audit counts as multicast)",
            Unit::Bytes,
            bytes.clone(),
        );
        let round_bytes = Family::<Round, Counter>::default();
        r.register_with_unit(
            "haifu_relay_round_sent",
            "Bytes sent to the multicast group, by the round of its run they were sent in \
             (round 1 is every run's first pass; later rounds carry stragglers)",
            Unit::Bytes,
            round_bytes.clone(),
        );
        let repairs = Counter::default();
        r.register(
            "haifu_relay_repair_symbols_sent",
            "Repair symbols (datagrams) sent because listening clients reported what they \
             missed (feedback repair), included in haifu_relay_datagrams_sent_total",
            repairs.clone(),
        );
        // 0.1 s to 27 min: a round is paced to the workflow's rate.
        let round_seconds = Histogram::new(exponential_buckets(0.1, 2.0, 15));
        r.register_with_unit(
            "haifu_relay_round_duration",
            "How long each round took to send, paced to the workflow's rate",
            Unit::Seconds,
            round_seconds.clone(),
        );
        let repair_bytes = Counter::default();
        r.register_with_unit(
            "haifu_relay_repair_sent",
            "Bytes of repair symbols listening clients asked for (feedback repair), included in \
             haifu_relay_multicast_sent_bytes",
            Unit::Bytes,
            repair_bytes.clone(),
        );
        let listeners = Family::<Listeners, Counter>::default();
        r.register(
            "haifu_relay_round_listeners",
            "Clients that listened to a round, by how it ended for them (decoded, undecoded, \
             silent: dropped from the wait after falling silent)",
            listeners.clone(),
        );
        let fetched = Counter::default();
        r.register_with_unit(
            "haifu_relay_fetched",
            "Bytes of artifacts fetched from the master",
            Unit::Bytes,
            fetched.clone(),
        );
        let fetches = Family::<Outcome, Counter>::default();
        r.register(
            "haifu_relay_fetches",
            "Artifact fetches from the master, by outcome (ok, failed)",
            fetches.clone(),
        );
        // Every series from the start at 0, so rate() and alerts see the
        // first increment.
        for outcome in ["sent", "failed"] {
            let _ = rounds.get_or_create(&Outcome { outcome });
        }
        for outcome in ["ok", "failed"] {
            let _ = fetches.get_or_create(&Outcome { outcome });
        }
        // Every run has a round 1; the others appear as runs reach them.
        let _ = round_bytes.get_or_create(&Round::of(1));
        for outcome in ["decoded", "undecoded", "silent"] {
            let _ = listeners.get_or_create(&Listeners { outcome });
        }
        let view: Arc<OnceLock<ViewFn>> = Arc::default();
        let denied = Arc::new(AtomicU64::new(0));
        r.register_collector(Box::new(Links(Arc::clone(&view), Arc::clone(&denied))));
        Self {
            rounds,
            datagrams,
            bytes,
            round_bytes,
            repairs,
            round_seconds,
            repair_bytes,
            listeners,
            fetched,
            fetches,
            view,
            denied,
            exporter: Exporter::new(r),
        }
    }

    /// What `/metrics` encodes.
    pub fn exporter(&self) -> Exporter {
        self.exporter.clone()
    }

    /// Where the scrape reads the links from (set once; later calls are
    /// ignored).
    pub fn watch(&self, view: impl Fn() -> RelayView + Send + Sync + 'static) {
        let _ = self.view.set(Box::new(view));
    }

    /// A round was sent whole.
    pub fn round_sent(&self, done: &haifu_protocol::RoundDone) {
        self.rounds
            .get_or_create(&Outcome { outcome: "sent" })
            .inc();
        self.datagrams.inc_by(done.datagrams);
        self.bytes.inc_by(done.bytes);
        self.round_bytes
            .get_or_create(&Round::of(done.round))
            .inc_by(done.bytes);
        self.round_seconds.observe(done.elapsed_ms as f64 / 1000.0);
        if let Some(l) = &done.listeners {
            self.repair_bytes.inc_by(l.repair_bytes);
            let undecoded = l
                .listening
                .saturating_sub(l.decoded)
                .saturating_sub(l.silent);
            for (outcome, n) in [
                ("decoded", l.decoded),
                ("undecoded", undecoded),
                ("silent", l.silent),
            ] {
                self.listeners
                    .get_or_create(&Listeners { outcome })
                    .inc_by(u64::from(n));
            }
        }
    }

    /// `n` repair symbols went out in a round (told by the broadcaster,
    /// which alone knows them: `RoundDone` carries their bytes only).
    pub fn repairs_sent(&self, n: u64) {
        self.repairs.inc_by(n);
    }

    /// A round failed (its datagrams so far are not counted: the relay
    /// does not report them either).
    pub fn round_failed(&self) {
        self.rounds
            .get_or_create(&Outcome { outcome: "failed" })
            .inc();
    }

    /// `n` bytes of a fetch were written.
    pub fn fetched(&self, n: u64) {
        self.fetched.inc_by(n);
    }

    /// The master's deny list was applied: `n` identities.
    pub fn denied(&self, n: usize) {
        self.denied.store(n as u64, Ordering::Relaxed);
    }

    /// A fetch ended.
    pub fn fetch_done(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.fetches.get_or_create(&Outcome { outcome }).inc();
    }
}

/// The relay's links at scrape time.
struct Links(Arc<OnceLock<ViewFn>>, Arc<AtomicU64>);

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Links").finish_non_exhaustive()
    }
}

impl Collector for Links {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let v = self.0.get().map(|f| f()).unwrap_or_default();
        gauges(
            &mut enc,
            "haifu_relay_master_connected",
            "1 while the relay's link to the master is up, else 0.",
            None,
            &[(Vec::new(), i64::from(v.master_connected))],
        )?;
        gauges(
            &mut enc,
            "haifu_relay_clients_connected",
            "Client links up now.",
            None,
            &[(Vec::new(), gauge_value(v.clients_connected))],
        )?;
        gauges(
            &mut enc,
            "haifu_relay_denied_clients",
            "Client identities this relay refuses at the handshake (cut off by the master).",
            None,
            &[(Vec::new(), gauge_value(self.1.load(Ordering::Relaxed)))],
        )
    }
}
