//! The run machine: one explicit state machine for a whole run, with no I/O.
//!
//! Transition table (per step, in plan order):
//!
//! | step       | phase                 | `poll(now)` says            | the driver then calls              |
//! |------------|-----------------------|-----------------------------|------------------------------------|
//! | register   | ready                 | `Register`                  | `registered()`                     |
//! | broadcast  | ready                 | (waits for `schedule.start`)| —                                  |
//! | broadcast  | waiting `at`          | `SleepUntil(at)` / `StartRound(n)` | —                           |
//! | broadcast  | round `n` open        | `StartRound(n)`             | `round_finished(now)`              |
//! | broadcast  | deciding after `n`    | `AskNextRound(n)`           | `next_round_decided(answer, now)`  |
//! | audit      | ready                 | `Audit`                     | `audited(now)`                     |
//! | delta      | serving until `until` | `ServeDeltas{until}` / —    | (`poll` moves on once `now ≥ until`) |
//! | disconnect | ready                 | `SleepUntil(deadline)` / `CutOff` | `cut_off_done()`             |
//! | —          | done                  | `Finished`                  | —                                  |
//!
//! `poll` is idempotent: the same state always yields the same command, so a
//! driver that restarts from the last saved [`RunState`] simply polls again
//! and redoes the one command that was in flight (completions are counted
//! once by the ledger, and a repeated broadcast round only adds symbols).

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use haifu_policy::NextRound;
use haifu_spec::{Plan, Step, Window};

/// What a step needs from the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepSpec {
    /// Register the artifact.
    Register,
    /// Broadcast in up to `rounds` rounds.
    Broadcast {
        /// The planned number of rounds.
        rounds: u32,
    },
    /// List the stragglers.
    Audit,
    /// Serve deltas to stragglers until this instant.
    Delta {
        /// When the delta step ends.
        until: Timestamp,
    },
    /// Cut off the stragglers the policy names, at the deadline.
    Disconnect,
}

/// The plan's timing and steps, as the machine uses them.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The steps, in order.
    pub steps: Vec<StepSpec>,
    /// `schedule.start`.
    pub start: Timestamp,
    /// `schedule.deadline`.
    pub deadline: Timestamp,
    /// The site's time zone.
    pub time_zone: TimeZone,
    /// Rounds start only inside this daily window, if set.
    pub window: Option<Window>,
}

impl RunConfig {
    /// The configuration of a validated plan.
    pub fn from_plan(plan: &Plan) -> Self {
        let s = &plan.schedule;
        let steps = plan
            .steps
            .iter()
            .map(|step| match step {
                Step::Register(_) => StepSpec::Register,
                Step::Broadcast(b) => StepSpec::Broadcast {
                    rounds: b.rounds.value,
                },
                Step::Audit(_) => StepSpec::Audit,
                Step::Delta(d) => StepSpec::Delta {
                    until: d.until.value.resolve(s.start, s.deadline),
                },
                Step::Disconnect(_) => StepSpec::Disconnect,
            })
            .collect();
        Self {
            steps,
            start: s.start,
            deadline: s.deadline,
            time_zone: s.time_zone.clone(),
            window: s.window,
        }
    }

    /// The planned number of broadcast rounds (0 without a broadcast step).
    pub fn rounds(&self) -> u32 {
        self.steps
            .iter()
            .find_map(|s| match s {
                StepSpec::Broadcast { rounds } => Some(*rounds),
                _ => None,
            })
            .unwrap_or(0)
    }
}

/// Where the current step stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// The step has not begun.
    Ready,
    /// Waiting to start the next broadcast round.
    Waiting {
        /// When.
        at: Timestamp,
    },
    /// A broadcast round is being sent.
    RoundOpen {
        /// Which, from 1.
        round: u32,
    },
    /// A round finished; the retry policy decides what follows.
    Deciding {
        /// The round that finished.
        round: u32,
    },
    /// Serving deltas until the step ends.
    Serving {
        /// When it ends.
        until: Timestamp,
    },
    /// Every step is done.
    Done,
}

/// The durable snapshot of a run: what the ledger stores at each transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// Index of the current step in the plan.
    pub step: usize,
    /// Where that step stands.
    #[serde(flatten)]
    pub phase: Phase,
    /// When each broadcast round started.
    pub rounds_started: Vec<Timestamp>,
    /// Why broadcasting stopped before the planned count, if it did.
    pub stopped_early: Option<String>,
    /// When the audit listed the stragglers.
    pub audited_at: Option<Timestamp>,
    /// When the run finished.
    pub finished_at: Option<Timestamp>,
}

