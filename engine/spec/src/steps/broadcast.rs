//! `broadcast: { rounds: N }`: multicast the artifact N times in all
//! (patent steps 103-105); the retry policy decides the gaps and may stop
//! early.
//!
//! In a staged run (`stages:` in the workflow) the broadcast goes stage by
//! stage: each stage is admitted, gets up to N rounds of its own (round
//! numbers count on across stages: one run), and the advance policy
//! decides when the next stage starts.

use std::time::Duration;

use haifu_policy::{Advance, NextRound};
use jiff::{SignedDuration, Timestamp};

use serde::{Deserialize, Serialize};

use super::machine::{Command, Input, Poll, RunCx};

use crate::error::ErrorKind;
use crate::fields::{Cx, MapReader, uint};
use crate::pos::{Pos, Spanned};
use crate::shape::{self, Key, Kind};
use haifu_yaml::Node;

/// More rounds than this is surely a typo (a round a minute for 1.5 h);
/// the ledger and the daemons hold every round number to the same bound.
pub use haifu_core::MAX_ROUNDS;

/// The `broadcast` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// Where the step is written.
    pub pos: Pos,
    /// Rounds in all, 1..=[`MAX_ROUNDS`].
    pub rounds: Spanned<u32>,
}

/// `rounds`.
const ROUNDS: Key = shape::key(
    "rounds",
    true,
    Kind::Count {
        min: 1,
        max: MAX_ROUNDS as u64,
    },
    "Rounds in all, 1 to 100; the retry policy sets the gaps and may stop early.",
);

/// Option keys.
pub(crate) const OPTIONS: &[Key] = &[ROUNDS];

pub(crate) fn parse(
    pos: Pos,
    args: Option<&Node>,
    section: &str,
    cx: &mut Cx,
) -> Option<Broadcast> {
    let Some(args) = args else {
        cx.error(
            pos,
            ErrorKind::MissingKey {
                key: ROUNDS.name,
                section: section.to_string(),
            },
        );
        return None;
    };
    let mut map = MapReader::new(args, section, cx)?;
    let rounds = map
        .require(ROUNDS.name, cx)
        .and_then(|n| uint(n, &map.key(ROUNDS.name), cx));
    map.finish(OPTIONS, cx);
    let rounds = rounds?;
    let value = u32::try_from(rounds.value).unwrap_or(u32::MAX);
    Some(Broadcast {
        pos,
        rounds: Spanned::new(value, rounds.pos),
    })
}

impl Broadcast {
    /// Pure checks: at least one round, at most [`MAX_ROUNDS`].
    pub(crate) fn validate(&self, section: &str, cx: &mut Cx) {
        if self.rounds.value == 0 {
            cx.error(self.rounds.pos, ErrorKind::ZeroRounds);
        } else if self.rounds.value > MAX_ROUNDS {
            cx.invalid(
                self.rounds.pos,
                &format!("{section}.rounds"),
                format!("at most {MAX_ROUNDS} rounds, found {}", self.rounds.value),
            );
        }
    }
}

/// Where a broadcast stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Not begun.
    #[default]
    Ready,
    /// Waiting to start the next round.
    Waiting {
        /// When.
        at: Timestamp,
    },
    /// A round is being sent.
    RoundOpen {
        /// Which, from 1.
        round: u32,
    },
    /// A round finished; the retry policy decides what follows.
    Deciding {
        /// The round that finished.
        round: u32,
    },
    /// Staged: the advance policy decides on the current stage, after
    /// round `round` brought failures, or (`None`) once the stage's
    /// broadcast is over.
    Gating {
        /// The round that brought failures, while the stage's broadcast
        /// goes on.
        round: Option<u32>,
    },
    /// Staged: the stage soaks until `at`, then the advance policy is
    /// asked again.
    Soaking {
        /// When.
        at: Timestamp,
    },
    /// No more rounds.
    Done,
}

/// Where a staged run stands among its stages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageProgress {
    /// The current stage, from 0.
    pub index: u32,
    /// When it started; `None` until the driver admitted its clients.
    pub began: Option<Timestamp>,
    /// Rounds started before it: its own rounds are numbered on from
    /// there, and the plan's `rounds` bounds each stage's.
    pub rounds_before: u32,
    /// When its broadcast was over: its soak counts from there.
    pub broadcast_over: Option<Timestamp>,
    /// The advance policy paused the run in this stage: once resumed, a
    /// `wait` on a stage whose broadcast is over sends the stage's rounds
    /// again (to the clients pending then: readmitted ones), and its soak
    /// starts again after them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// Run state of `broadcast`.
