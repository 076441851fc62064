//! What `haifu status --watch` draws, as pure functions of what the ledger
//! says of a run (its row, its machine's snapshot, its failure) and of
//! `now`: no clock, no terminal and no ledger here, so a frame can be
//! checked with a fixed `now`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use haifu_ledger::{ClientState, RunClient, RunRow, RunStatus};
use haifu_runtime::machine::RunState;
use haifu_spec::steps::broadcast::Phase;
use haifu_spec::steps::machine::StepState;
use jiff::Timestamp;

/// A run as the watch shows it: what the ledger says of it.
#[derive(Debug)]
pub(crate) struct RunFacts {
    /// Its row.
    pub(crate) row: RunRow,
    /// Its machine's snapshot.
    pub(crate) state: RunState,
    /// Why it failed, if it did (an abort's "aborted by WHO: WHY").
    pub(crate) failure: Option<String>,
}

/// A countdown past its instant by more than this is called overdue: the
/// driver should have woken.
const OVERDUE_SECS: i64 = 5;

/// The block of one run: its heading (status, step), then for a running
/// run what it waits for, who has it, and whether an operator paused it;
/// for an ended one how it ended.
pub(crate) fn run_block(run: &RunFacts, now: Timestamp) -> String {
    let (row, state) = (&run.row, &run.state);
    let mut t = String::new();
    let status = match (row.status, &row.paused) {
        (RunStatus::Running, Some(_)) => "PAUSED",
        (s, _) => s.as_str(),
    };
    let _ = writeln!(
        t,
        "run {}  {}  {} {}  {status}  {}",
        row.id,
        row.name,
        row.artifact,
        row.version,
        step_name(state)
    );
    if let Some(line) = stage_line(row) {
        let _ = writeln!(t, "  {line}");
    }
    if row.status == RunStatus::Running {
        if let Some(line) = waiting_for(row, state, now) {
            let _ = writeln!(t, "  {line}");
        }
    } else if let Some(why) = &run.failure {
        let _ = writeln!(t, "  failed: {why}");
    }
    let _ = writeln!(t, "  {}", delivered_line(row));
    if let (RunStatus::Running, Some(p)) = (row.status, &row.paused) {
        let why = p
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            t,
            "  PAUSED by {} at {}{why} (haifu run resume {})",
            p.by, p.at, row.id
        );
    }
    t
}

/// Where a phased rollout's stage goes (which stage, its gate, the time
/// left in its soak) once runs carry stages; nothing until then.
fn stage_line(_row: &RunRow) -> Option<String> {
    None
}

/// "step 2 (broadcast)", "finished", "step 1 not begun".
fn step_name(state: &RunState) -> String {
    match &state.current {
        Some(s) => format!("step {} ({})", state.step + 1, s.kind().name()),
        None if state.finished_at.is_some() => "finished".to_owned(),
        None => format!("step {} not begun", state.step + 1),
    }
}

/// What the running run is doing or waits for: the round on air, the
/// countdown to the next round, the delta window's end or the deadline.
fn waiting_for(row: &RunRow, state: &RunState, now: Timestamp) -> Option<String> {
    let wake = row
        .next_wake
        .as_deref()
        .and_then(|w| w.parse::<Timestamp>().ok());
    let line = match state.current.as_ref()? {
        StepState::Broadcast(b) => match &b.phase {
            Phase::Ready => "broadcast not begun".to_owned(),
            Phase::Waiting { at } => {
                let next = b.started.len() + 1;
                countdown(&format!("round {next}"), *at, now, row)
            }
            Phase::RoundOpen { round } => match b.started.last() {
                Some(since) => format!(
                    "round {round} on air for {} (since {since})",
                    span(now.duration_since(*since).as_secs())
                ),
                None => format!("round {round} on air"),
            },
            Phase::Deciding { round } => {
                format!("round {round} over; the retry policy decides what follows")
            }
            Phase::Done => "rounds over".to_owned(),
        },
        StepState::Delta(d) => match d.until {
            Some(until) => countdown("delta window ends", until, now, row),
            None => "delta window opening".to_owned(),
        },
        StepState::Disconnect(_) => match wake {
            Some(at) => countdown("deadline (cut-off)", at, now, row),
            None => "cutting off stragglers".to_owned(),
        },
        StepState::Register(_) => "registering the artifact".to_owned(),
        StepState::Audit(_) => "auditing: waiting for completions in flight".to_owned(),
    };
    Some(line)
}

