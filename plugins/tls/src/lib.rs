//! haifu transport plugin: peer streams over TCP with mutual TLS, for
//! networks that block UDP (where the QUIC plugin cannot pass).
//!
//! Offers the peer-stream shape of `haifu-transport-abi` on rustls (ring,
//! TLS 1.3 only) over blocking TCP sockets, with the same fleet CA,
//! identities, roles and deny list as the QUIC plugin (its `tls` module is
//! compiled in here): both sides present a certificate of the fleet CA; the
//! peer's identity is its certificate's common name and its role the haifu
//! extended key usage (`conn_peer_role`); a listener refuses a deny-listed
//! identity inside the handshake, and after the handshake each side waits
//! for the other's 4-byte `HFU1` hello, so `endpoint_connect` returns only
//! once the peer accepted it (a refusal is `DENIED` there).
//!
//! Messages are a `u32` big-endian length then that many bytes, at most
//! `max_frame`. Each connection has one reader thread; sends are encrypted
//! under a lock and written by the caller; each accepted socket's handshake
//! runs on its own thread, so a slow peer delays no other, and at most
//! `max_handshakes` run at once: one more cuts the oldest, so a flood of
//! half-open connections holds a bounded number of threads and never shuts
//! out a peer that completes its handshake.
//!
//! Configuration (`key=value` lines) for `endpoint_open`:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `ca` | required | fleet CA certificate (PEM file) |
//! | `cert` | required | this node's certificate (PEM file) |
//! | `key` | required | this node's private key (PEM file) |
//! | `listen` | none (connect only) | address to accept on, e.g. `0.0.0.0:7400` |
//! | `deny` | empty | initial deny list, comma-separated identities |
//! | `max_frame` | `1048608` | largest message sent or accepted, bytes |
//! | `hello_timeout_ms` | `10000` | how long a new connection may take to handshake and say hello |
//! | `close_timeout_ms` | `2000` | how long a close waits for the peer to finish |
//! | `max_handshakes` | `64` | accepted sockets handshaking at once; one more cuts the oldest |

#![deny(unsafe_code)]

mod conn;
mod endpoint;
#[allow(dead_code)]
#[path = "../../quic/src/tls.rs"]
mod tls;

use haifu_transport_abi::{Config, Error, Transport, export_transport};

/// The default `max_frame`: haifu's protocol frame limit (one 1 MiB chunk
/// plus its 32-byte header), as in the QUIC plugin.
pub const DEFAULT_MAX_FRAME: usize = (1 << 20) + 32;

/// The plugin instance; stateless.
#[derive(Debug)]
pub struct Tls;

impl Transport for Tls {
    const NAME: &'static str = "tls";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(config: &Config) -> Result<Self, Error> {
        config.check_known(&[])?;
        Ok(Self)
    }
}

export_transport! {
    transport: Tls,
    stream: endpoint::TlsEndpoint,
}
