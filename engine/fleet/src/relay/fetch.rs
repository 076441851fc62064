//! The files of the artifact's fetch: written chunk by chunk (the core has
//! checked each against the protocol's cursor), hashed as they come, then
//! checked against the digest and kept under it in the data folder.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::path::PathBuf;

use haifu_protocol::ArtifactRef;
use sha3::Digest as _;

/// Where a checked artifact is kept.
pub(super) fn artifact_path(data: &Path, a: &ArtifactRef) -> PathBuf {
    data.join(a.digest.to_hex())
}

struct FetchFile {
    file: File,
    tmp: PathBuf,
    hasher: sha3::Sha3_256,
    bytes: u64,
}

/// The fetches' temporary files, by transfer.
#[derive(Default)]
pub(super) struct FetchFiles(HashMap<u64, FetchFile>);

impl FetchFiles {
    pub(super) fn start(&mut self, data: &Path, transfer: u64) -> std::io::Result<()> {
        let tmp = data.join(format!(".fetch-{}-{transfer}", std::process::id()));
        let file = File::create(&tmp)?;
        let f = FetchFile {
            file,
            tmp,
            hasher: sha3::Sha3_256::new(),
            bytes: 0,
        };
        self.0.insert(transfer, f);
        Ok(())
    }

    pub(super) fn write(&mut self, transfer: u64, bytes: &[u8]) -> std::io::Result<()> {
        let f = self
            .0
            .get_mut(&transfer)
            .ok_or_else(|| std::io::Error::other("no such fetch"))?;
        f.file.write_all(bytes)?;
        f.hasher.update(bytes);
        f.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Keeps `transfer`'s file as `artifact` if its sha3-256 is the
    /// artifact's; discards it otherwise. Whether it was kept.
    pub(super) fn finish(&mut self, data: &Path, transfer: u64, artifact: &ArtifactRef) -> bool {
        let Some(f) = self.0.remove(&transfer) else {
            return false;
        };
        let digest: [u8; 32] = f.hasher.finalize().into();
        if &digest != artifact.digest.as_bytes() {
            tracing::error!("the fetched artifact's sha3-256 is not the instruction's; discarded");
            let _ = std::fs::remove_file(&f.tmp);
            return false;
        }
        let path = artifact_path(data, artifact);
        // The file, then its name: a relay that crashes right after must
        // not find a renamed file whose folder entry never reached the disk.
        let done = f
            .file
            .sync_all()
            .and_then(|()| std::fs::rename(&f.tmp, &path))
            .and_then(|()| {
                haifu_store::sync_dir(path.parent().unwrap_or(data)).map_err(std::io::Error::other)
            });
        match done {
            Ok(()) => {
                tracing::info!(bytes = f.bytes, path = %path.display(), "artifact fetched and checked");
                true
            }
            Err(e) => {
                tracing::error!("keeping the artifact: {e}");
                let _ = std::fs::remove_file(&f.tmp);
                false
            }
        }
    }

    pub(super) fn drop_file(&mut self, transfer: u64) {
        if let Some(f) = self.0.remove(&transfer) {
            let _ = std::fs::remove_file(&f.tmp);
        }
    }

    pub(super) fn drop_all(&mut self) {
        let all: Vec<u64> = self.0.keys().copied().collect();
        for t in all {
            self.drop_file(t);
        }
    }
}
