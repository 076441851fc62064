//! The client's decisions, without I/O: [`ClientCore`] takes events (the
//! relay link came up or went down, a message from the relay, an install
//! finished, the outbox reached the disk, a timer) with the time, and
//! returns effects (send to the relay, keep or forget the completion on
//! disk, receive a session's broadcast). The shell (`client`) owns the
//! link, the install root, the receiver and the files.
//!
//! The outbox's rule: a completion is sent only once it is on disk, sent
//! again every [`RESEND`] and on every reconnect until the master's ack
//! for exactly it arrives, and survives restarts (the shell loads it).
//! The admission's rule: only this client's artifact, signed by the pinned
//! master key, newer than what is installed (versions only move forward),
//! not a version that failed here (`failure`), and one receiver per run.

use std::time::Duration;

use haifu_core::Manifest;
use haifu_core::PublicKey;
use haifu_protocol::ArtifactRef;
use haifu_protocol::Completion;
use haifu_protocol::CompletionAck;
use haifu_protocol::Feedback;
use haifu_protocol::Message;
use haifu_protocol::RegisterClient;
use haifu_protocol::SessionKey;
use haifu_protocol::Via;
use jiff::SignedDuration;
use jiff::Timestamp;

use super::outbox::Pending;
pub(crate) use failure::{FailureState, KeptFailure};
pub(crate) use fallback::Switched;
pub(crate) use rollback::{Refusal, RollbackState};

/// How often an unacknowledged completion is sent again.
pub(crate) const RESEND: Duration = Duration::from_secs(2);

/// What happened, as the shell tells the core.
#[derive(Debug)]
pub(crate) enum Event {
    /// The link to the relay is up (a new connection each time).
    RelayUp,
    /// The link to the relay is down.
    RelayDown,
    /// Time passed (the shell ticks a few times a second).
    Tick,
    /// A message from the relay.
    FromRelay(Message),
    /// The master acknowledged a completion on the straggler path.
    MasterAck(CompletionAck),
    /// A version was installed (`pending` is its completion, not yet on
    /// disk).
    Installed {
        installed: ArtifactRef,
        pending: Pending,
    },
    /// The completion asked for by `Persist` is on disk.
    Persisted,
    /// It could not be written.
    PersistFailed,
    /// The receiver of `run` ended (installed, cancelled or failed).
    ReceiverEnded { run: u64 },
    /// The receiver's report of what it holds, for the relay's repairs.
    Listening(Feedback),
    /// The shell's switch for the rollback order being carried out:
    /// `Ok(now current)` or why it changed nothing.
    RolledBack(Result<ArtifactRef, Refusal>),
    /// A version failed after install (its post-install command; its
    /// health command, after which the shell switched back): `installed`
    /// is what is current now.
    InstallFailed {
        failure: KeptFailure,
        installed: Option<ArtifactRef>,
    },
    /// The shell read the install root's current version: at start
    /// (`about` none), or when the health check of `about` was due.
    Looked {
        current: Option<ArtifactRef>,
        about: Option<haifu_core::Digest>,
    },
}

/// What the shell must do.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Send to the relay (dropped when the link is down).
    ToRelay(Message),
    /// Write this completion to disk atomically, then report `Persisted`
    /// or `PersistFailed`.
    Persist(Pending),
    /// The master has the completion: remove it from disk.
    Forget,
    /// A session of a version older than the installed one was refused
    /// (once per run): counted.
    RefusedOlder,
    /// Receive this session's broadcast (a new receiver replaces any
    /// other), then report `ReceiverEnded`.
    Receive {
        session: Box<SessionKey>,
        manifest: Box<Manifest>,
    },
    /// Carry out a rollback order: write `intent` to disk, then make the
    /// kept previous version of `artifact` current (`to`, when given,
    /// must be it), then report `RolledBack`.
    RollBack {
        intent: RollbackState,
        artifact: String,
        to: Option<String>,
    },
    /// Write the rollbacks' record to disk atomically (after a rollback,
    /// an ack, or a hold lifted).
    KeepRollbacks(RollbackState),
    /// Write the failures' record to disk atomically, before anything
    /// that follows it is sent.
    KeepFailures(FailureState),
    /// Write what this client switched to (`None`: remove it) to disk.
    KeepSwitched(Option<Switched>),
}

