//! `disconnect`: at the deadline, ask the disconnect policy about each
//! client still not updated and cut off those it names (patent steps
//! 110-111). Takes no options; must be last.

use jiff::Timestamp;

use serde::{Deserialize, Serialize};

use super::machine::{Command, Input, Poll, RunCx};

use crate::fields::{Cx, MapReader};
use crate::pos::Pos;
use crate::shape::Key;
use haifu_yaml::Node;

/// The `disconnect` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Where the step is written.
    pub pos: Pos,
}

/// Option keys (none).
pub(crate) const OPTIONS: &[Key] = &[];

pub(crate) fn parse(
    pos: Pos,
    args: Option<&Node>,
    section: &str,
    cx: &mut Cx,
) -> Option<Disconnect> {
    if let Some(args) = args {
        MapReader::new(args, section, cx)?.finish(OPTIONS, cx);
    }
    Some(Disconnect { pos })
}

/// Run state of `disconnect`: waits for the deadline, then cuts off once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Whether every straggler has been offered to the policy.
    pub done: bool,
}

impl State {
    pub(crate) fn poll(&mut self, cx: &RunCx, now: Timestamp) -> Poll {
        if self.done {
            Poll::Done
        } else if now < cx.deadline {
            Poll::Do(Command::SleepUntil(cx.deadline))
        } else {
            Poll::Do(Command::CutOff)
        }
    }

    pub(crate) fn handle(&mut self, input: &Input) {
        if matches!(input, Input::CutOffDone) {
            self.done = true;
        }
    }
}
