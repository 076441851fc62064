//! The client's outbox: its completion, rollback reports and failures, kept
//! on disk until the master acknowledges them.

use serde::Deserialize;
use serde::Serialize;

use crate::FleetError;

/// The file, in the install root, holding a completion not yet acked.
pub(super) const PENDING: &str = "completion.json";

/// A completion on disk until acked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) run: u64,
    pub(crate) digest: String,
    pub(crate) round: u32,
    pub(crate) at: String,
    /// Installed from a delta (or the full artifact) sent by the master.
    #[serde(default)]
    pub(crate) delta: bool,
}

/// Writes the pending completion atomically (temp file, fsync, rename).
pub(super) fn write_pending(path: &std::path::Path, p: &Pending) -> Result<(), FleetError> {
    let text = serde_json::to_vec(p)?;
    haifu_store::write_atomic(path, &text, true)
        .map_err(FleetError::store("the pending completion"))
}

/// The pending completion kept by an earlier run of the client, if any
/// (one that does not read is as good as none: the version report says
/// what is installed).
pub(super) fn read_pending(path: &std::path::Path) -> Option<Pending> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The file, in the install root, holding the rollbacks' record.
pub(super) const ROLLBACKS: &str = "rollback.json";

/// Writes the rollbacks' record atomically (temp file, fsync, rename).
pub(super) fn write_rollbacks(
    path: &std::path::Path,
    r: &super::machine::RollbackState,
) -> Result<(), FleetError> {
    let text = serde_json::to_vec(r)?;
    haifu_store::write_atomic(path, &text, true).map_err(FleetError::store("the rollbacks' record"))
}

/// The rollbacks' record kept by an earlier run of the client; none when
/// there is no file. One that does not read is logged and taken as none
/// (its order, if still waiting, is carried out or refused again by what
/// is on disk).
pub(super) fn read_rollbacks(path: &std::path::Path) -> super::machine::RollbackState {
    match std::fs::read(path) {
        Ok(text) => serde_json::from_slice(&text).unwrap_or_else(|e| {
            tracing::error!(path = %path.display(), "the rollbacks' record does not read: {e}");
            super::machine::RollbackState::default()
        }),
        Err(_) => super::machine::RollbackState::default(),
    }
}

/// The file, in the install root, holding the versions that failed here.
pub(super) const FAILURES: &str = "failure.json";

/// Writes the failures' record atomically (temp file, fsync, rename).
pub(super) fn write_failures(
    path: &std::path::Path,
    f: &super::machine::FailureState,
) -> Result<(), FleetError> {
    let text = serde_json::to_vec(f)?;
    haifu_store::write_atomic(path, &text, true).map_err(FleetError::store("the failures' record"))
}

/// The failures' record kept by an earlier run of the client; none when
/// there is no file. One that does not read is logged and taken as none
/// (the master still has every failure it acked).
pub(super) fn read_failures(path: &std::path::Path) -> super::machine::FailureState {
    match std::fs::read(path) {
        Ok(text) => serde_json::from_slice(&text).unwrap_or_else(|e| {
            tracing::error!(path = %path.display(), "the failures' record does not read: {e}");
            super::machine::FailureState::default()
        }),
        Err(_) => super::machine::FailureState::default(),
    }
}

/// The file, in the install root, holding the version this client last
/// made current.
pub(super) const SWITCHED: &str = "switched.json";

/// Writes what this client switched to atomically, or removes the file.
pub(super) fn write_switched(
    path: &std::path::Path,
    s: Option<&super::machine::Switched>,
) -> Result<(), FleetError> {
    let Some(s) = s else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(FleetError::store("the version switched to")(
                    haifu_store::StoreError::Io {
                        op: "remove",
                        path: path.to_owned(),
                        source: e,
                    },
                ))
            }
            _ => Ok(()),
        };
    };
    let text = serde_json::to_vec(s)?;
    haifu_store::write_atomic(path, &text, true)
        .map_err(FleetError::store("the version switched to"))
}

/// What an earlier run of the client switched to; none when there is no
/// file. One that does not read is logged and taken as none (nothing is
/// then reported as put back until the next install).
pub(super) fn read_switched(path: &std::path::Path) -> Option<super::machine::Switched> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text)
        .map_err(|e| {
            tracing::error!(path = %path.display(), "the version switched to does not read: {e}");
        })
        .ok()
}
