//! `haifu status`: where each run is.

use std::process::ExitCode;

use anyhow::{Context, Result};
use haifu_runtime::machine::RunState;
use haifu_runtime::report::Report;

use crate::home::Home;
use crate::output;

mod view;
mod watch;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  haifu status                 every run, one line each
  haifu status 3               run 3 in detail
  haifu status --watch         every running run, redrawn every 2 s until all have ended: its \
step, the round on air or the countdown to the next round, the delta window's end or the \
deadline, delivered of total, and PAUSED with who and why
  haifu status 3 --watch       the same for run 3, with clients done per relay and round and \
completions in the last minute")]
pub(crate) struct Args {
    /// One run in detail; without it, every run.
    run: Option<i64>,
    /// Print JSON.
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// Redraw a live view of every running run (or of RUN) until each has
    /// ended or Ctrl-C (read from the ledger, so it works beside the master
    /// or `haifu run`); the screen is cleared between frames only on a
    /// terminal.
    #[arg(long)]
    watch: bool,
    /// Seconds between frames with --watch.
    #[arg(long, default_value_t = 2.0, value_name = "SECS", requires = "watch")]
    interval: f64,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let ledger = home.ledger_existing()?;
    if args.watch {
        if !(0.05..=3600.0).contains(&args.interval) {
            anyhow::bail!(
                "--interval {} is not between 0.05 and 3600 seconds",
                args.interval
            );
        }
        return watch::watch(
            &ledger,
            args.run,
            std::time::Duration::from_secs_f64(args.interval),
        );
    }
    if let Some(id) = args.run {
        let row = ledger
            .run(id)?
            .with_context(|| format!("run {id} does not exist"))?;
        let report = Report::from_ledger(&ledger, id)?
            .with_context(|| format!("run {id} does not exist"))?;
        let state = RunState::of_run(&row)?;
        let failure = ledger.failure(id)?;
        if args.json {
            let mut v = serde_json::to_value(&row)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("failure".into(), serde_json::to_value(&failure)?);
                o.insert("state".into(), serde_json::to_value(&state)?);
                o.insert("report".into(), serde_json::to_value(&report)?);
            }
            output::json(&v)?;
        } else {
            println!(
                "run {id}: {} ({}) {} {}",
                row.name, row.workflow, row.artifact, row.version
            );
            match &state.current {
                Some(step) => println!(
                    "  step {} ({}): {}",
                    state.step + 1,
                    step.kind().name(),
                    serde_json::to_string(step)?
                ),
                None if state.finished_at.is_some() => {
                    println!("  all {} steps done", state.finished.len())
                }
                None => println!("  step {} not begun", state.step + 1),
            }
            if let Some(line) =
                super::stage_view::status_line(&ledger, id, &state, jiff::Timestamp::now())?
            {
                println!("{line}");
            }
            if let Some(w) = &row.next_wake {
                println!("  next wake-up {w}");
            }
            if let Some(p) = &row.paused {
                let why = p
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                println!(
                    "  paused by {} at {}{why}; resume with: haifu run resume {id}",
                    p.by, p.at
                );
            }
            if let Some(why) = &failure {
                println!("  failed: {why}");
            }
            print!("{}", report.to_text());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runs = ledger.runs()?;
    if args.json {
        output::json(&runs)?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        eprintln!("no runs yet (start one with: haifu run WORKFLOW)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>4}  {:<8} {:<24} {:<16} {:>8} {:>9} {:>7} {:>8} {:>6}  NEXT WAKE",
        "RUN", "STATUS", "NAME", "VERSION", "CLIENTS", "DELIVERED", "DELTA", "CUT", "FAILED"
    );
    for r in runs {
        let n = |k: &str| r.counts.get(k).copied().unwrap_or(0);
        println!(
            "{:>4}  {:<8} {:<24} {:<16} {:>8} {:>9} {:>7} {:>8} {:>6}  {}",
            r.id,
            if r.paused.is_some() {
                "paused"
            } else {
                r.status.as_str()
            },
            r.name,
            format!("{} {}", r.artifact, r.version),
            r.counts.values().sum::<u64>(),
            n("delivered"),
            n("delta"),
            n("disconnected"),
            n(haifu_ledger::ClientState::Failed.as_str()),
            r.next_wake.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}
