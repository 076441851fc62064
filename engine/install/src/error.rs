//! The one error type of the crate; every variant names the path at fault.

use std::path::PathBuf;

use haifu_core::ManifestError;

/// Why an install-root operation failed. Every message starts with the path
/// involved, so a log line alone says where to look.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file-system call failed.
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        /// The path the call was about.
        path: PathBuf,
        /// What was being done, e.g. "create folder".
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The on-disk state is not one this crate writes and cannot be repaired
    /// without losing someone's data (e.g. a regular file named `current`).
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The path at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest is not signed by the pinned master key, or its fields are
    /// not valid. Nothing was installed.
    #[error("{}: manifest refused: {source}", path.display())]
    UntrustedManifest {
        /// The staged file the manifest was meant to cover.
        path: PathBuf,
        /// The verification failure.
        source: ManifestError,
    },
    /// The staged bytes do not match the manifest's size or sha3-256. The
    /// staged file has been deleted.
    #[error("{}: staged content refused: {source}", path.display())]
    ContentMismatch {
        /// The (now deleted) staged file.
        path: PathBuf,
        /// Which of size or digest differed, with both values.
        source: ManifestError,
    },
    /// A write into a staged file fell outside the length declared when it
    /// was staged.
    #[error(
        "{}: write of {len} bytes at offset {offset} goes past the expected length of {expected} bytes",
        path.display()
    )]
    OutOfRange {
        /// The staged file.
        path: PathBuf,
        /// Offset of the write.
        offset: u64,
        /// Length of the write.
        len: u64,
        /// The length declared to [`crate::InstallRoot::stage`].
        expected: u64,
    },
    /// The post-install command failed, timed out or could not be started;
    /// `current` was not switched.
    #[error("{}: post-install command {program:?} {reason}", path.display())]
    PostInstall {
        /// The version folder the command ran for.
        path: PathBuf,
        /// The program that was run.
        program: String,
        /// What went wrong, with the tail of its output when there is one.
        reason: String,
    },
    /// A rollback was asked for, but no previous version is kept.
    #[error("{}: no previous version to roll back to", path.display())]
    NoPrevious {
        /// The `previous` link.
        path: PathBuf,
    },
    /// The kept previous version is not one a rollback may go to (another
    /// artifact, not the version asked for, or not older than the current
    /// one: a rollback never moves forward). Nothing changed.
    #[error("{}: {reason}", path.display())]
    RollbackRefused {
        /// The `previous` link.
        path: PathBuf,
        /// Why, naming both versions.
        reason: String,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = InstallError> = std::result::Result<T, E>;

/// Adds the path and operation to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path, op: &'static str) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path, op: &'static str) -> Result<T> {
        self.map_err(|source| InstallError::Io {
            path: path.to_owned(),
            op,
            source,
        })
    }
}