///
/// | phase            | `poll(now)`                         | input that moves it           |
/// |------------------|-------------------------------------|-------------------------------|
/// | ready            | waits for `schedule.start`          | —                             |
/// | waiting `at`     | `SleepUntil(at)`, then opens a round | —                            |
/// | round `n` open   | `StartRound(n)` (again after a crash) | `RoundFinished`             |
/// | deciding after n | `AskNextRound(n)`                   | `NextRound(wait or stop)`     |
/// | done             | step over                           | —                             |
///
/// Staged (`cx.stages > 0`), each stage goes through the same table,
/// with three more rows:
///
/// | phase              | `poll(now)`                        | input that moves it           |
/// |--------------------|------------------------------------|-------------------------------|
/// | ready, stage not begun | `StartStage(k)`                | `StageStarted`                |
/// | deciding after n   | (as above)                         | `Failures` → gating after n   |
/// | gating             | `AskAdvance { stage, round }`      | `Advance(..)`                 |
/// | soaking `at`       | `SleepUntil(at)`, then gating      | —                             |
///
/// Gating after round n (failures came in): a pause or an abort holds the
/// stage, anything else lets the broadcast go on. Gating once the stage's
/// rounds are over (planned count reached, or the retry policy stopped
/// them): `proceed` begins the next stage (or ends the step after the
/// last), `wait` soaks, `pause` and `abort` hold the state, so the policy
/// is asked again when the run is resumed. The first `wait` after a
/// pause sends the stage's rounds again (see [`StageProgress::held`]).
///
/// Rounds start only inside the schedule's daily window, and never more
/// than planned, whatever the policy says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Where it stands.
    #[serde(flatten)]
    pub phase: Phase,
    /// When each round started.
    pub started: Vec<Timestamp>,
    /// Why rounds stopped before the planned count, if they did (in a
    /// staged run, the last stage whose rounds stopped early).
    pub stopped_early: Option<String>,
    /// A staged run's progress through its stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<StageProgress>,
}

impl State {
    pub(crate) fn poll(&mut self, spec: &Broadcast, cx: &RunCx, now: Timestamp) -> Poll {
        loop {
            match self.phase.clone() {
                Phase::Ready => {
                    if cx.stages > 0 {
                        let stage = self.stage.get_or_insert_with(StageProgress::default);
                        if stage.began.is_none() {
                            return Poll::Do(Command::StartStage(stage.index));
                        }
                    }
                    self.phase = Phase::Waiting {
                        at: cx.round_time(cx.start.max(now)),
                    };
                }
                Phase::Waiting { at } if now < at => return Poll::Do(Command::SleepUntil(at)),
                Phase::Waiting { .. } => {
                    self.started.push(now);
                    self.phase = Phase::RoundOpen {
                        round: self.started.len() as u32,
                    };
                }
                Phase::RoundOpen { round } => return Poll::Do(Command::StartRound(round)),
                Phase::Deciding { round } if self.round_in_stage(round) >= spec.rounds.value => {
                    self.broadcast_over(now);
                }
                Phase::Deciding { round } => return Poll::Do(Command::AskNextRound(round)),
                Phase::Gating { round } => {
                    let stage = self.stage.as_ref().map_or(0, |s| s.index);
                    return Poll::Do(Command::AskAdvance { stage, round });
                }
                Phase::Soaking { at } if now < at => return Poll::Do(Command::SleepUntil(at)),
                Phase::Soaking { .. } => self.phase = Phase::Gating { round: None },
                Phase::Done => return Poll::Done,
            }
        }
    }

    /// Round `round`'s number within its stage (the run's number in an
    /// unstaged run).
    pub fn round_in_stage(&self, round: u32) -> u32 {
        round.saturating_sub(self.stage.as_ref().map_or(0, |s| s.rounds_before))
    }

    /// No more rounds for this stage (or, unstaged, at all).
    fn broadcast_over(&mut self, now: Timestamp) {
        match &mut self.stage {
            Some(stage) => {
                stage.broadcast_over.get_or_insert(now);
                self.phase = Phase::Gating { round: None };
            }
            None => self.phase = Phase::Done,
        }
    }

