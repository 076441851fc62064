//! The driver's side of a staged run: placing clients in stages, admitting
//! a stage, and asking the advance policy with the ledger's counts.
//!
//! Placement. At `create`, the targets (with their relays and the labels
//! the ledger holds) are placed by [`Membership::assign`]; clients in no
//! stage are not targeted. A client that joins the run later (a live
//! fleet adds it when it registers) is placed when the next stage starts,
//! by the same rule applied to the clients that joined since, over the
//! stages not begun yet: never into a stage already started or decided.
//! One that joins after the last stage began, or falls in no stage, stays
//! unplaced and this run never sends it the version (no round, no delta,
//! no cut-off).

use std::time::Duration;

use haifu_core::Labels;
use haifu_ledger::{ClientState, Ledger, OrderError, RunOrder, StageTally};
use haifu_policy::{Advance, Outcome};
use haifu_spec::{FailureLimit, Plan, StageGate};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::{Emitter, Env, Fleet, RunError, note_fallback};
use crate::machine::RunState;
use crate::stage::{Member, Membership, StageCount, facts};

/// Who the advance policy's pause and abort are given by, as an
/// operator's would be.
pub const ADVANCE_POLICY: &str = "advance policy";

/// `(client, stage)`, stages from 0, as the ledger stores them.
type Placement = Vec<(String, u32)>;

/// Every state a placed client can be in: admission covers them all.
const STATES: [ClientState; 7] = [
    ClientState::Pending,
    ClientState::Delivered,
    ClientState::Delta,
    ClientState::Current,
    ClientState::Undelivered,
    ClientState::Disconnected,
    ClientState::Failed,
];

/// The targets of a new staged run, and their placement: `targets`
/// (`(client, relay)`) placed in `plan`'s stages with the labels the
/// ledger holds; clients in no stage are left out.
pub(super) fn place_targets(
    ledger: &Ledger,
    plan: &Plan,
    targets: &[(String, String)],
) -> Result<(Vec<(String, String)>, Placement), RunError> {
    let labels = ledger.client_labels()?;
    let members: Vec<Member> = targets
        .iter()
        .map(|(client, relay)| member(client, relay, &labels))
        .collect();
    let m = Membership::assign(&members, &plan.stages);
    for (stage, client) in &m.unknown {
        tracing::warn!(
            stage = stage + 1,
            client,
            "a stage names a client that is not a target"
        );
    }
    if !m.outside.is_empty() {
        tracing::info!(
            clients = m.outside.len(),
            "clients in no stage are not targeted by the run"
        );
    }
    let placed = placement(&m, 0);
    let kept = targets
        .iter()
        .filter(|(c, _)| m.stage_of(c).is_some())
        .cloned()
        .collect();
    Ok((kept, placed))
}

fn member(
    client: &str,
    relay: &str,
    labels: &std::collections::BTreeMap<String, Labels>,
) -> Member {
    Member {
        client: client.to_owned(),
        relay: relay.to_owned(),
        labels: labels.get(client).cloned().unwrap_or_default(),
    }
}

/// `(client, stage)` for every member of `m`, its stages counted from
/// `first`.
fn placement(m: &Membership, first: usize) -> Placement {
    m.stages
        .iter()
        .enumerate()
        .flat_map(|(i, clients)| {
            let stage = u32::try_from(first + i).unwrap_or(u32::MAX);
            clients.iter().map(move |c| (c.clone(), stage))
        })
        .collect()
}

/// Starts stage `k`: places the clients that joined since (see the
/// module documentation), admits every client of stages `0..=k`, and
/// emits `stage-started`.
pub(super) fn start(
    env: &mut Env<'_>,
    id: i64,
    plan: &Plan,
    fleet: &mut dyn Fleet,
    k: u32,
    ev: &mut Emitter,
) -> Result<(), RunError> {
    let ki = k as usize;
    let joined = env
        .ledger
        .stage_clients_in(id, None, ClientState::Pending)?;
    if !joined.is_empty() && ki < plan.stages.len() {
        let labels = env.ledger.client_labels()?;
        // The relay each joined through, as the run recorded it.
        let members: Vec<Member> = env
            .ledger
            .run_clients(id)?
            .into_iter()
            .filter(|c| c.stage.is_none() && joined.binary_search(&c.client).is_ok())
            .map(|c| member(&c.client, &c.relay, &labels))
            .collect();
        let m = Membership::assign(&members, &plan.stages[ki..]);
        let placed = placement(&m, ki);
        tracing::info!(
            run = id,
            joined = joined.len(),
            placed = placed.len(),
            "clients that joined the run are placed in the stages to come"
        );
        env.ledger.set_client_stages(id, &placed)?;
    }
    readmit(env.ledger, id, fleet, k)?;
    let clients = env
        .ledger
        .stage_tallies(id)?
        .get(ki)
        .map_or(0, |t| t.targeted);
    let (name, gate) = plan
        .stages
        .get(ki)
        .map_or((String::new(), String::new()), |s| {
            (s.name.clone(), gate_text(&s.gate))
        });
    ev.emit(
        "stage-started",
        json!({ "stage": k + 1, "stages": plan.stages.len(), "name": name,
                "clients": clients, "gate": gate, "at": env.clock.now().to_string() }),
    );
    Ok(())
}

