//! The master's scrape-time families: its ledger's census (runs by status,
//! each counted run's clients, completions by kind and round, rounds and
//! their bytes, traffic; the fleet per relay and version; rollback orders)
//! and its connections. The census is one bounded query set, cached for
//! [`CENSUS_TTL`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use haifu_ledger::{Census, ClientState, CompletionKind, Ledger, RollbackState, RunStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::families::{Labels, counters, gauge_value, gauges, label};
use super::master::{CENSUS_RUNS, CENSUS_TTL, PeersFn};

/// The ledger's census and the connections, read at scrape time.
pub(super) struct Ledgered {
    pub(super) path: Option<PathBuf>,
    pub(super) relays: Vec<String>,
    pub(super) peers: Arc<OnceLock<PeersFn>>,
    pub(super) cache: Mutex<Cache>,
    pub(super) failures: AtomicU64,
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
pub(super) struct Cache {
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
        let round_label = |r: Option<u32>| r.map(|n| n.to_string()).unwrap_or_default();
        let completions: Vec<(Labels, i64)> = census
            .completions
            .iter()
            .map(|c| {
                (
                    vec![
                        ("run", c.run.to_string()),
                        ("kind", c.kind.as_str().to_owned()),
                        ("round", round_label(c.round)),
                    ],
                    gauge_value(c.clients),
                )
            })
            .collect();
        gauges(
            &mut enc,
            "haifu_master_run_completions",
            &format!(
                "Completions of a run as the audit counts them, by kind ({}) and round (the \
                 broadcast round; \"\" for a delta or full copy), for the runs counted above.",
                CompletionKind::ALL.map(CompletionKind::as_str).join(", ")
            ),
            None,
            &completions,
        )?;
        let rounds: Vec<(Labels, i64)> = census
            .rounds
            .iter()
            .map(|(run, round, bytes)| {
                (
                    vec![("run", run.to_string()), ("round", round.to_string())],
                    gauge_value(*bytes),
                )
            })
            .collect();
        gauges(
            &mut enc,
            "haifu_master_run_round",
            "Each round of a run that went on air and the bytes every relay multicast in it \
             (the audit's multicast_by_round), for the runs counted above; the number of \
             series per run is its rounds.",
            Some(&Unit::Bytes),
            &rounds,
        )?;
        let rollbacks: Vec<(Labels, i64)> = if census.rollbacks.is_empty() {
            // No census: every state at 0, so alerts see the series.
            RollbackState::ALL
                .iter()
                .map(|s| (label("state", s.as_str()), 0))
                .collect()
        } else {
            census
                .rollbacks
                .iter()
                .map(|(s, n)| (label("state", s.as_str()), gauge_value(*n)))
                .collect()
        };
        gauges(
            &mut enc,
            "haifu_master_rollbacks",
            "Rollback orders in the ledger (haifu rollback), by state: ordered (requested, no \
             report yet), done (the client rolled back), refused (it could not, and said why).",
            None,
            &rollbacks,
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
