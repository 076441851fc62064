//! A modelled fleet for `haifu simulate` and for tests of the run engine.
//!
//! The model follows how the real broadcast recovers, with the carousel's
//! own layout and constants (`haifu_carousel`): the artifact is cut into
//! RaptorQ blocks of about 1,000 source symbols; in a round the relay sends
//! each block's source symbols plus the configured repair overhead. A client
//! online in a round keeps each symbol with probability `1 − loss`; symbols
//! from every round add up per block, and a block decodes once it holds
//! `haifu_carousel::loss::symbols_needed(K)`. The client completes when every
//! block has decoded. A client is offline in a round
//! with probability `offline`. A client that finished no round boots again at
//! a time drawn uniformly from `[audit, audit + 1.5 × (deadline − audit)]`:
//! about two thirds boot before the deadline and take a delta, the rest are
//! left to the disconnect policy.
//!
//! Every draw is a pure function of `(seed, client, round)`, never of the
//! order of calls, so a run interrupted and resumed draws exactly what an
//! uninterrupted one does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};

use haifu_carousel::{CarouselConfig, loss};
use haifu_ledger::{Failure, FailureKind, Ledger};

use crate::clock::Clock;
use crate::driver::Fleet;

/// The fleet's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    /// Number of clients.
    pub clients: u32,
    /// Number of relays; clients are spread evenly.
    pub relays: u32,
    /// Probability that a datagram is lost, per client, in `[0, 1]`.
    pub loss: f64,
    /// Probability that a client is offline in a round, in `[0, 1]`.
    pub offline: f64,
    /// Seed for every draw.
    pub seed: u64,
    /// Artifact size in bytes.
    pub artifact_size: u64,
}

/// The modelled fleet. Stateless: see the module documentation.
#[derive(Debug, Clone)]
pub struct SimFleet {
    params: SimParams,
    /// Per block: symbols sent per round, symbols needed to decode.
    blocks: Vec<(u64, u64)>,
}

impl SimFleet {
    /// A fleet with these parameters (probabilities are clamped to `[0, 1]`,
    /// counts to at least 1 relay).
    pub fn new(mut params: SimParams) -> Self {
        params.loss = params.loss.clamp(0.0, 1.0);
        params.offline = params.offline.clamp(0.0, 1.0);
        params.relays = params.relays.max(1);
        let config = CarouselConfig::default();
        let ks = loss::block_symbols(params.artifact_size, &config)
            .ok()
            .filter(|ks| !ks.is_empty())
            .unwrap_or_else(|| vec![1]);
        let blocks = ks
            .into_iter()
            .map(|k| {
                (
                    u64::from(loss::symbols_per_round(k, &config)),
                    u64::from(loss::symbols_needed(k)),
                )
            })
            .collect();
        Self { params, blocks }
    }

    /// The parameters.
    pub fn params(&self) -> &SimParams {
        &self.params
    }

    /// RaptorQ blocks in the artifact.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Symbols the relay sends per round, all blocks together.
    pub fn symbols_per_round(&self) -> u64 {
        self.blocks.iter().map(|b| b.0).sum()
    }

    /// The client's id.
    pub fn client_id(&self, client: u32) -> String {
        format!("client-{client:06}")
    }

    /// The relay that serves `client`.
    pub fn relay_of(&self, client: u32) -> String {
        format!("relay-{}", client % self.params.relays + 1)
    }

    /// Every client and its relay.
    pub fn targets(&self) -> Vec<(String, String)> {
        (0..self.params.clients)
            .map(|c| (self.client_id(c), self.relay_of(c)))
            .collect()
    }

    /// The client index of an id made by [`SimFleet::client_id`].
    pub fn index_of(&self, id: &str) -> Option<u32> {
        id.strip_prefix("client-")?.parse().ok()
    }

    /// Whether the client is online during `round`.
    pub fn online(&self, client: u32, round: u32) -> bool {
        self.uniform(client, round, 1) >= self.params.offline
    }

