//! A live run: created in the ledger by `haifu run --live` through
//! [`create_live_run`], then driven by the master's driver thread with a
//! [`LiveFleet`], the real fleet behind the runtime's driver (relays
//! instructed, rounds started with the broadcast policy's budget, the
//! relays that carried the run drained before its audit).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use haifu_core::Manifest;
use haifu_core::SigningKey;
use haifu_ledger::Ledger;
use haifu_ledger::RunFleet;
use haifu_policy::Budget;
use haifu_policy::BudgetFacts;
use haifu_policy::PolicySet;
use haifu_protocol::ArtifactRef;
use haifu_protocol::Instruction;
use haifu_protocol::RoundBudget;
use haifu_protocol::SessionSecret;
use haifu_runtime::clock::Clock;
use haifu_runtime::driver;
use haifu_runtime::driver::Fleet;
use jiff::Timestamp;

use super::hub::Hub;
use super::machine::ActiveRun;
use super::machine::Event;
use super::machine::RunBroadcast;
use super::machine::SessionSeed;
use super::machine::drain::Drain;
use crate::FleetError;
use crate::common::Shutdown;

/// The real fleet behind the run driver: relays instructed over QUIC,
/// completions recorded by the recorder as they arrive.
#[derive(Debug)]
pub struct LiveFleet {
    pub(super) hub: Arc<Hub>,
    pub(super) run: i64,
    pub(super) key: SigningKey,
    pub(super) ledger_path: std::path::PathBuf,
    pub(super) rate_bps: u64,
    pub(super) relays: Vec<String>,
    /// The workflow's broadcast transport, which the relays must use.
    pub(super) broadcast: Option<RunBroadcast>,
    pub(super) rounds: u32,
    pub(super) start: Timestamp,
    /// The workflow's schedule, for the broadcast policy's time facts.
    pub(super) schedule: haifu_spec::Schedule,
    /// The workflow's policies (a clone of the driver's: scripts are
    /// shared, not recompiled), asked for each round's budget.
    pub(super) policies: PolicySet,
    pub(super) round_grace: Duration,
    pub(super) settle: Duration,
    pub(super) shutdown: Shutdown,
    pub(super) instructed: bool,
    /// Whether the workflow has stages: only the clients the driver admits
    /// receive the broadcast.
    pub(super) staged: bool,
}

impl LiveFleet {
    /// Sets the hub's active run (once per drive) so relays get the
    /// instruction, and registering clients join.
    pub(super) fn instruct(&mut self) -> Option<ActiveRun> {
        if self.instructed {
            return self.hub.active();
        }
        let ledger = Ledger::open(&self.ledger_path).ok()?;
        let row = ledger.run(self.run).ok()??;
        let manifest: Manifest = ledger.manifest(&row.artifact, &row.version).ok()??;
        let artifact = ArtifactRef {
            name: manifest.body.name.parse().ok()?,
            version: manifest.body.version.parse().ok()?,
            digest: manifest.body.sha3_256,
        };
        let run = u64::try_from(self.run).ok()?;
        // The session is per relay (`ActiveRun::instruction_for`).
        let instruction = Instruction {
            run,
            artifact,
            size: manifest.body.size,
            manifest: manifest.to_json().into_bytes(),
            start: self.start,
            rounds: self.rounds,
            rate_bps: self.rate_bps,
            session_id: 0,
            session_key: SessionSecret([0; 32]),
            admitted: None,
        };
        let active = ActiveRun {
            instruction,
            seed: SessionSeed(self.key.to_seed()),
            round: None,
            budget: None,
            starts: Vec::new(),
            relays: self.relays.clone(),
            broadcast: self.broadcast.clone(),
            left_out: BTreeSet::new(),
            staged: self.staged,
        };
        self.hub.handle(Event::OnAir(Box::new(active.clone())));
        self.instructed = true;
        Some(active)
    }
}

impl Fleet for LiveFleet {
    fn describe(&self) -> RunFleet {
        RunFleet::Live
    }

