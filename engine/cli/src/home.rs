//! The home folder: where a master keeps its ledger, store and keys.
//!
//! ```text
//! <home>/ledger.sqlite   the ledger (plus its -wal and -shm files)
//! <home>/store/          the artifact store
//! <home>/keys/           master.key (0600) and master.pub
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use haifu_core::SigningKey;
use haifu_ledger::Ledger;
use haifu_store::Store;

/// A home folder, resolved from `--home` / `HAIFU_HOME`.
#[derive(Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Creates the home folder if needed, naming it if that fails.
    fn ensure(&self) -> Result<()> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create home {}", self.root.display()))
    }

    /// The home folder, created if needed.
    pub fn ensure_root(&self) -> Result<&Path> {
        self.ensure()?;
        Ok(&self.root)
    }

    pub fn ledger(&self) -> Result<Ledger> {
        self.ensure()?;
        Ok(Ledger::open(&self.root.join("ledger.sqlite"))?)
    }

    pub fn store(&self) -> Result<Store> {
        self.ensure()?;
        Ok(Store::open(self.root.join("store"))?)
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// The master key, made on first use.
    pub fn master_key(&self) -> Result<SigningKey> {
        self.ensure()?;
        Ok(haifu_store::load_or_create_master_key(&self.keys_dir())?)
    }
}
