//! `audit`: list, per relay, the clients that confirmed and those that did
//! not (patent step 106). Takes no options; needs a `broadcast` before it.

use jiff::Timestamp;

use serde::{Deserialize, Serialize};

use super::machine::{Command, Input, Poll};

use crate::fields::{Cx, MapReader};
use crate::pos::Pos;
use crate::shape::Key;
use haifu_yaml::Node;

/// The `audit` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Where the step is written.
    pub pos: Pos,
}

/// Option keys (none).
pub(crate) const OPTIONS: &[Key] = &[];

pub(crate) fn parse(pos: Pos, args: Option<&Node>, section: &str, cx: &mut Cx) -> Option<Audit> {
    if let Some(args) = args {
        MapReader::new(args, section, cx)?.finish(OPTIONS, cx);
    }
    Some(Audit { pos })
}

/// Run state of `audit`: the driver lists the stragglers once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When the stragglers were listed.
    pub at: Option<Timestamp>,
}

impl State {
    pub(crate) fn poll(&mut self) -> Poll {
        if self.at.is_some() {
            Poll::Done
        } else {
            Poll::Do(Command::Audit)
        }
    }

    pub(crate) fn handle(&mut self, input: &Input, now: Timestamp) {
        if matches!(input, Input::Audited) {
            self.at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_accepts_an_empty_mapping() {
        let mut cx = Cx::new("w.yaml".into());
        let node = haifu_yaml::parse("{}").unwrap().unwrap();
        assert!(parse(Pos::default(), Some(&node), "steps[2].audit", &mut cx).is_some());
        assert!(cx.errors.is_empty());
    }
}
