//! `disconnect`: at the deadline, ask the disconnect policy about each
//! client still not updated and cut off those it names (patent steps
//! 110-111). Takes no options; must be last.

use jiff::Timestamp;

use crate::fields::{Cx, MapReader};
use crate::pos::Pos;
use crate::yaml::Node;

/// The `disconnect` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Where the step is written.
    pub pos: Pos,
}

/// Option keys (none).
pub(crate) const KEYS: &[&str] = &[];

pub(crate) fn parse(
    pos: Pos,
    args: Option<&Node>,
    section: &str,
    cx: &mut Cx,
) -> Option<Disconnect> {
    if let Some(args) = args {
        MapReader::new(args, section, cx)?.finish(KEYS, cx);
    }
    Some(Disconnect { pos })
}

/// What the driver must do for this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectCommand {
    /// Ask the disconnect policy about every straggler and deny-list the
    /// ones it cuts off.
    CutOffStragglers,
}

/// Progress of `disconnect`: waits for the deadline, then acts once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectProgress {
    /// Waiting for the deadline.
    Waiting {
        /// The deadline.
        at: Timestamp,
    },
    /// Cut-offs decided and recorded.
    Done {
        /// Clients cut off.
        cut: u64,
    },
}

impl DisconnectProgress {
    /// Waits for `deadline`.
    pub fn new(deadline: Timestamp) -> Self {
        DisconnectProgress::Waiting { at: deadline }
    }

    /// When the driver should call [`DisconnectProgress::poll`] next.
    pub fn next_wake(&self) -> Option<Timestamp> {
        match self {
            DisconnectProgress::Waiting { at } => Some(*at),
            DisconnectProgress::Done { .. } => None,
        }
    }

    /// Due once the deadline has passed.
    pub fn poll(&mut self, now: Timestamp) -> Option<DisconnectCommand> {
        match self {
            DisconnectProgress::Waiting { at } if now >= *at => {
                Some(DisconnectCommand::CutOffStragglers)
            }
            _ => None,
        }
    }

    /// The driver cut off `cut` clients.
    pub fn finished(&mut self, cut: u64) {
        *self = DisconnectProgress::Done { cut };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_waits_for_the_deadline() {
        let deadline = Timestamp::from_second(100).unwrap();
        let mut p = DisconnectProgress::new(deadline);
        assert_eq!(p.poll(Timestamp::from_second(99).unwrap()), None);
        assert_eq!(p.poll(deadline), Some(DisconnectCommand::CutOffStragglers));
        p.finished(3);
        assert_eq!(p.next_wake(), None);
        assert_eq!(p.poll(deadline), None);
    }
}
