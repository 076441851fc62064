//! The client's part of `haifu rollback`: an order from its relay for
//! this client is carried out once (the order ids it has handled are
//! kept on disk), its report is kept on disk and resent until the master
//! acks it, and after a rollback the client holds back from the version it
//! left: the run it undid does not move it forward again, a later run
//! does (and lifts the hold).

use haifu_protocol::ArtifactRef;
use haifu_protocol::Message;
use haifu_protocol::Rollback;
use haifu_protocol::RollbackAck;
use haifu_protocol::RollbackOutcome;
use haifu_protocol::RollbackReport;
use jiff::Timestamp;
use serde::Deserialize;
use serde::Serialize;

use super::ClientCore;
use super::Effect;
use crate::FleetError;

/// Why a rollback order changed nothing. The report's reason is its
/// message with its sources, on one line and bounded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// Nothing is installed to roll back from.
    #[error("nothing is installed")]
    NothingInstalled,
    /// The order names another artifact than the one this client runs.
    #[error("this client runs {runs:?}, not {ordered:?}")]
    OtherArtifact {
        /// The artifact this client runs.
        runs: String,
        /// The order's.
        ordered: String,
    },
    /// The order's intent could not be kept on disk, so nothing switched.
    #[error("cannot keep the rollback's record")]
    Record(#[source] FleetError),
    /// The install root refused the switch or failed in it.
    #[error(transparent)]
    Switch(#[from] haifu_install::InstallError),
    /// The switch returned, but no version reads as current.
    #[error("nothing current after the switch")]
    NothingCurrent,
}

/// What the client keeps on disk of its rollbacks (`rollback.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RollbackState {
    /// The order carried out last (its intent is written before the
    /// switch, so a crash between the two is told apart on the resend).
    pub(crate) last_order: u64,
    /// The orders handled lately (at most [`MAX_HANDLED`]): one of them
    /// is not carried out again (its kept report is resent instead).
    /// Orders may come in any order: one sent while the client was away
    /// comes again after a later one.
    #[serde(default)]
    pub(crate) handled: Vec<u64>,
    /// Set by a rollback until a newer version is installed.
    pub(crate) hold: Option<Hold>,
    /// The reports the master has not acked yet, oldest first (at most
    /// [`MAX_REPORTS`]).
    #[serde(default)]
    pub(crate) reports: Vec<KeptReport>,
}

/// Most reports kept unacked: orders come one at a time from an operator,
/// so more means a master that never acks; the oldest is dropped (its
/// order stays open in the ledger, and says so in `haifu fleet list`).
pub(crate) const MAX_REPORTS: usize = 16;

/// Most order ids remembered as handled.
pub(crate) const MAX_HANDLED: usize = 64;

/// `handled` with `order` added, the oldest dropped past [`MAX_HANDLED`].
fn with_handled(handled: &[u64], order: u64) -> Vec<u64> {
    let mut out: Vec<u64> = handled.iter().copied().filter(|o| *o != order).collect();
    out.push(order);
    if out.len() > MAX_HANDLED {
        out.remove(0);
    }
    out
}

/// Held back after a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hold {
    /// The version rolled back from: no target up to it is fetched.
    pub(crate) from: String,
    /// The newest run when ordered: no session of it or an older run is
    /// received.
    pub(crate) through_run: u64,
}

/// A report not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeptReport {
    pub(crate) order: u64,
    /// The version now current (done), or none (refused).
    pub(crate) version: Option<String>,
    /// Its sha3-256, hex (done).
    pub(crate) digest: Option<String>,
    /// Why nothing changed (refused).
    pub(crate) reason: Option<String>,
    pub(crate) at: String,
}

impl KeptReport {
    fn message(&self, client: &str) -> Option<Message> {
        let outcome = match (&self.version, &self.digest, &self.reason) {
            (Some(v), Some(d), _) => RollbackOutcome::Done {
                version: v.parse().ok()?,
                digest: d.parse().ok()?,
            },
            (_, _, Some(reason)) => RollbackOutcome::Refused {
                reason: reason.clone(),
            },
            _ => return None,
        };
        Some(Message::RollbackReport(RollbackReport {
            order: self.order,
            client: client.to_owned(),
            outcome,
            at: self.at.parse().ok()?,
        }))
    }
}

