//! The clients' connections: registration, the session key, completions up
//! and acks down.

use std::sync::Arc;
use std::time::Duration;

use haifu_protocol::ErrorCode;
use haifu_protocol::Group;
use haifu_protocol::Instruction;
use haifu_protocol::Message;
use haifu_protocol::Registered;
use haifu_protocol::SessionKey;

use super::Relay;
use crate::link::Link;

pub(super) fn session_message(i: &Instruction, group: Group) -> Message {
    Message::SessionKey(SessionKey {
        run: i.run,
        session_id: i.session_id,
        key: i.session_key.clone(),
        group,
        manifest: i.manifest.clone(),
    })
}

/// A client's connection: registration, completions up, acks down.
pub(super) fn serve_client(relay: &Arc<Relay>, link: Arc<Link>) {
    let id = link.peer().to_owned();
    tracing::debug!(client = %id, "client connected");
    let end = loop {
        if relay.shutdown.is_set() {
            break None;
        }
        let msg = match link.recv(Duration::from_millis(500)) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => break Some(e),
        };
        match msg {
            Message::RegisterClient(mut r) => {
                if r.client != id {
                    link.error(
                        ErrorCode::Unexpected,
                        0,
                        format!("client id {:?} is not the certificate's {id:?}", r.client),
                    );
                    continue;
                }
                r.relay = relay.cfg.name.clone();
                let session = {
                    let mut st = relay.lock();
                    st.clients
                        .insert(id.clone(), (Arc::clone(&link), r.installed.clone()));
                    st.reports.insert(id.clone(), r.installed.clone());
                    st.session.clone()
                };
                tracing::info!(
                    client = %id,
                    installed = ?r.installed.as_ref().map(|i| i.version.to_string()),
                    "client registered"
                );
                let _ = link.send(&Message::Registered(Registered {
                    target: session.as_ref().map(|s| s.artifact.clone()),
                }));
                if let Some(s) = &session {
                    let _ = link.send(&session_message(s, relay.group));
                }
                relay.to_master(&Message::RegisterClient(r));
            }
            Message::Completion(c) => {
                if c.client != id {
                    link.error(
                        ErrorCode::Unexpected,
                        c.run,
                        "completion for another client",
                    );
                    continue;
                }
                if !relay.to_master(&Message::Completion(c.clone())) {
                    // No master now: the client resends until acked.
                    tracing::debug!(client = %id, "completion held back: no master connection");
                }
            }
            Message::Error(e) => {
                tracing::warn!(client = %id, code = ?e.code, "client reports: {}", e.reason);
            }
            other => link.unexpected(&other),
        }
    };
    let mut st = relay.lock();
    if st
        .clients
        .get(&id)
        .is_some_and(|(l, _)| Arc::ptr_eq(l, &link))
    {
        st.clients.remove(&id);
    }
    drop(st);
    if let Some(e) = end.filter(|e| !e.is_closed()) {
        tracing::debug!(client = %id, "client connection lost: {e}");
    }
}
