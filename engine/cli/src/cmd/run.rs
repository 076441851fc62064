//! `haifu run`: start (or resume) a durable run of a workflow.

use haifu_runtime::driver::Fleet as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use haifu_runtime::clock::{Clock, SystemClock, VirtualClock};
use haifu_runtime::driver::{self, Env};
use haifu_runtime::report::Report;
use haifu_runtime::sim::SimRun;

use super::check;
use super::fleet_args::FleetArgs;
use crate::home::Home;
use crate::progress;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "A run is durable: every transition is written to the ledger before the \
next begins. Kill the process at any moment and `haifu run --resume RUN` carries on where it \
stopped, with no completion lost or counted twice.

Until the fleet daemons land, a run drives a simulated fleet (see `haifu simulate --help` for the \
model) in real time, waiting for schedule.start and the retry policy's gaps; --virtual-time runs \
the schedule at once.

Operators act on a running run with `haifu run pause|resume|abort RUN [--by WHO] [--reason \
TEXT]`: a paused run starts no new round and its deadline cuts nobody off until it is resumed \
(then it goes on where it was; a deadline passed meanwhile cuts off at once) and no straggler \
is served a delta meanwhile; completions go on being recorded. An aborted run ends as failed \
with the reason \"aborted by WHO: TEXT\", its round on air stops, relays stop offering its \
rounds and no straggler is served a delta for it. Each \
order is checked and recorded with who, when and why (`haifu audit RUN`, `haifu status`); the \
master notices it within about a second. A run not running, a pause of a paused run or a resume \
of a running one is refused and nothing is written.

Examples:
  haifu run workflows/urgent-security-fix.yaml --clients 500
  haifu run --resume 3
  haifu run pause 3 --reason \"shop opening hours\"
  haifu run resume 3
  haifu run abort 3 --by alice --reason \"bad build\""
)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct Args {
    /// An operator's order on a run, instead of starting one.
    #[command(subcommand)]
    order: Option<super::run_order::Order>,
    /// The workflow (not with --resume).
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    workflow: Option<PathBuf>,
    /// Resume this unfinished run.
    #[arg(long, value_name = "RUN")]
    resume: Option<i64>,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Run the schedule in virtual time instead of waiting for it.
    #[arg(long, conflicts_with = "live")]
    virtual_time: bool,
    /// Hand the run to the master daemon (`haifu master`), which drives it
    /// over the real fleet: every client the ledger knows behind the
    /// workflow's relays. Waits for the run to end, showing its progress.
    #[arg(long)]
    live: bool,
    /// With --live: print the run's id and return at once.
    #[arg(long, requires = "live")]
    detach: bool,
    /// Print the final report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
    if let Some(order) = args.order {
        return super::run_order::run(home, order);
    }
    let mut ledger = home.ledger()?;
    let (plan, id, mut fleet) = match (args.resume, &args.workflow) {
        (Some(id), _) => {
            let row = ledger
                .run(id)?
                .with_context(|| format!("run {id} does not exist"))?;
            let description = match &row.fleet {
                haifu_ledger::RunFleet::Live => {
                    bail!("run {id} is a live run: the master daemon resumes it when it starts")
                }
                haifu_ledger::RunFleet::Modelled(d) => d.clone(),
            };
            if row.status != haifu_ledger::RunStatus::Running {
                bail!(
                    "run {id} is already {}; nothing to resume",
                    serde_json::to_string(&row.status)?.trim_matches('"')
                );
            }
            let plan = check::load(std::path::Path::new(&row.workflow))?;
            let s = &plan.schedule;
            let fleet =
                SimRun::from_description(&description, s.start, s.deadline).with_context(|| {
                    format!("run {id}: its fleet {description:?} cannot be rebuilt")
                })?;
            eprintln!("resuming run {id} ({})", row.workflow);
            (plan, id, fleet)
        }
        (None, Some(wf)) => {
            let plan = check::load(wf)?;
            let unfinished = ledger.runs()?.into_iter().find(|r| {
                r.status == haifu_ledger::RunStatus::Running
                    && std::fs::canonicalize(&plan.file)
                        .is_ok_and(|p| std::path::Path::new(&r.workflow) == p)
            });
            if let Some(r) = unfinished {
                bail!(
                    "run {} of {} is unfinished; resume it with: haifu run --resume {}",
                    r.id,
                    plan.file.display(),
                    r.id
                );
            }
            if args.live {
                return live(&mut ledger, &plan, args.detach, args.json);
            }
            let size = std::fs::metadata(&plan.artifact.path.value)
                .with_context(|| format!("cannot read {}", plan.artifact.path.value.display()))?
                .len();
            let s = &plan.schedule;
            let fleet = SimRun::new(args.fleet.params(size)?, s.start, s.deadline);
            let id = driver::create(&mut ledger, &plan, &fleet.describe(), &fleet.targets())?;
            eprintln!("started run {id} ({})", plan.file.display());
            (plan, id, fleet)
        }
        (None, None) => bail!("name a workflow, or --resume RUN"),
    };
    let policies = check::policies(&plan)?;
    let ledger_path = ledger.path().to_owned();
    let store = home.store()?;
    let key = home.master_key()?;
    let virtual_clock;
    let clock: &dyn Clock = if args.virtual_time {
        virtual_clock = VirtualClock::new(jiff::Timestamp::now());
        &virtual_clock
    } else {
        &SystemClock
    };
    let mut env = Env {
        ledger: &mut ledger,
        store: &store,
        key: &key,
        policies: &policies,
        clock,
    };
    let watcher = progress::watch_run(ledger_path, id);
    let driven = driver::resume(&mut env, id, &plan, &mut fleet);
    watcher.stop();
    driven?;
    let report = Report::from_ledger(&ledger, id)?.context("the run vanished from the ledger")?;
    if args.json {
        crate::output::json(&report)?;
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--live`: the run is created here and driven by the master daemon.
fn live(
    ledger: &mut haifu_ledger::Ledger,
    plan: &haifu_spec::Plan,
    detach: bool,
    json: bool,
) -> Result<ExitCode> {
    check::policies(plan)?;
    let (id, targets) = haifu_fleet::master::create_live_run(ledger, plan)?;
    if targets == 0 {
        eprintln!(
            "note: no client has reported to this master yet; clients join the run as they report"
        );
    }
    eprintln!(
        "started live run {id} ({}); the master daemon drives it",
        plan.file.display()
    );
    if detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let watcher = progress::watch_run(ledger.path().to_owned(), id);
    loop {
        let row = ledger
            .run(id)?
            .context("the run vanished from the ledger")?;
        if row.status != haifu_ledger::RunStatus::Running {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    watcher.stop();
    let report = Report::from_ledger(ledger, id)?.context("the run vanished from the ledger")?;
    if json {
        crate::output::json(&report)?;
    } else {
        print!("{}", report.to_text());
    }
    let failed = ledger
        .run(id)?
        .is_some_and(|r| r.status == haifu_ledger::RunStatus::Failed);
    if failed {
        let why = ledger
            .failure(id)?
            .unwrap_or_else(|| "no reason recorded".to_owned());
        bail!("run {id} failed: {why}");
    }
    Ok(ExitCode::SUCCESS)
}
