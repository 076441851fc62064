//! Whether a run's completions may still be in flight, before its audit
//! makes the report final.
//!
//! A completion travels client → relay → master and is kept on the
//! client's disk until the master acknowledges it. A relay that dies with
//! completions on their way loses them; the clients send them again once
//! they are back behind a relay (first thing on reconnect, then every
//! [`crate::client::machine::RESEND`]). So the report is final only when
//! every relay that carried the run and still has clients to hear from is
//! connected again, has been for long enough that its clients are back and
//! have resent ([`SETTLE`]), and nothing received waits to be written.
//! A relay that does not come back is given up by the shell after its
//! bound: what comes through it later is recorded as late.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::SignedDuration;
use jiff::Timestamp;

use super::MasterCore;

/// How long a relay must have been back before its clients' resent
/// completions are taken to have arrived: a client finds a restarted relay
/// within about a second (a keep-alive answered by a stateless reset, then
/// a reconnect within [`crate::common::RECONNECT_MAX`]) and resends its
/// completion first thing, and one that missed that resends within
/// [`crate::client::machine::RESEND`].
pub(crate) const SETTLE: Duration = Duration::from_millis(2_500);

/// What still stands between a run and its final report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drain {
    /// Nothing: every completion sent is recorded.
    Drained,
    /// Relays that carried the run are not connected: their clients'
    /// completions wait for them.
    Missing(Vec<String>),
    /// Relays back for less than [`SETTLE`]: their clients may still be
    /// resending.
    Settling(Vec<String>),
    /// Relays that have not answered this drain's ping yet: the master
    /// cannot tell a live relay from one that died and whose connection
    /// has not timed out, and the answer comes after whatever the relay
    /// passed on before it.
    Unanswered(Vec<String>),
    /// Completions received are not durable yet.
    Writing,
}

impl MasterCore {
    /// What stands between run `run` and its final report at `now`, given
    /// the relays its undelivered clients are behind and those of them
    /// that `answered` this drain's ping. Only relays that carried this run
    /// (were sent its instruction by this master) are waited for: one
    /// never seen cannot have completions in flight.
    pub(crate) fn drain(
        &self,
        run: u64,
        relays: &BTreeSet<String>,
        answered: &BTreeSet<String>,
        now: Timestamp,
    ) -> Drain {
        let carried = |r: &&String| self.instructed.contains(&(run, (*r).clone()));
        let missing: Vec<String> = relays
            .iter()
            .filter(carried)
            .filter(|r| !self.relays.contains_key(*r))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Drain::Missing(missing);
        }
        let settle = SignedDuration::try_from(SETTLE).unwrap_or_default();
        let settling: Vec<String> = relays
            .iter()
            .filter(carried)
            .filter(|r| {
                self.relay_since
                    .get(*r)
                    .is_some_and(|since| now.duration_since(*since) < settle)
            })
            .cloned()
            .collect();
        if !settling.is_empty() {
            return Drain::Settling(settling);
        }
        let unanswered: Vec<String> = relays
            .iter()
            .filter(carried)
            .filter(|r| !answered.contains(*r))
            .cloned()
            .collect();
        if !unanswered.is_empty() {
            return Drain::Unanswered(unanswered);
        }
        if !self.is_idle() {
            return Drain::Writing;
        }
        Drain::Drained
    }
}

impl MasterCore {
    /// The connection of registered relay `name`.
    pub(crate) fn relay_conn(&self, name: &str) -> Option<super::ConnId> {
        self.relays.get(name).copied()
    }
}
