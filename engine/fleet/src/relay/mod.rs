//! `haifu relay`: between the master and one site's clients.
//!
//! - keeps a QUIC connection to the master (reconnecting with back-off),
//!   registers, and forwards its clients' version reports and completions
//!   up and the acks down;
//! - on an instruction, fetches the artifact from the master once (kept in
//!   `data/` under its digest, checked with sha3-256) and hands each client
//!   the run's session key and signed manifest;
//! - runs each round the master starts as a RaptorQ carousel through the
//!   multicast plugin, paced to the workflow's rate, and reports it done
//!   with its figures.
//!
//! Every decision is `machine::RelayCore`'s; the threads here (master
//! link, one per client, the broadcaster) only carry its effects out.

mod broadcaster;
mod clients;
mod fetch;
pub(crate) mod machine;
mod master_link;
mod mtu;
pub(crate) mod repair;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use haifu_plugin_host::Endpoint;
use haifu_protocol::Feedback;
use haifu_protocol::Group;
use haifu_protocol::Hello;
use haifu_protocol::Instruction;
use haifu_protocol::Role;
use haifu_protocol::RoundBudget;
use std::time::Instant;

use crate::FleetError;
use crate::common::Shutdown;
use crate::common::accept_loop;
use crate::common::endpoint;
use crate::common::plugins;
use crate::config::RelayConfig;
use crate::link;
use crate::link::Counters;
use crate::link::Link;
use crate::metrics::{RelayMetrics, RelayView};
use broadcaster::broadcaster;
use clients::serve_client;
use fetch::FetchFiles;
use machine::ConnId;
use machine::Effect;
use machine::Event;
use machine::RelayCore;
use master_link::master_link;

struct Shared {
    core: RelayCore,
    master: Option<Arc<Link>>,
    clients: HashMap<ConnId, Arc<Link>>,
    next_conn: ConnId,
    fetches: FetchFiles,
}

/// What the broadcaster is told.
#[derive(Debug)]
enum ToAir {
    /// Send this round of the session within its budget.
    Round {
        round: u32,
        session: Box<Instruction>,
        budget: Option<RoundBudget>,
    },
    /// A listener's report for the round on air, as it arrived.
    Feedback {
        client: String,
        feedback: Feedback,
        at: Instant,
    },
}

struct Relay {
    cfg: RelayConfig,
    shared: Mutex<Shared>,
    counters: Arc<Counters>,
    metrics: RelayMetrics,
    shutdown: Shutdown,
    ep: Arc<Endpoint>,
    on_air: mpsc::Sender<ToAir>,
    /// The run whose round on air the core's `StopAir` cut short (0:
    /// none; runs count from 1), cleared by its next `Broadcast`: the
    /// broadcaster ends a round of that run when it sees it.
    stop_air: AtomicU64,
}

impl Relay {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `event` to the core and carries out its effects, with those
    /// of the events they lead to (a finished fetch), under the lock so
    /// every link gets its messages in the core's order.
    fn handle(&self, event: Event) {
        let mut sh = self.lock();
        let mut events = vec![event];
        let mut deny = None;
        let mut to_air = Vec::new();
        while let Some(event) = events.pop() {
            self.count(&event);
            for effect in sh.core.handle(event) {
                match effect {
                    Effect::ToMaster(msg) => {
                        if let Some(m) = &sh.master {
                            let _ = m.send(&msg);
                        }
                    }
                    Effect::ToClient { conn, msg } => {
                        if let Some(c) = sh.clients.get(&conn) {
                            let _ = c.send(&msg);
                        }
                    }
                    Effect::Deny(ids) => deny = Some(ids),
                    Effect::FetchStart { transfer } => {
                        if let Err(e) = sh.fetches.start(&self.cfg.data, transfer) {
                            tracing::error!("cannot start the fetch: {e}");
                            events.push(Event::FetchFailed { transfer });
                        }
                    }
                    Effect::FetchWrite { transfer, bytes } => {
                        self.metrics.fetched(bytes.len() as u64);
                        if let Err(e) = sh.fetches.write(transfer, &bytes) {
                            tracing::error!("writing the fetched artifact: {e}");
                            events.push(Event::FetchFailed { transfer });
                        }
                    }
                    Effect::FetchFinish { transfer, artifact } => {
                        let ok = sh.fetches.finish(&self.cfg.data, transfer, &artifact);
                        events.push(Event::Fetched { transfer, ok });
                    }
                    Effect::FetchDrop { transfer } => sh.fetches.drop_file(transfer),
                    Effect::Broadcast {
                        round,
                        session,
                        budget,
                    } => {
                        // The core orders a round only once the last one
                        // ended, so a stop still set was meant for that one.
                        self.stop_air.store(0, Ordering::SeqCst);
                        to_air.push(ToAir::Round {
                            round,
                            session,
                            budget,
                        });
                    }
                    Effect::StopAir { run, round } => {
                        tracing::debug!(run, round, "the broadcaster is told to stop");
                        self.stop_air.store(run, Ordering::SeqCst);
                    }
                    Effect::Feedback { client, feedback } => to_air.push(ToAir::Feedback {
                        client,
                        feedback,
                        at: Instant::now(),
                    }),
                }
            }
        }
        drop(sh);
        if let Some(ids) = deny {
            // The plugin refuses them at the handshake from now on and
            // closes their live connections.
            match self.ep.set_denied(&ids) {
                Ok(()) => {
                    self.metrics.denied(ids.len());
                    tracing::info!(denied = ids.len(), "deny list applied");
                }
                Err(e) => tracing::error!("applying the deny list: {e}"),
            }
        }
        for order in to_air {
            let _ = self.on_air.send(order);
        }
    }

