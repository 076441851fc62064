//! The demo's report: one JSON object, or text for people.

use std::fmt::Write as _;
use std::path::PathBuf;

use haifu_ledger::RunAudit;
use serde::Serialize;

use super::Plan;
use super::fleet::Role;
use crate::output::bytes;

/// One question to the master's HTTP gate and its answer.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Gate {
    pub client: String,
    /// When it was asked, in the demo's story.
    pub when: String,
    /// The version the client ran then.
    pub version: String,
    pub service: String,
    pub allow: bool,
    pub reason: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Disconnected {
    pub client: String,
    pub reason: String,
}

/// A client whose new version failed after install, as the master
/// recorded it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Failed {
    pub client: String,
    /// `post-install`, `health` or `rolled-back`.
    pub kind: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub run: i64,
    pub clients: u32,
    pub relays: u32,
    pub loss_pct: f64,
    pub seed: u64,
    /// Clients delivered in each round (index 0 is round 1).
    pub delivered_by_round: Vec<usize>,
    pub delivered_by_delta: usize,
    pub delivered_full_copy: usize,
    pub disconnected: usize,
    /// Clients whose new version failed after install (reported by them,
    /// recorded by the master, never cut off).
    pub failed: usize,
    /// Clients that ended neither delivered, failed nor disconnected (0
    /// when the method held).
    pub undelivered: usize,
    pub artifact_bytes: u64,
    /// Every byte the relays multicast, all rounds.
    pub multicast_bytes: u64,
    pub multicast_by_round: Vec<u64>,
    /// Every unicast byte: relay fetches, deltas, full copies.
    pub unicast_bytes: u64,
    pub fetch_bytes: u64,
    pub delta_bytes: u64,
    /// Deltas sent.
    pub deltas_sent: u64,
    pub full_bytes: u64,
    /// What unicast alone would have cost: the artifact to every client.
    pub unicast_only_bytes: u64,
    pub disconnected_clients: Vec<Disconnected>,
    pub failed_clients: Vec<Failed>,
    pub stragglers: Vec<String>,
    pub broken: Vec<String>,
    pub gate: Vec<Gate>,
    /// Anything that did not hold (every updated install is checked byte
    /// for byte); empty on success.
    pub problems: Vec<String>,
    /// `--stages`: each stage as `haifu audit` shows it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<crate::cmd::stage_view::StageView>,
    /// `--stages`: the pause on the canary's failure and what was on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<super::stages::Paused>,
    pub elapsed_secs: f64,
    /// The demo's folder, when kept.
    pub folder: Option<PathBuf>,
}

/// Clients delivered in each round sent, all relays together.
pub(super) fn delivered_by_round(a: &RunAudit) -> Vec<usize> {
    let rounds = a
        .relays
        .iter()
        .map(|r| r.delivered_by_round.len())
        .chain([a.traffic.multicast_by_round.len()])
        .max()
        .unwrap_or(0);
    (0..rounds)
        .map(|i| {
            a.relays
                .iter()
                .map(|r| r.delivered_by_round.get(i).map_or(0, Vec::len))
                .sum()
        })
        .collect()
}

