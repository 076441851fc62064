//! The run machine: strings a workflow's steps together, with no I/O.
//!
//! Each step's own machine lives in its step module
//! (`haifu_spec::steps::{register, broadcast, audit, delta, disconnect}`),
//! behind [`StepState`]; this machine only keeps the index of the current
//! step, begins the next one when a step is over, and remembers the states of
//! finished steps for the report. Time is an argument: `poll(now)`.
//!
//! `poll` is idempotent: the same [`RunState`] always yields the same
//! [`Command`], so a driver that restarts from the last saved state polls
//! again and redoes the one command that was in flight (completions are
//! counted once by the ledger, and a repeated broadcast round only adds
//! symbols).

use haifu_spec::steps::broadcast::{Phase, StageProgress};
use haifu_spec::steps::machine::{Command, Input, Poll, RunCx, StepState};
use haifu_spec::{Plan, Step};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A run's stored snapshot does not read as a [`RunState`].
#[derive(Debug, thiserror::Error)]
#[error("run {run}: stored state is not readable")]
pub struct SnapshotError {
    /// The run.
    pub run: i64,
    /// What the JSON decoder said.
    #[source]
    pub source: serde_json::Error,
}

/// The durable snapshot of a run: what the ledger stores at each transition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// Index of the current step in the plan.
    pub step: usize,
    /// The current step's state, once it has begun.
    pub current: Option<StepState>,
    /// The final states of the steps already over, in order.
    pub finished: Vec<StepState>,
    /// When the run finished.
    pub finished_at: Option<Timestamp>,
}

impl RunState {
    /// Reads a run's snapshot as the ledger stores it: the one decoder of
    /// snapshots, so a damaged one is an error naming the run everywhere,
    /// never an empty state.
    pub fn of_run(row: &haifu_ledger::RunRow) -> Result<Self, SnapshotError> {
        serde_json::from_str(&row.state).map_err(|source| SnapshotError {
            run: row.id,
            source,
        })
    }

