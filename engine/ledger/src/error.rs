//! Ledger errors: each names the database file or the row at fault.

use std::path::{Path, PathBuf};

/// Something the ledger could not do.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite refused or failed.
    #[error("ledger {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer haifu.
    #[error(
        "ledger {} has schema version {found}, newer than this haifu understands ({known}); upgrade haifu",
        path.display()
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The file's schema version.
        found: u32,
        /// The newest this build knows.
        known: u32,
    },
    /// The same name and version is registered with other content.
    #[error(
        "{name} {version} is already registered with sha3-256 {existing}; this file has {offered}. Register it under a new version"
    )]
    Conflict {
        /// Artifact name.
        name: String,
        /// Version.
        version: String,
        /// The digest on record.
        existing: String,
        /// The digest offered now.
        offered: String,
    },
    /// A client the fleet table does not know (nothing was recorded).
    #[error("client {client:?} is not known to this master; nothing recorded")]
    UnknownClient {
        /// The id.
        client: String,
    },
    /// A run's step was not written: the run had already ended (an
    /// operator aborted it, or it failed).
    #[error("run {0} has ended; the step was not written")]
    RunEnded(i64),
    /// A client placed in a stage past the most a run may have: nothing
    /// was written.
    #[error("client {client:?}: stage {stage} is past the most a run may have ({max})", max = crate::MAX_STAGES)]
    StageOutOfRange {
        /// The client.
        client: String,
        /// The stage asked for (from 0).
        stage: u32,
    },
    /// A row that does not read back as what was written.
    #[error("ledger {} is damaged: {detail}", path.display())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl LedgerError {
    pub(crate) fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Sqlite {
            path: path.clone(),
            source,
        }
    }
}
