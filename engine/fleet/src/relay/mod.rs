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

mod broadcaster;
mod clients;
mod fetch;
mod master_link;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::AtomicU64;

use haifu_protocol::ArtifactRef;
use haifu_protocol::Group;
use haifu_protocol::Hello;
use haifu_protocol::Instruction;
use haifu_protocol::Message;
use haifu_protocol::Role;
use haifu_protocol::RoundDone;

use crate::FleetError;
use crate::common::Shutdown;
use crate::common::accept_loop;
use crate::common::endpoint;
use crate::common::plugins;
use crate::config::RelayConfig;
use crate::link;
use crate::link::Counters;
use crate::link::Link;
use broadcaster::broadcaster;
use clients::serve_client;
use fetch::Fetch;
use master_link::master_link;

#[derive(Default)]
struct State {
    master: Option<Arc<Link>>,
    clients: HashMap<String, (Arc<Link>, Option<ArtifactRef>)>,
    /// The last version report of every client seen since start, connected
    /// or not: replayed to a master that (re)connects, so a report made
    /// while the master was away is not lost.
    reports: BTreeMap<String, Option<ArtifactRef>>,
    session: Option<Instruction>,
    /// The session's artifact, once here and checked.
    artifact: Option<PathBuf>,
    fetch: Option<Fetch>,
    /// Rounds to send, in order.
    queue: Vec<(u64, u32)>,
    /// Rounds sent, with their figures (resent when the master asks again).
    sent: BTreeMap<(u64, u32), RoundDone>,
    /// The round going out now.
    sending: Option<(u64, u32)>,
    /// Clients whose completion the master acked, per run.
    acked: BTreeMap<u64, BTreeSet<String>>,
}

struct Relay {
    cfg: RelayConfig,
    state: Mutex<State>,
    changed: Condvar,
    counters: Arc<Counters>,
    shutdown: Shutdown,
    transfers: AtomicU64,
    group: Group,
}

impl Relay {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn to_master(&self, msg: &Message) -> bool {
        let master = self.lock().master.clone();
        master.is_some_and(|m| m.send(msg).is_ok())
    }
}

/// Runs a relay until `shutdown` is set.
pub fn run(cfg: RelayConfig, shutdown: Shutdown) -> Result<(), FleetError> {
    std::fs::create_dir_all(&cfg.data).map_err(|source| FleetError::File {
        what: "data folder",
        path: cfg.data.clone(),
        source,
    })?;
    let (quic, multicast) = plugins(cfg.plugins.as_deref())?;
    let ep = Arc::new(endpoint(&quic, &cfg.tls, Some(cfg.listen))?);
    let group = Group {
        addr: cfg.multicast.group.ip(),
        port: cfg.multicast.group.port(),
    };
    let relay = Arc::new(Relay {
        cfg: cfg.clone(),
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        counters: Arc::new(Counters::default()),
        shutdown: shutdown.clone(),
        transfers: AtomicU64::new(1),
        group,
    });
    tracing::info!(
        name = %cfg.name,
        listen = %ep.local_addr().unwrap_or_default(),
        group = %cfg.multicast.group,
        "relay started"
    );
    let mut threads = Vec::new();
    {
        let relay = Arc::clone(&relay);
        let ep = Arc::clone(&ep);
        threads.push(spawn("master-link", move || master_link(&relay, &ep))?);
    }
    {
        let relay = Arc::clone(&relay);
        threads.push(spawn("broadcaster", move || {
            broadcaster(&relay, &multicast)
        })?);
    }
    let local = Hello::new(Role::Relay, cfg.name.clone());
    accept_loop(&ep, &shutdown, |conn| {
        let relay = Arc::clone(&relay);
        let local = local.clone();
        let _ = spawn("client", move || {
            let who = conn.peer_identity().to_owned();
            match link::accept(conn, local, &[Role::Client], Arc::clone(&relay.counters)) {
                Ok(l) => serve_client(&relay, Arc::new(l)),
                Err(e) => tracing::warn!(peer = %who, "client handshake failed: {e}"),
            }
        });
    });
    relay.changed.notify_all();
    for t in threads {
        let _ = t.join();
    }
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