    /// The snapshot the ledger stores: the one encoder, beside
    /// [`RunState::of_run`].
    pub fn to_snapshot(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    fn all(&self) -> impl Iterator<Item = &StepState> {
        self.finished.iter().chain(self.current.iter())
    }

    /// When each broadcast round started.
    pub fn rounds_started(&self) -> Vec<Timestamp> {
        self.all()
            .find_map(|s| match s {
                StepState::Broadcast(b) => Some(b.started.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Why broadcasting stopped before the planned rounds, if it did.
    pub fn stopped_early(&self) -> Option<String> {
        self.all().find_map(|s| match s {
            StepState::Broadcast(b) => b.stopped_early.clone(),
            _ => None,
        })
    }

    /// When the run's delta window closes, once its delta step has begun
    /// (the driver saves the snapshot as the window opens). The master
    /// serves a straggler only before this: after it, a delta for this
    /// run could only take a client back to an older version.
    pub fn delta_until(&self) -> Option<Timestamp> {
        self.all().find_map(|s| match s {
            StepState::Delta(d) => d.until,
            _ => None,
        })
    }

    /// A staged run's progress through its stages, once its broadcast
    /// has begun.
    pub fn stage(&self) -> Option<&StageProgress> {
        self.all().find_map(|s| match s {
            StepState::Broadcast(b) => b.stage.as_ref(),
            _ => None,
        })
    }

    /// The stage a staged run is in while its broadcast step goes on
    /// (none before and after it).
    pub fn current_stage(&self) -> Option<&StageProgress> {
        match &self.current {
            Some(StepState::Broadcast(b)) => b.stage.as_ref(),
            _ => None,
        }
    }

    /// Round `round`'s number within its stage (the run's own number in
    /// an unstaged run): what the retry policy is asked about.
    pub fn round_in_stage(&self, round: u32) -> u32 {
        self.all()
            .find_map(|s| match s {
                StepState::Broadcast(b) => Some(b.round_in_stage(round)),
                _ => None,
            })
            .unwrap_or(round)
    }

    /// Whether the broadcast is soaking a stage, and until when.
    pub fn soaking_until(&self) -> Option<Timestamp> {
        self.all().find_map(|s| match s {
            StepState::Broadcast(b) => match b.phase {
                Phase::Soaking { at } => Some(at),
                _ => None,
            },
            _ => None,
        })
    }

    /// When the audit listed the stragglers.
    pub fn audited_at(&self) -> Option<Timestamp> {
        self.all().find_map(|s| match s {
            StepState::Audit(a) => a.at,
            _ => None,
        })
    }
}

/// A run machine: the plan's steps, its schedule, and the [`RunState`].
#[derive(Debug, Clone)]
pub struct RunMachine {
    steps: Vec<Step>,
    cx: RunCx,
    state: RunState,
}

impl RunMachine {
    /// A machine for `plan` at `state` (new, or read back from the ledger).
    pub fn new(plan: &Plan, state: RunState) -> Self {
        let s = &plan.schedule;
        Self::with_steps(
            plan.steps.clone(),
            RunCx {
                start: s.start,
                deadline: s.deadline,
                time_zone: s.time_zone.clone(),
                window: s.window,
                stages: u32::try_from(plan.stages.len()).unwrap_or(u32::MAX),
            },
            state,
        )
    }

    /// A machine for explicit steps and schedule.
    pub fn with_steps(steps: Vec<Step>, cx: RunCx, state: RunState) -> Self {
        Self { steps, cx, state }
    }

    /// The schedule.
    pub fn cx(&self) -> &RunCx {
        &self.cx
    }

    /// The current snapshot, to be saved.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The planned number of broadcast rounds.
    pub fn planned_rounds(&self) -> u32 {
        self.steps
            .iter()
            .find_map(|s| match s {
                Step::Broadcast(b) => Some(b.rounds.value),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// What the driver must do at `now`, or `None` when the run is over.
    /// Begins steps and ends them as their machines say.
    pub fn poll(&mut self, now: Timestamp) -> Option<Command> {
        while let Some(step) = self.steps.get(self.state.step) {
            let current = self.state.current.get_or_insert_with(|| step.begin());
            match current.poll(step, &self.cx, now) {
                Poll::Do(cmd) => return Some(cmd),
                Poll::Done => {
                    if let Some(done) = self.state.current.take() {
                        self.state.finished.push(done);
                    }
                    self.state.step += 1;
                }
            }
        }
        self.state.finished_at.get_or_insert(now);
        None
    }

    /// The driver reports `input` at `now`.
    pub fn handle(&mut self, input: &Input, now: Timestamp) {
        if let Some(current) = &mut self.state.current {
            current.handle(input, &self.cx, now);
        }
    }

    /// When the run next needs the driver, if it is waiting.
    pub fn next_wake(&self, now: Timestamp) -> Option<Timestamp> {
        match self.clone().poll(now) {
            Some(Command::SleepUntil(t)) | Some(Command::ServeDeltas { until: t }) => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use haifu_policy::NextRound;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn plan() -> Plan {
        let text = "name: t\nartifact: { name: app, version: 1.0.0, path: a.tar }\ntargets: { relays: [r] }\n\
schedule: { start: 2026-12-01T00:00:00Z, deadline: 72h }\ntransports: { broadcast: multicast, unicast: quic }\n\
steps:\n  - register\n  - broadcast: { rounds: 3 }\n  - audit\n  - delta: { until: deadline }\n  - disconnect\n";
        haifu_spec::check_text(std::path::Path::new("t.yaml"), text).unwrap()
    }

    /// Drives a machine through a canned history; returns the commands seen.
    fn replay(m: &mut RunMachine, history: &[(&str, Option<Input>)]) -> Vec<Option<Command>> {
        let mut seen = Vec::new();
        for (at, input) in history {
            let now = ts(at);
            seen.push(m.poll(now));
            if let Some(i) = input {
                m.handle(i, now);
            }
        }
        seen
    }

    fn history() -> Vec<(&'static str, Option<Input>)> {
        let wait = Some(Input::NextRound(NextRound::Wait(Duration::from_secs(3600))));
        vec![
            ("2026-11-30T12:00:00Z", Some(Input::Registered)),
            ("2026-11-30T12:00:00Z", None),
            ("2026-12-01T00:00:00Z", Some(Input::RoundFinished)),
            ("2026-12-01T00:10:00Z", wait.clone()),
            ("2026-12-01T00:30:00Z", None),
            ("2026-12-01T01:10:00Z", Some(Input::RoundFinished)),
            ("2026-12-01T01:20:00Z", wait),
            ("2026-12-01T02:20:00Z", Some(Input::RoundFinished)),
            ("2026-12-01T02:30:00Z", Some(Input::Audited)),
            ("2026-12-01T02:30:00Z", None),
            ("2026-12-04T00:00:00Z", Some(Input::CutOffDone)),
            ("2026-12-04T00:00:01Z", None),
        ]
    }

    #[test]
    fn a_full_run_passes_through_every_step_in_order() {
        let mut m = RunMachine::new(&plan(), RunState::default());
        let seen = replay(&mut m, &history());
        use Command::*;
        assert_eq!(
            seen,
            vec![
                Some(Register),
                Some(SleepUntil(ts("2026-12-01T00:00:00Z"))),
                Some(StartRound(1)),
                Some(AskNextRound(1)),
                Some(SleepUntil(ts("2026-12-01T01:10:00Z"))),
                Some(StartRound(2)),
                Some(AskNextRound(2)),
                Some(StartRound(3)),
                Some(Audit),
                Some(ServeDeltas {
                    until: ts("2026-12-04T00:00:00Z")
                }),
                Some(CutOff),
                None,
            ]
        );
        assert_eq!(m.state().rounds_started().len(), 3);
        assert_eq!(m.state().audited_at(), Some(ts("2026-12-01T02:30:00Z")));
        assert_eq!(m.state().finished.len(), 5);
    }

    #[test]
    fn replaying_from_any_saved_snapshot_gives_the_same_commands() {
        // All at once, versus stopping after every input, saving the state
        // as JSON, and carrying on with a machine rebuilt from it.
        let p = plan();
        let mut whole = RunMachine::new(&p, RunState::default());
        let expected = replay(&mut whole, &history());
        let mut state = RunState::default();
        let mut seen = Vec::new();
        for entry in history() {
            let json = serde_json::to_string(&state).unwrap();
            let mut m = RunMachine::new(&p, serde_json::from_str(&json).unwrap());
            seen.extend(replay(&mut m, std::slice::from_ref(&entry)));
            state = m.state().clone();
        }
        assert_eq!(seen, expected);
        assert_eq!(&state, whole.state());
    }

    #[test]
    fn a_crash_mid_round_repeats_that_round_without_counting_it_twice() {
        let p = plan();
        let mut m = RunMachine::new(&p, RunState::default());
        assert_eq!(m.poll(ts("2026-12-01T00:00:00Z")), Some(Command::Register));
        m.handle(&Input::Registered, ts("2026-12-01T00:00:00Z"));
        assert_eq!(
            m.poll(ts("2026-12-01T00:00:00Z")),
            Some(Command::StartRound(1))
        );
        let mut resumed = RunMachine::new(&p, m.state().clone());
        assert_eq!(
            resumed.poll(ts("2026-12-01T00:05:00Z")),
            Some(Command::StartRound(1))
        );
        assert_eq!(resumed.state().rounds_started().len(), 1);
        assert_eq!(resumed.next_wake(ts("2026-12-01T00:05:00Z")), None);
    }
}
