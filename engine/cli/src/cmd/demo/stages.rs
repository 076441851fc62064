//! `haifu demo --stages`: the demo's fleet rolled out in stages. A canary
//! client's check refuses the new version, the advance policy pauses the
//! run before any later stage starts, and the demo plays the operator
//! through the same CLI an operator uses (`haifu fleet readmit`, `haifu
//! run resume`), as separate processes of this binary.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use haifu_ledger::RunStatus;
use serde::Serialize;

use super::fleet::{FIX, Fleet, NEW, OLD, Role};
use super::report::Report;
use super::{Args, Plan};
use crate::cmd::stage_view;

/// The workflow's `stages:`: seconds-long soaks so the story fits in well
/// under a minute; no failure allowed in the canary.
const STAGES: &str = "  - name: canary\n    relays: [relay-1]\n    gate: {soak: 3s, max_failures: 0}\n\
                      \x20 - name: half\n    percent: 50\n    gate: {soak: 2s, max_failures: 0}\n\
                      \x20 - name: rest\n    percent: 100\n";

/// How the run paused and what the demo saw on disk then.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Paused {
    /// The stage it paused after, from 1.
    pub after_stage: u64,
    /// Who paused it, as the ledger records it (`advance policy`).
    pub by: String,
    pub reason: String,
    /// The failed clients with their reasons when it paused.
    pub failed: Vec<super::report::Failed>,
    /// The clients of the later stages, each checked on disk to still run
    /// the old version while the run was paused.
    pub later_stages_on_old: Vec<String>,
    /// Later-stage clients found on anything but the old version (empty
    /// when the gate held).
    pub later_stages_installed: Vec<String>,
    /// Every client whose install held the new version when the run
    /// ended, checked on disk.
    pub ended_on_new: Vec<String>,
}

