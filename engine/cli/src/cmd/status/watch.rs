//! `haifu status --watch [RUN]`: the frames of [`super::view`], drawn from
//! the ledger every interval until every run shown has ended (or Ctrl-C,
//! which ends the process: nothing here needs undoing). On a terminal the
//! screen is cleared before each frame; into a pipe or a file each frame
//! follows the last, so a log of the watch reads as a history.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use haifu_ledger::{Ledger, RunRow, RunStatus};
use haifu_runtime::machine::RunState;
use jiff::Timestamp;

use super::view::{RunFacts, frame, relay_table, run_block};

/// Draws a frame every `every` until the runs shown have ended: RUN
/// alone, or every run running now or shown before (a run that ends
/// stays, showing how it ended, and a run started meanwhile joins).
pub(super) fn watch(ledger: &Ledger, run: Option<i64>, every: Duration) -> Result<ExitCode> {
    let tty = std::io::stdout().is_terminal();
    let mut shown = BTreeSet::new();
    loop {
        let now = Timestamp::now();
        let (text, running) = match run {
            Some(id) => one(ledger, id, now)?,
            None => all(ledger, &mut shown, now)?,
        };
        let mut out = std::io::stdout().lock();
        if tty {
            // Home the cursor and clear: the view redraws in place.
            write!(out, "\x1b[H\x1b[2J")?;
        } else {
            writeln!(out, "--- {now}")?;
        }
        write!(out, "{text}")?;
        out.flush()?;
        drop(out);
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(every);
    }
}

/// What the ledger says of `row`'s run.
fn facts(ledger: &Ledger, row: RunRow) -> Result<RunFacts> {
    let state = RunState::of_run(&row)?;
    let failure = ledger.failure(row.id)?;
    Ok(RunFacts {
        row,
        state,
        failure,
    })
}

/// Run `id`'s block and its clients per relay; whether it still runs.
fn one(ledger: &Ledger, id: i64, now: Timestamp) -> Result<(String, bool)> {
    let row = ledger
        .run(id)?
        .with_context(|| format!("run {id} does not exist"))?;
    let run = facts(ledger, row)?;
    let clients = ledger.run_clients(id)?;
    let text = format!(
        "{}\n{}",
        run_block(&run, now),
        relay_table(&run.state, &clients, now)
    );
    Ok((text, run.row.status == RunStatus::Running))
}

/// Every run running now or in `shown`, oldest first (and added to
/// `shown`); whether any still runs.
fn all(ledger: &Ledger, shown: &mut BTreeSet<i64>, now: Timestamp) -> Result<(String, bool)> {
    let mut runs = Vec::new();
    for row in ledger.runs()? {
        if row.status == RunStatus::Running || shown.contains(&row.id) {
            shown.insert(row.id);
            runs.push(facts(ledger, row)?);
        }
    }
    runs.sort_by_key(|r| r.row.id);
    let running = runs.iter().any(|r| r.row.status == RunStatus::Running);
    Ok((frame(&runs, now), running))
}
