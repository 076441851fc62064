//! The daemons' one small HTTP server: an axum [`Router`] served on its own
//! thread (a current-thread tokio runtime) through the bounded accept loop
//! of `serve.rs`: a connection cap with eviction of idle connections,
//! header and request timeouts, a cap on the request head. The master's
//! API ([`crate::api`]) and every daemon's `/metrics` ([`crate::metrics`])
//! are served by it, each on its own address with its own limits.
//!
//! What it does not do: routes, authentication or TLS. The router brings
//! its routes and layers; off loopback, put a TLS proxy in front.

mod serve;

use std::net::SocketAddr;

use axum::Router;

use crate::common::Shutdown;
use crate::config::ApiLimits;

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct ListenError {
    /// What was being done (`cannot listen on 127.0.0.1:9464`).
    pub what: String,
    /// The system's error.
    #[source]
    pub source: std::io::Error,
}

/// Whether `addr` only accepts connections from this machine
/// (`127.0.0.0/8`, `::1`, and `::ffff:127.x.y.z`).
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// A listening socket with a deep accept queue: a burst of connections
/// waits there for the accept loop instead of having its SYNs dropped (each
/// drop costs the connecting client a second before it retries). The
/// kernel caps it at `net.core.somaxconn`.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio do for a listener: a restarted daemon can bind again
    // while the old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Serves `app` on `addr` under `limits` until `shutdown` is set, on a
/// thread named `name` (also the prefix of its log lines). Returns the bound
/// address once listening (the port the OS chose for port 0).
pub(crate) fn spawn(
    name: &'static str,
    addr: SocketAddr,
    app: Router,
    limits: ApiLimits,
    shutdown: Shutdown,
) -> Result<SocketAddr, ListenError> {
    let io = |what: String| move |source| ListenError { what, source };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(io(format!("{name}: runtime")))?;
    let listener = rt
        .block_on(async { listen(addr) })
        .map_err(io(format!("{name}: cannot listen on {addr}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || rt.block_on(serve::serve(name, listener, app, limits, shutdown)))
        .map_err(io(format!("{name}: thread")))?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_127_8_and_1_also_mapped() {
        for a in [
            "127.0.0.1:1",
            "127.9.9.9:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback(a.parse().unwrap()), "{a}");
        }
        for a in ["0.0.0.0:1", "10.0.0.5:1", "[::]:1", "[::ffff:10.0.0.5]:1"] {
            assert!(!is_loopback(a.parse().unwrap()), "{a}");
        }
    }
}
