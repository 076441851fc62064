//! The client's failures after install (feature `failure-reports`): a
//! version whose post-install or health command failed is kept on disk
//! (`failure.json`) before it is reported, reported on every reconnect and
//! every [`RESEND`](super::RESEND) until the master acks it, and held
//! back: the client does not install that digest again by itself until
//! the master says an operator readmitted it.

use std::time::Duration;

use haifu_core::Digest;
use haifu_protocol::ArtifactRef;
use haifu_protocol::FailureAck;
use haifu_protocol::FailureKind;
use haifu_protocol::InstallFailed;
use haifu_protocol::Message;
use haifu_protocol::limits::MAX_REASON_LEN;
use jiff::SignedDuration;
use jiff::Timestamp;
use serde::Deserialize;
use serde::Serialize;

use super::ClientCore;
use super::Effect;

/// How often a client holding a failure the master has recorded sends
/// its version report, so a readmission reaches it without a reconnect.
pub(crate) const ASK_READMISSION: Duration = Duration::from_secs(15);

/// Most failures kept: one per version that failed; past it the oldest
/// the master has acked is dropped (that digest is then held no more).
pub(crate) const MAX_FAILURES: usize = 16;

/// What the client keeps on disk of its failures (`failure.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FailureState {
    /// Oldest first, at most [`MAX_FAILURES`].
    pub(crate) failures: Vec<KeptFailure>,
}

/// One version that failed on this client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeptFailure {
    /// The run (0: installed from the master; the ack names the run the
    /// master filed it under).
    pub(crate) run: u64,
    /// The sha3-256 that failed, hex.
    pub(crate) digest: String,
    /// `post-install`, `health` or `rolled-back`.
    pub(crate) kind: String,
    /// Why, at most 1 KiB.
    pub(crate) reason: String,
    pub(crate) at: String,
    /// The master has it durably.
    #[serde(default)]
    pub(crate) acked: bool,
}

impl KeptFailure {
    /// A failure of `digest` in `run` now, its reason cut to what the
    /// protocol carries.
    pub(crate) fn new(
        run: u64,
        digest: Digest,
        kind: FailureKind,
        reason: &str,
        now: Timestamp,
    ) -> Self {
        Self {
            run,
            digest: digest.to_hex(),
            kind: kind.as_str().to_owned(),
            reason: cut(reason, MAX_REASON_LEN),
            at: now.to_string(),
            acked: false,
        }
    }

    /// The report of it from `client`; none if what is on disk does not
    /// read (it was written by this code, so only a damaged file).
    pub(super) fn message(&self, client: &str) -> Option<Message> {
        let kind = FailureKind::ALL
            .into_iter()
            .find(|k| k.as_str() == self.kind)?;
        Some(Message::InstallFailed(InstallFailed {
            run: self.run,
            client: client.to_owned(),
            digest: self.digest.parse().ok()?,
            kind,
            reason: self.reason.clone(),
            at: self.at.parse().ok()?,
        }))
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl ClientCore {
    /// Takes the failures the shell found on disk at start.
    pub(crate) fn with_failures(mut self, failures: FailureState) -> Self {
        self.failures = failures;
        self
    }

    /// Whether a kept failure keeps a session of `digest` in `run` out: of
    /// that digest, in the run it failed in or an earlier one (a failure
    /// from the master's copy, run 0 until acked, in every run).
    pub(crate) fn failed_session(&self, run: u64, digest: &Digest) -> bool {
        let hex = digest.to_hex();
        self.failures
            .failures
            .iter()
            .any(|f| f.digest == hex && (f.run == 0 || run <= f.run))
    }

    /// Whether a kept failure keeps the master's `target` out.
    pub(super) fn failed_target(&self, target: &ArtifactRef) -> bool {
        let hex = target.digest.to_hex();
        self.failures.failures.iter().any(|f| f.digest == hex)
    }

    /// A version failed after install: kept on disk, then reported.
    pub(super) fn install_failed(
        &mut self,
        out: &mut Vec<Effect>,
        now: Timestamp,
        failure: KeptFailure,
    ) {
        tracing::warn!(
            run = failure.run,
            digest = %failure.digest,
            kind = %failure.kind,
            "the installed version failed: {}",
            failure.reason
        );
        let list = &mut self.failures.failures;
        list.retain(|f| f.digest != failure.digest);
        list.push(failure);
        if list.len() > MAX_FAILURES {
            // The oldest the master has, else the oldest.
            let i = list.iter().position(|f| f.acked).unwrap_or(0);
            let dropped = list.remove(i);
            tracing::error!(digest = %dropped.digest, "too many failures kept; the oldest is forgotten");
        }
        out.push(Effect::KeepFailures(self.failures.clone()));
        self.send_failures(out, now);
    }

    /// Sends the failures the master has not acked, if the relay is there.
    pub(super) fn send_failures(&mut self, out: &mut Vec<Effect>, now: Timestamp) {
        if !self.relay_up {
            return;
        }
        let mut sent = false;
        for msg in self
            .failures
            .failures
            .iter()
            .filter(|f| !f.acked)
            .filter_map(|f| f.message(&self.id))
        {
            out.push(Effect::ToRelay(msg));
            sent = true;
        }
        if sent {
            self.last_sent = Some(now);
        }
    }

    /// While a recorded failure is held, the version report goes every
    /// [`ASK_READMISSION`], so the master can say it was readmitted.
    pub(super) fn ask_readmission(&mut self, out: &mut Vec<Effect>, now: Timestamp) {
        if !self.relay_up || !self.failures.failures.iter().any(|f| f.acked) {
            return;
        }
        let every = SignedDuration::try_from(ASK_READMISSION).unwrap_or_default();
        if self.asked_at.is_none_or(|t| now.duration_since(t) >= every) {
            self.asked_at = Some(now);
            out.push(Effect::ToRelay(self.report()));
        }
    }

    /// `digest` was installed and held (a later run of a version that
    /// failed here, which the operator chose to send again): its failure
    /// is over.
    pub(super) fn forget_failure(&mut self, out: &mut Vec<Effect>, digest: &Digest) {
        let hex = digest.to_hex();
        let before = self.failures.failures.len();
        self.failures.failures.retain(|f| f.digest != hex);
        if self.failures.failures.len() != before {
            out.push(Effect::KeepFailures(self.failures.clone()));
        }
    }

    /// The master's word on a failure: durable (kept, held, no longer
    /// sent), or readmitted (forgotten, and the report goes again so the
    /// relay offers the session again). A readmission of a failure the
    /// master has not acked yet is ignored: it cannot be about it.
    pub(super) fn failure_acked(&mut self, out: &mut Vec<Effect>, a: &FailureAck) {
        if a.client != self.id {
            return;
        }
        let hex = a.digest.to_hex();
        let Some(i) = self.failures.failures.iter().position(|f| f.digest == hex) else {
            return;
        };
        let f = &mut self.failures.failures[i];
        if a.readmitted {
            if !f.acked {
                return;
            }
            self.failures.failures.remove(i);
            tracing::info!(run = a.run, digest = %hex, "readmitted by the master: the version may be installed again");
            out.push(Effect::KeepFailures(self.failures.clone()));
            self.said_current = None;
            if self.relay_up {
                out.push(Effect::ToRelay(self.report()));
            }
        } else if !f.acked {
            f.acked = true;
            if f.run == 0 {
                f.run = a.run;
            }
            tracing::info!(run = a.run, digest = %hex, "failure acknowledged by the master");
            out.push(Effect::KeepFailures(self.failures.clone()));
        }
    }
}
