//! `register`: put the artifact in the content-addressed store and the ledger
//! (patent steps 100-101). Takes no options; must come first.

use serde::{Deserialize, Serialize};

use super::machine::{Command, Input, Poll};

use crate::fields::{Cx, MapReader};
use crate::pos::Pos;
use crate::shape::Key;
use haifu_yaml::Node;

/// The `register` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// Where the step is written.
    pub pos: Pos,
}

/// Option keys (none).
pub(crate) const OPTIONS: &[Key] = &[];

pub(crate) fn parse(pos: Pos, args: Option<&Node>, section: &str, cx: &mut Cx) -> Option<Register> {
    if let Some(args) = args {
        MapReader::new(args, section, cx)?.finish(OPTIONS, cx);
    }
    Some(Register { pos })
}

/// Run state of `register`: the driver is asked once, then the step is done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Whether the driver reported the artifact registered.
    pub done: bool,
}

impl State {
    pub(crate) fn poll(&mut self) -> Poll {
        if self.done {
            Poll::Done
        } else {
            Poll::Do(Command::Register)
        }
    }

    pub(crate) fn handle(&mut self, input: &Input) {
        if matches!(input, Input::Registered) {
            self.done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_takes_no_options() {
        let mut cx = Cx::new("w.yaml".into());
        let node = haifu_yaml::parse("{ sign: true }").unwrap().unwrap();
        assert!(parse(Pos::default(), Some(&node), "steps[0].register", &mut cx).is_some());
        assert_eq!(
            cx.errors[0].kind.to_string(),
            "unknown key \"sign\" in steps[0].register"
        );
    }
}
