//! One connection's reader: every message a relay or client sends the
//! master, checked against who may say it (`crate::trust`).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Duration;

use haifu_ledger::ClientTouch;
use haifu_ledger::Ledger;
use haifu_ledger::TrafficKind;
use haifu_plugin_host::Connection;
use haifu_protocol::DenyList;
use haifu_protocol::ErrorCode;
use haifu_protocol::Hello;
use haifu_protocol::Message;
use haifu_protocol::RegisterClient;
use haifu_protocol::Registered;
use haifu_protocol::Role;
use haifu_protocol::StartRound;
use haifu_protocol::Via;
use haifu_store::Store;
use jiff::Timestamp;

use super::fetch::serve_fetch;
use super::hub::Hub;
use super::hub::RelayEntry;
use super::recorder::Record;
use super::recorder::TrafficLog;
use crate::common::Shutdown;
use crate::link;
use crate::link::Counters;
use crate::link::Link;
use crate::trust;

/// Deltas served at once; more requests are answered "busy" and retried by
/// the client, so stragglers booting together cannot start a thread and a
/// delta build each.
pub(super) const MAX_DELTAS_SERVING: usize = 4;

/// One connection's reader.
pub(super) struct Peer {
    /// The master config's `relays:` (empty: any relay-role certificate).
    pub(super) relays_allowed: Arc<[String]>,
    /// Deltas being served now.
    pub(super) deltas_serving: Arc<AtomicUsize>,
    pub(super) hub: Arc<Hub>,
    pub(super) tx: Sender<Record>,
    pub(super) counters: Arc<Counters>,
    pub(super) store: Store,
    pub(super) ledger_path: std::path::PathBuf,
    pub(super) shutdown: Shutdown,
}