    /// Symbols of `block` the client gathers in `round` (0 when offline).
    fn received(&self, client: u32, round: u32, block: usize) -> u64 {
        // Binomial(sent, 1 - loss), by its normal approximation: close
        // enough at a thousand symbols a block, and O(1) per draw.
        let n = self.blocks[block].0 as f64;
        let p = 1.0 - self.params.loss;
        let sd = (n * p * (1.0 - p)).sqrt();
        let z = self.normal(client, round, block as u64);
        (n * p + sd * z).round().clamp(0.0, n) as u64
    }

    /// The round in which the client completes (every block decoded), among
    /// rounds `1..=rounds`.
    pub fn completes_in(&self, client: u32, rounds: u32) -> Option<u32> {
        let mut gathered = vec![0u64; self.blocks.len()];
        for round in 1..=rounds {
            if !self.online(client, round) {
                continue;
            }
            let mut all = true;
            for (b, held) in gathered.iter_mut().enumerate() {
                if *held < self.blocks[b].1 {
                    *held += self.received(client, round, b);
                    all &= *held >= self.blocks[b].1;
                }
            }
            if all {
                return Some(round);
            }
        }
        None
    }

    /// Whether the new version fails its post-install check on `client`,
    /// for a release that fails with probability `rate` (a draw of its
    /// own, independent of the rounds').
    pub fn install_fails(&self, client: u32, rate: f64) -> bool {
        self.uniform(client, 0, 7) < rate.clamp(0.0, 1.0)
    }

    /// When a straggler boots again, for a run from `start` to `deadline`.
    pub fn boot_at(&self, client: u32, start: Timestamp, deadline: Timestamp) -> Timestamp {
        let span = deadline.duration_since(start).as_secs_f64().max(0.0) * 1.5;
        let offset = self.uniform(client, 0, 2) * span;
        start
            .saturating_add(SignedDuration::from_secs_f64(offset))
            .unwrap_or(deadline)
    }

    /// The client's last contact before the run started at `start`.
    pub fn contact_before(&self, client: u32, start: Timestamp) -> Timestamp {
        let back = self.uniform(client, 0, 5) * 60.0 * 86_400.0;
        start
            .saturating_sub(SignedDuration::from_secs_f64(back))
            .unwrap_or(start)
    }