impl Report {
    pub(super) fn new(
        plan: &Plan,
        run: i64,
        a: &RunAudit,
        gate: Vec<Gate>,
        artifact_bytes: u64,
        mut problems: Vec<String>,
    ) -> Self {
        let sum = |f: &dyn Fn(&haifu_ledger::RelayAudit) -> usize| -> usize {
            a.relays.iter().map(f).sum()
        };
        let by_delta = sum(&|r| r.delta.len());
        let current = sum(&|r| r.current.len());
        let undelivered = sum(&|r| r.undelivered.len() + r.pending.len());
        if undelivered > 0 {
            problems.push(format!(
                "{undelivered} client(s) ended neither delivered, failed nor disconnected"
            ));
        }
        if current > 0 {
            problems.push(format!(
                "{current} client(s) already had 2.4.0 before the run"
            ));
        }
        // A straggler cut off never got to show its delta: the machine was
        // slower than the demo's timeline.
        let cut: Vec<&str> = a
            .relays
            .iter()
            .flat_map(|r| &r.disconnected)
            .map(|(c, _)| c.as_str())
            .filter(|c| plan.with(Role::Straggler).contains(c))
            .collect();
        if !cut.is_empty() {
            problems.push(format!(
                "straggler(s) {} were cut off before taking their delta: this machine is slower than the demo's timeline; run it again with a longer --deadline",
                cut.join(", ")
            ));
        }
        let t = &a.traffic;
        Self {
            run,
            clients: plan.clients,
            relays: plan.relays,
            loss_pct: plan.loss,
            seed: plan.seed,
            delivered_by_round: delivered_by_round(a),
            // A straggler's copy is a delta unless the master chose the
            // full artifact (counted apart).
            delivered_by_delta: by_delta.saturating_sub(t.fulls as usize),
            delivered_full_copy: t.fulls as usize,
            disconnected: sum(&|r| r.disconnected.len()),
            failed: sum(&|r| r.failed.len()),
            undelivered,
            artifact_bytes,
            multicast_bytes: t.multicast_bytes,
            multicast_by_round: t.multicast_by_round.clone(),
            unicast_bytes: t.unicast_bytes(),
            fetch_bytes: t.fetch_bytes,
            delta_bytes: t.delta_bytes,
            deltas_sent: t.deltas,
            full_bytes: t.full_bytes,
            unicast_only_bytes: artifact_bytes * u64::from(plan.clients),
            disconnected_clients: a
                .relays
                .iter()
                .flat_map(|r| &r.disconnected)
                .map(|(c, why)| Disconnected {
                    client: c.clone(),
                    reason: why.clone(),
                })
                .collect(),
            failed_clients: a
                .relays
                .iter()
                .flat_map(|r| &r.failed)
                .map(|f| Failed {
                    client: f.client.clone(),
                    kind: f.kind.as_str().to_owned(),
                    reason: f.reason.clone(),
                })
                .collect(),
            stragglers: plan
                .with(Role::Straggler)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            broken: plan
                .with(Role::FailingCheck)
                .into_iter()
                .chain(plan.with(Role::NeverBack))
                .map(str::to_owned)
                .collect(),
            gate,
            problems,
            stages: Vec::new(),
            paused: None,
            elapsed_secs: 0.0,
            folder: None,
        }
    }