/// The client's state and rules.
#[derive(Debug)]
pub(crate) struct ClientCore {
    id: String,
    relay: String,
    /// The artifact this client runs.
    artifact: String,
    pinned: PublicKey,
    installed: Option<ArtifactRef>,
    /// The completion on disk, until acknowledged.
    pending: Option<Pending>,
    /// A completion being written.
    persisting: Option<Pending>,
    relay_up: bool,
    last_sent: Option<Timestamp>,
    receiving: Option<u64>,
    /// The run this client last said it already has: the relay answers a
    /// report with the session again, so a second report would start a
    /// loop.
    said_current: Option<u64>,
    /// The run whose older session was last refused, so a session offered
    /// again is not counted again.
    refused_older: Option<u64>,
    /// The transport plugin this client receives broadcasts with, named in
    /// its version report (`transport-names`).
    broadcast: Option<String>,
    /// The rollbacks' record, as on disk.
    rollbacks: RollbackState,
    /// The order being carried out by the shell, with the hold it sets.
    rolling_back: Option<(u64, Option<rollback::Hold>)>,
    /// An order that came while a completion waited for its ack: carried
    /// out once the master has the completion, so the run records the
    /// install and the rollback follows it.
    deferred: Option<haifu_protocol::Rollback>,
    /// The config's labels, told after the version report on every
    /// connect (an empty set too, so labels dropped from the config are
    /// dropped by the master).
    labels: haifu_core::Labels,
    /// The versions that failed here, as on disk.
    failures: FailureState,
    /// When the version report last went to ask for a readmission.
    asked_at: Option<Timestamp>,
    /// The version this client last made current, as on disk.
    switched: Option<Switched>,
}

impl ClientCore {
    /// A client `id` behind `relay`, running `artifact` signed by
    /// `pinned`, with what the shell found on disk at start.
    pub(crate) fn new(
        id: String,
        relay: String,
        artifact: String,
        pinned: PublicKey,
        installed: Option<ArtifactRef>,
        pending: Option<Pending>,
    ) -> Self {
        Self {
            id,
            relay,
            artifact,
            pinned,
            installed,
            pending,
            persisting: None,
            relay_up: false,
            last_sent: None,
            receiving: None,
            said_current: None,
            refused_older: None,
            broadcast: None,
            rollbacks: RollbackState::default(),
            rolling_back: None,
            deferred: None,
            labels: haifu_core::Labels::new(),
            failures: FailureState::default(),
            asked_at: None,
            switched: None,
        }
    }

    /// Takes the config's labels, told to the master through the relay.
    pub(crate) fn with_labels(mut self, labels: haifu_core::Labels) -> Self {
        self.labels = labels;
        self
    }

    /// Takes the rollbacks' record the shell found on disk at start.
    pub(crate) fn with_rollbacks(mut self, rollbacks: RollbackState) -> Self {
        self.rollbacks = rollbacks;
        self
    }

    /// Names the transport plugin this client receives broadcasts with,
    /// for its version report.
    pub(crate) fn with_broadcast(mut self, plugin: String) -> Self {
        self.broadcast = Some(plugin);
        self
    }

