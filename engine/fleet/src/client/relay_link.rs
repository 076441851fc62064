//! The link to the relay: reconnect, register, and take what it sends.

use std::sync::Arc;
use std::time::Duration;

use haifu_plugin_host::Endpoint;
use haifu_protocol::Role;

use super::Client;
use super::machine::Event;
use crate::link;

pub(super) fn relay_link(client: &Arc<Client>, ep: &Endpoint) {
    let cfg = &client.cfg;
    let peer = format!("relay at {}", cfg.relay.address);
    let _peer = tracing::info_span!("peer", peer = %cfg.relay.name).entered();
    while !client.shutdown.is_set() {
        let Some(link) = link::connect_with_backoff(&client.shutdown, &peer, || {
            link::connect(
                ep,
                &cfg.relay.address.to_string(),
                &cfg.relay.name,
                Role::Client,
                &cfg.id,
                Arc::clone(&client.counters),
            )
        }) else {
            break;
        };
        let link = Arc::new(link);
        *client.link() = Some(Arc::clone(&link));
        client.handle(Event::RelayUp);
        tracing::info!(relay = %cfg.relay.address, "connected to the relay");
        let end = loop {
            if client.shutdown.is_set() {
                break None;
            }
            client.handle(Event::Tick);
            match link.recv(Duration::from_millis(300)) {
                Ok(Some(m)) => client.handle(Event::FromRelay(m)),
                Ok(None) => {}
                Err(e) => break Some(e),
            }
        };
        *client.link() = None;
        client.handle(Event::RelayDown);
        if let Some(e) = end {
            tracing::warn!("relay connection lost: {e}");
        }
    }
}
