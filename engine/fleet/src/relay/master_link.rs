//! The link to the master: connect with back-off, then every message
//! handed to the core until it ends.

use std::sync::Arc;
use std::time::Duration;

use haifu_protocol::Message;
use haifu_protocol::Role;

use super::Relay;
use super::fetch::artifact_path;
use super::machine::Event;
use crate::link;

/// Keeps the master connection up and reads from it.
pub(super) fn master_link(relay: &Arc<Relay>) {
    let cfg = &relay.cfg;
    let peer = format!("master at {}", cfg.master.address);
    let _peer = tracing::info_span!("peer", peer = %cfg.master.name).entered();
    while !relay.shutdown.is_set() {
        let Some(link) = link::connect_with_backoff(&relay.shutdown, &peer, || {
            link::connect(
                &relay.ep,
                &cfg.master.address.to_string(),
                &cfg.master.name,
                Role::Relay,
                &cfg.name,
                Arc::clone(&relay.counters),
            )
        }) else {
            break;
        };
        let link = Arc::new(link);
        relay.lock().master = Some(Arc::clone(&link));
        relay.handle(Event::MasterUp);
        tracing::info!(master = %cfg.master.address, "connected to the master");
        let end = loop {
            if relay.shutdown.is_set() {
                break None;
            }
            match link.recv(Duration::from_millis(500)) {
                Ok(Some(msg)) => {
                    // The one fact the core needs from the disk.
                    let on_disk = match &msg {
                        Message::Instruction(i) => artifact_path(&cfg.data, &i.artifact).is_file(),
                        _ => false,
                    };
                    relay.handle(Event::FromMaster { msg, on_disk });
                }
                Ok(None) => {}
                Err(e) => break Some(e),
            }
        };
        relay.lock().master = None;
        relay.handle(Event::MasterDown);
        if let Some(e) = end {
            tracing::warn!("master connection lost: {e}");
        }
    }
}
