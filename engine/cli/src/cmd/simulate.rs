//! `haifu simulate`: dry-run a workflow against a modelled fleet.

use haifu_runtime::driver::Fleet as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use haifu_runtime::clock::VirtualClock;
use haifu_runtime::driver::{self, Env};
use haifu_runtime::report::Report;
use haifu_runtime::rollout::{Ending, Rollout, RolloutReport};
use haifu_runtime::sim::SimRun;
use haifu_runtime::stage::LabelShare;

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

A workflow with stages: (or any workflow with --fail) is simulated as a phased rollout: stage \
by stage, the stage's clients get the rounds, each install fails its post-install check with \
probability --fail, and the advance policy (or the stages' gates) decides after each stage \
whether the next starts, waits, pauses or aborts; the report shows each stage's clients, \
delivered, failed and pending, the decision and why, and how many clients the release reached. \
The modelled relays take the names of targets.relays in order. A phased simulation models no \
deltas within a stage and keeps no ledger. Modelled clients carry no labels unless \
--label-share gives one to a share of them, so that stages naming labels find clients.

Examples:
  haifu simulate workflows/nightly-store-rollout.yaml --clients 20000 --loss 5 --offline 30
  haifu simulate workflows/canary-rollout.yaml --fail 10
  haifu simulate workflows/canary-rollout.yaml --label-share ring=canary:5% --fail 10"
)]
pub(crate) struct Args {
    /// The workflow.
    workflow: PathBuf,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Percent of installs of the new version whose post-install check
    /// fails (0-100): what a bad release would do under the workflow's
    /// stages and advance policy.
    #[arg(long, value_name = "PCT")]
    fail: Option<String>,
    /// Give the label KEY=VALUE to PCT percent of the modelled clients,
    /// drawn by --seed (repeatable; shares of one key never overlap).
    #[arg(long = "label-share", value_name = "KEY=VALUE:PCT")]
    label_shares: Vec<String>,
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
    let labels = label_shares(&args.label_shares)?;
    if !plan.stages.is_empty() || args.fail.is_some() || !labels.is_empty() {
        let fail = match &args.fail {
            Some(f) => super::fleet_args::percent("--fail", f)?,
            None => 0.0,
        };
        return phased(&args, &plan, &policies, params, fail, &labels);
    }

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

    let extra = [
        (
            "symbols_per_round",
            fleet.fleet().symbols_per_round().into(),
        ),
        ("blocks", fleet.fleet().blocks().into()),
    ];
    print_report(&args, &plan, &report, extra, None, Report::to_text)
}

/// The most `--label-share`s: each is a pass over the modelled fleet.
const MAX_LABEL_SHARES: usize = 64;

/// `--label-share ring=canary:10%`, each checked like a client's label.
fn label_shares(texts: &[String]) -> Result<Vec<LabelShare>> {
    if texts.len() > MAX_LABEL_SHARES {
        anyhow::bail!(
            "{} --label-share options, at most {MAX_LABEL_SHARES}",
            texts.len()
        );
    }
    texts
        .iter()
        .map(|t| {
            let (label, pct) = t.rsplit_once(':').with_context(|| {
                format!("--label-share {t:?}: write KEY=VALUE:PCT (ring=canary:10%)")
            })?;
            let (key, value) = haifu_core::parse_label(label)
                .map_err(|e| anyhow::anyhow!("--label-share {t:?}: {e}"))?;
            let share = super::fleet_args::percent("--label-share", pct)?;
            Ok(LabelShare { key, value, share })
        })
        .collect()
}

/// A phased rollout on the modelled fleet ([`Rollout`]).
fn phased(
    args: &Args,
    plan: &haifu_spec::Plan,
    policies: &haifu_policy::PolicySet,
    params: haifu_runtime::sim::SimParams,
    fail: f64,
    labels: &[LabelShare],
) -> Result<ExitCode> {
    let fleet = haifu_runtime::sim::SimFleet::new(params);
    let report = Rollout {
        plan,
        stages: &plan.stages,
        fleet: &fleet,
        fail,
        labels,
        policies,
    }
    .run();
    let extra = [
        ("clients", args.fleet.clients.into()),
        ("fail", fail.into()),
    ];
    print_report(args, plan, &report, extra, Some(fail), rollout_text)
}

/// Prints a simulation's report: one JSON object (the report, the workflow
/// and `extra`), or a line naming the workflow and the modelled fleet
/// (and, for a phased rollout, the share of installs that fail) followed
/// by `text` of the report.
fn print_report<R: serde::Serialize, const N: usize>(
    args: &Args,
    plan: &haifu_spec::Plan,
    report: &R,
    extra: [(&str, serde_json::Value); N],
    phased_fail: Option<f64>,
    text: impl FnOnce(&R) -> String,
) -> Result<ExitCode> {
    if args.json {
        let mut v = serde_json::to_value(report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("workflow".into(), plan.file.display().to_string().into());
            for (k, x) in extra {
                o.insert(k.into(), x);
            }
        }
        output::json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (how, fail) = match phased_fail {
        Some(f) => (
            " as a phased rollout",
            format!(", {}% of installs fail", f * 100.0),
        ),
        None => ("", String::new()),
    };
    println!(
        "simulated {}{how} ({} clients, {} relays, loss {}%, offline {}% per round{fail}, seed {})",
        plan.file.display(),
        args.fleet.clients,
        args.fleet.relays,
        args.fleet.loss.trim_end_matches('%'),
        args.fleet.offline.trim_end_matches('%'),
        args.fleet.seed
    );
    print!("{}", text(report));
    Ok(ExitCode::SUCCESS)
}

/// The report as a table and two summary lines.
fn rollout_text(r: &RolloutReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let width = r
        .stages
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:width$}  {:>8}  {:>9}  {:>6}  {:>7}  {:>6}  decision",
        "stage", "clients", "delivered", "failed", "pending", "rounds"
    );
    for s in &r.stages {
        let _ = writeln!(
            out,
            "{:width$}  {:>8}  {:>9}  {:>6}  {:>7}  {:>6}  {} at {}: {}",
            s.name,
            s.targeted,
            s.delivered,
            s.failed,
            s.pending,
            s.rounds,
            s.decision,
            s.decided,
            s.reason
        );
    }
    let last = r.stages.last().map_or("", |s| s.name.as_str());
    let stage_no = r.stages.len();
    let _ = match r.ending {
        Ending::Complete => writeln!(out, "complete: every stage passed its gate"),
        Ending::Paused => writeln!(out, "paused after stage {stage_no} ({last})"),
        Ending::Aborted => writeln!(out, "aborted after stage {stage_no} ({last})"),
        Ending::Deadline => writeln!(
            out,
            "the deadline passed while stage {stage_no} ({last}) waited"
        ),
    };
    let total = r.installed + r.untouched + r.stages.iter().map(|s| s.pending).sum::<u64>();
    let _ = write!(
        out,
        "the release reached {} of {} clients; {} never received it",
        r.installed, total, r.untouched
    );
    if !r.not_started.is_empty() {
        let _ = write!(out, " (stages not started: {})", r.not_started.join(", "));
    }
    if r.outside > 0 {
        let _ = write!(out, "; {} are in no stage", r.outside);
    }
    if r.rolled_back > 0 {
        let _ = write!(
            out,
            "; the abort ordered {} back to their previous version",
            r.rolled_back
        );
    }
    out.push('\n');
    out
}
