//! A client's connection: every message handed to the core until it ends.

use std::sync::Arc;
use std::time::Duration;

use super::Relay;
use super::machine::Event;
use crate::link::Link;

/// Reads one client's connection until it ends or the relay stops.
pub(super) fn serve_client(relay: &Arc<Relay>, link: Arc<Link>) {
    tracing::debug!(client = link.peer(), "client connected");
    let conn = relay.client_up(&link);
    let end = loop {
        if relay.shutdown.is_set() {
            break None;
        }
        match link.recv(Duration::from_millis(500)) {
            Ok(Some(msg)) => relay.handle(Event::FromClient { conn, msg }),
            Ok(None) => {}
            Err(e) => break Some(e),
        }
    };
    relay.client_down(conn);
    if let Some(e) = end.filter(|e| !e.is_closed()) {
        tracing::debug!(client = link.peer(), "client connection lost: {e}");
    }
}
