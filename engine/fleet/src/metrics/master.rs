//! The master's metrics: what its threads count as it happens (completions
//! and failures after install recorded, rounds started, ledger commits and their latency, unicast
//! transfers, deltas built and refused, the gate's answers), and at scrape
//! time its peers and its ledger's census ([`super::census`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use haifu_ledger::TrafficKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::census::Ledgered;
use super::{Daemon, Exporter};
use crate::link::Counters;

/// The most runs a scrape counts: every running live run, then the newest
/// finished ones.
pub const CENSUS_RUNS: usize = 16;

/// How long a census is reused: scrapes closer together than this cost the
/// ledger nothing.
pub const CENSUS_TTL: Duration = Duration::from_secs(2);

/// What the master's scrape reads from its connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerView {
    /// The relays connected now, by certificate name.
    pub relays: Vec<String>,
    /// Client connections now (clients come to the master for deltas).
    pub clients: u64,
}

pub(super) type PeersFn = Box<dyn Fn() -> PeerView + Send + Sync>;

/// `kind=…`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// `outcome=…`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// The master's registry and the counters its threads bump.
pub struct MasterMetrics {
    completions: Family<Kind, Counter>,
    failures: Family<Kind, Counter>,
    rounds_started: Counter,
    commits: Family<Outcome, Counter>,
    commit_seconds: Histogram,
    unicast_bytes: Family<Kind, Counter>,
    unicast: Family<Kind, Counter>,
    gate: Family<Outcome, Counter>,
    peers: Arc<OnceLock<PeersFn>>,
    exporter: Exporter,
}

impl std::fmt::Debug for MasterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterMetrics").finish_non_exhaustive()
    }
}

