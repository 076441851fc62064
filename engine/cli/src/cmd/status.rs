//! `haifu status`: where each run is.

use std::process::ExitCode;

use anyhow::{Context, Result};
use haifu_runtime::machine::RunState;
use haifu_runtime::report::Report;

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One run in detail; without it, every run.
    run: Option<i64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let ledger = home.ledger()?;
    if let Some(id) = args.run {
        let row = ledger
            .run(id)?
            .with_context(|| format!("run {id} does not exist"))?;
        let report = Report::from_ledger(&ledger, id)?
            .with_context(|| format!("run {id} does not exist"))?;
        let state: RunState = serde_json::from_str(&row.state).unwrap_or_default();
        if args.json {
            let mut v = serde_json::to_value(&row)?;
            if let Some(o) = v.as_object_mut() {
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
            if let Some(w) = &row.next_wake {
                println!("  next wake-up {w}");
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
        "{:>4}  {:<8} {:<24} {:<16} {:>8} {:>9} {:>7} {:>8}  NEXT WAKE",
        "RUN", "STATUS", "NAME", "VERSION", "CLIENTS", "DELIVERED", "DELTA", "CUT"
    );
    for r in runs {
        let n = |k: &str| r.counts.get(k).copied().unwrap_or(0);
        println!(
            "{:>4}  {:<8} {:<24} {:<16} {:>8} {:>9} {:>7} {:>8}  {}",
            r.id,
            serde_json::to_string(&r.status)?.trim_matches('"'),
            r.name,
            format!("{} {}", r.artifact, r.version),
            r.counts.values().sum::<u64>(),
            n("delivered"),
            n("delta"),
            n("disconnected"),
            r.next_wake.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}
