//! Store errors: each names the path or digest at fault.

use std::io;
use std::path::PathBuf;

use haifu_core::Digest;

/// Something went wrong reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation failed; `op` says which ("read", "write", "rename" …).
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The object exists but its bytes do not hash to its name.
    #[error("store object {} is corrupted: {detail}", path.display())]
    Corrupt {
        /// The object file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// No object for this digest.
    #[error("store has no object {digest} (looked for {})", path.display())]
    Missing {
        /// The digest asked for.
        digest: Digest,
        /// Where it should be.
        path: PathBuf,
    },
    /// The master key file may be read by group or others.
    #[error(
        "master key {} has mode {mode:04o}: group or others may read it; if it is still secret, run: chmod 600 {}",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file that cannot be used.
    #[error("key file {} is not valid: {detail}", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

impl StoreError {
    /// Wraps an I/O error with the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}