impl ClientCore {
    /// Whether the hold of a rollback keeps a session of `run` out.
    pub(super) fn held_run(&self, run: u64) -> bool {
        self.rollbacks
            .hold
            .as_ref()
            .is_some_and(|h| run <= h.through_run)
    }

    /// Whether the hold of a rollback keeps `target` out: no newer than
    /// the version rolled back from.
    pub(super) fn held_target(&self, target: &ArtifactRef) -> bool {
        self.rollbacks.hold.as_ref().is_some_and(|h| {
            h.from
                .parse::<haifu_core::Version>()
                .is_ok_and(|from| target.version <= from)
        })
    }

    /// A newer version was installed: the hold is over.
    pub(super) fn lift_hold(&mut self, out: &mut Vec<Effect>) {
        if self.rollbacks.hold.take().is_some() {
            tracing::info!("a newer version is installed; the rollback's hold is lifted");
            out.push(Effect::KeepRollbacks(self.rollbacks.clone()));
        }
    }

    /// An order from the relay.
    pub(super) fn rollback_order(&mut self, out: &mut Vec<Effect>, now: Timestamp, o: Rollback) {
        if o.client != self.id {
            tracing::warn!(order = o.order, client = %o.client, "rollback order for another client; refused");
            return;
        }
        if self.rolling_back.is_some() {
            return;
        }
        if self.has_pending() && !self.rollbacks.handled.contains(&o.order) {
            tracing::info!(
                order = o.order,
                "rollback order waits for the completion's ack"
            );
            self.deferred = Some(o);
            return;
        }
        if self.rollbacks.handled.contains(&o.order) {
            // Handled already: the kept report again, if not yet acked.
            if self.rollbacks.reports.iter().any(|r| r.order == o.order) {
                self.send_rollback_report(out, now);
                return;
            }
            // Recorded before the switch, then stopped: whether the switch
            // happened is on disk (the version it left is not current).
            let left = self.rollbacks.hold.as_ref().map(|h| h.from.clone());
            let installed = self.installed.as_ref().map(|i| i.version.to_string());
            if o.order == self.rollbacks.last_order && left.is_some() && left != installed {
                if let Some(i) = self.installed.clone() {
                    let hold = self.rollbacks.hold.clone();
                    self.finish_rollback(out, now, o.order, Ok(i), hold);
                }
                return;
            }
            if o.order != self.rollbacks.last_order {
                return;
            }
            // Its intent is on disk but the switch did not happen: again.
        }
        let Some(installed) = self.installed.clone() else {
            let why = Refusal::NothingInstalled;
            return self.finish_rollback(out, now, o.order, Err(why), None);
        };
        if o.artifact.as_str() != self.artifact {
            let why = Refusal::OtherArtifact {
                runs: self.artifact.clone(),
                ordered: o.artifact.as_str().to_owned(),
            };
            return self.finish_rollback(out, now, o.order, Err(why), None);
        }
        tracing::info!(order = o.order, from = %installed.version, to = ?o.to.as_ref().map(ToString::to_string), "rollback ordered by the master");
        // Recorded before the switch: a crash between the two is told
        // apart by what is current when the order comes again.
        let intent = super::rollback::RollbackState {
            last_order: o.order,
            handled: with_handled(&self.rollbacks.handled, o.order),
            hold: Some(Hold {
                from: installed.version.to_string(),
                through_run: o.through_run,
            }),
            reports: self.rollbacks.reports.clone(),
        };
        self.rolling_back = Some((o.order, intent.hold.clone()));
        out.push(Effect::RollBack {
            intent,
            artifact: self.artifact.clone(),
            to: o.to.map(|v| v.to_string()),
        });
    }