    /// A uniform draw in `[0, 1)` keyed by `(seed, client, round, salt)`.
    fn uniform(&self, client: u32, round: u32, salt: u64) -> f64 {
        let key = self.params.seed
            ^ (u64::from(client) << 20)
            ^ (u64::from(round) << 52)
            ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (splitmix64(key) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller) keyed like [`Self::uniform`],
    /// one per block.
    fn normal(&self, client: u32, round: u32, block: u64) -> f64 {
        let u1 = self
            .uniform(client, round, 16 + 2 * block)
            .max(f64::MIN_POSITIVE);
        let u2 = self.uniform(client, round, 17 + 2 * block);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(loss: f64, offline: f64) -> SimFleet {
        SimFleet::new(SimParams {
            clients: 10_000,
            relays: 4,
            loss,
            offline,
            seed: 7,
            artifact_size: 64 << 20,
        })
    }

    #[test]
    fn no_loss_everyone_online_completes_in_round_one() {
        let f = fleet(0.0, 0.0);
        assert!((0..10_000).all(|c| f.completes_in(c, 3) == Some(1)));
    }

    #[test]
    fn symbols_from_several_rounds_add_up() {
        // 30% loss: one round (about 1.07 K × 0.7) is never enough, two
        // always are.
        let f = fleet(0.30, 0.0);
        assert!((0..1000).all(|c| f.completes_in(c, 1).is_none()));
        assert!((0..1000).all(|c| f.completes_in(c, 2) == Some(2)));
    }

    #[test]
    fn offline_share_matches_the_parameter() {
        let f = fleet(0.0, 0.3);
        let off = (0..10_000).filter(|&c| !f.online(c, 1)).count();
        assert!((2_700..3_300).contains(&off), "{off}");
        // Offline in all three rounds: about 0.3^3 = 2.7%.
        let never = (0..10_000)
            .filter(|&c| f.completes_in(c, 3).is_none())
            .count();
        assert!((180..380).contains(&never), "{never}");
    }

    #[test]
    fn draws_do_not_depend_on_call_order() {
        let f = fleet(0.05, 0.2);
        let forward: Vec<_> = (0..500).map(|c| f.completes_in(c, 3)).collect();
        let backward: Vec<_> = (0..500).rev().map(|c| f.completes_in(c, 3)).collect();
        assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
        assert_eq!(f.index_of(&f.client_id(42)), Some(42));
    }

    #[test]
    fn boots_fall_in_the_documented_span() {
        let f = fleet(0.0, 0.0);
        let start: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let deadline: Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
        let before = (0..3000)
            .filter(|&c| f.boot_at(c, start, deadline) < deadline)
            .count();
        assert!((1800..2200).contains(&before), "{before}");
    }
}

/// A [`SimFleet`] bound to a run's schedule, as the driver's [`Fleet`].
///
/// In a staged run only the clients [`Fleet::admit`]ted receive the
/// broadcast, and every admission is kept ([`SimRun::admissions`]). With
/// [`SimRun::failing`], a client that completes may fail its post-install
/// check, and the failure reaches the ledger through a connection of its
/// own, as a live fleet's reports do; a failed client that an operator
/// readmits has its fix and does not fail again.
#[derive(Debug, Clone)]
pub struct SimRun {
    fleet: SimFleet,
    start: Timestamp,
    deadline: Timestamp,
    admitted: Option<BTreeSet<String>>,
    admissions: Vec<Vec<String>>,
    failing: Option<Failing>,
    relay_names: Vec<String>,
}

/// A modelled relay's name under a workflow whose `targets.relays` are
/// `names`: `relay-N` takes the N-th name (and keeps its own past the
/// list), so a stage that names a relay finds its clients in a model.
pub fn relay_name(relay: &str, names: &[String]) -> String {
    relay
        .strip_prefix("relay-")
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| names.get(n.checked_sub(1)?))
        .cloned()
        .unwrap_or_else(|| relay.to_owned())
}

/// Where and how often a simulated release fails.
#[derive(Debug, Clone)]
struct Failing {
    ledger: PathBuf,
    run: i64,
    rate: f64,
    reported: BTreeSet<String>,
}

/// Why a stored fleet description cannot be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum BadDescription {
    /// Not the JSON [`Fleet::describe`] writes.
    #[error("damaged: {0}")]
    Damaged(#[source] serde_json::Error),
    /// Another kind of fleet.
    #[error("a {0:?} fleet, not a simulated one")]
    NotSimulated(String),
}

/// The stored description of a simulated fleet.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Description {
    kind: String,
    clients: u32,
    relays: u32,
    loss: f64,
    offline: f64,
    seed: u64,
    artifact_size: u64,
}

impl SimRun {
    /// The fleet `params` for a run from `start` to `deadline`.
    pub fn new(params: SimParams, start: Timestamp, deadline: Timestamp) -> Self {
        Self {
            fleet: SimFleet::new(params),
            start,
            deadline,
            admitted: None,
            admissions: Vec::new(),
            failing: None,
            relay_names: Vec::new(),
        }
    }

    /// Names the modelled relays after the workflow's `targets.relays`
    /// ([`relay_name`]).
    pub fn with_relay_names(mut self, names: &[String]) -> Self {
        self.relay_names = names.to_vec();
        self
    }

    /// Makes installs of run `run` fail with probability `rate` (the
    /// model's [`SimFleet::install_fails`] draw), each failure recorded in
    /// the ledger at `ledger` as a post-install failure.
    pub fn failing(mut self, ledger: &Path, run: i64, rate: f64) -> Self {
        self.failing = Some(Failing {
            ledger: ledger.to_path_buf(),
            run,
            rate,
            reported: BTreeSet::new(),
        });
        self
    }

    /// Each admission the driver made, in order (empty for an unstaged
    /// run).
    pub fn admissions(&self) -> &[Vec<String>] {
        &self.admissions
    }

