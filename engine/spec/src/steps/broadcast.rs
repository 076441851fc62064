//! `broadcast: { rounds: N }`: multicast the artifact N times in all
//! (patent steps 103-105); the retry policy decides the gaps and may stop
//! early.

use std::time::Duration;

use haifu_policy::NextRound;
use jiff::{SignedDuration, Timestamp};

use crate::error::ErrorKind;
use crate::fields::{Cx, MapReader, uint};
use crate::pos::{Pos, Spanned};
use crate::yaml::Node;

/// More rounds than this is surely a typo (a round a minute for 1.5 h).
pub const MAX_ROUNDS: u32 = 100;

/// The `broadcast` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// Where the step is written.
    pub pos: Pos,
    /// Rounds in all, 1..=[`MAX_ROUNDS`].
    pub rounds: Spanned<u32>,
}

/// Option keys.
pub(crate) const KEYS: &[&str] = &["rounds"];

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
                key: "rounds",
                section: section.to_string(),
            },
        );
        return None;
    };
    let mut map = MapReader::new(args, section, cx)?;
    let rounds = map
        .require("rounds", cx)
        .and_then(|n| uint(n, &format!("{section}.rounds"), cx));
    map.finish(KEYS, cx);
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

/// What the driver must do for this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastCommand {
    /// Start sending round `n` (from 1).
    StartRound(u32),
}

/// Progress of `broadcast`. Time is an argument: `poll(now)` says what is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastProgress {
    /// Round `round` starts at `at`.
    Waiting {
        /// The round to start next, from 1.
        round: u32,
        /// When.
        at: Timestamp,
    },
    /// Round `round` is on the air.
    Sending {
        /// The round being sent.
        round: u32,
        /// When it started.
        since: Timestamp,
    },
    /// No more rounds.
    Done {
        /// Rounds actually sent.
        sent: u32,
        /// Why it ended.
        reason: String,
    },
}

impl BroadcastProgress {
    /// Round 1 waits for `start`.
    pub fn new(start: Timestamp) -> Self {
        BroadcastProgress::Waiting {
            round: 1,
            at: start,
        }
    }

    /// When the driver should call [`BroadcastProgress::poll`] next.
    pub fn next_wake(&self) -> Option<Timestamp> {
        match self {
            BroadcastProgress::Waiting { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// Starts the waiting round once its time has come.
    pub fn poll(&mut self, now: Timestamp) -> Option<BroadcastCommand> {
        match *self {
            BroadcastProgress::Waiting { round, at } if now >= at => {
                *self = BroadcastProgress::Sending { round, since: now };
                Some(BroadcastCommand::StartRound(round))
            }
            _ => None,
        }
    }

    /// The round on the air finished at `now`; `next` is the retry policy's
    /// answer. Never more than `spec.rounds` rounds, whatever the policy says.
    pub fn round_finished(&mut self, spec: &Broadcast, now: Timestamp, next: &NextRound) {
        let BroadcastProgress::Sending { round, .. } = *self else {
            return;
        };
        *self = if round >= spec.rounds.value {
            BroadcastProgress::Done {
                sent: round,
                reason: format!("all {} rounds sent", spec.rounds.value),
            }
        } else {
            match next {
                NextRound::Stop { reason } => BroadcastProgress::Done {
                    sent: round,
                    reason: reason.clone(),
                },
                NextRound::Wait(gap) => BroadcastProgress::Waiting {
                    round: round + 1,
                    at: after(now, *gap),
                },
            }
        };
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
    fn rounds_follow_the_policy_gaps_and_stop_at_the_planned_count() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let s = spec(2);
        let mut p = BroadcastProgress::new(t0);
        assert_eq!(p.poll(Timestamp::from_second(999_999).unwrap()), None);
        assert_eq!(p.poll(t0), Some(BroadcastCommand::StartRound(1)));
        p.round_finished(&s, t0, &NextRound::Wait(Duration::from_secs(60)));
        let wake = p.next_wake().unwrap();
        assert_eq!(wake.as_second(), 1_000_060);
        assert_eq!(p.poll(wake), Some(BroadcastCommand::StartRound(2)));
        // The policy asks for more, but 2 rounds were planned.
        p.round_finished(&s, wake, &NextRound::Wait(Duration::from_secs(60)));
        assert!(matches!(p, BroadcastProgress::Done { sent: 2, .. }));
    }

    #[test]
    fn the_policy_may_stop_early() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut p = BroadcastProgress::new(t0);
        p.poll(t0);
        p.round_finished(
            &spec(3),
            t0,
            &NextRound::Stop {
                reason: "all in".into(),
            },
        );
        assert_eq!(
            p,
            BroadcastProgress::Done {
                sent: 1,
                reason: "all in".into()
            }
        );
        assert_eq!(p.next_wake(), None);
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
        let node = crate::yaml::parse("{ rounds: three }").unwrap().unwrap();
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
