//! One connection's thread: the handshake, then every message handed to
//! the core (which checks it against who may say it, `crate::trust`).

use std::sync::Arc;
use std::time::Duration;

use haifu_plugin_host::Connection;
use haifu_protocol::Hello;
use haifu_protocol::Role;

use super::hub::Hub;
use super::machine::Event;
use crate::common::Shutdown;
use crate::link;
use crate::link::Counters;

/// Reads one relay's or client's connection until it ends or the master
/// stops.
pub(super) fn serve_peer(
    hub: &Arc<Hub>,
    conn: Connection,
    local: Hello,
    counters: Arc<Counters>,
    shutdown: &Shutdown,
) {
    let who = conn.peer_identity().to_owned();
    // Every line this connection causes names the peer (JSON logs carry
    // the span's fields).
    let _peer = tracing::info_span!("peer", peer = %who).entered();
    let link = match link::accept(conn, local, &[Role::Relay, Role::Client], counters) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            tracing::warn!(peer = %who, "handshake failed: {e}");
            return;
        }
    };
    let Some(id) = hub.connected(&link) else {
        return;
    };
    let end = loop {
        if shutdown.is_set() {
            break None;
        }
        match link.recv(Duration::from_millis(500)) {
            Ok(Some(msg)) => hub.handle(Event::Received { conn: id, msg }),
            Ok(None) => {}
            Err(e) => break Some(e),
        }
    };
    hub.closed(id);
    match end {
        Some(e) if !e.is_closed() => tracing::warn!(peer = link.peer(), "connection lost: {e}"),
        _ => tracing::info!(peer = link.peer(), "peer disconnected"),
    }
}