    /// Whether a completion waits for its ack.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.is_some() || self.persisting.is_some()
    }

    /// The run being received, if any.
    pub(crate) fn receiving(&self) -> Option<u64> {
        self.receiving
    }

    /// Whether the straggler path should fetch `target` (what the master
    /// says this client should run): only this client's artifact, and only
    /// forward.
    pub(crate) fn wants(&self, target: &ArtifactRef) -> bool {
        if target.name.as_str() == self.artifact && self.held_target(target) {
            tracing::info!(version = %target.version, "held back by a rollback: not fetched");
            return false;
        }
        if target.name.as_str() == self.artifact && self.failed_target(target) {
            tracing::info!(version = %target.version, "failed here before: not fetched until readmitted");
            return false;
        }
        target.name.as_str() == self.artifact
            && Some(target) != self.installed.as_ref()
            && haifu_core::moves_forward(
                self.installed.as_ref().map(|i| &i.version),
                &target.version,
            )
    }

    /// Whether `target` is this client's artifact at a version older
    /// than the installed one (what [`Self::wants`] refuses and counts).
    pub(crate) fn is_older(&self, target: &ArtifactRef) -> bool {
        target.name.as_str() == self.artifact
            && self
                .installed
                .as_ref()
                .is_some_and(|i| target.version < i.version)
    }

    /// Whether `manifest`'s version may replace what is installed.
    pub(crate) fn moves_forward(&self, manifest: &Manifest) -> bool {
        let Ok(target) = manifest.body.version.parse::<haifu_core::Version>() else {
            return false;
        };
        let installed = self
            .installed
            .as_ref()
            .filter(|i| i.name.as_str() == manifest.body.name)
            .map(|i| &i.version);
        haifu_core::moves_forward(installed, &target)
    }

    /// The version report.
    pub(crate) fn report(&self) -> Message {
        Message::RegisterClient(RegisterClient {
            client: self.id.clone(),
            relay: self.relay.clone(),
            installed: self.installed.clone(),
            broadcast: self.broadcast.clone(),
        })
    }

    /// Takes one event at `now`; returns what to do, in order.
    pub(crate) fn handle(&mut self, now: Timestamp, event: Event) -> Vec<Effect> {
        let mut out = Vec::new();
        match event {
            Event::RelayUp => {
                self.relay_up = true;
                // A completion not yet acked goes first: the version report
                // that follows must not make it look as if the client
                // already had it.
                self.send_pending(&mut out, now);
                self.send_rollback_report(&mut out, now);
                self.send_failures(&mut out, now);
                out.push(Effect::ToRelay(self.report()));
                // Even an empty set: it clears what an earlier config said.
                out.push(Effect::ToRelay(Message::ClientLabels(
                    haifu_protocol::ClientLabels {
                        client: self.id.clone(),
                        labels: self.labels.clone(),
                    },
                )));
            }
            Event::RelayDown => self.relay_up = false,
            Event::Tick => {
                let due = self.last_sent.is_none_or(|t| {
                    now.duration_since(t) >= SignedDuration::try_from(RESEND).unwrap_or_default()
                });
                if due {
                    self.send_pending(&mut out, now);
                    self.send_rollback_report(&mut out, now);
                    self.send_failures(&mut out, now);
                }
                self.ask_readmission(&mut out, now);
            }
            Event::FromRelay(Message::SessionKey(s)) => self.session(&mut out, s),
            Event::FromRelay(Message::CompletionAck(a)) | Event::MasterAck(a) => {
                let matches = self.pending.as_ref().is_some_and(|p| {
                    (p.run == a.run || p.delta)
                        && a.client == self.id
                        && p.digest == a.digest.to_hex()
                });
                if matches {
                    self.switched_run(&mut out, a.run, &a.digest.to_hex());
                    self.pending = None;
                    out.push(Effect::Forget);
                    tracing::info!(run = a.run, "completion acknowledged by the master");
                    self.deferred_rollback(&mut out, now);
                }
            }
            Event::FromRelay(Message::Rollback(o)) => self.rollback_order(&mut out, now, o),
            Event::FromRelay(Message::RollbackAck(a)) => self.rollback_acked(&mut out, &a),
            Event::RolledBack(result) => self.rolled_back(&mut out, now, result),
            Event::FromRelay(Message::FailureAck(a)) => self.failure_acked(&mut out, &a),
            Event::InstallFailed { failure, installed } => {
                self.switched_away(&mut out, installed.as_ref());
                self.installed = installed;
                self.install_failed(&mut out, now, failure);
            }
            Event::Looked { current, about } => self.looked(&mut out, now, current, about),
            Event::FromRelay(Message::Registered(_)) => {}
            Event::FromRelay(Message::Error(e)) => {
                tracing::warn!(code = ?e.code, about = e.about, "relay reports: {}", e.reason);
            }
            Event::FromRelay(other) => {
                tracing::warn!(
                    tag = format_args!("{:#04x}", other.tag()),
                    "unexpected message from the relay"
                );
            }
            Event::Installed { installed, pending } => {
                self.forget_failure(&mut out, &installed.digest);
                self.switched_to(&mut out, pending.run, &installed);
                self.installed = Some(installed);
                self.lift_hold(&mut out);
                self.persisting = Some(pending.clone());
                out.push(Effect::Persist(pending));
            }
            Event::Persisted => {
                if let Some(p) = self.persisting.take() {
                    self.pending = Some(p);
                    self.send_pending(&mut out, now);
                }
            }
            Event::PersistFailed => {
                self.persisting = None;
                tracing::error!(
                    "the completion could not be kept; the version report says what is installed"
                );
                self.deferred_rollback(&mut out, now);
            }
            Event::ReceiverEnded { run } => {
                if self.receiving == Some(run) {
                    self.receiving = None;
                }
            }
            Event::Listening(f) => {
                // Only about the session being received, and only to a
                // relay that is there (the link drops it for a relay
                // without feedback repair).
                if self.relay_up && self.receiving == Some(f.run) {
                    out.push(Effect::ToRelay(Message::Feedback(f)));
                }
            }
        }
        out
    }

    fn send_pending(&mut self, out: &mut Vec<Effect>, now: Timestamp) {
        let Some(p) = &self.pending else { return };
        if !self.relay_up {
            return;
        }
        let (Ok(digest), Ok(at)) = (p.digest.parse(), p.at.parse()) else {
            return;
        };
        self.last_sent = Some(now);
        out.push(Effect::ToRelay(Message::Completion(Completion {
            run: p.run,
            client: self.id.clone(),
            via: if p.delta {
                Via::Delta
            } else {
                Via::Round(p.round)
            },
            digest,
            at,
        })));
    }

    /// A session offered by the relay: received only when it is this
    /// client's artifact, signed by the pinned key, newer than what is
    /// installed, and not already in hand.
    fn session(&mut self, out: &mut Vec<Effect>, s: SessionKey) {
        let manifest = match Manifest::from_json(&s.manifest) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(run = s.run, "session manifest unreadable: {e}");
                return;
            }
        };
        if let Err(e) = manifest.verify(&self.pinned) {
            tracing::warn!(run = s.run, "session manifest refused: {e}");
            return;
        }
        if manifest.body.name != self.artifact {
            tracing::debug!(run = s.run, artifact = %manifest.body.name, "not this client's artifact");
            return;
        }
        // A completion for this run not yet acked is resent as it is: the
        // client completed in the rounds, it did not "already have" it.
        // Nor while this run's receiver works.
        let completing = self
            .pending
            .iter()
            .chain(&self.persisting)
            .any(|p| p.run == s.run);
        if completing || self.receiving == Some(s.run) {
            return;
        }
        if self.failed_session(s.run, &manifest.body.sha3_256) {
            if self.refused_older != Some(s.run) {
                self.refused_older = Some(s.run);
                tracing::info!(
                    run = s.run,
                    version = %manifest.body.version,
                    "this version failed here: not received until the master readmits this client"
                );
            }
            return;
        }
        if self.held_run(s.run) {
            if self.refused_older != Some(s.run) {
                self.refused_older = Some(s.run);
                tracing::info!(
                    run = s.run,
                    version = %manifest.body.version,
                    "held back by a rollback: the run it undid does not move this client forward"
                );
            }
            return;
        }
        if self
            .installed
            .as_ref()
            .is_some_and(|i| i.digest == manifest.body.sha3_256)
        {
            // Say so, once: the version report marks this client as
            // already current in the run.
            if self.said_current != Some(s.run) {
                tracing::info!(run = s.run, version = %manifest.body.version, "already installed; taking no part");
                self.said_current = Some(s.run);
                out.push(Effect::ToRelay(self.report()));
            }
            return;
        }
        if !self.moves_forward(&manifest) {
            if self.refused_older != Some(s.run) {
                self.refused_older = Some(s.run);
                tracing::warn!(
                    run = s.run,
                    version = %manifest.body.version,
                    installed = ?self.installed.as_ref().map(|i| i.version.to_string()),
                    "older than the installed version; refused (versions only move forward)"
                );
                out.push(Effect::RefusedOlder);
            }
            return;
        }
        self.receiving = Some(s.run);
        out.push(Effect::Receive {
            session: Box::new(s),
            manifest: Box::new(manifest),
        });
    }
}

mod failure;
mod fallback;
mod rollback;

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod fallback_tests;
#[cfg(test)]
mod tests;