impl RunState {
    /// The state of a run that has not started.
    pub fn new() -> Self {
        Self {
            step: 0,
            phase: Phase::Ready,
            rounds_started: Vec::new(),
            stopped_early: None,
            audited_at: None,
            finished_at: None,
        }
    }
}

impl Default for RunState {
    fn default() -> Self {
        Self::new()
    }
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Make sure the artifact is registered, then call `registered`.
    Register,
    /// Nothing to do before this instant.
    SleepUntil(Timestamp),
    /// Run broadcast round `n` (again, after a restart), feeding its
    /// completions, then call `round_finished`.
    StartRound(u32),
    /// Ask the retry policy about the round that finished, then call
    /// `next_round_decided`.
    AskNextRound(u32),
    /// Mark every pending client undelivered and list them, then call
    /// `audited`.
    Audit,
    /// Serve deltas to stragglers until `until`, then poll again.
    ServeDeltas {
        /// When the delta step ends.
        until: Timestamp,
    },
    /// Offer each straggler to the disconnect policy, then call
    /// `cut_off_done`.
    CutOff,
    /// The run is complete.
    Finished,
}

/// A run machine: a [`RunConfig`] and the [`RunState`] it advances.
#[derive(Debug, Clone)]
pub struct RunMachine {
    config: RunConfig,
    state: RunState,
}

impl RunMachine {
    /// A machine at `state` (a new one, or one read back from the ledger).
    pub fn new(config: RunConfig, state: RunState) -> Self {
        Self { config, state }
    }

    /// The configuration.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The current snapshot, to be saved.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The step now running, if any.
    pub fn current_step(&self) -> Option<&StepSpec> {
        self.config.steps.get(self.state.step)
    }

    /// When the run next needs the driver, if it is waiting.
    pub fn next_wake(&self, now: Timestamp) -> Option<Timestamp> {
        match self.poll_peek(now) {
            Command::SleepUntil(t) => Some(t),
            Command::ServeDeltas { until } => Some(until),
            _ => None,
        }
    }

    fn poll_peek(&self, now: Timestamp) -> Command {
        self.clone().poll(now)
    }

    /// The command for the current state, advancing through the parts that
    /// need nothing from outside (a step beginning, a wait that is over).
    pub fn poll(&mut self, now: Timestamp) -> Command {
        loop {
            let Some(step) = self.config.steps.get(self.state.step).cloned() else {
                self.state.phase = Phase::Done;
                if self.state.finished_at.is_none() {
                    self.state.finished_at = Some(now);
                }
                return Command::Finished;
            };
            match (&step, self.state.phase.clone()) {
                (_, Phase::Done) => return Command::Finished,
                (StepSpec::Register, _) => return Command::Register,
                (StepSpec::Broadcast { .. }, Phase::Ready) => {
                    let at = self.round_time(self.config.start.max(now));
                    self.state.phase = Phase::Waiting { at };
                }
                (StepSpec::Broadcast { .. }, Phase::Waiting { at }) => {
                    if now < at {
                        return Command::SleepUntil(at);
                    }
                    let round = self.state.rounds_started.len() as u32 + 1;
                    self.state.rounds_started.push(now);
                    self.state.phase = Phase::RoundOpen { round };
                }
                (StepSpec::Broadcast { .. }, Phase::RoundOpen { round }) => {
                    return Command::StartRound(round);
                }
                (StepSpec::Broadcast { .. }, Phase::Deciding { round }) => {
                    return Command::AskNextRound(round);
                }
                (StepSpec::Audit, _) => return Command::Audit,
                (StepSpec::Delta { until }, Phase::Ready) => {
                    self.state.phase = Phase::Serving { until: *until };
                }
                (StepSpec::Delta { .. }, Phase::Serving { until }) => {
                    if now < until {
                        return Command::ServeDeltas { until };
                    }
                    self.next_step();
                }
                (StepSpec::Disconnect, _) => {
                    if now < self.config.deadline {
                        return Command::SleepUntil(self.config.deadline);
                    }
                    return Command::CutOff;
                }
                // A phase that does not belong to the step (a snapshot
                // from another version): begin the step afresh.
                (_, _) => self.state.phase = Phase::Ready,
            }
        }
    }

    /// The artifact is registered.
    pub fn registered(&mut self) {
        if matches!(self.current_step(), Some(StepSpec::Register)) {
            self.next_step();
        }
    }