/// A gate as the audit and status show it: `soak 30m, min_success 95%,
/// max_failures 2%`, or `none`.
pub fn gate_text(g: &StageGate) -> String {
    let mut parts = Vec::new();
    if !g.soak.is_zero() {
        let soak = SignedDuration::try_from(g.soak).unwrap_or(SignedDuration::MAX);
        parts.push(format!("soak {soak:#}"));
    }
    if let Some(p) = g.min_success {
        parts.push(format!("min_success {p}%"));
    }
    match g.max_failures {
        Some(FailureLimit::Percent(p)) => parts.push(format!("max_failures {p}%")),
        Some(FailureLimit::Count(n)) => parts.push(format!("max_failures {n}")),
        None => {}
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Admits again the clients of stages `0..=k` (a driver that starts
/// again in stage `k`).
pub(super) fn readmit(
    ledger: &Ledger,
    id: i64,
    fleet: &mut dyn Fleet,
    k: u32,
) -> Result<(), RunError> {
    fleet.admit(&admitted(ledger, id, k)?);
    Ok(())
}

/// Every client placed in stages `0..=k`, by name.
fn admitted(ledger: &Ledger, id: i64, k: u32) -> Result<Vec<String>, RunError> {
    let mut all = Vec::new();
    for s in 0..=k {
        for state in STATES {
            all.extend(ledger.stage_clients_in(id, Some(s), state)?);
        }
    }
    all.sort_unstable();
    Ok(all)
}

/// The pending clients of stages `0..=k`: who a staged round is for (a
/// readmitted client of an earlier stage gets the next stage's rounds).
pub(super) fn pending(ledger: &Ledger, id: i64, k: u32) -> Result<Vec<String>, RunError> {
    let mut all = Vec::new();
    for s in 0..=k {
        all.extend(ledger.stage_clients_in(id, Some(s), ClientState::Pending)?);
    }
    all.sort_unstable();
    Ok(all)
}

/// Drops from `clients` (in `state`) those the run never placed: a staged
/// run's audit, deltas and cut-off concern its staged clients only.
pub(super) fn placed_only(
    ledger: &Ledger,
    id: i64,
    state: ClientState,
    clients: Vec<String>,
) -> Result<Vec<String>, RunError> {
    let unplaced = ledger.stage_clients_in(id, None, state)?;
    if unplaced.is_empty() {
        return Ok(clients);
    }
    Ok(clients
        .into_iter()
        .filter(|c| unplaced.binary_search(c).is_err())
        .collect())
}

/// Stage `k`'s failed clients now.
pub(super) fn failed(ledger: &Ledger, id: i64, k: u32) -> Result<u64, RunError> {
    Ok(ledger
        .stage_tallies(id)?
        .get(k as usize)
        .map_or(0, StageTally::failed))
}

/// Stage `k`'s delivered and targeted clients now.
pub(super) fn delivered(ledger: &Ledger, id: i64, k: u32) -> Result<(u64, u64), RunError> {
    Ok(ledger
        .stage_tallies(id)?
        .get(k as usize)
        .map_or((0, 0), |t| (t.delivered, t.targeted)))
}

fn count(t: &StageTally) -> StageCount {
    StageCount {
        targeted: t.targeted,
        delivered: t.delivered,
        failures: t.failures.clone(),
    }
}

/// Asks the advance policy about stage `k` now with the ledger's
/// counts; `early` while the stage's broadcast goes on (nothing has
/// soaked yet). Returns the decision and the stage's count.
pub(super) fn ask(
    env: &Env<'_>,
    id: i64,
    plan: &Plan,
    state: &RunState,
    k: u32,
    early: bool,
    ev: &mut Emitter,
) -> Result<(Advance, StageTally), RunError> {
    let now = env.clock.now();
    let tallies = env.ledger.stage_tallies(id)?;
    let ki = k as usize;
    let tally = tallies.get(ki).cloned().unwrap_or_default();
    let previous: Vec<StageCount> = tallies.iter().take(ki).map(count).collect();
    let since = |t: Option<Timestamp>| {
        t.filter(|t| *t <= now)
            .map_or(Duration::ZERO, |t| now.duration_since(t).unsigned_abs())
    };
    let progress = state.stage();
    let in_stage = since(progress.and_then(|p| p.began));
    let soaked = if early {
        Duration::ZERO
    } else {
        since(progress.and_then(|p| p.broadcast_over))
    };
    let Some(f) = facts(
        &plan.stages,
        ki,
        &count(&tally),
        &previous,
        in_stage,
        soaked,
    ) else {
        return Err(RunError::InvalidPlan {
            id,
            reason: "the run is in a stage its workflow does not have",
        });
    };
    let outcome: Outcome<Advance> = env.policies.advance(&f);
    note_fallback(ev, &outcome);
    Ok((outcome.value, tally))
}

/// A `wait` that would pass the schedule's deadline pauses the run
/// instead: the stages not started are never sent the version on their
/// own, and an operator decides (readmit and resume, which asks the
/// policy again, or abort).
pub(super) fn by_deadline(d: Advance, k: u32, now: Timestamp, deadline: Timestamp) -> Advance {
    match d {
        Advance::Wait { wait, reason } => {
            let until = SignedDuration::try_from(wait)
                .ok()
                .and_then(|w| now.checked_add(w).ok())
                .unwrap_or(Timestamp::MAX);
            if until <= deadline {
                return Advance::Wait { wait, reason };
            }
            Advance::Pause {
                reason: format!(
                    "the deadline {deadline} passes while stage {} waits: {reason}",
                    k + 1
                ),
            }
        }
        other => other,
    }
}

/// The `stage-decided` event's detail (`at`: the run's clock, which a
/// simulation's virtual time sets).
pub(super) fn decided(k: u32, d: &Advance, t: &StageTally, at: Timestamp) -> serde_json::Value {
    json!({
        "stage": k + 1, "decide": d.word(), "reason": d.reason(),
        "targeted": t.targeted, "delivered": t.delivered, "failed": t.failed(),
        "pending": t.pending, "at": at.to_string(),
    })
}

/// Gives the advance policy's pause or abort as an operator's order (`by`
/// [`ADVANCE_POLICY`]); nothing for its other decisions. A pause that
/// meets an operator's pause leaves theirs; a run that ended meanwhile
/// ends the driver as an operator's abort does.
///
/// An abort with `rollback` also orders back, in the abort's own
/// transaction, every client of the started stages that installed the
/// run's version ([`haifu_ledger::Ledger::abort_rolling_back`]); the live
/// master carries the orders out as it does `haifu rollback`'s. A driver
/// that resumes after a crash finds the run ended (or not aborted and no
/// order written), so the orders are never written twice.
pub(super) fn order(env: &mut Env<'_>, id: i64, d: &Advance) -> Result<(), RunError> {
    let order = match d {
        Advance::Pause { .. } => RunOrder::Pause,
        Advance::Abort { rollback: true, .. } => {
            // The ledger writes `run-aborted` and a `rollback-ordered`
            // event per client in the same transaction: that is the audit.
            let done = env
                .ledger
                .abort_rolling_back(id, ADVANCE_POLICY, Some(d.reason()));
            if let Ok(rows) = &done {
                tracing::info!(
                    run = id,
                    orders = rows.len(),
                    "the advance policy aborted the run and ordered its stages back"
                );
            }
            return settled(id, done.map(|_| ()));
        }
        Advance::Abort { .. } => RunOrder::Abort,
        _ => return Ok(()),
    };
    settled(
        id,
        env.ledger
            .order_run(id, order, ADVANCE_POLICY, Some(d.reason())),
    )
}

/// An order's result as the driver takes it (see [`order`]).
fn settled(id: i64, r: Result<(), OrderError>) -> Result<(), RunError> {
    match r {
        Ok(()) | Err(OrderError::AlreadyPaused { .. }) => Ok(()),
        Err(OrderError::NotRunning { .. }) => {
            Err(RunError::Ledger(haifu_ledger::LedgerError::RunEnded(id)))
        }
        Err(OrderError::Ledger(e)) => Err(RunError::Ledger(e)),
        Err(e) => Err(RunError::Order(e)),
    }
}
