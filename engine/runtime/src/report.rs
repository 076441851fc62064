//! The outcome of a run, summed up for operators: who finished in which
//! round, by delta, who was cut off, and when each thing happened.

use haifu_ledger::{Ledger, LedgerError, RunAudit};
use serde::Serialize;

use crate::machine::{RunState, SnapshotError};

/// A run's outcome. `delivered_by_round[i]` counts clients that completed in
/// round `i + 1`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run.
    pub run: i64,
    /// Running, done or failed.
    pub status: String,
    /// Targeted clients.
    pub clients: u64,
    /// Completions per round.
    pub delivered_by_round: Vec<u64>,
    /// Completions by delta.
    pub delivered_by_delta: u64,
    /// Clients that already had the version when they reported in.
    pub already_current: u64,
    /// Clients cut off.
    pub disconnected: u64,
    /// Clients that never completed and were kept connected.
    pub undelivered: u64,
    /// Clients not yet audited.
    pub pending: u64,
    /// When each round started.
    pub rounds_started: Vec<String>,
    /// Why broadcasting stopped before the planned rounds, if it did.
    pub stopped_early: Option<String>,
    /// When the audit listed the stragglers.
    pub audited_at: Option<String>,
    /// When the run finished.
    pub finished_at: Option<String>,
    /// Per relay, the same counts.
    pub relays: Vec<RelayCounts>,
}

/// One relay's counts.
#[derive(Debug, Clone, Serialize)]
pub struct RelayCounts {
    /// Relay name.
    pub relay: String,
    /// Completions per round.
    pub delivered_by_round: Vec<u64>,
    /// Completions by delta.
    pub delivered_by_delta: u64,
    /// Clients cut off.
    pub disconnected: u64,
    /// Clients never completed, kept connected.
    pub undelivered: u64,
}

/// A report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The run's snapshot does not read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl Report {
    /// The report of run `id`, from the ledger alone.
    pub fn from_ledger(ledger: &Ledger, id: i64) -> Result<Option<Self>, ReportError> {
        ledger
            .audit(id)?
            .map(|a| Self::from_audit(&a))
            .transpose()
            .map_err(ReportError::from)
    }

    /// The report of an audit.
    pub fn from_audit(audit: &RunAudit) -> Result<Self, SnapshotError> {
        let state = RunState::of_run(&audit.run)?;
        let rounds_started = state.rounds_started();
        let rounds = rounds_started.len();
        let mut relays = Vec::new();
        let mut by_round = vec![0u64; rounds];
        let (mut delta, mut cut, mut undelivered, mut pending, mut current) = (0, 0, 0, 0, 0);
        for r in &audit.relays {
            let mut rb = vec![0u64; rounds.max(r.delivered_by_round.len())];
            for (i, clients) in r.delivered_by_round.iter().enumerate() {
                rb[i] = clients.len() as u64;
            }
            if by_round.len() < rb.len() {
                by_round.resize(rb.len(), 0);
            }
            for (i, n) in rb.iter().enumerate() {
                by_round[i] += n;
            }
            delta += r.delta.len() as u64;
            current += r.current.len() as u64;
            cut += r.disconnected.len() as u64;
            undelivered += r.undelivered.len() as u64;
            pending += r.pending.len() as u64;
            relays.push(RelayCounts {
                relay: r.relay.clone(),
                delivered_by_round: rb,
                delivered_by_delta: r.delta.len() as u64,
                disconnected: r.disconnected.len() as u64,
                undelivered: r.undelivered.len() as u64,
            });
        }
        Ok(Self {
            run: audit.run.id,
            status: serde_json::to_value(audit.run.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            clients: audit.run.counts.values().sum(),
            delivered_by_round: by_round,
            delivered_by_delta: delta,
            already_current: current,
            disconnected: cut,
            undelivered,
            pending,
            rounds_started: rounds_started.iter().map(ToString::to_string).collect(),
            stopped_early: state.stopped_early(),
            audited_at: state.audited_at().map(|t| t.to_string()),
            finished_at: state.finished_at.map(|t| t.to_string()),
            relays,
        })
    }

    /// A readable summary, several lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let pct = |n: u64| {
            if self.clients == 0 {
                0.0
            } else {
                n as f64 * 100.0 / self.clients as f64
            }
        };
        out.push_str(&format!(
            "run {} ({}): {} clients\n",
            self.run, self.status, self.clients
        ));
        for (i, n) in self.delivered_by_round.iter().enumerate() {
            let at = self
                .rounds_started
                .get(i)
                .map(String::as_str)
                .unwrap_or("-");
            out.push_str(&format!(
                "  round {:<2} at {:<28} delivered {:>8} ({:5.1}%)\n",
                i + 1,
                at,
                n,
                pct(*n)
            ));
        }
        if let Some(why) = &self.stopped_early {
            out.push_str(&format!("  rounds stopped early: {why}\n"));
        }
        out.push_str(&format!(
            "  by delta                                 delivered {:>8} ({:5.1}%)\n",
            self.delivered_by_delta,
            pct(self.delivered_by_delta)
        ));
        if self.already_current > 0 {
            out.push_str(&format!(
                "  already had the version                          {:>8} ({:5.1}%)\n",
                self.already_current,
                pct(self.already_current)
            ));
        }
        out.push_str(&format!(
            "  disconnected {:>8} ({:5.1}%)   undelivered, kept {:>8} ({:5.1}%)\n",
            self.disconnected,
            pct(self.disconnected),
            self.undelivered,
            pct(self.undelivered)
        ));
        if self.pending > 0 {
            out.push_str(&format!("  not yet audited {:>8}\n", self.pending));
        }
        if let Some(at) = &self.audited_at {
            out.push_str(&format!("  audit at {at}\n"));
        }
        if let Some(at) = &self.finished_at {
            out.push_str(&format!("  finished at {at}\n"));
        }
        out
    }
}
