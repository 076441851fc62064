//! The driver thread: finds live runs in the ledger and drives each through
//! the runtime's driver with a [`LiveFleet`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use haifu_core::SigningKey;
use haifu_ledger::Ledger;
use haifu_ledger::RunStatus;
use haifu_runtime::clock::Clock;
use haifu_runtime::clock::SystemClock;
use haifu_runtime::driver;
use haifu_runtime::driver::Env;
use haifu_store::Store;
use jiff::Timestamp;

use super::hub::Hub;
use super::live_fleet::LiveFleet;
use super::machine::Event;
use super::machine::RunBroadcast;
use crate::FleetError;
use crate::common::Shutdown;
use crate::config::MasterConfig;

/// Default broadcast rate when a workflow sets none: 100 Mbit/s.
pub(super) const DEFAULT_RATE_BPS: u64 = 100_000_000;

/// The driver thread: drives every live run the ledger holds, oldest
/// first, one at a time.
pub(super) fn drive_runs(
    cfg: &MasterConfig,
    path: &std::path::Path,
    store: &Store,
    key: &SigningKey,
    hub: &Arc<Hub>,
    shutdown: &Shutdown,
) {
    let mut ledger = match Ledger::open(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("driver cannot open the ledger: {e}");
            shutdown.trigger();
            return;
        }
    };
    let mut broken: BTreeSet<i64> = BTreeSet::new();
    while !shutdown.is_set() {
        let runs = match ledger.runs() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("listing runs: {e}");
                shutdown.sleep(Duration::from_millis(cfg.poll_ms));
                continue;
            }
        };
        // Oldest first (the ledger lists runs newest first).
        let next = runs
            .into_iter()
            .filter(|r| {
                r.status == RunStatus::Running && r.fleet.is_live() && !broken.contains(&r.id)
            })
            .min_by_key(|r| r.id);
        match next {
            Some(r) => {
                // Every line of the run, its rounds' included, names it.
                let _run = tracing::info_span!("run", run = r.id).entered();
                if let Err(e) = drive_one(
                    cfg,
                    &mut ledger,
                    store,
                    key,
                    hub,
                    shutdown,
                    r.id,
                    &r.workflow,
                ) {
                    let reason = haifu_plugin_host::error_chain(&e);
                    tracing::error!(run = r.id, "run cannot be driven: {reason}");
                    // Marked failed with the reason, so `haifu run --live`
                    // and `haifu status` end instead of waiting on a run
                    // nobody drives; kept aside if even that fails.
                    if let Err(le) = ledger.fail_run(r.id, &reason) {
                        tracing::error!(run = r.id, "cannot mark the run failed: {le}");
                    }
                    broken.insert(r.id);
                }
                hub.handle(Event::OffAir);
            }
            None => {
                shutdown.sleep(Duration::from_millis(cfg.poll_ms));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn drive_one(
    cfg: &MasterConfig,
    ledger: &mut Ledger,
    store: &Store,
    key: &SigningKey,
    hub: &Arc<Hub>,
    shutdown: &Shutdown,
    id: i64,
    workflow: &str,
) -> Result<(), FleetError> {
    // The first problem names its own file and position.
    let plan = haifu_spec::load_and_validate(std::path::Path::new(workflow))
        .map_err(|errs| first_of(errs, |e| FleetError::Workflow(Box::new(e)), "the workflow"))?;
    let policies = haifu_policy::PolicySet::load(&plan.policies.paths())
        .map_err(|errs| first_of(errs, |e| FleetError::Policy(Box::new(e)), "the policies"))?;
    check_control(cfg, &plan)?;
    tracing::info!(run = id, workflow, "driving run");
    let mut fleet = LiveFleet {
        hub: Arc::clone(hub),
        run: id,
        key: SigningKey::from_seed(key.to_seed()),
        ledger_path: ledger.path().to_owned(),
        rate_bps: plan.rate.unwrap_or(DEFAULT_RATE_BPS),
        relays: plan.targets.relays.clone(),
        broadcast: Some(RunBroadcast {
            plugin: plan.transports.broadcast.clone(),
            at: format!("{}:{}", plan.file.display(), plan.transports.broadcast_at),
        }),
        rounds: 0,
        start: plan.schedule.start,
        schedule: plan.schedule.clone(),
        policies: policies.clone(),
        round_grace: Duration::from_secs(cfg.round_grace_secs),
        settle: Duration::from_millis(cfg.settle_ms),
        shutdown: shutdown.clone(),
        instructed: false,
        staged: !plan.stages.is_empty(),
    };
    fleet.rounds = plan_rounds(&plan);
    let clock = StoppableClock {
        shutdown: shutdown.clone(),
    };
    let mut env = Env {
        ledger,
        store,
        key,
        policies: &policies,
        clock: &clock,
    };
    // Relays fetch the artifact on the instruction, before the first round
    // starts, not inside its clock.
    if broadcast_ahead(env.ledger, id) {
        fleet.instruct();
    }
    driver::resume(&mut env, id, &plan, &mut fleet)
        .map_err(|source| FleetError::Run { run: id, source })
}

/// A workflow whose unicast (control) transport is not the one this master
/// speaks cannot be driven: its deltas would never reach a client. The
/// error names the workflow's `transports.unicast`.
fn check_control(cfg: &MasterConfig, plan: &haifu_spec::Plan) -> Result<(), FleetError> {
    let t = &plan.transports;
    let (Some(unicast), Some(at)) = (&t.unicast, t.unicast_at) else {
        return Ok(());
    };
    let same = |a: &str, b: &str| a.replace('-', "_") == b.replace('-', "_");
    if same(unicast, &cfg.transports.control) {
        return Ok(());
    }
    Err(FleetError::ControlMismatch {
        at: format!("{}:{at}", plan.file.display()),
        unicast: unicast.clone(),
        control: cfg.transports.control.clone(),
    })
}

/// The first of a failed load's problems, each naming its file and
/// position.
fn first_of<E>(errs: Vec<E>, wrap: impl FnOnce(E) -> FleetError, what: &'static str) -> FleetError {
    errs.into_iter()
        .next()
        .map_or(FleetError::Unexplained(what), wrap)
}

/// Whether run `id`'s broadcast is still to come or under way (its rounds
/// not over): only then are relays instructed before the driver gets to it.
fn broadcast_ahead(ledger: &Ledger, id: i64) -> bool {
    use haifu_spec::steps::broadcast::Phase;
    use haifu_spec::steps::machine::StepState;
    let Some(state) = ledger
        .run(id)
        .ok()
        .flatten()
        .and_then(|row| haifu_runtime::machine::RunState::of_run(&row).ok())
    else {
        return false;
    };
    let over = |s: &StepState| matches!(s, StepState::Broadcast(b) if b.phase == Phase::Done);
    state.finished_at.is_none()
        && !state
            .finished
            .iter()
            .any(|s| matches!(s, StepState::Broadcast(_)))
        && !state.current.as_ref().is_some_and(over)
}

pub(super) fn plan_rounds(plan: &haifu_spec::Plan) -> u32 {
    plan.steps
        .iter()
        .find_map(|s| match s {
            haifu_spec::Step::Broadcast(b) => Some(b.rounds.value),
            _ => None,
        })
        .unwrap_or(0)
}

/// The system clock, except that a sleep ends the process's driving on
/// shutdown: the driver thread parks there until the process exits (every
/// transition before it is durable, so nothing is lost).
#[derive(Debug)]
pub(super) struct StoppableClock {
    pub(super) shutdown: Shutdown,
}

impl Clock for StoppableClock {
    fn now(&self) -> Timestamp {
        SystemClock.now()
    }

    fn sleep_until(&self, at: Timestamp) {
        loop {
            let left = at.duration_since(SystemClock.now());
            if left <= jiff::SignedDuration::ZERO {
                return;
            }
            let left = Duration::try_from(left).unwrap_or(Duration::from_secs(1));
            if self.shutdown.sleep(left.min(Duration::from_millis(500))) {
                park_forever();
            }
        }
    }
}

pub(super) fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}
