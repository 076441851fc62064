//! A phased rollout on the modelled fleet, for `haifu simulate`: what a
//! release that fails on some clients would do under the workflow's
//! stages, gates and policies, in virtual time.
//!
//! Stage by stage ([`crate::stage::Membership`]): the stage's clients get
//! the broadcast (the model of [`crate::sim`]: rounds gathered until the
//! blocks decode, the retry policy's `next_round` spacing and stopping the
//! rounds); a client that completes installs and, with probability `fail`,
//! its post-install check fails (a draw keyed by the seed and the client,
//! like every other draw of the model); the failures are reported when the
//! install ends. The advance policy is asked after each round that brought
//! failures (a pause or abort ends the broadcast there), when the stage's
//! broadcast is over, and again after each wait it asks for, until it
//! proceeds, pauses or aborts, or the deadline passes.
//!
//! The modelled relays take the names of `targets.relays` in order
//! (`relay-N` past the list), so a stage naming a relay finds its clients.
//!
//! What it leaves out: stragglers' deltas within a stage (a stage's
//! pending clients stay pending), reboots, and the ledger. It owns no
//! clock: time is a value it advances.

use std::collections::BTreeMap;
use std::time::Duration;

use haifu_policy::{Advance, NextRound, PolicySet, RoundFacts};
use haifu_spec::{Plan, Stage};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::sim::{SimFleet, relay_name};
use crate::stage::{LabelShare, Member, Membership, StageCount, facts, share_labels};

/// The reason a simulated failed install reports.
pub const POST_INSTALL: &str = "post-install";

/// What happened to one stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageOutcome {
    /// Its name.
    pub name: String,
    /// Clients in it.
    pub targeted: u64,
    /// Installed and healthy.
    pub delivered: u64,
    /// Installed and failed their post-install check.
    pub failed: u64,
    /// Neither when the stage was decided.
    pub pending: u64,
    /// Broadcast rounds sent to it.
    pub rounds: u32,
    /// When its broadcast started.
    pub started: Timestamp,
    /// When the advance policy made its last decision on it.
    pub decided: Timestamp,
    /// That decision: `proceed`, `pause`, `abort`, or `wait` when the
    /// deadline came while it waited.
    pub decision: String,
    /// Why.
    pub reason: String,
}

/// How a simulated rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Every stage proceeded.
    Complete,
    /// The advance policy paused the run after the last stage listed.
    Paused,
    /// The advance policy aborted the run after the last stage listed.
    Aborted,
    /// The deadline passed while the last stage listed waited.
    Deadline,
}

/// A simulated rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutReport {
    /// The stages that started, in order.
    pub stages: Vec<StageOutcome>,
    /// Stages that never started.
    pub not_started: Vec<String>,
    /// How it ended.
    pub ending: Ending,
    /// Clients in no stage.
    pub outside: u64,
    /// Clients that installed the new version, whether or not it failed
    /// on them: what a bad release reached.
    pub installed: u64,
    /// Clients the rollout never sent the version to.
    pub untouched: u64,
    /// Clients ordered back to their previous version because the advance
    /// policy aborted with `rollback: true`: every healthy install of the
    /// started stages (a failed one went back on its own).
    pub rolled_back: u64,
}

/// The modelled rollout's inputs.
#[derive(Debug)]
pub struct Rollout<'a> {
    /// The workflow.
    pub plan: &'a Plan,
    /// Its stages; a workflow without any is simulated as one stage of
    /// every target with no gate (what a run does today).
    pub stages: &'a [Stage],
    /// The modelled fleet.
    pub fleet: &'a SimFleet,
    /// The probability that an install fails its post-install check.
    pub fail: f64,
    /// Labels given to shares of the modelled fleet (none by default).
    pub labels: &'a [LabelShare],
    /// The workflow's policies.
    pub policies: &'a PolicySet,
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