    /// The open round has been sent.
    pub fn round_finished(&mut self) {
        let (Some(StepSpec::Broadcast { rounds }), Phase::RoundOpen { round }) =
            (self.current_step().cloned(), self.state.phase.clone())
        else {
            return;
        };
        if round >= rounds {
            self.next_step();
        } else {
            self.state.phase = Phase::Deciding { round };
        }
    }

    /// The retry policy answered after a round.
    pub fn next_round_decided(&mut self, answer: &NextRound, now: Timestamp) {
        if !matches!(self.state.phase, Phase::Deciding { .. }) {
            return;
        }
        match answer {
            NextRound::Wait(gap) => {
                let gap = SignedDuration::try_from(*gap).unwrap_or(SignedDuration::MAX);
                let at = now.saturating_add(gap).unwrap_or(Timestamp::MAX);
                self.state.phase = Phase::Waiting {
                    at: self.round_time(at),
                };
            }
            NextRound::Stop { reason } => {
                self.state.stopped_early = Some(reason.clone());
                self.next_step();
            }
        }
    }

    /// The audit has listed the stragglers.
    pub fn audited(&mut self, now: Timestamp) {
        if matches!(self.current_step(), Some(StepSpec::Audit)) {
            self.state.audited_at = Some(now);
            self.next_step();
        }
    }

    /// Every straggler has been offered to the disconnect policy.
    pub fn cut_off_done(&mut self) {
        if matches!(self.current_step(), Some(StepSpec::Disconnect)) {
            self.next_step();
        }
    }

    fn next_step(&mut self) {
        self.state.step += 1;
        self.state.phase = Phase::Ready;
    }