    fn targets(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn registered(&mut self) {
        // Relays fetch the artifact now, while the run waits for its start.
        self.instruct();
    }

    fn admit(&mut self, clients: &[String]) {
        let Ok(run) = u64::try_from(self.run) else {
            return;
        };
        // Before the run goes on air too: the core keeps the admissions for
        // the instructions it sends then.
        self.hub.handle(Event::Admit {
            run,
            clients: clients.to_vec(),
        });
    }

    fn broadcast_round(
        &mut self,
        round: u32,
        pending: &[String],
        clock: &dyn Clock,
    ) -> Vec<String> {
        let _round = tracing::info_span!("round", round).entered();
        let Some(active) = self.instruct() else {
            tracing::error!(
                run = self.run,
                "the run's artifact is not registered; no round sent"
            );
            return Vec::new();
        };
        if pending.is_empty() {
            return Vec::new();
        }
        let run = active.instruction.run;
        let at = clock.now();
        // What relays said of the round before: none before round 1, nor
        // from relays without feedback repair.
        let last = round
            .checked_sub(1)
            .and_then(|r| self.hub.round_listeners(run, r));
        let i = &active.instruction;
        let schedule = &self.schedule;
        let facts = BudgetFacts {
            round,
            rounds: self.rounds,
            size: i.size,
            rate: i.rate_bps,
            remaining: pending.len() as u64,
            last_loss: last.map(|(_, loss)| f64::from(loss) / 1000.0),
            last_decoded: last.map(|(decoded, _)| decoded),
            now: at.to_zoned_datetime(schedule.time_zone.clone()),
            start: schedule.start,
            deadline: schedule.deadline,
            window: schedule.window.map(|w| (w.open, w.close)),
        };
        // The façade has logged a script's failure; no broadcast policy at
        // all is the normal case and quiet.
        let decided = self.policies.round_budget(&facts);
        // The worst loss measured in the round before is what a new
        // listener is assumed to have until its own is measured.
        let budget = round_budget(&decided.value, last.map_or(0, |(_, loss)| loss));
        let longest = Duration::from_millis(budget.time_ms);
        let deadline = Instant::now() + longest + self.round_grace;
        let before = self.hub.recorded(run);
        self.hub.handle_at(
            at,
            Event::RoundStarted {
                round,
                budget: Some(budget),
            },
        );
        tracing::info!(
            run,
            round,
            relays = self.hub.targeted_relays(run, round),
            one_pass_s = round_seconds(&active.instruction),
            longest_s = longest.as_secs_f64(),
            budget = ?budget,
            policy = decided.fallback.is_none(),
            "round started"
        );
        // Wait for every targeted relay connected now to report the round
        // (a relay that reconnects gets the round again on registering),
        // unless an operator aborts the run meanwhile: then its round
        // leaves the air now rather than at its end.
        let ledger = Ledger::open(&self.ledger_path)
            .inspect_err(|e| {
                tracing::warn!(run, "orders are not read during this round: {e}");
            })
            .ok();
        let mut ended = || run_ended(ledger.as_ref(), self.run);
        let Some(waiting) = self
            .hub
            .wait_round(run, round, deadline, &self.shutdown, &mut ended)
        else {
            self.hub.handle(Event::OffAir);
            tracing::info!(
                run,
                round,
                "run aborted: its round is stopped on the relays"
            );
            return Vec::new();
        };
        if !waiting.is_empty() && !self.shutdown.is_set() {
            tracing::warn!(run, round, waiting = ?waiting, "round timed out waiting for relays");
        }
        // Clients that decoded are installing: their completions follow.
        // Relays with feedback repair say how many; wait for those (at most
        // `settle_ms`), not for a fixed delay. Without that count, the whole
        // `settle_ms`.
        match self.hub.round_listeners(run, round) {
            Some((decoded, _)) => {
                let missing = self.hub.wait_recorded(
                    run,
                    before,
                    decoded,
                    Instant::now() + self.settle,
                    &self.shutdown,
                );
                if missing > 0 && !self.shutdown.is_set() {
                    tracing::warn!(
                        run,
                        round,
                        missing,
                        settle_ms = self.settle.as_millis() as u64,
                        "clients that decoded in the round have not completed yet"
                    );
                }
            }
            None => {
                self.shutdown.sleep(self.settle);
            }
        }
        Vec::new()
    }

    fn delta_boots(
        &mut self,
        _stragglers: &[String],
        _not_before: Timestamp,
        _until: Timestamp,
    ) -> Vec<(String, Timestamp)> {
        // Rounds are over: relays stop offering the session to clients.
        self.hub.handle(Event::OffAir);
        // Deltas on boot are served by the master's unicast path (the
        // recorder files their completions); the live fleet reports none.
        Vec::new()
    }

    fn drain(&mut self, pending: &[String]) {
        let (Ok(run), false) = (u64::try_from(self.run), pending.is_empty()) else {
            return;
        };
        // The relays the clients still to hear from are behind.
        let relays: BTreeSet<String> =
            match Ledger::open(&self.ledger_path).and_then(|l| l.run_clients(self.run)) {
                Ok(rows) => rows
                    .into_iter()
                    .filter(|c| pending.contains(&c.client))
                    .map(|c| c.relay)
                    .collect(),
                Err(e) => {
                    tracing::error!(run, "cannot read the run's clients to drain: {e}");
                    return;
                }
            };
        // Bounded: a relay that stays away is given up after the grace a
        // round gets, and what comes through it later is recorded late.
        let bound = Instant::now() + self.round_grace;
        let nonce = self.hub.drain_nonce();
        let mut said = false;
        loop {
            let state = self.hub.drain(run, &relays, nonce);
            if state == Drain::Drained || self.shutdown.is_set() {
                if said {
                    tracing::info!(run, "no completion is in flight any more; auditing");
                }
                return;
            }
            if Instant::now() >= bound {
                tracing::warn!(
                    run,
                    state = ?state,
                    grace_s = self.round_grace.as_secs(),
                    "relays that carried the run are not back; completions that come through them later are recorded as late"
                );
                return;
            }
            if !said {
                tracing::info!(run, state = ?state, "waiting for completions in flight before the audit");
                said = true;
            }
            self.shutdown.sleep(Duration::from_millis(100));
        }
    }

    fn last_contact(&self, _: &str, _: &[Timestamp], _: Timestamp) -> Option<Timestamp> {
        // The recorder writes every contact to the ledger, which the driver
        // reads already.
        None
    }
}

/// Whether run `id` has ended under the driver (an operator aborted it),
/// as `ledger` says; a ledger that cannot be read says nothing, and the
/// round goes on (the driver reads the order again after it).
fn run_ended(ledger: Option<&Ledger>, id: i64) -> bool {
    let standing = ledger.map(|l| l.run_standing(id));
    match standing {
        Some(Ok(Some((status, _)))) => status != haifu_ledger::RunStatus::Running,
        Some(Err(e)) => {
            tracing::warn!(
                run = id,
                "cannot read the run's standing during its round: {e}"
            );
            false
        }
        Some(Ok(None)) | None => false,
    }
}

/// The round's budget when no policy decides: the broadcast policy's safe
/// default ([`Budget::safe_default`], its one home), on the wire. Rounds
/// ask the policy; the simulator sends this.
#[cfg(test)]
pub(crate) fn default_budget(size: u64, rate_bps: u64, last_loss_permille: u32) -> RoundBudget {
    round_budget(&Budget::safe_default(size, rate_bps), last_loss_permille)
}

/// A decided budget in the protocol's per-mille and milliseconds, with the
/// loss a listener is assumed to have until its own is measured (at most
/// 50 %: past that a guess inflates every repair for nothing).
fn round_budget(b: &Budget, last_loss_permille: u32) -> RoundBudget {
    // The policy crate checked the ranges (proactive 0-1, bytes 1-16,
    // silence at most a minute); `as` saturates on anything else.
    let permille = |x: f64| (x * 1000.0).round() as u32;
    RoundBudget {
        proactive_permille: permille(b.proactive),
        bytes_permille: permille(b.bytes),
        time_ms: u64::try_from(b.time.as_millis()).unwrap_or(u64::MAX),
        silence_ms: u32::try_from(b.silence.as_millis()).unwrap_or(u32::MAX),
        assumed_loss_permille: last_loss_permille.min(500),
    }
}

/// Seconds a round takes at the instruction's rate (carousel bytes).
pub(super) fn round_seconds(i: &Instruction) -> f64 {
    let ratio =
        haifu_carousel::loss::round_ratio(i.size, &haifu_carousel::CarouselConfig::default())
            .unwrap_or(1.2);
    let bits = i.size as f64 * ratio * 8.0;
    bits / i.rate_bps.max(1) as f64
}

/// Creates a live run of `plan` (driven by the master daemon), listing
/// every client the ledger knows behind the relays the workflow targets
/// (all when it names none), except those cut off; clients that report
/// later join while the run is on air. Returns the run and how many
/// clients it lists.
pub fn create_live_run(
    ledger: &mut Ledger,
    plan: &haifu_spec::Plan,
) -> Result<(i64, usize), FleetError> {
    let relays = &plan.targets.relays;
    let targets: Vec<(String, String)> = ledger
        .clients()?
        .into_iter()
        .filter(|c| c.denied_reason.is_none())
        .filter_map(|c| c.relay.map(|r| (c.id, r)))
        .filter(|(_, r)| relays.is_empty() || relays.contains(r))
        .collect();
    let id =
        driver::create(ledger, plan, &RunFleet::Live, &targets).map_err(FleetError::CreateRun)?;
    Ok((id, targets.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_on_the_wire_is_the_one_before_policies() {
        // 64 MiB at 100 Mbit/s, 12 % loss measured last round (drive.rs at
        // 7892c51 sent exactly this).
        assert_eq!(
            default_budget(64 << 20, 100_000_000, 120),
            RoundBudget {
                proactive_permille: 20,
                bytes_permille: 3000,
                time_ms: 34_159,
                silence_ms: 1000,
                assumed_loss_permille: 120,
            }
        );
        assert_eq!(
            default_budget(1, 1, 900).assumed_loss_permille,
            500,
            "an assumed loss is capped at 50 %"
        );
    }

    #[test]
    fn a_decided_budget_goes_to_the_wire_in_permille_and_milliseconds() {
        let b = Budget {
            proactive: 0.053,
            bytes: 5.0,
            time: Duration::from_secs_f64(50.2654),
            silence: Duration::from_millis(250),
        };
        assert_eq!(
            round_budget(&b, 50),
            RoundBudget {
                proactive_permille: 53,
                bytes_permille: 5000,
                time_ms: 50_265,
                silence_ms: 250,
                assumed_loss_permille: 50,
            }
        );
    }
}
