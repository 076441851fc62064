//! The completion outbox: kept on disk until the master acknowledges it.

use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

use crate::FleetError;

/// How often an unacknowledged completion is sent again.
pub(super) const RESEND: Duration = Duration::from_secs(2);

/// The file, in the install root, holding a completion not yet acked.
pub(super) const PENDING: &str = "completion.json";

/// A completion on disk until acked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Pending {
    pub(super) run: u64,
    pub(super) digest: String,
    pub(super) round: u32,
    pub(super) at: String,
    /// Installed from a delta (or the full artifact) sent by the master.
    #[serde(default)]
    pub(super) delta: bool,
}

/// Writes the pending completion atomically (temp file, fsync, rename).
pub(super) fn write_pending(path: &std::path::Path, p: &Pending) -> Result<(), FleetError> {
    let text = serde_json::to_vec(p)?;
    haifu_store::write_atomic(path, &text, true)
        .map_err(FleetError::store("the pending completion"))
}
