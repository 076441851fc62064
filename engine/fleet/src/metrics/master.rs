//! The master's metrics: what its threads count as it happens (completions
//! recorded, ledger commits and their latency, unicast transfers, the gate's
//! answers), and at scrape time its peers and its ledger's census (runs by
//! status, each counted run's clients by relay and state and its bytes on
//! the wire, the fleet per relay and per version).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use haifu_ledger::{Census, ClientState, Ledger, RunStatus, TrafficKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::families::{Labels, counters, gauge_value, gauges, label};
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

type PeersFn = Box<dyn Fn() -> PeerView + Send + Sync>;

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
             kind: broadcast (a round), delta (a delta or full copy from the master)",
            completions.clone(),
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
        for kind in ["broadcast", "delta"] {
            let _ = completions.get_or_create(&Kind { kind });
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
        r.register_collector(Box::new(Ledgered {
            path: ledger,
            relays,
            peers: Arc::clone(&peers),
            cache: Mutex::default(),
            failures: AtomicU64::new(0),
        }));
        Self {
            completions,
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
        }
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

/// The ledger's census and the connections, read at scrape time.
struct Ledgered {
    path: Option<PathBuf>,
    relays: Vec<String>,
    peers: Arc<OnceLock<PeersFn>>,
    cache: Mutex<Cache>,
    failures: AtomicU64,
}

impl std::fmt::Debug for Ledgered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledgered")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The last census, and the connection it came from.
#[derive(Default)]
struct Cache {
    ledger: Option<Ledger>,
    taken: Option<(Instant, Census)>,
}

impl Ledgered {
    /// The census, at most [`CENSUS_TTL`] old; `None` when the ledger
    /// cannot be read (counted, logged, and the families left empty).
    fn census(&self) -> Option<Census> {
        let path = self.path.as_ref()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, c)) = &cache.taken
            && at.elapsed() < CENSUS_TTL
        {
            return Some(c.clone());
        }
        let result = match cache.ledger.take() {
            Some(l) => Ok(l),
            None => Ledger::open(path),
        }
        .and_then(|l| {
            let c = l.census(CENSUS_RUNS);
            cache.ledger = Some(l);
            c
        });
        match result {
            Ok(c) => {
                cache.taken = Some((Instant::now(), c.clone()));
                Some(c)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                cache.ledger = None;
                tracing::warn!("metrics: reading the ledger: {e}");
                None
            }
        }
    }
}

impl Collector for Ledgered {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let census = self.census().unwrap_or_default();
        let peers = self.peers.get().map(|f| f()).unwrap_or_default();

        let runs: Vec<(Labels, i64)> = [RunStatus::Running, RunStatus::Done, RunStatus::Failed]
            .into_iter()
            .map(|s| {
                let n = census.runs.iter().find(|(x, _)| *x == s).map_or(0, |r| r.1);
                (label("status", s.as_str()), gauge_value(n))
            })
            .collect();
        gauges(
            &mut enc,
            "haifu_master_runs",
            "Live runs in the ledger, by status (running, done, failed).",
            None,
            &runs,
        )?;
        let clients: Vec<(Labels, i64)> = census
            .run_clients
            .iter()
            .map(|c| {
                (
                    vec![
                        ("run", c.run.to_string()),
                        ("relay", c.relay.clone()),
                        ("state", c.state.as_str().to_owned()),
                    ],
                    gauge_value(c.clients),
                )
            })
            .collect();
        gauges(
            &mut enc,
            "haifu_master_run_clients",
            &format!(
                "Clients of a run by relay and state ({}), as the audit counts them; every \
                 running live run and the newest finished ones, {CENSUS_RUNS} runs at most.",
                ClientState::ALL.map(ClientState::as_str).join(", ")
            ),
            None,
            &clients,
        )?;
        let traffic: Vec<(Labels, i64)> = census
            .run_traffic
            .iter()
            .map(|(run, kind, bytes)| {
                (
                    vec![("run", run.to_string()), ("kind", kind.clone())],
                    gauge_value(*bytes),
                )
            })
            .collect();
        gauges(
            &mut enc,
            "haifu_master_run_traffic",
            "A run's bytes on the wire as the audit counts them, by kind (multicast: every \
             relay's rounds; fetch; delta; delta-bsdiff; full), for the runs counted above.",
            Some(&Unit::Bytes),
            &traffic,
        )?;
        let relay_name = |r: &Option<String>| r.clone().unwrap_or_default();
        let fleet: Vec<(Labels, i64)> = census
            .relays
            .iter()
            .map(|r| (label("relay", relay_name(&r.relay)), gauge_value(r.clients)))
            .collect();
        gauges(
            &mut enc,
            "haifu_master_fleet_clients",
            "Clients the master knows, by the relay they are registered behind (\"\": not \
             yet known).",
            None,
            &fleet,
        )?;
        let denied: Vec<(Labels, i64)> = census
            .relays
            .iter()
            .map(|r| (label("relay", relay_name(&r.relay)), gauge_value(r.denied)))
            .collect();
        gauges(
            &mut enc,
            "haifu_master_fleet_clients_denied",
            "Clients cut off (deny-listed until `haifu fleet readmit`), by relay.",
            None,
            &denied,
        )?;
        let versions: Vec<(Labels, i64)> = census
            .versions
            .iter()
            .map(|(artifact, version, n)| {
                (
                    vec![("artifact", artifact.clone()), ("version", version.clone())],
                    gauge_value(*n),
                )
            })
            .collect();
        gauges(
            &mut enc,
            "haifu_master_fleet_version_clients",
            &format!(
                "Clients by the artifact and version they last reported or completed (the {} \
                 most common).",
                haifu_ledger::CENSUS_VERSIONS
            ),
            None,
            &versions,
        )?;
        // Every relay the master has heard of: the config's list, the fleet
        // table's, and whoever is connected.
        let mut known: std::collections::BTreeSet<String> = self.relays.iter().cloned().collect();
        known.extend(census.relays.iter().filter_map(|r| r.relay.clone()));
        known.extend(peers.relays.iter().cloned());
        let up: Vec<(Labels, i64)> = known
            .into_iter()
            .map(|r| {
                let on = peers.relays.contains(&r);
                (label("relay", r), i64::from(on))
            })
            .collect();
        gauges(
            &mut enc,
            "haifu_master_relay_connected",
            "1 for each relay connected now, 0 for a relay the master knows of (its config's \
             relays, the fleet table) that is not.",
            None,
            &up,
        )?;
        gauges(
            &mut enc,
            "haifu_master_peers_connected",
            "Control connections now, by role (relay; client: a straggler asking for a delta).",
            None,
            &[
                (
                    label("role", "relay"),
                    gauge_value(peers.relays.len() as u64),
                ),
                (label("role", "client"), gauge_value(peers.clients)),
            ],
        )?;
        counters(
            &mut enc,
            "haifu_master_census_failures",
            "Scrapes whose ledger census failed (the ledger families were left empty).",
            None,
            &[(Vec::new(), self.failures.load(Ordering::Relaxed))],
        )
    }
}
