//! The link to the relay: reconnect, register, and take what it sends.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use haifu_plugin_host::Endpoint;
use haifu_protocol::Message;
use haifu_protocol::RegisterClient;
use haifu_protocol::Role;

use super::Client;
use super::outbox::RESEND;
use super::receive::session;
use crate::link;
use crate::link::Link;

pub(super) fn relay_link(client: &Arc<Client>, ep: &Endpoint) {
    let cfg = &client.cfg;
    let peer = format!("relay at {}", cfg.relay.address);
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
        // A completion not yet acked goes first: the version report that
        // follows must not make it look as if the client already had it.
        *client.link() = Some(Arc::clone(&link));
        client.send_pending();
        let reg = Message::RegisterClient(RegisterClient {
            client: cfg.id.clone(),
            relay: cfg.relay.name.clone(),
            installed: client.installed_ref(),
        });
        if link.send(&reg).is_err() {
            *client.link() = None;
            continue;
        }
        tracing::info!(relay = %cfg.relay.address, "connected to the relay");
        let mut last_resend = Instant::now() - RESEND;
        let end = loop {
            if client.shutdown.is_set() {
                break None;
            }
            if last_resend.elapsed() >= RESEND {
                client.send_pending();
                last_resend = Instant::now();
            }
            match link.recv(Duration::from_millis(300)) {
                Ok(Some(m)) => from_relay(client, &link, m),
                Ok(None) => {}
                Err(e) => break Some(e),
            }
        };
        *client.link() = None;
        if let Some(e) = end {
            tracing::warn!("relay connection lost: {e}");
        }
    }
}

pub(super) fn from_relay(client: &Arc<Client>, link: &Arc<Link>, msg: Message) {
    match msg {
        Message::Registered(_) => {}
        Message::SessionKey(s) => session(client, s),
        Message::CompletionAck(a) => {
            let matches = client.pending().is_some_and(|p| {
                p.run == a.run && a.client == client.cfg.id && p.digest == a.digest.to_hex()
            });
            if matches {
                let _ = std::fs::remove_file(client.pending_path());
                tracing::info!(run = a.run, "completion acknowledged by the master");
            }
        }
        Message::Error(e) => {
            tracing::warn!(code = ?e.code, about = e.about, "relay reports: {}", e.reason)
        }
        other => link.unexpected(&other),
    }
}
