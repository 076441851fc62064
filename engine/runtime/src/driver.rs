//! The driver: carries the run machine's commands out through the ledger,
//! the policies, the clock and a fleet.
//!
//! Every transition is one ledger transaction holding the machine's new
//! snapshot, the client changes and the events, and every event is also a
//! `tracing` line ([`Emitter`]), so the logs and the audit never disagree.
//! The driver holds nothing the ledger does not: kill it at any point and
//! [`resume`] carries on from the last committed transition.

use std::collections::BTreeMap;

use haifu_core::{ArtifactName, SigningKey, Version};
use haifu_ledger::RunFleet;
use haifu_ledger::{
    ClientRow, ClientState, ClientUpdate, Ledger, LedgerError, NewRun, RunStatus, Transition,
};
use haifu_policy::{Advance, FallbackCause, NextRound, Outcome, PolicySet, RoundFacts};
use haifu_spec::Plan;
use haifu_store::Store;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::clock::Clock;
use crate::gate::RegisteredVersions;
use crate::machine::{RunMachine, RunState};
use crate::register::{RegisterError, register_file};
use haifu_spec::steps::machine::{Command, Input};

/// A fleet the driver can broadcast to: simulated, or the master's relays.
/// Completions it reports are recorded by the driver.
pub trait Fleet {
    /// How to rebuild this fleet on resume (stored with the run).
    fn describe(&self) -> haifu_ledger::RunFleet;
    /// Every targeted client and its relay.
    fn targets(&self) -> Vec<(String, String)>;
    /// Runs broadcast round `round` for the `pending` clients; returns the
    /// ones that completed in it.
    fn broadcast_round(&mut self, round: u32, pending: &[String], clock: &dyn Clock)
    -> Vec<String>;
    /// Of the `stragglers`, those that boot and take a delta before `until`,
    /// with when, in time order.
    fn delta_boots(
        &mut self,
        stragglers: &[String],
        not_before: Timestamp,
        until: Timestamp,
    ) -> Vec<(String, Timestamp)>;
    /// The artifact is registered and its manifest stored: a fleet may
    /// ready its relays for the rounds to come (the master's instructs
    /// them, so they fetch before the first round starts, not inside it).
    fn registered(&mut self) {}
    /// The rounds are over and the audit comes next: a fleet whose
    /// completions travel (through relays, to a master that may have
    /// restarted) waits here until none from the `pending` clients can
    /// still be on the way, or their loss is known, so the audit that
    /// follows is final. Nothing to wait for by default.
    fn drain(&mut self, _pending: &[String]) {}
    /// Lets `clients` receive the run's broadcast from now on (a staged
    /// run's stage, before its first round; the list holds every client
    /// admitted so far). An unstaged run never calls it: all its targets
    /// are admitted from the start.
    fn admit(&mut self, clients: &[String]) {
        let _ = clients;
    }
    /// When the client was last heard from, given the rounds so far.
    fn last_contact(
        &self,
        client: &str,
        rounds_started: &[Timestamp],
        now: Timestamp,
    ) -> Option<Timestamp>;
}

/// What a run needs from its surroundings.
pub struct Env<'a> {
    /// The ledger.
    pub ledger: &'a mut Ledger,
    /// The artifact store (for the register step).
    pub store: &'a Store,
    /// The master key (for the register step).
    pub key: &'a SigningKey,
    /// The workflow's policies.
    pub policies: &'a PolicySet,
    /// Time.
    pub clock: &'a dyn Clock,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("ledger", &self.ledger.path())
            .field("store", &self.store.root())
            .field("now", &self.clock.now())
            .finish_non_exhaustive()
    }
}