    /// Records the failures among `completed` in the ledger; returns the
    /// clients that completed and are healthy.
    fn report_failures(&mut self, completed: Vec<String>, clock: &dyn Clock) -> Vec<String> {
        let Some(f) = &mut self.failing else {
            return completed;
        };
        let at = clock.now().to_string();
        let mut ledger = match Ledger::open(&f.ledger) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "the simulated fleet cannot report failures");
                return completed;
            }
        };
        let mut healthy = Vec::with_capacity(completed.len());
        for client in completed {
            let fails = !f.reported.contains(&client)
                && self
                    .fleet
                    .index_of(&client)
                    .is_some_and(|c| self.fleet.install_fails(c, f.rate));
            if !fails {
                healthy.push(client);
                continue;
            }
            let report = Failure {
                run: f.run,
                client: &client,
                kind: FailureKind::PostInstall,
                reason: "post-install check failed (simulated)",
                at: &at,
            };
            if let Err(e) = ledger.record_failure(&report) {
                tracing::warn!(client, error = %e, "a simulated failure was not recorded");
            }
            f.reported.insert(client);
        }
        healthy
    }

    /// Rebuilds the fleet a run stored with [`Fleet::describe`]; an error
    /// if the description is damaged or not a simulated fleet's.
    pub fn from_description(
        text: &str,
        start: Timestamp,
        deadline: Timestamp,
    ) -> Result<Self, BadDescription> {
        let d: Description = serde_json::from_str(text).map_err(BadDescription::Damaged)?;
        if d.kind != "sim" {
            return Err(BadDescription::NotSimulated(d.kind));
        }
        Ok(Self::new(
            SimParams {
                clients: d.clients,
                relays: d.relays,
                loss: d.loss,
                offline: d.offline,
                seed: d.seed,
                artifact_size: d.artifact_size,
            },
            start,
            deadline,
        ))
    }

    /// The model.
    pub fn fleet(&self) -> &SimFleet {
        &self.fleet
    }
}

impl Fleet for SimRun {
    fn describe(&self) -> haifu_ledger::RunFleet {
        let p = self.fleet.params();
        let description = serde_json::to_string(&Description {
            kind: "sim".into(),
            clients: p.clients,
            relays: p.relays,
            loss: p.loss,
            offline: p.offline,
            seed: p.seed,
            artifact_size: p.artifact_size,
        })
        .unwrap_or_default();
        haifu_ledger::RunFleet::Modelled(description)
    }

    fn targets(&self) -> Vec<(String, String)> {
        self.fleet
            .targets()
            .into_iter()
            .map(|(c, r)| {
                let relay = relay_name(&r, &self.relay_names);
                (c, relay)
            })
            .collect()
    }

    fn broadcast_round(
        &mut self,
        round: u32,
        pending: &[String],
        clock: &dyn Clock,
    ) -> Vec<String> {
        let completed = pending
            .iter()
            .filter(|id| self.admitted.as_ref().is_none_or(|a| a.contains(*id)))
            .filter(|id| {
                self.fleet
                    .index_of(id)
                    .is_some_and(|c| self.fleet.completes_in(c, round).is_some())
            })
            .cloned()
            .collect();
        self.report_failures(completed, clock)
    }

    fn admit(&mut self, clients: &[String]) {
        self.admissions.push(clients.to_vec());
        self.admitted = Some(clients.iter().cloned().collect());
    }

    fn delta_boots(
        &mut self,
        stragglers: &[String],
        not_before: Timestamp,
        until: Timestamp,
    ) -> Vec<(String, Timestamp)> {
        let mut boots: Vec<(String, Timestamp)> = stragglers
            .iter()
            .filter_map(|id| {
                let c = self.fleet.index_of(id)?;
                let at = self
                    .fleet
                    .boot_at(c, self.start, self.deadline)
                    .max(not_before);
                (at < until).then(|| (id.clone(), at))
            })
            .collect();
        boots.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        boots
    }

    fn last_contact(
        &self,
        client: &str,
        rounds_started: &[Timestamp],
        now: Timestamp,
    ) -> Option<Timestamp> {
        let c = self.fleet.index_of(client)?;
        let mut last = self.fleet.contact_before(c, self.start);
        for (i, at) in rounds_started.iter().enumerate() {
            if self.fleet.online(c, i as u32 + 1) && *at <= now {
                last = last.max(*at);
            }
        }
        let boot = self.fleet.boot_at(c, self.start, self.deadline);
        if boot <= now {
            last = last.max(boot);
        }
        Some(last)
    }
}
