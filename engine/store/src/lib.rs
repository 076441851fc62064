//! haifu's artifact store and the master key on disk.
//!
//! What it does: keeps every artifact as one zstd-compressed object, named by
//! the sha3-256 of its *uncompressed* bytes. Writes stream (an artifact of
//! several GiB never sits whole in memory), hash and compress side by side on
//! two threads, and are atomic: a temporary file, fsync, rename, fsync of the
//! folder. Reads stream too, and every read is verified against the object's
//! name before the caller may trust it. It also creates and loads the
//! master's ed25519 signing key.
//!
//! What it does not do: decide what is registered. The ledger is the source
//! of truth for names and versions; the store only holds bytes by digest.
//!
//! Layout under the store root:
//!
//! ```text
//! objects/ab/ab12…ef.zst   one object per digest (first two hex digits fan out)
//! tmp/put-<pid>-<n>.tmp    writes in progress; removed on error, on rename,
//!                          or at the next open when the writing process is gone
//! ```
#![forbid(unsafe_code)]

mod atomic;
mod error;
mod keyfile;
mod object;
mod private;
mod verify;

pub use atomic::{sync_dir, write_atomic, write_new};
pub use error::StoreError;
pub use keyfile::{load_or_create_master_key, read_public_key};
pub use object::{Put, Store};
pub use private::{PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, create_private_dir, create_private_file};
pub use verify::VerifiedReader;
