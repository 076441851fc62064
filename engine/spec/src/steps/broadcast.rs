//! `broadcast: { rounds: N }`: multicast the artifact N times in all
//! (patent steps 103-105); the retry policy decides the gaps and may stop
//! early.

use std::time::Duration;

use haifu_policy::NextRound;
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
    /// No more rounds.
    Done,
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
/// Rounds start only inside the schedule's daily window, and never more
/// than planned, whatever the policy says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Where it stands.
    #[serde(flatten)]
    pub phase: Phase,
    /// When each round started.
    pub started: Vec<Timestamp>,
    /// Why rounds stopped before the planned count, if they did.
    pub stopped_early: Option<String>,
}

impl State {
    pub(crate) fn poll(&mut self, spec: &Broadcast, cx: &RunCx, now: Timestamp) -> Poll {
        loop {
            match self.phase.clone() {
                Phase::Ready => {
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
                Phase::Deciding { round } if round >= spec.rounds.value => self.phase = Phase::Done,
                Phase::Deciding { round } => return Poll::Do(Command::AskNextRound(round)),
                Phase::Done => return Poll::Done,
            }
        }
    }

    pub(crate) fn handle(&mut self, input: &Input, cx: &RunCx, now: Timestamp) {
        match (self.phase.clone(), input) {
            (Phase::RoundOpen { round }, Input::RoundFinished) => {
                self.phase = Phase::Deciding { round };
            }
            (Phase::Deciding { .. }, Input::NextRound(NextRound::Wait(gap))) => {
                self.phase = Phase::Waiting {
                    at: cx.round_time(after(now, *gap)),
                };
            }
            (Phase::Deciding { .. }, Input::NextRound(NextRound::Stop { reason })) => {
                self.stopped_early = Some(reason.clone());
                self.phase = Phase::Done;
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
