//! The home folder: where a master keeps its ledger, store and keys.
//!
//! ```text
//! <home>/                mode 0700 when haifu creates it
//! <home>/ledger.sqlite   the ledger, 0600 (its -wal and -shm files follow its mode)
//! <home>/store/          the artifact store
//! <home>/keys/           0700: master.key (0600, refused if group or others
//!                        may read it) and master.pub
//! ```
//!
//! Commands check their inputs before calling the methods that create
//! things here, so a command that fails leaves no new home behind.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use haifu_core::SigningKey;
use haifu_ledger::Ledger;
use haifu_store::Store;

/// The ledger's file name inside the home.
const LEDGER_FILE: &str = "ledger.sqlite";

/// A home folder, resolved from `--home` / `HAIFU_HOME`.
#[derive(Debug)]
pub(crate) struct Home {
    root: PathBuf,
}

impl Home {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The home folder's path, whether or not it exists.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the home folder (mode 0700) if needed, naming it if that
    /// fails.
    fn ensure(&self) -> Result<()> {
        haifu_store::create_private_dir(&self.root)
            .with_context(|| format!("cannot create home {}", self.root.display()))?;
        Ok(())
    }

    /// The home folder, created if needed.
    pub(crate) fn ensure_root(&self) -> Result<&Path> {
        self.ensure()?;
        Ok(&self.root)
    }

    /// The ledger, created (mode 0600) with the home if needed.
    pub(crate) fn ledger(&self) -> Result<Ledger> {
        self.ensure()?;
        let path = self.root.join(LEDGER_FILE);
        // Created empty with its mode before SQLite opens it: SQLite would
        // create it under the umask (0644), and it gives the -wal and -shm
        // files the database file's mode.
        haifu_store::create_private_file(&path)?;
        Ok(Ledger::open(&path)?)
    }

    /// The ledger of a home that already has one; creates nothing. For
    /// commands that only read: with no ledger nothing is registered.
    pub(crate) fn ledger_existing(&self) -> Result<Ledger> {
        let path = self.root.join(LEDGER_FILE);
        if !path.is_file() {
            bail!(
                "no ledger at {} (nothing is registered in this home)",
                path.display()
            );
        }
        Ok(Ledger::open(&path)?)
    }

    pub(crate) fn store(&self) -> Result<Store> {
        self.ensure()?;
        Ok(Store::open(self.root.join("store"))?)
    }

    /// The store of a home that already has one; creates nothing.
    pub(crate) fn store_existing(&self) -> Result<Store> {
        let path = self.root.join("store");
        if !path.is_dir() {
            bail!("no store at {}", path.display());
        }
        Ok(Store::open(path)?)
    }

    pub(crate) fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// The master key, made on first use.
    pub(crate) fn master_key(&self) -> Result<SigningKey> {
        self.ensure()?;
        Ok(haifu_store::load_or_create_master_key(&self.keys_dir())?)
    }
}