/// Runs `haifu ARGS` against the demo's home, as an operator would.
fn operator(f: &Fleet, args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the haifu binary")?;
    let out = Command::new(exe)
        .args(args)
        .env("HAIFU_HOME", &f.home)
        .output()
        .with_context(|| format!("cannot run haifu {}", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("haifu {} failed: {}", args.join(" "), text.trim());
    }
    Ok(text.trim().to_owned())
}

/// Which client installs hold the old version, and which do not.
fn on_disk(f: &Fleet, clients: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut old = Vec::new();
    let mut other = Vec::new();
    for id in clients {
        let root = f.dir.join(format!("{id}-root"));
        let (_, digest) = haifu_install::digest_of(&root.join("current").join("artifact"))
            .with_context(|| format!("{id}'s install"))?;
        if digest == f.old_digest {
            old.push(id.clone());
        } else {
            other.push(id.clone());
        }
    }
    Ok((old, other))
}

/// The staged demo from set-up to report; the processes stop when it
/// returns.
pub(super) fn drive(
    plan: &Plan,
    args: &Args,
    dir: &Path,
    say: &dyn Fn(String),
    stop: &haifu_fleet::Shutdown,
) -> Result<Report> {
    let mut f = Fleet::set_up(plan, args.plugins.as_deref(), dir)?;
    // A paused run's deadline cuts nobody off, and the run ends after its
    // last stage: the deadline only bounds a demo gone wrong.
    f.deadline_secs = args.deadline.unwrap_or(300);
    let refusing = plan.with(Role::RefusesUntilFixed).join(", ");
    say(format!(
        "set up in {}: pos-app {OLD} installed on {} clients behind {} relays; {NEW} ({}) registered; {refusing}'s post-install check refuses {NEW} until a fix is in",
        dir.display(),
        plan.clients,
        plan.relays,
        crate::output::bytes(f.new_len),
    ));
    f.start_daemons(plan)?;
    say(format!(
        "master, {} relays and {} clients running as processes; every client reported {OLD}",
        plan.relays, plan.clients
    ));
    let run = f.start_run(plan.relays, Some(STAGES))?;
    say(format!(
        "run {run}: pos-app {OLD} -> {NEW} in 3 stages: canary = relay-1's clients (soak 3 s, max_failures 0), half of the rest (soak 2 s), the rest"
    ));

    let mut started_seen = 0usize;
    let mut decisions_seen: Vec<usize> = Vec::new();
    let mut rounds_seen = 0usize;
    let mut failures_seen: Vec<String> = Vec::new();
    let mut installed_seen: Vec<String> = Vec::new();
    let mut paused: Option<Paused> = None;
    let limit = Instant::now() + Duration::from_secs(f.deadline_secs + 60);
    loop {
        if stop.is_set() {
            bail!("interrupted");
        }
        f.check_daemons(plan)?;
        let ledger = f.ledger()?;
        let audit = f.audit(run)?;
        let views = stage_view::stages(&ledger, run)?;
        decisions_seen.resize(views.len(), 0);
        for v in views
            .iter()
            .filter(|v| v.started.is_some())
            .skip(started_seen)
        {
            started_seen += 1;
            say(format!(
                "stage {} ({}) starts: {} clients; gate: {}",
                v.stage, v.name, v.targeted, v.gate
            ));
        }
        let sent = audit.traffic.multicast_by_round.len();
        if sent > rounds_seen {
            rounds_seen = sent;
            let by_round = super::report::delivered_by_round(&audit);
            say(format!(
                "round {sent} sent; installed by round: {by_round:?}"
            ));
        }
        for r in &audit.relays {
            for x in &r.failed {
                if failures_seen.contains(&x.client) {
                    continue;
                }
                failures_seen.push(x.client.clone());
                say(format!(
                    "{} failed after install ({}): {}; it stays on {OLD}",
                    x.client,
                    x.kind.as_str(),
                    x.reason
                ));
            }
        }
        if let Some(p) = &paused {
            for x in &p.failed {
                let round = audit.relays.iter().find_map(|r| {
                    r.delivered_by_round
                        .iter()
                        .position(|round| round.contains(&x.client))
                });
                if let Some(round) = round
                    && !installed_seen.contains(&x.client)
                {
                    installed_seen.push(x.client.clone());
                    say(format!(
                        "{} installed {NEW} in round {} after its readmission",
                        x.client,
                        round + 1
                    ));
                }
            }
        }
        for (v, seen) in views.iter().zip(decisions_seen.iter_mut()) {
            for d in v.decisions.iter().skip(*seen) {
                say(format!(
                    "advance policy, stage {} ({}): {}: {}",
                    v.stage, v.name, d.decide, d.reason
                ));
            }
            *seen = v.decisions.len();
        }
        let (status, pause) = ledger
            .run_standing(run)?
            .with_context(|| format!("run {run} vanished from the ledger"))?;
        if let Some(p) = pause
            && paused.is_none()
        {
            paused = Some(operate(
                &f,
                plan,
                &Seen {
                    run,
                    views: &views,
                    audit: &audit,
                    pause: &p,
                },
                say,
            )?);
        }
        if status != RunStatus::Running {
            say(format!("run {run} {}", status.as_str()));
            let views = stage_view::stages(&f.ledger()?, run)?;
            let mut report = f.report(plan, run, audit, Vec::new())?;
            match &paused {
                None => report
                    .problems
                    .push("the run never paused on the canary's failure".to_owned()),
                Some(p) if !p.later_stages_installed.is_empty() => {
                    report.problems.push(format!(
                        "installed outside their stage before the resume: {}",
                        p.later_stages_installed.join(", ")
                    ));
                }
                Some(_) => {}
            }
            let all: Vec<String> = plan.roles.iter().map(|(id, _)| id.clone()).collect();
            let (old, other) = on_disk(&f, &all)?;
            if !old.is_empty() {
                report
                    .problems
                    .push(format!("still on {OLD} at the end: {}", old.join(", ")));
            }
            report.stages = views;
            report.paused = paused.map(|p| Paused {
                // Not on the old version and not flagged by the byte-for-byte
                // check of the report: the new one.
                ended_on_new: other,
                ..p
            });
            return Ok(report);
        }
        if Instant::now() > limit {
            bail!("run {run} did not end within {} s", f.deadline_secs + 60);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the demo read from the ledger when it found the run paused.
struct Seen<'a> {
    run: i64,
    views: &'a [stage_view::StageView],
    audit: &'a haifu_ledger::RunAudit,
    pause: &'a haifu_ledger::Pause,
}

/// The run paused: shows who and why, checks the later stages on disk,
/// then plays the operator: the fix, the readmission, the resume.
fn operate(f: &Fleet, plan: &Plan, seen: &Seen<'_>, say: &dyn Fn(String)) -> Result<Paused> {
    let Seen {
        run,
        views,
        audit,
        pause,
    } = *seen;
    let after_stage = views
        .iter()
        .filter(|v| v.started.is_some())
        .map(|v| v.stage)
        .max()
        .unwrap_or(0);
    let reason = pause.reason.clone().unwrap_or_default();
    say(format!(
        "PAUSED after stage {after_stage} by {}: {reason}",
        pause.by
    ));
    // The canary is relay-1's clients (client i is behind relay-(i % R + 1)).
    let later: Vec<String> = plan
        .roles
        .iter()
        .enumerate()
        .filter(|(i, _)| i % plan.relays as usize != 0)
        .map(|(_, (id, _))| id.clone())
        .collect();
    let (old, installed) = on_disk(f, &later)?;
    say(format!(
        "on disk: {} of {} clients of the later stages still run {OLD}{}",
        old.len(),
        later.len(),
        if installed.is_empty() {
            String::new()
        } else {
            format!("; NOT: {}", installed.join(", "))
        }
    ));
    let failed: Vec<super::report::Failed> = audit
        .relays
        .iter()
        .flat_map(|r| &r.failed)
        .map(|x| super::report::Failed {
            client: x.client.clone(),
            kind: x.kind.as_str().to_owned(),
            reason: x.reason.clone(),
        })
        .collect();
    std::fs::write(f.dir.join(FIX), b"")
        .with_context(|| format!("cannot write {}", f.dir.join(FIX).display()))?;
    say(format!(
        "operator: the fix is in ({})",
        f.dir.join(FIX).display()
    ));
    for x in &failed {
        let out = operator(f, &["fleet", "readmit", &x.client, "--by", "demo-operator"])?;
        say(format!(
            "operator: haifu fleet readmit {} -> {}",
            x.client,
            out.replace('\n', "; ")
        ));
    }
    let id = run.to_string();
    let out = operator(
        f,
        &[
            "run",
            "resume",
            &id,
            "--by",
            "demo-operator",
            "--reason",
            "the receipt-printer fix is in",
        ],
    )?;
    say(format!("operator: haifu run resume {run} -> {out}"));
    Ok(Paused {
        after_stage,
        by: pause.by.clone(),
        reason,
        failed,
        later_stages_on_old: old,
        later_stages_installed: installed,
        ended_on_new: Vec::new(),
    })
}
