//! The link to the master: register, replay the clients' reports, and carry
//! out what the master sends (instructions, rounds, deny lists).

use sha3::Digest as _;
use std::collections::BTreeSet;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use haifu_plugin_host::Endpoint;
use haifu_protocol::ArtifactFetch;
use haifu_protocol::ChunkCursor;
use haifu_protocol::Instruction;
use haifu_protocol::Message;
use haifu_protocol::RegisterClient;
use haifu_protocol::RegisterRelay;
use haifu_protocol::Role;

use super::Relay;
use super::clients::session_message;
use super::fetch::Fetch;
use super::fetch::artifact_path;
use super::fetch::chunk;
use crate::link;
use crate::link::Link;

/// Keeps the master connection up and reads from it.
pub(super) fn master_link(relay: &Arc<Relay>, ep: &Endpoint) {
    let cfg = &relay.cfg;
    let peer = format!("master at {}", cfg.master.address);
    while !relay.shutdown.is_set() {
        let Some(link) = link::connect_with_backoff(&relay.shutdown, &peer, || {
            link::connect(
                ep,
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
        let clients = u32::try_from(relay.lock().clients.len()).unwrap_or(u32::MAX);
        let reg = Message::RegisterRelay(RegisterRelay {
            relay: cfg.name.clone(),
            clients,
            group: relay.group,
        });
        if link.send(&reg).is_err() {
            continue;
        }
        // Replay the clients' version reports: the master may be new.
        let reports: Vec<Message> = {
            let mut st = relay.lock();
            st.master = Some(Arc::clone(&link));
            st.reports
                .iter()
                .map(|(id, installed)| {
                    Message::RegisterClient(RegisterClient {
                        client: id.clone(),
                        relay: cfg.name.clone(),
                        installed: installed.clone(),
                    })
                })
                .collect()
        };
        for r in &reports {
            let _ = link.send(r);
        }
        tracing::info!(master = %cfg.master.address, "connected to the master");
        let end = loop {
            if relay.shutdown.is_set() {
                break None;
            }
            match link.recv(Duration::from_millis(500)) {
                Ok(Some(m)) => from_master(relay, &link, ep, m),
                Ok(None) => {}
                Err(e) => break Some(e),
            }
        };
        relay.lock().master = None;
        if let Some(e) = end {
            tracing::warn!("master connection lost: {e}");
        }
    }
}

pub(super) fn from_master(relay: &Arc<Relay>, link: &Arc<Link>, ep: &Endpoint, msg: Message) {
    match msg {
        Message::Registered(_) => {}
        Message::DenyList(d) => {
            // The plugin refuses them at the handshake from now on and
            // closes their live connections.
            match ep.set_denied(&d.identities) {
                Ok(()) => tracing::info!(denied = d.identities.len(), "deny list applied"),
                Err(e) => tracing::error!("applying the deny list: {e}"),
            }
            let mut st = relay.lock();
            for id in &d.identities {
                st.clients.remove(id);
            }
        }
        Message::Instruction(i) => instruction(relay, link, i),
        Message::StartRound(s) => {
            let mut st = relay.lock();
            if let Some(done) = st.sent.get(&(s.run, s.round)).cloned() {
                // Already sent (the master restarted and asks again).
                let _ = link.send(&Message::RoundDone(done));
            } else if st.sending != Some((s.run, s.round)) && !st.queue.contains(&(s.run, s.round))
            {
                tracing::info!(run = s.run, round = s.round, "round queued");
                st.queue.push((s.run, s.round));
                relay.changed.notify_all();
            }
        }
        Message::StopRounds(s) => {
            let mut st = relay.lock();
            st.queue.retain(|(run, _)| *run != s.run);
            if st.session.as_ref().is_some_and(|i| i.run == s.run) {
                tracing::info!(
                    run = s.run,
                    acked = st.acked.get(&s.run).map_or(0, BTreeSet::len),
                    "rounds stopped"
                );
                st.session = None;
            }
        }
        Message::CompletionAck(a) => {
            let client = {
                let mut st = relay.lock();
                st.acked.entry(a.run).or_default().insert(a.client.clone());
                st.clients.get(&a.client).map(|(l, _)| Arc::clone(l))
            };
            // Sent without the relay's lock: a slow client stalls no one.
            if let Some(client) = client {
                let _ = client.send(&Message::CompletionAck(a));
            }
        }
        Message::ArtifactHeader(h) => {
            let mut st = relay.lock();
            let ok = st.fetch.as_ref().is_some_and(|f| f.transfer == h.transfer);
            if !ok {
                link.unexpected(&Message::ArtifactHeader(h));
                return;
            }
            let expected = st.session.as_ref().map(|i| i.size);
            if let Some(f) = st.fetch.as_mut() {
                if expected != Some(h.size) {
                    tracing::warn!(
                        transfer = h.transfer,
                        size = h.size,
                        "artifact size differs from the instruction"
                    );
                    st.fetch = None;
                    return;
                }
                f.cursor = ChunkCursor::new(h.transfer, h.size, h.size).ok();
            }
        }
        Message::DataChunk(c) => chunk(relay, link, &c),
        Message::Error(e) => {
            tracing::warn!(code = ?e.code, about = e.about, "master reports: {}", e.reason);
            let mut st = relay.lock();
            if st.fetch.as_ref().is_some_and(|f| f.transfer == e.about)
                && let Some(f) = st.fetch.take()
            {
                let _ = std::fs::remove_file(&f.tmp);
            }
        }
        other => link.unexpected(&other),
    }
}

pub(super) fn instruction(relay: &Arc<Relay>, link: &Arc<Link>, i: Instruction) {
    let path = artifact_path(&relay.cfg.data, &i.artifact);
    let mut st = relay.lock();
    let same = st.session.as_ref().is_some_and(|s| s.run == i.run);
    tracing::info!(
        run = i.run,
        artifact = %i.artifact.name,
        version = %i.artifact.version,
        size = i.size,
        rounds = i.rounds,
        rate_bps = i.rate_bps,
        "instruction"
    );
    if !same {
        st.artifact = None;
        st.fetch = None;
    }
    st.session = Some(i.clone());
    if path.is_file() {
        st.artifact = Some(path);
    } else if st.fetch.is_none() {
        let transfer = relay.transfers.fetch_add(1, Ordering::Relaxed);
        let tmp = relay
            .cfg
            .data
            .join(format!(".fetch-{}-{transfer}", std::process::id()));
        match File::create(&tmp) {
            Ok(file) => {
                st.fetch = Some(Fetch {
                    transfer,
                    cursor: None,
                    file,
                    tmp,
                    hasher: sha3::Sha3_256::new(),
                });
                let _ = link.send(&Message::ArtifactFetch(ArtifactFetch {
                    transfer,
                    run: i.run,
                    artifact: i.artifact.clone(),
                }));
                tracing::info!(transfer, "fetching the artifact from the master");
            }
            Err(e) => tracing::error!("cannot create {}: {e}", tmp.display()),
        }
    }
    // Every connected client learns the session.
    let key = session_message(&i, relay.group);
    for (client, _) in st.clients.values() {
        let _ = client.send(&key);
    }
    relay.changed.notify_all();
}
