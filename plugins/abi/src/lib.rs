//! The C ABI between haifu and its transport plugins.
//!
//! A transport plugin is a dynamic library (`.so`, `.dylib`, `.dll`) that
//! exports one symbol, [`ENTRY_SYMBOL_NAME`] (`haifu_transport_entry`),
//! returning a pointer to a static [`PluginVTable`]. The table starts with
//! `abi_version: u32` and `struct_size: usize`, then the plugin's name,
//! version and shapes, then `extern "C"` function pointers. Only bytes,
//! lengths, opaque handles and integer status codes (with a message written
//! into a caller-owned [`ErrorBuf`]) cross the boundary.
//!
//! What this crate does:
//! - defines the raw ABI ([`raw`]; the same in C: `include/haifu_transport.h`);
//! - gives Rust authors traits ([`Transport`], [`DatagramGroup`],
//!   [`StreamEndpoint`], [`StreamConnection`]) and a macro,
//!   [`export_transport!`], that fills the table with panic-guarded glue;
//! - parses the `key=value` configuration the host passes ([`Config`]).
//!
//! What it does not do: load plugins (that is the host's loader), run any
//! runtime, or know anything about the engine. It depends on nothing.
//! The normative rules are in `SPEC.md` beside this crate.
//!
//! # The two shapes
//!
//! - **Datagram groups** (`SHAPE_DATAGRAM`): `group_open` joins a group on an
//!   interface (configured by text), `group_send` sends one datagram paced to
//!   the configured rate, `group_recv` receives one with a timeout; the
//!   optional `group_send_batch` / `group_recv_batch` move many in one call
//!   (`sendmmsg` / `recvmmsg`), and the host falls back to one at a time
//!   for a plugin without them.
//! - **Peer streams** (`SHAPE_STREAM`): `endpoint_open` listens and/or
//!   prepares to connect, `endpoint_accept` / `endpoint_connect` give a
//!   connection to a verified peer, whose identity `conn_peer_identity`
//!   returns; `conn_send` / `conn_recv` move whole framed messages both ways
//!   under a size limit; `endpoint_set_denied` refuses identities at the
//!   handshake.
//!
//! # Threads
//!
//! Every call is synchronous and may block up to its timeout. The plugin owns
//! its threads and runtimes: each plugin is its own copy of std and tokio, so
//! the host's runtime is invisible to it. A host calling from async code
//! should use dedicated threads or `spawn_blocking`.
//!
//! # A complete third-party plugin
//!
//! The example below is `examples/memory.rs` in this crate: a datagram-group
//! transport in process memory. Build it outside the workspace as a
//! `crate-type = ["cdylib"]` crate depending only on this one.
//!
//! ```ignore
#![doc = include_str!("../examples/memory.rs")]
//! ```
//!
//! # The same from C
//!
//! The header `include/haifu_transport.h` declares the same types. A C
//! plugin fills a `static const HaifuPluginVTable` and exports
//! `const HaifuPluginVTable *haifu_transport_entry(void)`; see the header's
//! closing comment for a minimal skeleton.

#![deny(unsafe_code)]

pub mod config;
pub mod error;
// `export` allows `unsafe` inside (the glue over the host's raw pointers)
// and `raw` on its two `unsafe impl`s, each with the reason it is sound.
pub mod export;
pub mod raw;

pub use config::Config;
pub use error::Error;
pub use export::{
    DatagramGroup, StreamConnection, StreamEndpoint, Timeout, Transport, timeout_from_ms,
    timeout_to_ms,
};
pub use raw::{
    ABI_VERSION, BASE_TABLE_SIZE, BATCH_MAX, Bytes, ENTRY_SYMBOL, ENTRY_SYMBOL_NAME, EntryFn,
    ErrorBuf, Handle, PluginVTable, SHAPE_DATAGRAM, SHAPE_STREAM, SHAPES_KNOWN, Status,
    TIMEOUT_INFINITE, status,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets the C header promises; a change here is an ABI break.
    #[test]
    fn vtable_layout_is_stable() {
        use std::mem::{offset_of, size_of};
        let p = size_of::<usize>();
        assert_eq!(offset_of!(PluginVTable, abi_version), 0);
        assert_eq!(offset_of!(PluginVTable, struct_size), p);
        assert_eq!(offset_of!(PluginVTable, name), 2 * p);
        assert_eq!(offset_of!(PluginVTable, version), 4 * p);
        assert_eq!(offset_of!(PluginVTable, shapes), 6 * p);
        assert_eq!(offset_of!(PluginVTable, init), 7 * p);
        assert_eq!(offset_of!(PluginVTable, conn_close), 22 * p);
        // ABI 1 as first released ended here; later fields are appended.
        assert_eq!(BASE_TABLE_SIZE, 23 * p);
        assert_eq!(offset_of!(PluginVTable, conn_peer_role), 23 * p);
        assert_eq!(offset_of!(PluginVTable, group_local_addr), 24 * p);
        assert_eq!(offset_of!(PluginVTable, group_send_batch), 25 * p);
        assert_eq!(offset_of!(PluginVTable, group_recv_batch), 26 * p);
        assert_eq!(size_of::<PluginVTable>(), 27 * p);
        assert_eq!(size_of::<ErrorBuf>(), 3 * p);
    }

    #[test]
    fn guard_turns_a_panic_into_a_status_and_message() {
        let mut storage = [0u8; 64];
        let mut err = ErrorBuf {
            ptr: storage.as_mut_ptr(),
            cap: storage.len(),
            len: 0,
        };
        #[allow(unsafe_code)]
        // SAFETY: `err` points to a live ErrorBuf over `storage`.
        let st = unsafe { export::guard(&mut err, || panic!("boom")) };
        assert_eq!(st, status::PANIC);
        assert_eq!(&storage[..err.len], b"plugin panicked: boom");
    }

    #[test]
    fn error_messages_are_truncated_at_a_char_boundary() {
        let mut storage = [0u8; 4];
        let mut err = ErrorBuf {
            ptr: storage.as_mut_ptr(),
            cap: storage.len(),
            len: 0,
        };
        #[allow(unsafe_code)]
        // SAFETY: `err` points to a live ErrorBuf over `storage`.
        unsafe {
            export::write_error(&mut err, "abcé")
        };
        assert_eq!(err.len, 3);
    }

    #[test]
    fn timeouts_round_trip() {
        assert_eq!(timeout_from_ms(TIMEOUT_INFINITE), None);
        assert_eq!(timeout_to_ms(None), TIMEOUT_INFINITE);
        let t = Some(std::time::Duration::from_millis(250));
        assert_eq!(timeout_from_ms(timeout_to_ms(t)), t);
    }
}