    pub(crate) fn handle(&mut self, input: &Input, cx: &RunCx, now: Timestamp) {
        match (self.phase.clone(), input) {
            (Phase::Ready, Input::StageStarted) => {
                let before = u32::try_from(self.started.len()).unwrap_or(u32::MAX);
                if let Some(stage) = self.stage.as_mut().filter(|s| s.began.is_none()) {
                    stage.began = Some(now);
                    stage.rounds_before = before;
                }
            }
            (Phase::RoundOpen { round }, Input::RoundFinished) => {
                self.phase = Phase::Deciding { round };
            }
            (Phase::Deciding { round }, Input::Failures) if self.stage.is_some() => {
                self.phase = Phase::Gating { round: Some(round) };
            }
            (Phase::Gating { .. }, Input::Advance(Advance::Pause { .. })) => {
                if let Some(stage) = &mut self.stage {
                    stage.held = true;
                }
            }
            (Phase::Gating { round: Some(round) }, Input::Advance(a)) => {
                if matches!(a, Advance::Proceed { .. } | Advance::Wait { .. }) {
                    self.phase = Phase::Deciding { round };
                }
            }
            (Phase::Gating { round: None }, Input::Advance(Advance::Wait { .. }))
                if self.stage.as_ref().is_some_and(|s| s.held) =>
            {
                let before = u32::try_from(self.started.len()).unwrap_or(u32::MAX);
                if let Some(stage) = &mut self.stage {
                    stage.held = false;
                    stage.rounds_before = before;
                    stage.broadcast_over = None;
                }
                self.phase = Phase::Ready;
            }
            (Phase::Gating { round: None }, Input::Advance(a)) => match a {
                Advance::Proceed { .. } => {
                    let next = self.stage.as_ref().map_or(u32::MAX, |s| s.index + 1);
                    if next >= cx.stages {
                        self.phase = Phase::Done;
                    } else {
                        self.stage = Some(StageProgress {
                            index: next,
                            ..StageProgress::default()
                        });
                        self.phase = Phase::Ready;
                    }
                }
                // A zero wait would ask again at the same instant forever.
                Advance::Wait { wait, .. } => {
                    self.phase = Phase::Soaking {
                        at: after(now, (*wait).max(Duration::from_secs(1))),
                    };
                }
                Advance::Pause { .. } | Advance::Abort { .. } => {}
            },
            (Phase::Deciding { .. }, Input::NextRound(NextRound::Wait(gap))) => {
                self.phase = Phase::Waiting {
                    at: cx.round_time(after(now, *gap)),
                };
            }
            (Phase::Deciding { .. }, Input::NextRound(NextRound::Stop { reason })) => {
                self.stopped_early = Some(reason.clone());
                self.broadcast_over(now);
            }
            _ => {}
        }
    }
}

fn after(now: Timestamp, gap: Duration) -> Timestamp {
    let gap = SignedDuration::try_from(gap).unwrap_or(SignedDuration::MAX);
    now.saturating_add(gap).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rounds: u32) -> Broadcast {
        Broadcast {
            pos: Pos::default(),
            rounds: Spanned::new(rounds, Pos::default()),
        }
    }

    #[test]
    fn zero_and_too_many_rounds_are_errors() {
        let mut cx = Cx::new("w.yaml".into());
        spec(0).validate("steps[1].broadcast", &mut cx);
        spec(MAX_ROUNDS + 1).validate("steps[1].broadcast", &mut cx);
        spec(3).validate("steps[1].broadcast", &mut cx);
        let messages: Vec<String> = cx.errors.iter().map(|e| e.kind.to_string()).collect();
        assert_eq!(
            messages,
            vec![
                "broadcast needs at least 1 round, found 0".to_string(),
                "steps[1].broadcast.rounds: at most 100 rounds, found 101".to_string(),
            ]
        );
    }

    #[test]
    fn rounds_are_required_and_typed() {
        let mut cx = Cx::new("w.yaml".into());
        assert!(parse(Pos::default(), None, "steps[1].broadcast", &mut cx).is_none());
        let node = haifu_yaml::parse("{ rounds: three }").unwrap().unwrap();
        assert!(parse(Pos::default(), Some(&node), "steps[1].broadcast", &mut cx).is_none());
        let messages: Vec<String> = cx.errors.iter().map(|e| e.kind.to_string()).collect();
        assert_eq!(
            messages,
            vec![
                "missing required key \"rounds\" in steps[1].broadcast".to_string(),
                "steps[1].broadcast.rounds: expected a whole number, found a string".to_string(),
            ]
        );
    }
}