    /// The completion is acked (or could not be kept): a deferred order
    /// is carried out now.
    pub(super) fn deferred_rollback(&mut self, out: &mut Vec<Effect>, now: Timestamp) {
        if let Some(o) = self.deferred.take() {
            self.rollback_order(out, now, o);
        }
    }

    /// What the shell's switch for the order being carried out did
    /// (`Ok`: now current).
    pub(super) fn rolled_back(
        &mut self,
        out: &mut Vec<Effect>,
        now: Timestamp,
        result: Result<ArtifactRef, Refusal>,
    ) {
        let Some((order, hold)) = self.rolling_back.take() else {
            return;
        };
        self.finish_rollback(out, now, order, result, hold);
    }

    /// The outcome of `order` (`Ok`: now current, held back by `hold`):
    /// kept on disk, then reported.
    fn finish_rollback(
        &mut self,
        out: &mut Vec<Effect>,
        now: Timestamp,
        order: u64,
        result: Result<ArtifactRef, Refusal>,
        hold: Option<Hold>,
    ) {
        let at = now.to_string();
        let report = match &result {
            Ok(now_current) => {
                tracing::info!(order, version = %now_current.version, "rolled back by order of the master");
                self.switched_away(out, Some(now_current));
                self.installed = Some(now_current.clone());
                KeptReport {
                    order,
                    version: Some(now_current.version.to_string()),
                    digest: Some(now_current.digest.to_hex()),
                    reason: None,
                    at,
                }
            }
            Err(why) => {
                let why = haifu_plugin_host::error_chain(why);
                tracing::warn!(order, "rollback refused: {why}");
                KeptReport {
                    order,
                    version: None,
                    digest: None,
                    reason: Some(
                        why.chars()
                            .take(haifu_protocol::limits::MAX_REASON_LEN / 4)
                            .collect(),
                    ),
                    at,
                }
            }
        };
        let hold = match result {
            Ok(_) => hold,
            // A refusal changes nothing, so an earlier hold stands.
            Err(_) if self.rollbacks.last_order == order => None,
            Err(_) => self.rollbacks.hold.clone(),
        };
        let mut reports = std::mem::take(&mut self.rollbacks.reports);
        reports.retain(|r| r.order != order);
        reports.push(report);
        if reports.len() > MAX_REPORTS {
            let dropped = reports.remove(0);
            tracing::error!(
                order = dropped.order,
                "too many rollback reports unacknowledged; the oldest is dropped"
            );
        }
        let last_order = match &result {
            Ok(_) => order,
            Err(_) => self.rollbacks.last_order,
        };
        self.rollbacks = RollbackState {
            last_order,
            handled: with_handled(&self.rollbacks.handled, order),
            hold,
            reports,
        };
        out.push(Effect::KeepRollbacks(self.rollbacks.clone()));
        self.send_rollback_report(out, now);
        // What it runs now, for the relay's replay and the fleet table.
        if self.relay_up {
            out.push(Effect::ToRelay(self.report()));
        }
    }

    /// Sends the kept reports, if any and the relay is there.
    pub(super) fn send_rollback_report(&mut self, out: &mut Vec<Effect>, now: Timestamp) {
        if !self.relay_up || self.rollbacks.reports.is_empty() {
            return;
        }
        self.last_sent = Some(now);
        for msg in self
            .rollbacks
            .reports
            .iter()
            .filter_map(|r| r.message(&self.id))
        {
            out.push(Effect::ToRelay(msg));
        }
    }

    /// The master's ack of a report: forgotten, on disk too.
    pub(super) fn rollback_acked(&mut self, out: &mut Vec<Effect>, a: &RollbackAck) {
        let matches =
            a.client == self.id && self.rollbacks.reports.iter().any(|r| r.order == a.order);
        if matches {
            self.rollbacks.reports.retain(|r| r.order != a.order);
            tracing::info!(
                order = a.order,
                "rollback report acknowledged by the master"
            );
            out.push(Effect::KeepRollbacks(self.rollbacks.clone()));
        }
    }
}
