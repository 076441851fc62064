//! `haifu status`: where each run is.

use std::process::ExitCode;

use anyhow::{Context, Result};
use haifu_runtime::machine::RunState;
use haifu_runtime::report::Report;

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  haifu status                 every run, one line each
  haifu status 3               run 3 in detail
  haifu status 3 --watch       a live view of run 3 until it ends: clients done per relay and \
round, completions per minute, time to the next round")]
pub(crate) struct Args {
    /// One run in detail; without it, every run.
    run: Option<i64>,
    /// Print JSON.
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// Refresh a live view of RUN until it ends (read from the ledger, so it
    /// works beside the master or `haifu run`).
    #[arg(long, requires = "run")]
    watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    interval: f64,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let ledger = home.ledger_existing()?;
    if let (Some(id), true) = (args.run, args.watch) {
        if !(0.05..=3600.0).contains(&args.interval) {
            anyhow::bail!(
                "--interval {} is not between 0.05 and 3600 seconds",
                args.interval
            );
        }
        return watch(
            &ledger,
            id,
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

/// The live view: redrawn until the run is no longer running.
fn watch(ledger: &haifu_ledger::Ledger, id: i64, every: std::time::Duration) -> Result<ExitCode> {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stdout().is_terminal();
    loop {
        let view = live_view(ledger, id)?;
        let mut out = std::io::stdout().lock();
        if tty {
            // Home the cursor and clear: the view redraws in place.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        write!(out, "{}", view.text)?;
        out.flush()?;
        if !view.running {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(every);
    }
}

struct LiveView {
    text: String,
    running: bool,
}

fn live_view(ledger: &haifu_ledger::Ledger, id: i64) -> Result<LiveView> {
    use haifu_ledger::ClientState;
    use std::collections::BTreeMap;
    let row = ledger
        .run(id)?
        .with_context(|| format!("run {id} does not exist"))?;
    let state = RunState::of_run(&row)?;
    let clients = ledger.run_clients(id)?;
    // Columns for the rounds that can exist only: a stored number never
    // sizes anything (a row with an impossible round shows in no column).
    let rounds = state.rounds_started().len().max(
        clients
            .iter()
            .filter_map(|c| c.round.and_then(haifu_core::round_index))
            .max()
            .map_or(0, |i| i + 1),
    );
    // Per relay: [done in round 1..n], then pending, undelivered, by delta
    // or already current, cut off, failed after install, total.
    let mut table: BTreeMap<&str, (Vec<u64>, [u64; 6])> = BTreeMap::new();
    let now = jiff::Timestamp::now();
    let minute_ago = now - jiff::SignedDuration::from_secs(60);
    let mut last_minute = 0u64;
    for c in &clients {
        let e = table
            .entry(c.relay.as_str())
            .or_insert_with(|| (vec![0; rounds], [0; 6]));
        match c.state {
            ClientState::Delivered => {
                if let Some(i) = haifu_core::round_index(c.round.unwrap_or(1)) {
                    if e.0.len() <= i {
                        e.0.resize(i + 1, 0);
                    }
                    e.0[i] += 1;
                }
            }
            ClientState::Pending => e.1[0] += 1,
            ClientState::Undelivered => e.1[1] += 1,
            ClientState::Delta | ClientState::Current => e.1[2] += 1,
            ClientState::Disconnected => e.1[3] += 1,
            ClientState::Failed => e.1[4] += 1,
        }
        e.1[5] += 1;
        let recent = c
            .completed_at
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t >= minute_ago);
        if recent && c.state.is_complete() {
            last_minute += 1;
        }
    }
    let mut t = String::new();
    let step = match &state.current {
        Some(s) => format!("step {} ({})", state.step + 1, s.kind().name()),
        None if state.finished_at.is_some() => "finished".to_owned(),
        None => format!("step {} not begun", state.step + 1),
    };
    t.push_str(&format!(
        "run {id}: {} — {} {} — {} — {step}\n\n",
        row.name,
        row.artifact,
        row.version,
        serde_json::to_string(&row.status)?.trim_matches('"'),
    ));
    let mut head = format!("{:<16}", "relay");
    for r in 1..=rounds.max(1) {
        head.push_str(&format!(" {:>8}", format!("round {r}")));
    }
    head.push_str(&format!(
        " {:>8} {:>11} {:>9} {:>5} {:>6} {:>6}\n",
        "pending", "undelivered", "delta/had", "cut", "failed", "total"
    ));
    t.push_str(&head);
    let mut sum = (vec![0u64; rounds.max(1)], [0u64; 6]);
    for (relay, (by_round, rest)) in &table {
        let mut line = format!("{relay:<16}");
        for r in 0..rounds.max(1) {
            let n = by_round.get(r).copied().unwrap_or(0);
            sum.0[r] += n;
            line.push_str(&format!(" {n:>8}"));
        }
        for (i, n) in rest.iter().enumerate() {
            sum.1[i] += n;
        }
        line.push_str(&format!(
            " {:>8} {:>11} {:>9} {:>5} {:>6} {:>6}\n",
            rest[0], rest[1], rest[2], rest[3], rest[4], rest[5]
        ));
        t.push_str(&line);
    }
    let mut line = format!("{:<16}", "all");
    for n in &sum.0 {
        line.push_str(&format!(" {n:>8}"));
    }
    line.push_str(&format!(
        " {:>8} {:>11} {:>9} {:>5} {:>6} {:>6}\n",
        sum.1[0], sum.1[1], sum.1[2], sum.1[3], sum.1[4], sum.1[5]
    ));
    t.push_str(&line);
    t.push_str(&format!("\ncompletions in the last minute: {last_minute}"));
    if let Some(w) = row
        .next_wake
        .as_deref()
        .and_then(|w| w.parse::<jiff::Timestamp>().ok())
    {
        let secs = w.duration_since(now).as_secs();
        let what = if matches!(
            state.current.as_ref().map(|s| s.kind().name()),
            Some("broadcast")
        ) {
            "next round"
        } else {
            "next step"
        };
        if secs >= -5 {
            t.push_str(&format!(" · {what} in {} s ({w})", secs.max(0)));
        } else {
            t.push_str(&format!(
                " · {what} overdue by {} s: is the driver (haifu master, or haifu run) running?",
                -secs
            ));
        }
    }
    t.push('\n');
    Ok(LiveView {
        text: t,
        running: row.status == haifu_ledger::RunStatus::Running,
    })
}
