//! `audit`: list, per relay, the clients that confirmed and those that did
//! not (patent step 106). Takes no options; needs a `broadcast` before it.

use jiff::Timestamp;

use crate::fields::{Cx, MapReader};
use crate::pos::Pos;
use crate::yaml::Node;

/// The `audit` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Where the step is written.
    pub pos: Pos,
}

/// Option keys (none).
pub(crate) const KEYS: &[&str] = &[];

pub(crate) fn parse(pos: Pos, args: Option<&Node>, section: &str, cx: &mut Cx) -> Option<Audit> {
    if let Some(args) = args {
        MapReader::new(args, section, cx)?.finish(KEYS, cx);
    }
    Some(Audit { pos })
}

/// What the driver must do for this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditCommand {
    /// Ask each relay for its delivered / undelivered lists.
    ListStragglers,
}

/// Progress of `audit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditProgress {
    /// Not started.
    Pending,
    /// Waiting for the relays' lists.
    Collecting {
        /// When it started.
        since: Timestamp,
    },
    /// Every relay answered.
    Done {
        /// Stragglers found.
        stragglers: u64,
        /// When.
        at: Timestamp,
    },
}

impl AuditProgress {
    /// The next command, if any is due at `now`.
    pub fn poll(&mut self, now: Timestamp) -> Option<AuditCommand> {
        match self {
            AuditProgress::Pending => {
                *self = AuditProgress::Collecting { since: now };
                Some(AuditCommand::ListStragglers)
            }
            _ => None,
        }
    }

    /// The relays' lists are in.
    pub fn collected(&mut self, stragglers: u64, now: Timestamp) {
        *self = AuditProgress::Done {
            stragglers,
            at: now,
        };
    }

    /// Whether the step is over.
    pub fn is_done(&self) -> bool {
        matches!(self, AuditProgress::Done { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_collects_once() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut p = AuditProgress::Pending;
        assert_eq!(p.poll(t0), Some(AuditCommand::ListStragglers));
        assert_eq!(p.poll(t0), None);
        p.collected(7, t0);
        assert_eq!(
            p,
            AuditProgress::Done {
                stragglers: 7,
                at: t0
            }
        );
    }

    #[test]
    fn audit_accepts_an_empty_mapping() {
        let mut cx = Cx::new("w.yaml".into());
        let node = crate::yaml::parse("{}").unwrap().unwrap();
        assert!(parse(Pos::default(), Some(&node), "steps[2].audit", &mut cx).is_some());
        assert!(cx.errors.is_empty());
    }
}
