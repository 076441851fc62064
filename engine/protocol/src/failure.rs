//! A client's report that a version it installed failed after install
//! (feature `failure-reports`): the message, its ack and the closed set
//! of what failed. Encoded in `codec` like every other message.

use haifu_core::Digest;
use jiff::Timestamp;

/// What failed after a client installed a run's version; one byte on the
/// wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// The post-install command failed (non-zero, timed out, could not
    /// start): `current` was never switched.
    PostInstall,
    /// The health command run after the configured delay failed: the
    /// client switched back to the previous version.
    Health,
    /// The client switched back to the previous version for another reason.
    RolledBack,
}

impl FailureKind {
    /// Every kind, in wire order.
    pub const ALL: [Self; 3] = [Self::PostInstall, Self::Health, Self::RolledBack];

    /// The word operators see (`post-install`, `health`, `rolled-back`),
    /// the ledger's too.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PostInstall => "post-install",
            Self::Health => "health",
            Self::RolledBack => "rolled-back",
        }
    }

    /// The wire byte.
    pub(crate) fn to_wire(self) -> u8 {
        match self {
            Self::PostInstall => 1,
            Self::Health => 2,
            Self::RolledBack => 3,
        }
    }

    /// The kind a wire byte names, if any.
    pub(crate) fn from_wire(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.to_wire() == b)
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// client → relay → master: the version `digest` of `run` failed on this
/// client after it installed it; durable on the client before it is sent,
/// resent until acked (like a completion). The client installs that
/// digest for that run no more until the master says it was readmitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallFailed {
    /// The run whose version failed (0: installed from the master outside
    /// a round; the master files it under its running run of that digest).
    pub run: u64,
    /// The client.
    pub client: String,
    /// The sha3-256 of the version that failed.
    pub digest: Digest,
    /// What failed.
    pub kind: FailureKind,
    /// Why, for a person: the exit status and the first line of the
    /// command's output, at most
    /// [`MAX_REASON_LEN`](crate::limits::MAX_REASON_LEN) bytes.
    pub reason: String,
    /// By the client's clock: when it failed.
    pub at: Timestamp,
}

/// master → relay → client: the failure of `digest` in `run` is durable in
/// the master's ledger (never sent before it is), or, with `readmitted`,
/// an operator readmitted the client: it may install that digest again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureAck {
    /// The run the failure was filed under.
    pub run: u64,
    /// The client.
    pub client: String,
    /// The digest that failed.
    pub digest: Digest,
    /// The operator readmitted the client (its fix is in).
    pub readmitted: bool,
}
