//! `register`: put the artifact in the content-addressed store and the ledger
//! (patent steps 100-101). Takes no options; must come first.

use jiff::Timestamp;

use crate::fields::{Cx, MapReader};
use crate::pos::Pos;
use crate::yaml::Node;

/// The `register` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// Where the step is written.
    pub pos: Pos,
}

/// Option keys (none).
pub(crate) const KEYS: &[&str] = &[];

pub(crate) fn parse(pos: Pos, args: Option<&Node>, section: &str, cx: &mut Cx) -> Option<Register> {
    if let Some(args) = args {
        MapReader::new(args, section, cx)?.finish(KEYS, cx);
    }
    Some(Register { pos })
}

/// What the driver must do for this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterCommand {
    /// Store the artifact and record it in the ledger.
    Register,
}

/// Progress of `register`: asked once, done when the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterProgress {
    /// Not asked yet.
    Pending,
    /// Asked; waiting for the driver.
    Registering {
        /// When it was asked.
        since: Timestamp,
    },
    /// Stored and recorded.
    Done {
        /// When.
        at: Timestamp,
    },
}

impl RegisterProgress {
    /// The next command, if any is due at `now`.
    pub fn poll(&mut self, now: Timestamp) -> Option<RegisterCommand> {
        match self {
            RegisterProgress::Pending => {
                *self = RegisterProgress::Registering { since: now };
                Some(RegisterCommand::Register)
            }
            _ => None,
        }
    }

    /// The driver stored the artifact.
    pub fn registered(&mut self, now: Timestamp) {
        *self = RegisterProgress::Done { at: now };
    }

    /// Whether the step is over.
    pub fn is_done(&self) -> bool {
        matches!(self, RegisterProgress::Done { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_asks_once_then_waits_for_the_driver() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut p = RegisterProgress::Pending;
        assert_eq!(p.poll(t0), Some(RegisterCommand::Register));
        assert_eq!(p.poll(t0), None);
        assert!(!p.is_done());
        p.registered(t0);
        assert!(p.is_done());
    }

    #[test]
    fn register_takes_no_options() {
        let mut cx = Cx::new("w.yaml".into());
        let node = crate::yaml::parse("{ sign: true }").unwrap().unwrap();
        assert!(parse(Pos::default(), Some(&node), "steps[0].register", &mut cx).is_some());
        assert_eq!(
            cx.errors[0].kind.to_string(),
            "unknown key \"sign\" in steps[0].register"
        );
    }
}