    pub(super) fn to_text(&self) -> String {
        let mut s = String::new();
        let pct = |n: u64| {
            if self.artifact_bytes == 0 {
                0.0
            } else {
                n as f64 * 100.0 / self.artifact_bytes as f64
            }
        };
        let _ = writeln!(
            s,
            "\nhaifu demo: run {} — pos-app 2.3.0 -> 2.4.0, {} clients behind {} relays, {}% datagram loss",
            self.run, self.clients, self.relays, self.loss_pct
        );
        let _ = writeln!(s, "\ndelivered");
        for (i, n) in self.delivered_by_round.iter().enumerate() {
            let _ = writeln!(s, "  round {:<2}          {n:>4}", i + 1);
        }
        if !self.stragglers.is_empty() || self.delivered_by_delta > 0 {
            let _ = writeln!(
                s,
                "  by delta          {:>4}  (stragglers: {})",
                self.delivered_by_delta,
                self.stragglers.join(", ")
            );
        }
        if self.delivered_full_copy > 0 {
            let _ = writeln!(s, "  by full copy      {:>4}", self.delivered_full_copy);
        }
        let _ = writeln!(s, "  disconnected      {:>4}", self.disconnected);
        for d in &self.disconnected_clients {
            let _ = writeln!(s, "    {}: {}", d.client, d.reason);
        }
        let _ = writeln!(s, "  failed            {:>4}", self.failed);
        for f in &self.failed_clients {
            let _ = writeln!(s, "    {}: {}: {}", f.client, f.kind, f.reason);
        }
        let _ = writeln!(s, "  neither           {:>4}", self.undelivered);
        let _ = writeln!(
            s,
            "\nbytes on the wire (artifact {})",
            bytes(self.artifact_bytes)
        );
        let rounds: Vec<String> = self
            .multicast_by_round
            .iter()
            .map(|b| {
                format!(
                    "{:.3}x",
                    *b as f64 / f64::from(self.relays.max(1)) / self.artifact_bytes.max(1) as f64
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "  multicast     {:>10}  each relay's rounds: {} the artifact",
            bytes(self.multicast_bytes),
            rounds.join(", ")
        );
        let _ = writeln!(
            s,
            "  unicast       {:>10}  relay fetches {}, {} delta(s) {} ({:.1}% of the artifact each), full copies {}",
            bytes(self.unicast_bytes),
            bytes(self.fetch_bytes),
            self.deltas_sent,
            bytes(self.delta_bytes),
            if self.deltas_sent == 0 {
                0.0
            } else {
                pct(self.delta_bytes) / self.deltas_sent as f64
            },
            bytes(self.full_bytes)
        );
        let total = self.multicast_bytes + self.unicast_bytes;
        let _ = writeln!(
            s,
            "  total         {:>10}  vs {} to send the artifact to every client by unicast ({:.2}x)",
            bytes(total),
            bytes(self.unicast_only_bytes),
            total as f64 / self.unicast_only_bytes.max(1) as f64
        );
        if !self.stages.is_empty() {
            let _ = write!(
                s,
                "\n{}",
                crate::cmd::stage_view::render(&self.stages, usize::MAX)
            );
        }
        if let Some(p) = &self.paused {
            let _ = writeln!(
                s,
                "\npaused after stage {} by {}: {}",
                p.after_stage, p.by, p.reason
            );
            for f in &p.failed {
                let _ = writeln!(s, "  {}: {}: {}", f.client, f.kind, f.reason);
            }
            let _ = writeln!(
                s,
                "  later stages on disk then: {} client(s) still on 2.3.0, {} on anything else",
                p.later_stages_on_old.len(),
                p.later_stages_installed.len()
            );
            let _ = writeln!(
                s,
                "  the operator wrote the fix, readmitted the failed client(s) and resumed the run"
            );
            let _ = writeln!(
                s,
                "  at the end: {} of {} clients on 2.4.0 on disk",
                p.ended_on_new.len(),
                self.clients
            );
        }
        if self.gate.is_empty() {
            return self.finish(s);
        }
        let _ = writeln!(
            s,
            "\nservice gate ({})",
            self.gate.first().map_or("", |g| g.service.as_str())
        );
        for g in &self.gate {
            let _ = writeln!(
                s,
                "  {:<10} {:<24} on {:<6} -> {}: {}",
                g.client,
                g.when,
                g.version,
                if g.allow { "allow" } else { "deny" },
                g.reason
            );
        }
        if let Some(g) = self.gate.first() {
            let _ = writeln!(
                s,
                "  (asked as: curl -H 'Authorization: Bearer $TOKEN' '{}', with the demo's read token)",
                g.url
            );
        }
        self.finish(s)
    }

    /// The report's last lines: time, folder, problems.
    fn finish(&self, mut s: String) -> String {
        let _ = writeln!(s, "\nfinished in {:.1} s", self.elapsed_secs);
        if let Some(dir) = &self.folder {
            let _ = writeln!(s, "folder kept: {}", dir.display());
        }
        if self.problems.is_empty() {
            let _ = writeln!(
                s,
                "every client ended delivered, failed or disconnected; every updated install matches 2.4.0 byte for byte"
            );
        } else {
            for p in &self.problems {
                let _ = writeln!(s, "PROBLEM: {p}");
            }
        }
        s
    }
}
