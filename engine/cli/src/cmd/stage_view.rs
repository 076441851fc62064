//! What `haifu audit` and `haifu status` show of a staged run: per stage
//! its counts from the ledger and the advance policy's decisions (the
//! driver's `stage-started` and `stage-decided` events), and the stage a
//! run is in now.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use haifu_ledger::{Ledger, StageEvent};
use haifu_runtime::machine::RunState;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// One stage of a run, as the audit shows it.
#[derive(Debug, Serialize)]
pub(crate) struct StageView {
    /// From 1.
    pub(crate) stage: u64,
    pub(crate) name: String,
    pub(crate) gate: String,
    pub(crate) started: Option<String>,
    pub(crate) targeted: u64,
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    pub(crate) pending: u64,
    /// Failed clients by kind.
    pub(crate) failures: BTreeMap<String, u64>,
    /// The advance policy's decisions, oldest first.
    pub(crate) decisions: Vec<Decision>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Decision {
    pub(crate) at: String,
    pub(crate) decide: String,
    pub(crate) reason: String,
}

fn text(v: &serde_json::Value, key: &str) -> String {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn stage_of(e: &StageEvent) -> Option<u64> {
    e.detail.get("stage").and_then(serde_json::Value::as_u64)
}

/// The run's stages (none for an unstaged run).
pub(crate) fn stages(ledger: &Ledger, run: i64) -> Result<Vec<StageView>> {
    let tallies = ledger.stage_tallies(run)?;
    let events = ledger.stage_events(run)?;
    let mut out: Vec<StageView> = tallies
        .iter()
        .enumerate()
        .map(|(i, t)| StageView {
            stage: i as u64 + 1,
            name: String::new(),
            gate: String::new(),
            started: None,
            targeted: t.targeted,
            delivered: t.delivered,
            failed: t.failed(),
            pending: t.pending,
            failures: t.failures.clone(),
            decisions: Vec::new(),
        })
        .collect();
    for e in &events {
        let Some(view) = stage_of(e)
            .and_then(|s| usize::try_from(s).ok()?.checked_sub(1))
            .and_then(|i| out.get_mut(i))
        else {
            continue;
        };
        match e.kind.as_str() {
            "stage-started" => {
                view.name = text(&e.detail, "name");
                view.gate = text(&e.detail, "gate");
                view.started = Some(text(&e.detail, "at"));
            }
            _ => view.decisions.push(Decision {
                at: text(&e.detail, "at"),
                decide: text(&e.detail, "decide"),
                reason: text(&e.detail, "reason"),
            }),
        }
    }
    Ok(out)
}

/// Prints the audit's stage section, with each stage's last `shown`
/// decisions.
pub(crate) fn print(stages: &[StageView], shown: usize) {
    print!("{}", render(stages, shown));
}

/// The audit's stage section as text (`haifu demo --stages` prints it in
/// its report too).
pub(crate) fn render(stages: &[StageView], shown: usize) -> String {
    let mut out = String::new();
    if stages.is_empty() {
        return out;
    }
    let _ = writeln!(out, "stages ({})", stages.len());
    for s in stages {
        let started = s
            .started
            .as_deref()
            .map_or("not started".to_owned(), |at| format!("started {at}"));
        let _ = writeln!(
            out,
            "  stage {} {:<12} targeted {:>6}  delivered {:>6}  failed {:>6}  pending {:>6}  {started}",
            s.stage, s.name, s.targeted, s.delivered, s.failed, s.pending
        );
        if !s.gate.is_empty() {
            let _ = writeln!(out, "    gate: {}", s.gate);
        }
        for (kind, n) in &s.failures {
            let _ = writeln!(out, "    failed {kind}: {n}");
        }
        let earlier = s.decisions.len().saturating_sub(shown);
        if earlier > 0 {
            let _ = writeln!(out, "    … {earlier} earlier decisions");
        }
        for d in &s.decisions[earlier..] {
            let _ = writeln!(out, "    {} {}: {}", d.at, d.decide, d.reason);
        }
    }
    out
}

/// The line `haifu status RUN` shows for a staged run in its broadcast:
/// the stage, its gate, and the soak's countdown at `now`.
pub(crate) fn status_line(
    ledger: &Ledger,
    run: i64,
    state: &RunState,
    now: Timestamp,
) -> Result<Option<String>> {
    let Some(progress) = state.current_stage() else {
        return Ok(None);
    };
    let index = u64::from(progress.index) + 1;
    let events = ledger.stage_events(run)?;
    let started = events
        .iter()
        .rev()
        .find(|e| e.kind == "stage-started" && stage_of(e) == Some(index));
    let Some(started) = started else {
        return Ok(Some(format!("  stage {index}: not started yet")));
    };
    let d = &started.detail;
    let of = d
        .get("stages")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let clients = d
        .get("clients")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let mut line = format!(
        "  stage {index} of {of} ({}): {clients} clients; gate: {}",
        text(d, "name"),
        text(d, "gate")
    );
    match state.soaking_until() {
        Some(until) if until > now => {
            let left = SignedDuration::from_secs(until.duration_since(now).as_secs());
            line.push_str(&format!("; soaking, {left:#} left (until {until})"));
        }
        Some(_) => line.push_str("; soak over, the advance policy decides next"),
        None if progress.broadcast_over.is_none() => line.push_str("; broadcasting"),
        None => line.push_str("; the advance policy decides"),
    }
    Ok(Some(line))
}