/// "WHAT in 1 min 05 s (at T)", or overdue (waiting for the resume when
/// paused; else a hint that nothing drives the run).
fn countdown(what: &str, at: Timestamp, now: Timestamp, row: &RunRow) -> String {
    let left = at.duration_since(now).as_secs();
    if left >= -OVERDUE_SECS {
        return format!("{what} in {} (at {at})", span(left.max(0)));
    }
    if row.paused.is_some() {
        format!("{what} was due {} ago; waits for the resume", span(-left))
    } else {
        format!(
            "{what} overdue by {}: is the driver (haifu master, or haifu run) running?",
            span(-left)
        )
    }
}

/// "delivered 41 of 50 · pending 5 · undelivered 4 · cut off 0": a client
/// has the version once delivered in a round, by a delta, or already
/// current.
fn delivered_line(row: &RunRow) -> String {
    let n = |k: &str| row.counts.get(k).copied().unwrap_or(0);
    let total: u64 = row.counts.values().sum();
    let have = n("delivered") + n("delta") + n("current");
    format!(
        "delivered {have} of {total} · pending {} · undelivered {} · cut off {}{}",
        n("pending"),
        n("undelivered"),
        n("disconnected"),
        match n("failed") {
            0 => String::new(),
            f => format!(" · failed {f}"),
        }
    )
}

/// Seconds as "45 s", "3 min 05 s" or "2 h 03 min".
fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// One run's clients per relay: done in each round, then pending,
/// undelivered, by delta or already current, cut off and total, with a
/// line for all relays; then the completions in the minute before `now`.
/// Columns only for the rounds that can exist: a stored number never
/// sizes anything (a row with an impossible round shows in no column).
pub(crate) fn relay_table(state: &RunState, clients: &[RunClient], now: Timestamp) -> String {
    let rounds = state
        .rounds_started()
        .len()
        .max(
            clients
                .iter()
                .filter_map(|c| c.round.and_then(haifu_core::round_index))
                .max()
                .map_or(0, |i| i + 1),
        )
        .max(1);
    let mut table: BTreeMap<&str, (Vec<u64>, [u64; 6])> = BTreeMap::new();
    let minute_ago = now - jiff::SignedDuration::from_secs(60);
    let mut last_minute = 0u64;
    for c in clients {
        let e = table
            .entry(c.relay.as_str())
            .or_insert_with(|| (vec![0; rounds], [0; 6]));
        match c.state {
            ClientState::Delivered => {
                if let Some(n) =
                    haifu_core::round_index(c.round.unwrap_or(1)).and_then(|i| e.0.get_mut(i))
                {
                    *n += 1;
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
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| t >= minute_ago && t <= now);
        if recent && c.state.is_complete() {
            last_minute += 1;
        }
    }
    let mut t = format!("{:<16}", "relay");
    for r in 1..=rounds {
        let _ = write!(t, " {:>8}", format!("round {r}"));
    }
    let _ = writeln!(
        t,
        " {:>8} {:>11} {:>9} {:>5} {:>6} {:>6}",
        "pending", "undelivered", "delta/had", "cut", "failed", "total"
    );
    let mut sum = (vec![0u64; rounds], [0u64; 6]);
    let line = |t: &mut String, name: &str, by_round: &[u64], rest: &[u64; 6]| {
        let _ = write!(t, "{name:<16}");
        for n in by_round {
            let _ = write!(t, " {n:>8}");
        }
        let _ = writeln!(
            t,
            " {:>8} {:>11} {:>9} {:>5} {:>6} {:>6}",
            rest[0], rest[1], rest[2], rest[3], rest[4], rest[5]
        );
    };
    for (relay, (by_round, rest)) in &table {
        line(&mut t, relay, by_round, rest);
        for (s, n) in sum.0.iter_mut().zip(by_round) {
            *s += n;
        }
        for (s, n) in sum.1.iter_mut().zip(rest) {
            *s += n;
        }
    }
    line(&mut t, "all", &sum.0, &sum.1);
    let _ = writeln!(t, "completions in the last minute: {last_minute}");
    t
}

/// A whole frame: each run's block, a blank line between them.
pub(crate) fn frame(runs: &[RunFacts], now: Timestamp) -> String {
    if runs.is_empty() {
        return "no run is running\n".to_owned();
    }
    let blocks: Vec<String> = runs.iter().map(|r| run_block(r, now)).collect();
    blocks.join("\n")
}

#[cfg(test)]
mod tests;
