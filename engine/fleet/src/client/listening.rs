//! When a receiving client tells its relay what it holds: every
//! [`REPORT_EVERY`] while datagrams come, once more when it has decoded
//! everything, and not while its decoder is far behind what came (such a
//! report would order repairs for symbols already queued).
//!
//! No I/O and no clock: the receive loop (and the fleet simulation) pass
//! the time and the receiver's report; what comes back goes to the core as
//! `Event::Listening`.

use std::time::Duration;
use std::time::Instant;

use haifu_carousel::Report;
use haifu_protocol::Feedback;
use haifu_protocol::SessionKey;

/// How often a listening client tells its relay what it still needs.
pub(crate) const REPORT_EVERY: Duration = Duration::from_millis(100);

/// A report waits while more datagrams than this are queued for the
/// decoder (about 30 ms at 100 Mbit/s): what it would say is that much
/// behind what the relay sent, and the relay would order repairs for
/// symbols already here.
const REPORT_BACKLOG_MAX: usize = 256;

/// ... unless the last report is this old: a decoder that stays behind
/// still tells its relay it is there (asking for nothing, so that the
/// relay does not drop it for silence).
const REPORT_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// How long it goes on reporting after the last datagram it heard: long
/// enough for the relay to order repairs after the round's first pass, and
/// it stops between rounds (which may be hours apart).
const REPORT_AFTER_SILENCE: Duration = Duration::from_secs(2);

/// When the receiver reports to its relay.
#[derive(Debug, Default)]
pub(crate) struct Listening {
    heard: Option<u64>,
    heard_at: Option<Instant>,
    said_at: Option<Instant>,
    done_said: bool,
}

impl Listening {
    /// The report to send at `now`, given what the receiver holds
    /// (`report`) and how many datagrams wait for its decoder (`backlog`):
    /// one if something was heard lately, and once when done.
    pub(crate) fn tick(&mut self, now: Instant, report: Report, backlog: usize) -> Option<Report> {
        if self.heard != Some(report.heard) {
            self.heard = Some(report.heard);
            self.heard_at = Some(now);
        }
        let lately = self
            .heard_at
            .is_some_and(|t| report.heard > 0 && now.duration_since(t) < REPORT_AFTER_SILENCE);
        if self.done_said || !(lately || report.done) {
            return None;
        }
        let mut report = report;
        if !report.done && backlog > REPORT_BACKLOG_MAX {
            let overdue = self
                .said_at
                .is_none_or(|t| now.duration_since(t) >= REPORT_AT_LEAST_EVERY);
            if !overdue {
                return None;
            }
            // Still here, asking for nothing: what it holds is too far
            // behind what came to be worth repairs.
            report.held.clear();
            report.newest.clear();
            report.horizon = report.done_below;
        }
        self.said_at = Some(now);
        self.done_said = report.done;
        Some(report)
    }
}

/// `report` about session `s`, as the relay link carries it.
pub(crate) fn feedback(s: &SessionKey, report: Report) -> Feedback {
    Feedback {
        run: s.run,
        session_id: s.session_id,
        heard: report.heard,
        done: report.done,
        done_below: report.done_below,
        horizon: report.horizon,
        held: report.held,
        newest: report.newest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(heard: u64, done: bool) -> Report {
        Report {
            heard,
            done,
            done_below: u32::from(done),
            horizon: 1,
            held: if done { Vec::new() } else { vec![(0, 3)] },
            newest: if done { Vec::new() } else { vec![Some(7)] },
        }
    }

    #[test]
    fn reports_while_hearing_and_stops_after_the_silence() {
        let t0 = Instant::now();
        let mut l = Listening::default();
        assert_eq!(l.tick(t0, holding(0, false), 0), None, "nothing heard yet");
        assert!(l.tick(t0 + REPORT_EVERY, holding(5, false), 0).is_some());
        // Nothing new heard: it goes on reporting for a while (the relay
        // may be between its first pass and the repairs) ...
        assert!(
            l.tick(t0 + 2 * REPORT_EVERY, holding(5, false), 0)
                .is_some()
        );
        // ... and stops once nothing came for REPORT_AFTER_SILENCE.
        let later = t0 + REPORT_EVERY + REPORT_AFTER_SILENCE;
        assert_eq!(l.tick(later, holding(5, false), 0), None);
    }

    #[test]
    fn says_done_once() {
        let t0 = Instant::now();
        let mut l = Listening::default();
        let done = l.tick(t0, holding(9, true), 0);
        assert!(done.is_some_and(|r| r.done));
        assert_eq!(l.tick(t0 + REPORT_EVERY, holding(10, true), 0), None);
    }

    #[test]
    fn a_decoder_far_behind_asks_for_nothing_but_still_says_it_is_there() {
        let t0 = Instant::now();
        let mut l = Listening::default();
        let first = l
            .tick(t0, holding(5, false), REPORT_BACKLOG_MAX + 1)
            .unwrap();
        assert!(first.held.is_empty() && first.newest.is_empty());
        assert_eq!(first.horizon, first.done_below);
        assert_eq!(
            l.tick(t0 + REPORT_EVERY, holding(6, false), REPORT_BACKLOG_MAX + 1),
            None
        );
        let overdue = t0 + REPORT_AT_LEAST_EVERY;
        assert!(
            l.tick(overdue, holding(7, false), REPORT_BACKLOG_MAX + 1)
                .is_some()
        );
    }
}