    /// The first instant at or after `at` when a round may start: inside the
    /// daily window if there is one, and never after the deadline.
    fn round_time(&self, at: Timestamp) -> Timestamp {
        let Some(window) = self.config.window else {
            return at;
        };
        let local = at.to_zoned_datetime(self.config.time_zone.clone());
        let minute = (local.hour() as i32 * 60 + local.minute() as i32) as u16;
        if window.contains(minute) {
            return at;
        }
        let open_today = local
            .with()
            .hour((window.open / 60) as i8)
            .minute((window.open % 60) as i8)
            .second(0)
            .subsec_nanosecond(0)
            .build();
        let next = match open_today {
            Ok(t) if t.timestamp() > at => Some(t),
            Ok(t) => t.checked_add(1.day()).ok(),
            Err(_) => None,
        };
        next.map(|z| z.timestamp()).unwrap_or(at)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn config(window: Option<Window>) -> RunConfig {
        RunConfig {
            steps: vec![
                StepSpec::Register,
                StepSpec::Broadcast { rounds: 3 },
                StepSpec::Audit,
                StepSpec::Delta {
                    until: ts("2026-12-04T00:00:00Z"),
                },
                StepSpec::Disconnect,
            ],
            start: ts("2026-12-01T00:00:00Z"),
            deadline: ts("2026-12-04T00:00:00Z"),
            time_zone: TimeZone::UTC,
            window,
        }
    }

    /// Drives a machine through a canned history; returns the commands seen.
    fn replay(m: &mut RunMachine, history: &[(&str, &str)]) -> Vec<Command> {
        let mut seen = Vec::new();
        for (at, input) in history {
            let now = ts(at);
            let cmd = m.poll(now);
            seen.push(cmd.clone());
            match *input {
                "registered" => m.registered(),
                "round" => m.round_finished(),
                "wait1h" => m.next_round_decided(&NextRound::Wait(Duration::from_secs(3600)), now),
                "stop" => m.next_round_decided(
                    &NextRound::Stop {
                        reason: "all delivered".into(),
                    },
                    now,
                ),
                "audited" => m.audited(now),
                "cut" => m.cut_off_done(),
                _ => {}
            }
        }
        seen
    }

    const HISTORY: &[(&str, &str)] = &[
        ("2026-11-30T12:00:00Z", "registered"),
        ("2026-11-30T12:00:00Z", ""),
        ("2026-12-01T00:00:00Z", "round"),
        ("2026-12-01T00:10:00Z", "wait1h"),
        ("2026-12-01T00:30:00Z", ""),
        ("2026-12-01T01:10:00Z", "round"),
        ("2026-12-01T01:20:00Z", "wait1h"),
        ("2026-12-01T02:20:00Z", "round"),
        ("2026-12-01T02:30:00Z", "audited"),
        ("2026-12-01T02:30:00Z", ""),
        ("2026-12-04T00:00:00Z", "cut"),
        ("2026-12-04T00:00:01Z", ""),
    ];

    #[test]
    fn a_full_run_follows_the_transition_table() {
        let mut m = RunMachine::new(config(None), RunState::new());
        let seen = replay(&mut m, HISTORY);
        use Command::*;
        assert_eq!(
            seen,
            vec![
                Register,
                SleepUntil(ts("2026-12-01T00:00:00Z")),
                StartRound(1),
                AskNextRound(1),
                SleepUntil(ts("2026-12-01T01:10:00Z")),
                StartRound(2),
                AskNextRound(2),
                StartRound(3),
                Audit,
                ServeDeltas {
                    until: ts("2026-12-04T00:00:00Z")
                },
                CutOff,
                Finished,
            ]
        );
        assert_eq!(m.state().rounds_started.len(), 3);
        assert_eq!(m.state().phase, Phase::Done);
    }

    #[test]
    fn replaying_from_any_saved_snapshot_gives_the_same_commands() {
        // All at once, versus stopping after every input, saving the state
        // as JSON, and carrying on with a machine rebuilt from it.
        let mut whole = RunMachine::new(config(None), RunState::new());
        let expected = replay(&mut whole, HISTORY);
        let mut state = RunState::new();
        let mut seen = Vec::new();
        for entry in HISTORY {
            let json = serde_json::to_string(&state).unwrap();
            let restored: RunState = serde_json::from_str(&json).unwrap();
            let mut m = RunMachine::new(config(None), restored);
            seen.extend(replay(&mut m, std::slice::from_ref(entry)));
            state = m.state().clone();
        }
        assert_eq!(seen, expected);
        assert_eq!(&state, whole.state());
    }

    #[test]
    fn a_crash_mid_round_repeats_that_round() {
        let mut m = RunMachine::new(config(None), RunState::new());
        m.registered();
        assert_eq!(m.poll(ts("2026-12-01T00:00:00Z")), Command::StartRound(1));
        let saved = m.state().clone();
        let mut resumed = RunMachine::new(config(None), saved);
        assert_eq!(
            resumed.poll(ts("2026-12-01T00:05:00Z")),
            Command::StartRound(1)
        );
        assert_eq!(
            resumed.state().rounds_started.len(),
            1,
            "the round is not counted twice"
        );
    }

    #[test]
    fn stop_early_skips_the_remaining_rounds() {
        let mut m = RunMachine::new(config(None), RunState::new());
        m.registered();
        assert_eq!(m.poll(ts("2026-12-01T00:00:00Z")), Command::StartRound(1));
        m.round_finished();
        assert_eq!(m.poll(ts("2026-12-01T00:01:00Z")), Command::AskNextRound(1));
        m.next_round_decided(
            &NextRound::Stop {
                reason: "everyone has it".into(),
            },
            ts("2026-12-01T00:01:00Z"),
        );
        assert_eq!(m.poll(ts("2026-12-01T00:01:00Z")), Command::Audit);
        assert_eq!(m.state().stopped_early.as_deref(), Some("everyone has it"));
    }

    #[test]
    fn rounds_wait_for_the_nightly_window() {
        let window = Window {
            open: 2 * 60,
            close: 5 * 60,
        };
        let mut m = RunMachine::new(config(Some(window)), RunState::new());
        m.registered();
        // Start is midnight: the first round waits for 02:00.
        assert_eq!(
            m.poll(ts("2026-12-01T00:00:00Z")),
            Command::SleepUntil(ts("2026-12-01T02:00:00Z"))
        );
        assert_eq!(m.poll(ts("2026-12-01T02:00:00Z")), Command::StartRound(1));
        m.round_finished();
        m.poll(ts("2026-12-01T02:30:00Z"));
        // A 6 h gap lands at 08:30, outside: the next window is tomorrow 02:00.
        m.next_round_decided(
            &NextRound::Wait(Duration::from_secs(6 * 3600)),
            ts("2026-12-01T02:30:00Z"),
        );
        assert_eq!(
            m.poll(ts("2026-12-01T02:30:00Z")),
            Command::SleepUntil(ts("2026-12-02T02:00:00Z"))
        );
    }

    #[test]
    fn snapshot_json_is_readable() {
        let mut m = RunMachine::new(config(None), RunState::new());
        m.registered();
        m.poll(ts("2026-12-01T00:00:00Z"));
        let json = serde_json::to_string(m.state()).unwrap();
        assert!(json.contains("\"phase\":\"round_open\""), "{json}");
        assert!(json.contains("\"round\":1"), "{json}");
    }
}
