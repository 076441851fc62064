//! A version put back outside haifu (`rolled-back`): the machine's own
//! fallback (an A/B boot slot, a watchdog, the package's rollback script,
//! an operator's hand) made another version current than the one haifu
//! switched to. The client keeps what it switched to on disk
//! (`switched.json`); when the shell looks at the install root again (at
//! start, and when a health check is due) a version older than that, or
//! the same version with other bytes, or nothing, is a failure of the
//! version it switched to, kept and reported like the others and held back
//! the same way. A newer version is not a way back, so it is not reported;
//! nor is a rollback the master ordered (its record moves with it).

use haifu_protocol::ArtifactRef;
use haifu_protocol::FailureKind;
use jiff::Timestamp;
use serde::Deserialize;
use serde::Serialize;

use super::ClientCore;
use super::Effect;
use super::KeptFailure;

/// The version haifu last made current here (`switched.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Switched {
    /// The run it came with (0: from the master, until the completion's
    /// ack names the run).
    pub(crate) run: u64,
    pub(crate) version: String,
    /// Its sha3-256, hex.
    pub(crate) digest: String,
}

impl Switched {
    fn of(run: u64, a: &ArtifactRef) -> Self {
        Self {
            run,
            version: a.version.to_string(),
            digest: a.digest.to_hex(),
        }
    }

    fn is(&self, a: &ArtifactRef) -> bool {
        self.digest == a.digest.to_hex()
    }
}

impl ClientCore {
    /// Takes what the shell found in `switched.json` at start.
    pub(crate) fn with_switched(mut self, switched: Option<Switched>) -> Self {
        self.switched = switched;
        self
    }

    /// `installed` was switched to by this client for `run`: kept.
    pub(super) fn switched_to(&mut self, out: &mut Vec<Effect>, run: u64, installed: &ArtifactRef) {
        let s = Switched::of(run, installed);
        if self.switched.as_ref() != Some(&s) {
            self.switched = Some(s);
            out.push(Effect::KeepSwitched(self.switched.clone()));
        }
    }

    /// Something this client reports itself made `installed` current (a
    /// rollback the master ordered, a health check's switch back): the
    /// version it switched to is no longer one to report on.
    pub(super) fn switched_away(&mut self, out: &mut Vec<Effect>, installed: Option<&ArtifactRef>) {
        if self
            .switched
            .as_ref()
            .is_some_and(|s| installed.is_none_or(|i| !s.is(i)))
        {
            self.switched = None;
            out.push(Effect::KeepSwitched(None));
        }
    }

    /// The completion of `digest` was acked for `run`: a version switched
    /// to from the master's copy is filed under that run from now on.
    pub(super) fn switched_run(&mut self, out: &mut Vec<Effect>, run: u64, digest: &str) {
        if let Some(s) = self
            .switched
            .as_mut()
            .filter(|s| s.run == 0 && s.digest == digest)
        {
            s.run = run;
            out.push(Effect::KeepSwitched(self.switched.clone()));
        }
    }

    /// The shell looked at the install root: `current` is what it found.
    /// `about` is the version whose health check was due (moot if this
    /// client has switched since); `None` at start.
    pub(super) fn looked(
        &mut self,
        out: &mut Vec<Effect>,
        now: Timestamp,
        current: Option<ArtifactRef>,
        about: Option<haifu_core::Digest>,
    ) {
        let Some(s) = self.switched.clone() else {
            return;
        };
        if about.is_some_and(|d| d.to_hex() != s.digest) || self.rolling_back.is_some() {
            return;
        }
        if current.as_ref().is_some_and(|c| s.is(c)) {
            return;
        }
        let newer = current.as_ref().is_some_and(|c| {
            s.version
                .parse::<haifu_core::Version>()
                .is_ok_and(|v| c.version > v)
        });
        if newer {
            // Not a way back; most likely this client's own install whose
            // record a crash lost. What it runs is what it switched to.
            if let Some(c) = current.as_ref().filter(|_| about.is_none()) {
                tracing::info!(version = %c.version, switched = %s.version, "a newer version is current than the one kept as switched to");
                self.installed = Some(c.clone());
                self.switched_to(out, s.run, c);
            }
            return;
        }
        // A rollback the master ordered, stopped between its switch and
        // its report: the version it left is the one switched to.
        let ordered = self
            .rollbacks
            .hold
            .as_ref()
            .is_some_and(|h| h.from == s.version);
        // Kept already (a crash before the record was cleared): once.
        let kept = self.failures.failures.iter().any(|f| f.digest == s.digest);
        self.installed = current.clone();
        if !ordered && !kept {
            let found = current
                .as_ref()
                .map_or_else(|| "nothing".to_owned(), |c| c.version.to_string());
            let reason = format!(
                "switched to {} by run {}, found {found} current: put back outside haifu, not by an order of the master",
                s.version, s.run
            );
            if let Ok(digest) = s.digest.parse() {
                let failure =
                    KeptFailure::new(s.run, digest, FailureKind::RolledBack, &reason, now);
                self.install_failed(out, now, failure);
            }
        }
        self.switched = None;
        out.push(Effect::KeepSwitched(None));
        // What it runs now, for the relay and the fleet table.
        if self.relay_up {
            out.push(Effect::ToRelay(self.report()));
        }
    }
}