impl Rollout<'_> {
    /// Runs the rollout from the workflow's start.
    pub fn run(&self) -> RolloutReport {
        let plan = self.plan;
        let all_in_one;
        let stages = if self.stages.is_empty() {
            all_in_one = [Stage::everyone(plan.name.pos)];
            &all_in_one[..]
        } else {
            self.stages
        };
        // The modelled relays take the workflow's relay names in order, so
        // a stage that names a relay finds its clients.
        let names = &plan.targets.relays;
        let mut targets: Vec<Member> = self
            .fleet
            .targets()
            .into_iter()
            .map(|(client, relay)| Member::new(client, relay_name(&relay, names)))
            .collect();
        share_labels(&mut targets, self.labels, self.fleet.params().seed);
        let membership = Membership::assign(&targets, stages);
        let rounds = plan
            .steps
            .iter()
            .find_map(|s| match s {
                haifu_spec::Step::Broadcast(b) => Some(b.rounds.value),
                _ => None,
            })
            .unwrap_or(1)
            .max(1);
        let mut now = plan.schedule.start;
        let deadline = plan.schedule.deadline;
        let mut counts: Vec<StageCount> = Vec::new();
        let mut out = Vec::new();
        let mut ending = Ending::Complete;
        let mut rollback = false;
        for (k, members) in membership.stages.iter().enumerate() {
            let started = now;
            // A failure reported during the broadcast asks the policy at
            // once (soaked 0): a pause or abort ends the broadcast there.
            let ask_early = |count: &StageCount, at: Timestamp| {
                let f = facts(
                    stages,
                    k,
                    count,
                    &counts,
                    at.duration_since(started).unsigned_abs(),
                    Duration::ZERO,
                )?;
                let d = self.policies.advance(&f).value;
                matches!(d, Advance::Pause { .. } | Advance::Abort { .. }).then_some(d)
            };
            let (count, sent, ended, early) = self.broadcast(members, rounds, now, ask_early);
            now = ended;
            let broadcast_over = now;
            let (decision, decided) = loop {
                if let Some(d) = &early {
                    break (Some(d.clone()), now);
                }
                let f = facts(
                    stages,
                    k,
                    &count,
                    &counts,
                    now.duration_since(started).unsigned_abs(),
                    now.duration_since(broadcast_over).unsigned_abs(),
                );
                let Some(f) = f else {
                    break (None, now);
                };
                let d = self.policies.advance(&f).value;
                match d {
                    Advance::Wait { wait, .. } if after(now, wait) <= deadline => {
                        // A zero wait would ask forever at the same instant.
                        now = after(now, wait.max(Duration::from_secs(1)));
                    }
                    Advance::Wait { .. } => {
                        ending = Ending::Deadline;
                        break (Some(d), now);
                    }
                    other => break (Some(other), now),
                }
            };
            let (word, reason) = decision.as_ref().map_or(("proceed", String::new()), |d| {
                (d.word(), d.reason().to_owned())
            });
            out.push(StageOutcome {
                name: stages[k].name.clone(),
                targeted: count.targeted,
                delivered: count.delivered,
                failed: count.failed(),
                pending: count
                    .targeted
                    .saturating_sub(count.delivered)
                    .saturating_sub(count.failed()),
                rounds: sent,
                started,
                decided,
                decision: word.to_owned(),
                reason,
            });
            counts.push(count);
            match decision {
                Some(Advance::Pause { .. }) => ending = Ending::Paused,
                Some(Advance::Abort { rollback: back, .. }) => {
                    ending = Ending::Aborted;
                    rollback = back;
                }
                _ => {}
            }
            if ending != Ending::Complete {
                break;
            }
        }
        let installed: u64 = out.iter().map(|s| s.delivered + s.failed).sum();
        let reached: u64 = out.iter().map(|s| s.targeted).sum();
        let rolled_back = if rollback {
            out.iter().map(|s| s.delivered).sum()
        } else {
            0
        };
        RolloutReport {
            not_started: stages[out.len()..].iter().map(|s| s.name.clone()).collect(),
            ending,
            outside: membership.outside.len() as u64,
            installed,
            untouched: (targets.len() as u64).saturating_sub(reached),
            rolled_back,
            stages: out,
        }
    }

    /// The stage's broadcast from `start`: its count, the rounds sent,
    /// when the last one ended, and the pause or abort `on_failures` gave
    /// when a round brought failures (the broadcast stops there).
    fn broadcast(
        &self,
        members: &[String],
        rounds: u32,
        start: Timestamp,
        on_failures: impl Fn(&StageCount, Timestamp) -> Option<Advance>,
    ) -> (StageCount, u32, Timestamp, Option<Advance>) {
        let plan = self.plan;
        let mut count = StageCount {
            targeted: members.len() as u64,
            ..StageCount::default()
        };
        // Each client's round of completion, drawn once (the draws do not
        // depend on how many rounds are eventually sent).
        let completes: Vec<(u32, Option<u32>)> = members
            .iter()
            .filter_map(|c| self.fleet.index_of(c))
            .map(|c| (c, self.fleet.completes_in(c, rounds)))
            .collect();
        let mut done: BTreeMap<u32, bool> = BTreeMap::new();
        let mut now = start;
        let mut sent = 0;
        for round in 1..=rounds {
            sent = round;
            let failed_before = count.failed();
            for &(c, at) in &completes {
                if at == Some(round) {
                    let failed = self.fleet.install_fails(c, self.fail);
                    done.insert(c, failed);
                    if failed {
                        *count.failures.entry(POST_INSTALL.into()).or_default() += 1;
                    } else {
                        count.delivered += 1;
                    }
                }
            }
            if count.failed() > failed_before
                && let Some(stop) = on_failures(&count, now)
            {
                return (count, sent, now, Some(stop));
            }
            // A round takes no time in this model; the retry policy says
            // when the next one starts, or that there is none.
            let decided = self.policies.next_round(&RoundFacts {
                round,
                rounds,
                delivered: done.len() as u64,
                total: count.targeted,
                now: now.to_zoned_datetime(plan.schedule.time_zone.clone()),
                start: plan.schedule.start,
                deadline: plan.schedule.deadline,
                window: plan.schedule.window.map(|w| (w.open, w.close)),
            });
            match decided.value {
                NextRound::Wait(gap)
                    if round < rounds && after(now, gap) < plan.schedule.deadline =>
                {
                    now = after(now, gap);
                }
                _ => break,
            }
        }
        (count, sent, now, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimParams;

    fn plan() -> Plan {
        let text = r"name: t
artifact: { name: app, version: 1.0.0, path: a.tar }
targets: { relays: [east, west] }
schedule: { start: 2026-12-01T00:00:00Z, deadline: 72h }
transports: { broadcast: multicast }
stages:
  - name: canary
    relays: [east]
    gate: { soak: 1h, min_success: 90%, max_failures: 2% }
  - name: half
    percent: 50
    gate: { soak: 30m, max_failures: 2% }
  - name: rest
    percent: 100
steps:
  - broadcast: { rounds: 3 }
";
        haifu_spec::check_text(std::path::Path::new("t.yaml"), text).unwrap()
    }

    fn rollout(fail: f64) -> RolloutReport {
        rollout_with(fail, &PolicySet::defaults())
    }

    fn rollout_with(fail: f64, policies: &PolicySet) -> RolloutReport {
        let plan = plan();
        let fleet = SimFleet::new(SimParams {
            clients: 400,
            relays: 2,
            loss: 0.02,
            offline: 0.1,
            seed: 3,
            artifact_size: 1 << 20,
        });
        Rollout {
            plan: &plan,
            stages: &plan.stages,
            fleet: &fleet,
            fail,
            labels: &[],
            policies,
        }
        .run()
    }

    #[test]
    fn an_abort_with_rollback_reports_the_installs_ordered_back() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("advance.rhai");
        std::fs::write(
            &script,
            "fn advance(ctx) {\n\
               if ctx.stage == 2 { return #{ decide: \"abort\", rollback: true, reason: \"no\" }; }\n\
               \"proceed\"\n}\n",
        )
        .unwrap();
        let policies = PolicySet::load(&haifu_policy::PolicyPaths {
            advance: Some(script),
            ..Default::default()
        })
        .unwrap();
        let r = rollout_with(0.0, &policies);
        assert_eq!(r.ending, Ending::Aborted);
        assert_eq!(r.stages.len(), 2);
        let healthy: u64 = r.stages.iter().map(|s| s.delivered).sum();
        assert!(healthy > 0);
        assert_eq!(r.rolled_back, healthy);
        // The same abort without rollback orders nobody back.
        assert_eq!(rollout(0.0).rolled_back, 0);
    }

    #[test]
    fn a_bad_release_pauses_after_the_canary_and_reaches_no_one_else() {
        let r = rollout(0.1);
        assert_eq!(r.ending, Ending::Paused);
        assert_eq!(r.stages.len(), 1);
        assert_eq!(r.stages[0].targeted, 200, "the clients behind east");
        assert_eq!(r.not_started, ["half", "rest"]);
        assert_eq!(r.untouched, 200);
        // Paused when the failures showed, not after the soak.
        assert_eq!(r.stages[0].decided, plan().schedule.start);
    }

    #[test]
    fn a_healthy_release_soaks_each_stage_then_completes() {
        let r = rollout(0.0);
        assert_eq!(r.ending, Ending::Complete, "{r:#?}");
        // Rounds take no time here and the default retry gap is an hour:
        // the rounds, then the soak (1 h, 30 min, none), to the second.
        for (s, soak) in r.stages.iter().zip([3600, 1800, 0]) {
            let took = s.decided.duration_since(s.started).as_secs();
            assert_eq!(took, i64::from(s.rounds - 1) * 3600 + soak, "{s:?}");
        }
        assert_eq!(r.stages[1].started, r.stages[0].decided);
        assert_eq!(r.untouched, 0);
        assert_eq!(r.stages.iter().map(|s| s.targeted).sum::<u64>(), 400);
    }
}