impl MasterMetrics {
    /// The master's metrics: `links` are its control links' counters,
    /// `relays` its config's `relays:` (listed as disconnected until they
    /// connect), `ledger` the ledger the census reads (`None`: no census,
    /// the families are described without samples).
    pub fn new(links: Arc<Counters>, relays: Vec<String>, ledger: Option<PathBuf>) -> Self {
        let mut r = Registry::default();
        super::process::register(&mut r, Daemon::Master, links);
        let completions = Family::<Kind, Counter>::default();
        r.register(
            "haifu_master_completions_recorded",
            "Completions recorded in the ledger (counted once however often they arrive), by \
             kind: broadcast (a round), delta (a delta or full copy from the master), late \
             (after the run had finished; beside its final record)",
            completions.clone(),
        );
        let failures = Family::<Kind, Counter>::default();
        r.register(
            "haifu_master_install_failures",
            "Clients' failures after install recorded in the ledger (counted once however \
             often they arrive), by kind: post-install (its command failed, never switched), \
             health (its health command failed, switched back), rolled-back (switched back \
             on its own)",
            failures.clone(),
        );
        let rounds_started = Counter::default();
        r.register(
            "haifu_master_rounds_started",
            "Rounds the master started on its relays (a round started again after a restart \
             counts again; per run: haifu_master_run_round_bytes)",
            rounds_started.clone(),
        );
        let commits = Family::<Outcome, Counter>::default();
        r.register(
            "haifu_master_ledger_commits",
            "Group commits of what the fleet reported, by outcome (ok, failed: written again)",
            commits.clone(),
        );
        // 0.5 ms to 8 s: an fsync, or a ledger stalled behind a lock.
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 15));
        r.register_with_unit(
            "haifu_master_ledger_commit_duration",
            "How long each group commit took; completions are acknowledged only after it",
            Unit::Seconds,
            commit_seconds.clone(),
        );
        let unicast_bytes = Family::<Kind, Counter>::default();
        r.register_with_unit(
            "haifu_master_unicast_sent",
            "Bytes the master sent over the control links, by kind: fetch (a relay's copy of \
             an artifact), delta, delta-bsdiff, full (a straggler's catch-up)",
            Unit::Bytes,
            unicast_bytes.clone(),
        );
        let unicast = Family::<Kind, Counter>::default();
        r.register(
            "haifu_master_unicast_transfers",
            "Transfers the master sent whole, by kind (fetch, delta, delta-bsdiff, full)",
            unicast.clone(),
        );
        let gate = Family::<Outcome, Counter>::default();
        r.register(
            "haifu_master_gate_answers",
            "The service gate's answers on the HTTP API, by outcome (allow, deny)",
            gate.clone(),
        );
        // Every series from the start at 0, so rate() and alerts see the
        // first increment.
        for kind in ["broadcast", "delta", "late"] {
            let _ = completions.get_or_create(&Kind { kind });
        }
        for kind in haifu_ledger::FailureKind::ALL {
            let _ = failures.get_or_create(&Kind {
                kind: kind.as_str(),
            });
        }
        for outcome in ["ok", "failed"] {
            let _ = commits.get_or_create(&Outcome { outcome });
        }
        for kind in [
            TrafficKind::Fetch,
            TrafficKind::Delta,
            TrafficKind::DeltaBsdiff,
            TrafficKind::Full,
        ] {
            let kind = Kind {
                kind: kind.as_str(),
            };
            let _ = unicast_bytes.get_or_create(&kind);
            let _ = unicast.get_or_create(&kind);
        }
        for outcome in ["allow", "deny"] {
            let _ = gate.get_or_create(&Outcome { outcome });
        }
        let peers: Arc<OnceLock<PeersFn>> = Arc::default();
        super::deltas::register(&mut r);
        r.register_collector(Box::new(Ledgered {
            path: ledger,
            relays,
            peers: Arc::clone(&peers),
            cache: Mutex::default(),
            failures: AtomicU64::new(0),
        }));
        Self {
            completions,
            failures,
            rounds_started,
            commits,
            commit_seconds,
            unicast_bytes,
            unicast,
            gate,
            peers,
            exporter: Exporter::new(r),
        }
    }

    /// What `/metrics` encodes.
    pub fn exporter(&self) -> Exporter {
        self.exporter.clone()
    }

    /// Where the scrape reads the connected peers from (set once; later
    /// calls are ignored).
    pub fn watch(&self, peers: impl Fn() -> PeerView + Send + Sync + 'static) {
        let _ = self.peers.set(Box::new(peers));
    }

    /// A group commit ended after `took`; `counted` when it committed.
    pub fn committed(&self, took: Duration, counted: Option<haifu_ledger::Counted>) {
        self.commit_seconds.observe(took.as_secs_f64());
        let outcome = if counted.is_some() { "ok" } else { "failed" };
        self.commits.get_or_create(&Outcome { outcome }).inc();
        if let Some(c) = counted {
            self.completions
                .get_or_create(&Kind { kind: "broadcast" })
                .inc_by(c.broadcast);
            self.completions
                .get_or_create(&Kind { kind: "delta" })
                .inc_by(c.delta);
            self.completions
                .get_or_create(&Kind { kind: "late" })
                .inc_by(c.late);
            for kind in haifu_ledger::FailureKind::ALL {
                self.failures
                    .get_or_create(&Kind {
                        kind: kind.as_str(),
                    })
                    .inc_by(c.failed(kind));
            }
        }
    }

    /// The master started a round on its relays.
    pub fn round_started(&self) {
        self.rounds_started.inc();
    }

    /// `bytes` of kind `kind` were sent whole to a peer (multicast is the
    /// relays' and not counted here).
    pub fn sent(&self, kind: TrafficKind, bytes: u64) {
        if kind == TrafficKind::Multicast {
            return;
        }
        let kind = Kind {
            kind: kind.as_str(),
        };
        self.unicast_bytes.get_or_create(&kind).inc_by(bytes);
        self.unicast.get_or_create(&kind).inc();
    }

    /// The gate answered.
    pub fn gate_answered(&self, allow: bool) {
        let outcome = if allow { "allow" } else { "deny" };
        self.gate.get_or_create(&Outcome { outcome }).inc();
    }
}
