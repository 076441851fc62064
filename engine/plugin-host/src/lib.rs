//! The haifu transport plugin loader: the engine's side of the C ABI in
//! `haifu-transport-abi`, and the fleet PKI the QUIC plugin uses.
//!
//! What it does:
//! - finds plugin libraries in a folder by name ([`plugin_dir`],
//!   [`load_named`] for a daemon, [`load_dir`] for the listing): plugin `N`
//!   is the file [`plugin_file_name`]`(N)`, `libhaifu_transport_N.so`, and
//!   no other file is opened; refuses a folder or file that anyone but
//!   root or the current user could write; loads them with libloading,
//!   checks the ABI version and table size, records their shapes and keeps
//!   each library mapped for the life of the process;
//! - never crashes on a bad file: each failure is a [`LoadError`] naming the
//!   file, and the other plugins still load; with a [`probe::Prober`]
//!   registered, each file is first loaded in a child process with a time
//!   limit, so a plugin that segfaults, aborts, exits or hangs is reported
//!   ("killed by SIGSEGV in init") instead of taking this process down;
//! - wraps both shapes in safe, synchronous types: [`DatagramGroup`] and
//!   [`Endpoint`] / [`Connection`] (call them from threads or
//!   `spawn_blocking`, never hold a host runtime worker on a long timeout);
//! - lists the plugins for `haifu plugins [--json]` ([`list_plugins`]);
//! - creates the fleet CA and issues certificates ([`pki`]);
//! - checks any plugin against the transport spec ([`conformance`]).
//!
//! What it does not do: framing of the engine's own protocol, FEC, or any
//! policy; a plugin only moves bytes. This is the only engine crate with
//! `unsafe`, all of it in `loader.rs`, `datagram.rs`, `stream.rs` and one
//! `geteuid` call in `trust.rs`.
//!
//! Call order: [`load_named`] (or [`load_dir`], [`load`]) once at start; then
//! [`Plugin::open_group`] / [`Plugin::open_endpoint`]; then
//! send/recv/accept/connect on the objects; drop them to close.

#![deny(unsafe_code)]

pub mod conformance;
// Calls through the plugin's C function table; every `unsafe` block says
// why it is sound.
#[allow(unsafe_code)]
mod datagram;
mod error;
mod listing;
// dlopen and the function table's layout; every `unsafe` block says why
// it is sound.
#[allow(unsafe_code)]
mod loader;
pub mod pki;
pub mod probe;
// Calls through the plugin's C function table; every `unsafe` block says
// why it is sound.
#[allow(unsafe_code)]
mod stream;
// One call to the C library's geteuid, explained where it is declared.
#[allow(unsafe_code)]
mod trust;

pub use datagram::{DatagramGroup, RecvBatch};
pub use error::{DirError, ErrorKind, LoadError, TableFault, TransportError, error_chain};
pub use haifu_transport_abi::{ABI_VERSION, BATCH_MAX};
pub use listing::{PluginEntry, PluginListing, list_plugins};
pub use loader::{
    PLUGINS_ENV, Plugin, PluginInfo, PluginSet, Shapes, candidates, installed_plugin_dir, load,
    load_dir, load_named, plugin_dir, plugin_file_name, plugin_name_of_file,
};
pub use stream::{Connection, Endpoint};
pub use trust::Untrusted;
