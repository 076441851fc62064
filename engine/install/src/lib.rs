//! haifu-install: the client's on-disk installation, crash-safe.
//!
//! The client daemon receives an artifact (carousel blocks at byte offsets,
//! or a delta streamed against the installed version), and this crate turns
//! it into an installed version:
//!
//! 1. [`InstallRoot::stage`] gives a [`Staging`] file to write into;
//! 2. [`Staging::verify`] checks the manifest's signature against the
//!    master's pinned key and the bytes' size and sha3-256 against the
//!    manifest, deleting the file on a mismatch;
//! 3. [`InstallRoot::install`] moves the [`Verified`] file into its own
//!    version folder, runs the optional [`PostInstall`] command, and then
//!    switches the `current` symlink atomically, keeping the version before
//!    as `previous` for [`InstallRoot::rollback`].
//!
//! Every step is durable (files and folders fsynced) before the next, and
//! [`InstallRoot::open`] repairs whatever a crash left, so the root is always
//! in a committed state: the old version current and intact, or the new one
//! current and complete. Only after `install` returns `Ok` may the client
//! send its completion message.
//!
//! It does not download, decode or apply deltas (the carousel and
//! `haifu-delta` produce the bytes; [`InstallRoot::base_for_delta`] names the
//! reference file), does not talk to the master, and does not stop or start
//! the installed software beyond running the post-install command. One
//! process owns a root at a time.
//!
//! Unix only: versions are switched with symlinks and `rename(2)`.

#![forbid(unsafe_code)]
#![cfg(unix)]

mod error;
mod layout;
mod post_install;
mod root;
mod staging;

pub use error::{InstallError, Result};
pub use layout::Installed;
pub use post_install::PostInstall;
pub use root::{InstallRoot, InstallStep};
pub use staging::{Staging, Verified, digest_of};
