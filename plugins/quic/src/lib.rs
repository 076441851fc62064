//! haifu transport plugin: QUIC peer streams with mutual TLS.
//!
//! Offers the peer-stream shape of `haifu-transport-abi` on quinn and
//! rustls (ring provider, TLS 1.3 only). Both sides present a certificate of
//! the fleet CA (`haifu ca init`, `haifu ca issue NAME --role R`); the peer's
//! identity is its certificate's common name and its role the haifu
//! extended key usage it carries (`conn_peer_role`). A server refuses a
//! deny-listed identity inside the TLS handshake (a client-certificate
//! verifier wrapping WebPKI's), so a cut-off client never gets a
//! connection; the deny list can be replaced at run time, which also closes
//! live connections of newly denied identities.
//!
//! A listener's stateless-reset key and connection-id key are derived from
//! its certificate's private key, so a listener restarted with the same
//! identity resets the connections its previous run left open: its peers
//! learn of the restart at their next packet (a keep-alive goes every third
//! of `idle_timeout_ms`) instead of after their idle timeout.
//!
//! Each connection carries one bidirectional stream of frames: a `u32`
//! big-endian length, then that many bytes, at most `max_frame`. Each
//! endpoint runs its own tokio runtime; host calls block on it.
//!
//! Configuration (`key=value` lines) for `endpoint_open`:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `ca` | required | fleet CA certificate (PEM file) |
//! | `cert` | required | this node's certificate (PEM file) |
//! | `key` | required | this node's private key (PEM file) |
//! | `listen` | none (connect only) | address to accept on, e.g. `0.0.0.0:4433` |
//! | `bind` | `0.0.0.0:0` | local address of a connect-only endpoint |
//! | `deny` | empty | initial deny list, comma-separated identities |
//! | `max_frame` | `1048608` | largest message sent or accepted, bytes ([`DEFAULT_MAX_FRAME`]) |
//! | `alpn` | `haifu/1` | ALPN protocol both sides must agree on |
//! | `threads` | `1` | runtime worker threads |
//! | `idle_timeout_ms` | `30000` | connection idle timeout (keep-alives at a third) |
//! | `close_timeout_ms` | `10000` | how long a close waits for the peer to finish |
//! | `hello_timeout_ms` | `10000` | how long a new connection may take to say hello |
//! | `accept_queue` | `1024` | verified connections waiting for `accept` |

#![deny(unsafe_code)]

mod connection;
mod endpoint;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use haifu_transport_abi::{Config, Error, Transport, export_transport};

/// The default `max_frame`: haifu's protocol frame limit,
/// `haifu_protocol::limits::DEFAULT_MAX_FRAME` (one 1 MiB chunk plus its
/// 32-byte header, engine/protocol/src/limits.rs). A plugin depends on the
/// ABI crate alone, so the value is repeated here; the test
/// `engine/fleet/tests/frame_limit.rs` sends frames through this plugin and
/// fails if the two disagree. A larger default would let a peer make the
/// host buffer frames the protocol refuses anyway. The length prefix is
/// checked before any of the body is read or allocated.
pub const DEFAULT_MAX_FRAME: usize = (1 << 20) + 32;

/// The plugin instance; each endpoint owns its runtime, so it is stateless.
#[derive(Debug)]
pub struct Quic;

impl Transport for Quic {
    const NAME: &'static str = "quic";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(config: &Config) -> Result<Self, Error> {
        config.check_known(&[])?;
        Ok(Self)
    }
}

/// Parsed endpoint configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    listen: Option<SocketAddr>,
    bind: SocketAddr,
    deny: Vec<String>,
    max_frame: usize,
    alpn: String,
    threads: usize,
    idle_timeout: Duration,
    close_timeout: Duration,
    hello_timeout: Duration,
    accept_queue: usize,
}

impl Settings {
    fn parse(c: &Config) -> Result<Self, Error> {
        c.check_known(&[
            "ca",
            "cert",
            "key",
            "listen",
            "bind",
            "deny",
            "max_frame",
            "alpn",
            "threads",
            "idle_timeout_ms",
            "close_timeout_ms",
            "hello_timeout_ms",
            "accept_queue",
        ])?;
        let ms = |key, default| -> Result<Duration, Error> {
            Ok(Duration::from_millis(c.parse_or(key, default)?))
        };
        let s = Self {
            ca: c.require("ca")?.into(),
            cert: c.require("cert")?.into(),
            key: c.require("key")?.into(),
            listen: c.parse_opt("listen")?,
            bind: c.parse_or("bind", SocketAddr::from(([0, 0, 0, 0], 0)))?,
            deny: c
                .get("deny")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            max_frame: c.parse_or("max_frame", DEFAULT_MAX_FRAME)?,
            alpn: c.get("alpn").unwrap_or("haifu/1").to_owned(),
            threads: c.parse_or("threads", 1usize)?,
            idle_timeout: ms("idle_timeout_ms", 30_000)?,
            close_timeout: ms("close_timeout_ms", 10_000)?,
            hello_timeout: ms("hello_timeout_ms", 10_000)?,
            accept_queue: c.parse_or("accept_queue", 1024usize)?,
        };
        if s.threads == 0 || s.threads > 64 {
            return Err(Error::invalid("configuration: threads must be 1 to 64"));
        }
        if s.max_frame == 0 || s.max_frame > u32::MAX as usize {
            return Err(Error::invalid(
                "configuration: max_frame must be 1 to 4294967295",
            ));
        }
        if s.accept_queue == 0 {
            return Err(Error::invalid(
                "configuration: accept_queue must be at least 1",
            ));
        }
        if s.idle_timeout < Duration::from_millis(100) {
            return Err(Error::invalid(
                "configuration: idle_timeout_ms must be at least 100",
            ));
        }
        Ok(s)
    }
}

export_transport! {
    transport: Quic,
    stream: endpoint::QuicEndpoint,
}