/// Why a run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The register step failed.
    #[error("register step: {0}")]
    Register(#[from] RegisterError),
    /// The run's stored state cannot be read.
    #[error(transparent)]
    State(#[from] crate::machine::SnapshotError),
    /// The run's state cannot be written as a snapshot: nothing is stored
    /// rather than a snapshot that would not read back.
    #[error("the run's state cannot be encoded")]
    Encode(#[source] serde_json::Error),
    /// The plan the run follows cannot be carried out.
    #[error("run {id}: {reason}")]
    InvalidPlan {
        /// The run.
        id: i64,
        /// Why.
        reason: &'static str,
    },
    /// No such run.
    #[error("run {0} does not exist")]
    NoSuchRun(i64),
    /// The advance policy's pause or abort could not be given.
    #[error(transparent)]
    Order(#[from] haifu_ledger::OrderError),
}

/// Collects one transition's events, logging each as it is added.
#[derive(Debug, Default)]
pub struct Emitter {
    run: i64,
    events: Vec<(String, String)>,
}

impl Emitter {
    fn new(run: i64) -> Self {
        Self {
            run,
            events: Vec::new(),
        }
    }

    /// Records `kind` with `detail`: a `tracing` line now, a ledger row with
    /// the transition.
    fn emit(&mut self, kind: &str, detail: serde_json::Value) {
        tracing::info!(run = self.run, event = kind, %detail);
        self.events.push((kind.to_owned(), detail.to_string()));
    }
}

/// Creates a run of `plan` in the ledger, driven as `fleet` says, listing
/// `targets` (`(client, relay)`); returns its id. A workflow with stages
/// places the targets in them (see [`stages`]) and targets only those in a
/// stage.
pub fn create(
    ledger: &mut Ledger,
    plan: &Plan,
    fleet: &RunFleet,
    targets: &[(String, String)],
) -> Result<i64, RunError> {
    let (targets, placed) = if plan.stages.is_empty() {
        (targets.to_vec(), Vec::new())
    } else {
        stages::place_targets(ledger, plan, targets)?
    };
    let targets = &targets[..];
    let state_json = RunState::default()
        .to_snapshot()
        .map_err(RunError::Encode)?;
    let id = ledger.create_run(&NewRun {
        // Absolute, so `haifu run --resume` works from any folder.
        workflow: &std::fs::canonicalize(&plan.file)
            .unwrap_or_else(|_| plan.file.clone())
            .display()
            .to_string(),
        name: &plan.name.value,
        artifact: &plan.artifact.name,
        version: &plan.artifact.version.to_string(),
        fleet,
        state: &state_json,
        next_wake: None,
        clients: targets,
        stages: &placed,
    })?;
    tracing::info!(run = id, clients = targets.len(), workflow = %plan.file.display(), "run created");
    Ok(id)
}

/// Drives run `id` until it finishes (or fails, or an operator aborts it),
/// resuming from whatever the ledger holds.
///
/// Between its steps the driver reads the operator's orders from the
/// ledger (`haifu run pause|resume|abort`), and on a real clock it sleeps
/// no longer than [`Clock::order_poll`] at a time to do so. While the run
/// is paused it starts nothing: no round, no cut-off at a deadline that
/// passes meanwhile (that waits for the resume, unless the workflow sets
/// `schedule.cut_off_while_paused`, which cuts off only from the delta
/// step); a round already on air ends as it would. Resumed, the same snapshot yields the same next
/// command, so the run goes on where it was. Aborted, it returns: the step
/// it was in is not written over the end ([`LedgerError::RunEnded`]).
/// On a clock that jumps no order can come, so a paused run returns as it
/// is, to be resumed later.
pub fn resume(
    env: &mut Env<'_>,
    id: i64,
    plan: &Plan,
    fleet: &mut dyn Fleet,
) -> Result<(), RunError> {
    match drive(env, id, plan, fleet) {
        Err(RunError::Ledger(LedgerError::RunEnded(run))) => {
            tracing::info!(run, "run ended by an operator's order");
            Ok(())
        }
        other => other,
    }
}

/// Whether the driver may take its next step.
enum Standing {
    Go,
    Paused,
    Ended,
}

fn standing(env: &Env<'_>, id: i64, paused_before: bool) -> Result<Standing, RunError> {
    let (status, pause) = env
        .ledger
        .run_standing(id)?
        .ok_or(RunError::NoSuchRun(id))?;
    Ok(match (status, pause) {
        (RunStatus::Running, None) => {
            if paused_before {
                tracing::info!(run = id, "run resumed");
            }
            Standing::Go
        }
        (RunStatus::Running, Some(p)) => {
            if !paused_before {
                tracing::info!(run = id, by = p.by, reason = ?p.reason, "run paused: nothing new starts until it is resumed");
            }
            Standing::Paused
        }
        _ => Standing::Ended,
    })
}

fn drive(env: &mut Env<'_>, id: i64, plan: &Plan, fleet: &mut dyn Fleet) -> Result<(), RunError> {
    let row = env.ledger.run(id)?.ok_or(RunError::NoSuchRun(id))?;
    let state = RunState::of_run(&row)?;
    let mut machine = RunMachine::new(plan, state);
    // A driver started again (a restart, a resume) re-admits the stages
    // already started: a fleet keeps no admission of its own across one.
    if let Some(k) = machine.state().stage().filter(|s| s.began.is_some()) {
        stages::readmit(env.ledger, id, fleet, k.index)?;
    }
    let mut paused = false;
    loop {
        let now = env.clock.now();
        match standing(env, id, paused)? {
            Standing::Ended => return Ok(()),
            Standing::Paused if cuts_off_while_paused(plan, &machine, now) => {
                // The cut-off alone goes on (the machine's next step): the
                // run stays paused, and its end waits for the resume.
                paused = true;
                tracing::info!(
                    run = id,
                    deadline = %plan.schedule.deadline,
                    "the deadline passed while the run is paused: cutting off as schedule.cut_off_while_paused says"
                );
            }
            Standing::Paused => {
                paused = true;
                let Some(poll) = env.clock.order_poll() else {
                    return Ok(());
                };
                env.clock
                    .sleep_until(now.saturating_add(poll).unwrap_or(now));
                continue;
            }
            Standing::Go => paused = false,
        }
        let before = machine.state().clone();
        let cmd = machine.poll(now);
        let mut ev = Emitter::new(id);
        let mut updates = Vec::new();
        let Some(cmd) = cmd else {
            if before.finished_at.is_none() {
                ev.emit("run-finished", json!({}));
                save_with(env, id, &machine, Vec::new(), ev, RunStatus::Done)?;
            }
            return Ok(());
        };
        match cmd {
            Command::Register => {
                let name: Result<ArtifactName, _> = plan.artifact.name.parse();
                let version: Result<Version, _> = plan.artifact.version.to_string().parse();
                let (Ok(name), Ok(version)) = (name, version) else {
                    return Err(RunError::InvalidPlan {
                        id,
                        reason: "the plan's artifact name or version is not valid",
                    });
                };
                let done = register_file(
                    env.ledger,
                    env.store,
                    env.key,
                    &name,
                    &version,
                    &plan.artifact.path.value,
                    &mut |_, _, _| {},
                )?;
                ev.emit(
                    "registered",
                    json!({ "artifact": name.as_str(), "version": version.to_string(),
                            "sha3_256": done.manifest.body.sha3_256, "new": done.new }),
                );
                machine.handle(&Input::Registered, now);
                fleet.registered();
            }
            Command::SleepUntil(at) => {
                if &before != machine.state() {
                    save(env, id, &machine, Vec::new(), ev)?;
                }
                tracing::debug!(run = id, until = %at, "waiting");
                // Woken at least every `order_poll` to read orders; the
                // machine asks for the same sleep again.
                let at = env
                    .clock
                    .order_poll()
                    .and_then(|p| now.saturating_add(p).ok())
                    .map_or(at, |poll| at.min(poll));
                env.clock.sleep_until(at);
                continue;
            }
            Command::StartRound(round) => {
                if &before != machine.state() {
                    // The round's start is durable before any symbol goes out.
                    let mut start = Emitter::new(id);
                    start.emit("round-started", json!({ "round": round }));
                    save(env, id, &machine, Vec::new(), start)?;
                }
                let stage = machine.state().stage().map(|s| s.index);
                let (pending, failed_before) = match stage {
                    Some(k) => (
                        stages::pending(env.ledger, id, k)?,
                        stages::failed(env.ledger, id, k)?,
                    ),
                    None => (clients_in(env.ledger, id, ClientState::Pending)?, 0),
                };
                let done = fleet.broadcast_round(round, &pending, env.clock);
                let at = env.clock.now().to_string();
                // A live fleet records completions as they arrive; a
                // simulated one returns them here.
                let still = env.ledger.run_clients_in(id, ClientState::Pending)?.len();
                let recorded = pending.len().saturating_sub(still);
                ev.emit("round-finished", json!({ "round": round, "completed": done.len() + recorded, "pending_before": pending.len() }));
                updates = done
                    .into_iter()
                    .map(|client| ClientUpdate::Completed {
                        client,
                        round: Some(round),
                        at: at.clone(),
                    })
                    .collect();
                machine.handle(&Input::RoundFinished, now);
                // Failures the fleet recorded during the round: the
                // advance policy hears of them before another round.
                if let Some(k) = stage
                    && stages::failed(env.ledger, id, k)? > failed_before
                {
                    machine.handle(&Input::Failures, now);
                }
            }
            Command::AskNextRound(round) => {
                // Clients of a live fleet can join while the run goes on.
                let (delivered, total) = match machine.state().stage() {
                    Some(s) => stages::delivered(env.ledger, id, s.index)?,
                    None => delivered(env.ledger, id)?,
                };
                let c = machine.cx();
                let facts = RoundFacts {
                    round: machine.state().round_in_stage(round),
                    rounds: machine.planned_rounds(),
                    delivered,
                    total,
                    now: now.to_zoned_datetime(c.time_zone.clone()),
                    start: c.start,
                    deadline: c.deadline,
                    window: c.window.map(|w| (w.open, w.close)),
                };
                let outcome: Outcome<NextRound> = env.policies.next_round(&facts);
                note_fallback(&mut ev, &outcome);
                let detail = match &outcome.value {
                    NextRound::Wait(gap) => {
                        json!({ "round": round, "wait_secs": gap.as_secs(), "delivered": delivered, "total": total })
                    }
                    NextRound::Stop { reason } => {
                        json!({ "round": round, "stop": reason, "delivered": delivered, "total": total })
                    }
                };
                ev.emit("next-round", detail);
                machine.handle(&Input::NextRound(outcome.value), now);
            }
            Command::StartStage(k) => {
                stages::start(env, id, plan, fleet, k, &mut ev)?;
                machine.handle(&Input::StageStarted, now);
            }
            Command::AskAdvance { stage, round } => {
                let early = round.is_some();
                let (decision, tally) =
                    stages::ask(env, id, plan, machine.state(), stage, early, &mut ev)?;
                let decision = stages::by_deadline(decision, stage, now, plan.schedule.deadline);
                // While the broadcast goes on only a pause or an abort is
                // a decision; anything else lets the rounds go on.
                if !early || matches!(decision, Advance::Pause { .. } | Advance::Abort { .. }) {
                    ev.emit(
                        "stage-decided",
                        stages::decided(stage, &decision, &tally, now),
                    );
                }
                machine.handle(&Input::Advance(decision.clone()), now);
                // The decision is durable before it is carried out: a
                // driver killed in between asks again in the same stage.
                save(env, id, &machine, Vec::new(), ev)?;
                stages::order(env, id, &decision)?;
                continue;
            }
            Command::Audit => {
                let pending = clients_in(env.ledger, id, ClientState::Pending)?;
                fleet.drain(&pending);
                let pending = clients_in(env.ledger, id, ClientState::Pending)?;
                // Now final: each round's count as the audit will show it
                // (`round-finished` logged what had arrived by the round's
                // end; completions in flight were filed under their round
                // since).
                let rounds = machine.state().rounds_started().len();
                emit_round_totals(&mut ev, &final_round_counts(env.ledger, id, rounds)?);
                ev.emit("stragglers-listed", json!({ "count": pending.len() }));
                updates.push(ClientUpdate::AuditPending);
                machine.handle(&Input::Audited, now);
            }
            Command::ServeDeltas { until } => {
                // The window's end goes to the ledger as it opens: the
                // master serves stragglers only while it is open.
                save(env, id, &machine, Vec::new(), Emitter::new(id))?;
                let stragglers = stragglers(env.ledger, id, plan)?;
                let not_before = machine.state().audited_at().unwrap_or(now).max(now);
                let boots = fleet.delta_boots(&stragglers, not_before, until);
                // Record delta completions as they happen, an hour of
                // (possibly virtual) time per transaction.
                let mut batch: Vec<ClientUpdate> = Vec::new();
                let mut batch_end = None;
                for (client, at) in boots {
                    if batch_end.is_some_and(|end| at >= end) {
                        flush_deltas(env, id, &machine, &mut batch)?;
                    }
                    if batch.is_empty() {
                        batch_end = at.checked_add(SignedDuration::from_hours(1)).ok();
                        env.clock.sleep_until(at);
                    }
                    batch.push(ClientUpdate::Completed {
                        client,
                        round: None,
                        at: at.to_string(),
                    });
                }
                flush_deltas(env, id, &machine, &mut batch)?;
                sleep_watching(env, id, until)?;
                continue;
            }
            Command::CutOff => {
                let stragglers = stragglers(env.ledger, id, plan)?;
                let registered = RegisteredVersions::of(env.ledger, &plan.artifact.name)?;
                let rounds_started = machine.state().rounds_started();
                let mut cut = 0usize;
                for client in stragglers {
                    // What the ledger knows of the client, with the fleet's
                    // own knowledge of when it was last heard from.
                    let row = env.ledger.client(&client)?.unwrap_or_else(|| ClientRow {
                        id: client.clone(),
                        relay: None,
                        artifact: None,
                        version: None,
                        last_contact: None,
                        denied_reason: None,
                    });
                    let mut facts =
                        registered.client_facts(&row, plan.artifact.version.clone(), "undelivered");
                    facts.last_contact =
                        facts
                            .last_contact
                            .max(fleet.last_contact(&client, &rounds_started, now));
                    let outcome = env.policies.disconnect(&facts, now);
                    note_fallback(&mut ev, &outcome);
                    if outcome.value.cut {
                        cut += 1;
                        updates.push(ClientUpdate::Disconnected {
                            client,
                            reason: outcome.value.reason,
                            at: now.to_string(),
                        });
                    } else {
                        updates.push(ClientUpdate::Kept {
                            client,
                            reason: outcome.value.reason,
                        });
                    }
                }
                ev.emit(
                    "cut-off",
                    json!({ "disconnected": cut, "kept": updates.len() - cut }),
                );
                machine.handle(&Input::CutOffDone, now);
            }
        }
        save(env, id, &machine, updates, ev)?;
    }
}

/// Whether a paused run cuts off now: the workflow says so
/// (`schedule.cut_off_while_paused`), the deadline has passed, and the
/// cut-off is the machine's next command (a run paused in its delta step;
/// one paused earlier, in a stage or a broadcast, has steps before it that
/// only a resume carries out).
fn cuts_off_while_paused(plan: &Plan, machine: &RunMachine, now: Timestamp) -> bool {
    plan.schedule.cut_off_while_paused
        && now >= plan.schedule.deadline
        && machine.clone().poll(now) == Some(Command::CutOff)
}

/// Sleeps until `until`, on a real clock in `order_poll` steps that end
/// early once an operator paused or ended the run (the caller's loop then
/// honours the order).
fn sleep_watching(env: &Env<'_>, id: i64, until: Timestamp) -> Result<(), RunError> {
    let Some(poll) = env.clock.order_poll() else {
        env.clock.sleep_until(until);
        return Ok(());
    };
    loop {
        let now = env.clock.now();
        if now >= until || !matches!(standing(env, id, false)?, Standing::Go) {
            return Ok(());
        }
        env.clock
            .sleep_until(now.saturating_add(poll).map_or(until, |p| p.min(until)));
    }
}

/// Completions per round, `rounds` of them (the rounds started), as the
/// run's audit counts them: its `delivered_by_round` summed over relays.
fn final_round_counts(ledger: &Ledger, id: i64, rounds: usize) -> Result<Vec<u64>, RunError> {
    let mut counts = vec![0u64; rounds];
    if let Some(audit) = ledger.audit(id)? {
        for relay in &audit.relays {
            for (i, clients) in relay.delivered_by_round.iter().enumerate() {
                if let Some(c) = counts.get_mut(i) {
                    *c += clients.len() as u64;
                }
            }
        }
    }
    Ok(counts)
}

/// One `round-final` event per round: its final count of completions.
fn emit_round_totals(ev: &mut Emitter, counts: &[u64]) {
    for (i, completed) in counts.iter().enumerate() {
        ev.emit(
            "round-final",
            json!({ "round": i + 1, "completed": completed }),
        );
    }
}

fn note_fallback<T>(ev: &mut Emitter, outcome: &Outcome<T>) {
    // A role the workflow left without a script uses its documented default
    // by design: that is not worth a warning per client.
    if let Some(f) = outcome
        .fallback
        .as_ref()
        .filter(|f| !matches!(f.cause, FallbackCause::NotConfigured))
    {
        tracing::warn!(run = ev.run, "{f}");
        ev.emit("policy-fallback", json!({ "detail": f.to_string() }));
    }
}

fn flush_deltas(
    env: &mut Env<'_>,
    id: i64,
    machine: &RunMachine,
    batch: &mut Vec<ClientUpdate>,
) -> Result<(), RunError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut ev = Emitter::new(id);
    ev.emit("delta-delivered", json!({ "clients": batch.len() }));
    save(env, id, machine, std::mem::take(batch), ev)
}

fn save(
    env: &mut Env<'_>,
    id: i64,
    m: &RunMachine,
    updates: Vec<ClientUpdate>,
    ev: Emitter,
) -> Result<(), RunError> {
    save_with(env, id, m, updates, ev, RunStatus::Running)
}

fn save_with(
    env: &mut Env<'_>,
    id: i64,
    m: &RunMachine,
    updates: Vec<ClientUpdate>,
    ev: Emitter,
    status: RunStatus,
) -> Result<(), RunError> {
    let now = env.clock.now();
    env.ledger.transition(
        id,
        &Transition {
            state: m.state().to_snapshot().map_err(RunError::Encode)?,
            status,
            next_wake: m.next_wake(now).map(|t| t.to_string()),
            updates,
            events: ev.events,
        },
    )?;
    Ok(())
}

/// The clients the audit left undelivered; a staged run's placed ones.
fn stragglers(ledger: &Ledger, id: i64, plan: &Plan) -> Result<Vec<String>, RunError> {
    let all = clients_in(ledger, id, ClientState::Undelivered)?;
    if plan.stages.is_empty() {
        return Ok(all);
    }
    stages::placed_only(ledger, id, ClientState::Undelivered, all)
}

fn clients_in(ledger: &Ledger, id: i64, state: ClientState) -> Result<Vec<String>, RunError> {
    Ok(ledger.run_clients_in(id, state)?)
}

/// Clients that have the version, and clients targeted.
fn delivered(ledger: &Ledger, id: i64) -> Result<(u64, u64), RunError> {
    let counts: BTreeMap<String, u64> = ledger.run(id)?.map(|r| r.counts).unwrap_or_default();
    let have = ["delivered", "delta", "current"]
        .iter()
        .map(|k| counts.get(*k).copied().unwrap_or(0))
        .sum();
    Ok((have, counts.values().sum()))
}

pub mod stages;

#[cfg(test)]
mod orders;
#[cfg(test)]
mod staged;

#[cfg(test)]
mod tests {

    #![allow(clippy::unwrap_used)]

    use haifu_ledger::testing::TestRun;
    use haifu_ledger::{RunStatus, Transition};

    use super::*;

    /// Two relays, eight clients; the rounds' ends saw none complete, the
    /// drain then recorded seven in round 1 and one in round 3: the final
    /// per-round events say so, as the audit does.
    #[test]
    fn the_round_totals_at_the_audit_match_the_audit_not_the_rounds_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        let clients: Vec<(String, String)> = (0..8)
            .map(|i| (format!("c{i}"), format!("relay-{}", i % 2)))
            .collect();
        let id = TestRun::new().clients(clients).create(&mut l).unwrap();
        let at = "2026-12-04T10:00:00Z".to_owned();
        let updates = (0..8)
            .map(|i| ClientUpdate::Completed {
                client: format!("c{i}"),
                round: Some(if i == 7 { 3 } else { 1 }),
                at: at.clone(),
            })
            .collect();
        l.transition(
            id,
            &Transition {
                state: "{}".into(),
                status: RunStatus::Running,
                next_wake: None,
                updates,
                events: Vec::new(),
            },
        )
        .unwrap();
        let counts = final_round_counts(&l, id, 3).unwrap();
        assert_eq!(counts, vec![7, 0, 1]);
        let audit = l.audit(id).unwrap().unwrap();
        let by_audit: u64 = audit
            .relays
            .iter()
            .map(|r| r.delivered_by_round.first().map_or(0, Vec::len) as u64)
            .sum();
        assert_eq!(counts[0], by_audit);
        let mut ev = Emitter::new(id);
        emit_round_totals(&mut ev, &counts);
        let events: Vec<(&str, serde_json::Value)> = ev
            .events
            .iter()
            .map(|(k, d)| (k.as_str(), serde_json::from_str(d).unwrap()))
            .collect();
        assert_eq!(
            events,
            vec![
                ("round-final", json!({ "round": 1, "completed": 7 })),
                ("round-final", json!({ "round": 2, "completed": 0 })),
                ("round-final", json!({ "round": 3, "completed": 1 })),
            ]
        );
    }
}
