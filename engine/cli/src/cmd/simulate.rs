//! `haifu simulate`: dry-run a workflow against a modelled fleet.

use haifu_runtime::driver::Fleet as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use haifu_runtime::clock::VirtualClock;
use haifu_runtime::driver::{self, Env};
use haifu_runtime::report::Report;
use haifu_runtime::sim::SimRun;

use super::check;
use super::fleet_args::FleetArgs;
use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Runs the real engine, the workflow's real policies and a real (temporary) \
ledger against a modelled fleet, in virtual time: days of schedule take seconds. Each client is \
offline in a round with probability --offline and loses each datagram with probability --loss; \
datagrams from all rounds add up, as with the real fountain-code broadcast. Stragglers boot again \
at random times and take a delta; those still missing at the deadline meet the disconnect policy.

Example:
  haifu simulate workflows/nightly-store-rollout.yaml --clients 20000 --loss 5 --offline 30"
)]
pub(crate) struct Args {
    /// The workflow.
    workflow: PathBuf,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The most clients a simulation models, whatever the memory: far above
/// any fleet haifu is meant for, and below where the ledger's per-client
/// rows make a simulation take hours.
const MAX_SIM_CLIENTS: u64 = 10_000_000;

/// Memory one simulated client may cost at the peak, in bytes: measured
/// about 260 (peak RSS 78 MB at 200,000 clients against 32 MB at 20,000,
/// nightly-store-rollout with 5% loss and 30% offline: target list, run
/// rows, SQLite pages, the report), taken four times for margin.
const BYTES_PER_SIM_CLIENT: u64 = 1024;

/// Refuses a client count the simulation cannot hold: above
/// [`MAX_SIM_CLIENTS`], or needing more than three quarters of the memory
/// available now (`MemAvailable` in `/proc/meminfo`, when readable). Before
/// anything is allocated: 10^8 clients used to abort at 5.4 GB.
fn check_client_count(clients: u32) -> Result<()> {
    let clients = u64::from(clients);
    if clients > MAX_SIM_CLIENTS {
        anyhow::bail!(
            "--clients {clients} is more than the simulator's limit of {MAX_SIM_CLIENTS}"
        );
    }
    if let Some(available) = available_memory() {
        let limit = available / 4 * 3 / BYTES_PER_SIM_CLIENT;
        if clients > limit {
            anyhow::bail!(
                "--clients {clients} needs about {} MiB and {} MiB are available; the limit on this machine now is {limit} clients",
                (clients * BYTES_PER_SIM_CLIENT) >> 20,
                available >> 20
            );
        }
    }
    Ok(())
}

/// `MemAvailable` from `/proc/meminfo`, in bytes (Linux only).
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    check_client_count(args.fleet.clients)?;
    let plan = check::load(&args.workflow)?;
    let policies = check::policies(&plan)?;
    let size = std::fs::metadata(&plan.artifact.path.value)
        .with_context(|| format!("cannot read {}", plan.artifact.path.value.display()))?
        .len();
    let params = args.fleet.params(size)?;

    // A throw-away home: the simulation leaves nothing behind.
    let tmp = tempfile::tempdir().context("cannot create a temporary folder")?;
    let home = Home::new(tmp.path().to_owned());
    let mut ledger = home.ledger()?;
    let store = home.store()?;
    let key = home.master_key()?;
    let s = &plan.schedule;
    let mut fleet = SimRun::new(params, s.start, s.deadline);
    let clock = VirtualClock::new(s.start.min(jiff::Timestamp::now()));
    let started = std::time::Instant::now();
    let id = driver::create(&mut ledger, &plan, &fleet.describe(), &fleet.targets())?;
    let mut env = Env {
        ledger: &mut ledger,
        store: &store,
        key: &key,
        policies: &policies,
        clock: &clock,
    };
    driver::resume(&mut env, id, &plan, &mut fleet)?;
    let report = Report::from_ledger(&ledger, id)?.context("the run vanished from the ledger")?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "simulation finished"
    );

    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("workflow".into(), plan.file.display().to_string().into());
            o.insert(
                "symbols_per_round".into(),
                fleet.fleet().symbols_per_round().into(),
            );
            o.insert("blocks".into(), fleet.fleet().blocks().into());
        }
        output::json(&v)?;
    } else {
        println!(
            "simulated {} ({} clients, {} relays, loss {}%, offline {}% per round, seed {})",
            plan.file.display(),
            args.fleet.clients,
            args.fleet.relays,
            args.fleet.loss.trim_end_matches('%'),
            args.fleet.offline.trim_end_matches('%'),
            args.fleet.seed
        );
        print!("{}", report.to_text());
    }
    Ok(ExitCode::SUCCESS)
}