    /// The links, for the metrics.
    fn view(&self) -> RelayView {
        let sh = self.lock();
        RelayView {
            master_connected: sh.master.is_some(),
            clients_connected: sh.clients.len() as u64,
        }
    }

    /// Counts what `event` says happened (rounds, fetches), whether it came
    /// from a thread or from the effects of another event.
    fn count(&self, event: &Event) {
        match event {
            Event::RoundSent(d) => self.metrics.round_sent(d),
            Event::RoundFailed { .. } => self.metrics.round_failed(),
            Event::Fetched { ok, .. } => self.metrics.fetch_done(*ok),
            _ => {}
        }
    }

    /// Numbers a client connection and tells the core.
    fn client_up(&self, link: &Arc<Link>) -> ConnId {
        let conn = {
            let mut sh = self.lock();
            sh.next_conn += 1;
            let conn = sh.next_conn;
            sh.clients.insert(conn, Arc::clone(link));
            conn
        };
        self.handle(Event::ClientUp {
            conn,
            client: link.peer().to_owned(),
        });
        conn
    }

    fn client_down(&self, conn: ConnId) {
        self.lock().clients.remove(&conn);
        self.handle(Event::ClientDown { conn });
    }
}

/// Runs a relay until `shutdown` is set.
pub fn run(cfg: RelayConfig, shutdown: Shutdown) -> Result<(), FleetError> {
    std::fs::create_dir_all(&cfg.data).map_err(|source| FleetError::File {
        what: "data folder",
        path: cfg.data.clone(),
        source,
    })?;
    let (quic, multicast) = plugins(cfg.plugins.as_deref(), &cfg.transports)?;
    let ep = Arc::new(endpoint(&quic, &cfg.tls, Some(cfg.listen))?);
    let group = Group {
        addr: cfg.multicast.group.ip(),
        port: cfg.multicast.group.port(),
    };
    let counters = Arc::new(Counters::default());
    let (on_air, orders) = mpsc::channel();
    let metrics = RelayMetrics::new(Arc::clone(&counters));
    let relay = Arc::new(Relay {
        cfg: cfg.clone(),
        shared: Mutex::new(Shared {
            core: RelayCore::new(cfg.name.clone(), group, Arc::clone(&counters))
                .with_broadcast(cfg.transports.broadcast.clone()),
            master: None,
            clients: HashMap::new(),
            next_conn: 0,
            fetches: FetchFiles::default(),
        }),
        counters,
        metrics,
        shutdown: shutdown.clone(),
        ep: Arc::clone(&ep),
        on_air,
        stop_air: AtomicU64::new(0),
    });
    {
        let weak = Arc::downgrade(&relay);
        relay
            .metrics
            .watch(move || weak.upgrade().map(|r| r.view()).unwrap_or_default());
    }
    if let Some(a) = cfg.metrics {
        crate::metrics::spawn(a, relay.metrics.exporter(), shutdown.clone())?;
    }
    tracing::info!(
        name = %cfg.name,
        listen = %ep.local_addr().unwrap_or_default(),
        group = %cfg.multicast.group,
        "relay started"
    );
    let mut threads = Vec::new();
    {
        let relay = Arc::clone(&relay);
        threads.push(spawn("master-link", move || master_link(&relay))?);
    }
    {
        let relay = Arc::clone(&relay);
        threads.push(spawn("broadcaster", move || {
            broadcaster(&relay, &multicast, &orders)
        })?);
    }
    let local = Hello::new(Role::Relay, cfg.name.clone());
    accept_loop(&ep, &shutdown, |conn| {
        let relay = Arc::clone(&relay);
        let local = local.clone();
        let _ = spawn("client", move || {
            let who = conn.peer_identity().to_owned();
            let _peer = tracing::info_span!("peer", peer = %who).entered();
            match link::accept(conn, local, &[Role::Client], Arc::clone(&relay.counters)) {
                Ok(l) => serve_client(&relay, Arc::new(l)),
                Err(e) => tracing::warn!(peer = %who, "client handshake failed: {e}"),
            }
        });
    });
    for t in threads {
        let _ = t.join();
    }
    relay.lock().fetches.drop_all();
    tracing::info!(counters = %relay.counters.snapshot(), "relay stopped");
    Ok(())
}

fn spawn(
    name: &'static str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, FleetError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(FleetError::thread(name))
}
