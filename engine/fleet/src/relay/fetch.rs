//! Fetching a run's artifact from the master once, checked against its
//! digest, into the data folder.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use haifu_protocol::ArtifactRef;
use haifu_protocol::ChunkCursor;
use haifu_protocol::DataChunk;
use haifu_protocol::ErrorCode;
use haifu_protocol::Message;
use sha3::Digest as _;

use super::Relay;
use crate::link::Link;

/// A fetch in progress: chunks are written in order to a temporary file
/// and hashed as they come.
pub(super) struct Fetch {
    pub(super) transfer: u64,
    /// The chunks' order and bounds, from the header's size on (`None`
    /// before the header).
    pub(super) cursor: Option<ChunkCursor>,
    pub(super) file: File,
    pub(super) tmp: PathBuf,
    pub(super) hasher: sha3::Sha3_256,
}

pub(super) fn artifact_path(data: &Path, a: &ArtifactRef) -> PathBuf {
    data.join(a.digest.to_hex())
}

pub(super) fn chunk(relay: &Arc<Relay>, link: &Arc<Link>, c: &DataChunk) {
    let mut st = relay.lock();
    let Some(f) = st.fetch.as_mut().filter(|f| f.transfer == c.transfer) else {
        link.unexpected(&Message::DataChunk(c.clone()));
        return;
    };
    // The protocol's rules for a transfer's chunks (order, bounds, the
    // last one exact), before a byte is written.
    let checked = match f.cursor.as_mut() {
        Some(cursor) => cursor.check(c).map_err(|e| e.to_string()),
        None => Err("a chunk before the artifact's header".to_owned()),
    };
    if let Err(why) = checked {
        link.error(ErrorCode::TransferFailed, c.transfer, why);
        if let Some(f) = st.fetch.take() {
            let _ = std::fs::remove_file(&f.tmp);
        }
        return;
    }
    if let Err(e) = f.file.write_all(&c.bytes) {
        tracing::error!("writing {}: {e}", f.tmp.display());
        if let Some(f) = st.fetch.take() {
            let _ = std::fs::remove_file(&f.tmp);
        }
        return;
    }
    f.hasher.update(&c.bytes);
    if !c.last {
        return;
    }
    let Some(f) = st.fetch.take() else { return };
    let Some(session) = st.session.clone() else {
        let _ = std::fs::remove_file(&f.tmp);
        return;
    };
    let digest: [u8; 32] = f.hasher.finalize().into();
    if &digest != session.artifact.digest.as_bytes() {
        tracing::error!("the fetched artifact's sha3-256 is not the instruction's; discarded");
        let _ = std::fs::remove_file(&f.tmp);
        return;
    }
    let path = artifact_path(&relay.cfg.data, &session.artifact);
    // The file, then its name: a relay that crashes right after must not
    // find a renamed file whose folder entry never reached the disk.
    let done = f
        .file
        .sync_all()
        .and_then(|()| std::fs::rename(&f.tmp, &path))
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let dir = path.parent().unwrap_or(&relay.cfg.data);
            haifu_store::sync_dir(dir).map_err(|e| e.to_string())
        });
    match done {
        Ok(()) => {
            tracing::info!(bytes = f.cursor.as_ref().map_or(0, ChunkCursor::size), path = %path.display(), "artifact fetched and checked");
            st.artifact = Some(path);
            relay.changed.notify_all();
        }
        Err(e) => tracing::error!("keeping the artifact: {e}"),
    }
}