impl Peer {
    pub(super) fn serve(self, conn: Connection, local: Hello) {
        let who = conn.peer_identity().to_owned();
        let link = match link::accept(
            conn,
            local,
            &[Role::Relay, Role::Client],
            Arc::clone(&self.counters),
        ) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                tracing::warn!(peer = %who, "handshake failed: {e}");
                return;
            }
        };
        if link.session().peer_role == Role::Relay
            && let Err(r) = trust::relay_allowed(&self.relays_allowed, link.peer())
        {
            self.refuse(&link, 0, &r);
            return;
        }
        tracing::info!(peer = link.peer(), role = ?link.session().peer_role, "peer connected");
        let serial = self.hub.serial.fetch_add(1, Ordering::Relaxed);
        let end = loop {
            if self.shutdown.is_set() {
                break None;
            }
            match link.recv(Duration::from_millis(500)) {
                Ok(Some(m)) => self.handle(&link, serial, m),
                Ok(None) => {}
                Err(e) => break Some(e),
            }
        };
        let mut st = self.hub.lock();
        if st
            .relays
            .get(link.peer())
            .is_some_and(|r| r.serial == serial)
        {
            st.relays.remove(link.peer());
            self.hub.changed.notify_all();
        }
        drop(st);
        match end {
            Some(e) if !e.is_closed() => tracing::warn!(peer = link.peer(), "connection lost: {e}"),
            _ => tracing::info!(peer = link.peer(), "peer disconnected"),
        }
    }

    /// Answers a claim this peer may not make: an `Error` naming why,
    /// counted and logged; nothing of it is recorded.
    fn refuse(&self, link: &Link, about: u64, why: &trust::Refusal) {
        Counters::bump(&self.counters.refused);
        tracing::warn!(peer = link.peer(), "refused: {why}");
        link.error(ErrorCode::Unexpected, about, why.to_string());
    }

    fn handle(&self, link: &Arc<Link>, serial: u64, msg: Message) {
        let is_relay = link.session().peer_role == Role::Relay;
        let is_client = link.session().peer_role == Role::Client;
        match msg {
            Message::RegisterRelay(r) if is_relay => {
                if r.relay != link.peer() {
                    link.error(
                        ErrorCode::Unexpected,
                        0,
                        format!("relay name {:?} is not the certificate's", r.relay),
                    );
                    return;
                }
                let _ = link.send(&Message::Registered(Registered { target: None }));
                let mut st = self.hub.lock();
                let _ = link.send(&Message::DenyList(DenyList {
                    identities: st.denied.clone(),
                }));
                st.relays.insert(
                    r.relay.clone(),
                    RelayEntry {
                        link: Arc::clone(link),
                        serial,
                    },
                );
                tracing::info!(relay = %r.relay, clients = r.clients, group = ?r.group, "relay registered");
                // A relay that (re)joins mid-run gets the instruction and the
                // round on air: it resumes the broadcast.
                if let Some(active) = st.active.clone().filter(|a| a.targets(&r.relay)) {
                    let _ = link.send(&Message::Instruction(active.instruction_for(&r.relay)));
                    if let Some((round, at)) = active.round {
                        let run = active.instruction.run;
                        if !st.done.contains(&(run, round, r.relay.clone())) {
                            let _ = link.send(&Message::StartRound(StartRound { run, round, at }));
                        }
                    }
                }
                self.hub.changed.notify_all();
            }
            Message::RegisterClient(c) if is_relay => self.client_report(link, c),
            // A client talks to the master directly only as a straggler:
            // its version report, then a delta request.
            Message::RegisterClient(c) if is_client => {
                if let Err(r) = trust::client_speaks_for(link.peer(), &c.client) {
                    return self.refuse(link, 0, &r);
                }
                let target = Ledger::open(&self.ledger_path)
                    .ok()
                    .and_then(|l| crate::deltas::target_for(&l, &c.client))
                    .and_then(|(_, m)| crate::deltas::artifact_ref(&m))
                    .filter(|t| c.installed.as_ref() != Some(t));
                let _ = self.tx.send(Record::Report {
                    touch: ClientTouch {
                        client: c.client.clone(),
                        relay: None,
                        artifact: c.installed.as_ref().map(|i| i.name.to_string()),
                        version: c.installed.as_ref().map(|i| i.version.to_string()),
                        at: Timestamp::now().to_string(),
                    },
                    join: None,
                    current: None,
                });
                let _ = link.send(&Message::Registered(Registered { target }));
            }
            Message::DeltaRequest(r) if is_client && link.session().has("delta") => {
                if let Err(why) = trust::client_speaks_for(link.peer(), &r.client) {
                    return self.refuse(link, r.transfer, &why);
                }
                // A slot, or "busy": the client asks again on its next check.
                let taken = self.deltas_serving.fetch_add(1, Ordering::SeqCst);
                if taken >= MAX_DELTAS_SERVING {
                    self.deltas_serving.fetch_sub(1, Ordering::SeqCst);
                    let _ = link.send(&Message::DeltaResponse(haifu_protocol::DeltaResponse {
                        transfer: r.transfer,
                        to: r.to,
                        body: haifu_protocol::DeltaBody::Refused {
                            reason: format!(
                                "busy: {MAX_DELTAS_SERVING} deltas are being served; ask again"
                            ),
                        },
                    }));
                    return;
                }
                let slot = ServingSlot(Arc::clone(&self.deltas_serving));
                let link = Arc::clone(link);
                let store = self.store.clone();
                let path = self.ledger_path.clone();
                let dir = self
                    .ledger_path
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("deltas");
                let traffic = TrafficLog(self.tx.clone());
                let spawned = std::thread::Builder::new()
                    .name("delta".into())
                    .spawn(move || {
                        let _slot = slot;
                        crate::deltas::serve(&link, &store, &path, &dir, &r, &traffic);
                    });
                if let Err(e) = spawned {
                    tracing::error!("cannot start a delta thread: {e}");
                }
            }
            Message::Completion(c) if is_relay || is_client => {
                let relay = is_relay.then(|| link.peer().to_owned());
                let st = self.hub.lock();
                let allowed = match &relay {
                    Some(relay) => trust::relay_completes_for(
                        st.bound.get(&c.client).map(String::as_str),
                        relay,
                        &c.client,
                    ),
                    None => trust::client_speaks_for(link.peer(), &c.client),
                };
                if let Err(why) = allowed {
                    drop(st);
                    return self.refuse(link, c.run, &why);
                }
                // A relay relays what its clients received from its own
                // broadcast; deltas come from the clients themselves.
                if relay.is_some() && (c.via == Via::Delta || c.run == 0) {
                    drop(st);
                    return link.unexpected(&Message::Completion(c));
                }
                let on_air = st.active.as_ref().filter(|a| a.instruction.run == c.run);
                let round =
                    on_air.and_then(|a| trust::completion_round(c.run, &a.starts, c.at).ok());
                let joinable =
                    on_air.is_some_and(|a| relay.as_deref().is_none_or(|r| a.targets(r)));
                drop(st);
                let _ = self.tx.send(Record::Completion {
                    link: Arc::clone(link),
                    completion: c,
                    round,
                    relay,
                    joinable,
                });
            }
            Message::RoundDone(d) if is_relay => {
                let mut st = self.hub.lock();
                let checked = match st
                    .active
                    .as_ref()
                    .filter(|a| a.instruction.run == d.run && a.targets(link.peer()))
                {
                    Some(a) => {
                        trust::round_report(d.run, d.round, d.bytes, &a.starts, a.instruction.size)
                    }
                    None => Err(trust::Refusal::NotOnAir {
                        run: d.run,
                        round: d.round,
                    }),
                };
                if let Err(why) = checked {
                    drop(st);
                    return self.refuse(link, d.run, &why);
                }
                tracing::info!(
                    relay = link.peer(),
                    run = d.run,
                    round = d.round,
                    datagrams = d.datagrams,
                    bytes = d.bytes,
                    elapsed_ms = d.elapsed_ms,
                    "relay finished a round"
                );
                TrafficLog(self.tx.clone()).record(
                    i64::try_from(d.run).unwrap_or(i64::MAX),
                    link.peer(),
                    TrafficKind::Multicast,
                    Some(d.round),
                    d.bytes,
                );
                st.done.insert((d.run, d.round, link.peer().to_owned()));
                self.hub.changed.notify_all();
            }
            Message::ArtifactFetch(f) if is_relay && link.session().has("chunked-transfer") => {
                // Only the artifact of a run this relay is instructed for.
                let instructed = self.hub.lock().active.as_ref().is_some_and(|a| {
                    a.instruction.run == f.run
                        && a.targets(link.peer())
                        && *a.artifact() == f.artifact
                });
                if !instructed {
                    let why = trust::Refusal::NotInstructed {
                        relay: link.peer().to_owned(),
                    };
                    Counters::bump(&self.counters.refused);
                    tracing::warn!(peer = link.peer(), "refused: {why}");
                    link.error(ErrorCode::UnknownArtifact, f.transfer, why.to_string());
                    return;
                }
                let link = Arc::clone(link);
                let store = self.store.clone();
                let path = self.ledger_path.clone();
                let traffic = TrafficLog(self.tx.clone());
                let _ = std::thread::Builder::new()
                    .name("fetch".into())
                    .spawn(move || serve_fetch(&link, &store, &path, &f, &traffic));
            }
            Message::Error(e) => {
                tracing::warn!(peer = link.peer(), code = ?e.code, about = e.about, "peer reports: {}", e.reason);
            }
            other => link.unexpected(&other),
        }
    }

    /// A client's version report, forwarded by its relay: recorded; a
    /// client of a live run joins it, or is marked as already current.
    fn client_report(&self, link: &Arc<Link>, c: RegisterClient) {
        let relay = link.peer().to_owned();
        if c.relay != relay {
            link.error(
                ErrorCode::Unexpected,
                0,
                format!(
                    "client {:?} reported by {relay:?}, not by {:?}",
                    c.client, c.relay
                ),
            );
            return;
        }
        let bound = self.hub.lock().bound.get(&c.client).cloned();
        if let Err(why) = trust::relay_speaks_for(bound.as_deref(), &relay, &c.client) {
            // The operator may have moved it since (`haifu fleet move`):
            // the ledger has the last word. Read without the hub's lock, so
            // a relay repeating refused reports slows nobody else.
            let moved = Ledger::open(&self.ledger_path)
                .ok()
                .and_then(|l| l.client(&c.client).ok().flatten())
                .and_then(|row| row.relay)
                .is_some_and(|r| r == relay);
            if !moved {
                return self.refuse(link, 0, &why);
            }
        }
        let mut st = self.hub.lock();
        let before = st.bound.get(&c.client).cloned();
        if before.as_deref() != Some(relay.as_str()) {
            // Registered now (first report, or moved here): counted against
            // the relay's bound.
            let registered = st.behind.get(&relay).copied().unwrap_or(0);
            if let Err(why) = trust::relay_registers(&relay, registered, &c.client) {
                drop(st);
                return self.refuse(link, 0, &why);
            }
            *st.behind.entry(relay.clone()).or_default() += 1;
            if let Some(old) = before.and_then(|o| st.behind.get_mut(&o)) {
                *old = old.saturating_sub(1);
            }
            st.bound.insert(c.client.clone(), relay.clone());
        }
        let (join, current) = match st.active.as_ref().filter(|a| a.targets(&relay)) {
            Some(a) => {
                let run = i64::try_from(a.instruction.run).unwrap_or(i64::MAX);
                let has = c.installed.as_ref().is_some_and(|i| i == a.artifact());
                (
                    Some((run, c.client.clone(), relay.clone())),
                    has.then_some(run),
                )
            }
            None => (None, None),
        };
        drop(st);
        let touch = ClientTouch {
            client: c.client.clone(),
            relay: Some(relay),
            artifact: c.installed.as_ref().map(|i| i.name.to_string()),
            version: c.installed.as_ref().map(|i| i.version.to_string()),
            at: Timestamp::now().to_string(),
        };
        let _ = self.tx.send(Record::Report {
            touch,
            join,
            current,
        });
    }
}

/// A delta slot, given back when the serving thread ends however it ends.
pub(super) struct ServingSlot(pub(super) Arc<AtomicUsize>);

impl Drop for ServingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
