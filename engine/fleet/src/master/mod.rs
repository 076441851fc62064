//! `haifu master`: the fleet's single source of truth.
//!
//! Threads:
//! - the **acceptor** takes QUIC connections from relays (and, for deltas,
//!   clients) and gives each a thread that reads its messages;
//! - the **recorder** owns a ledger connection and writes what arrives —
//!   completions, version reports, late joins — in group commits: one
//!   transaction per batch, and only after it commits are the batch's
//!   completions acknowledged;
//! - the **driver** finds live runs in the ledger (created by
//!   `haifu run --live`) and drives each through `haifu_runtime::driver`
//!   with a [`LiveFleet`], which instructs the relays and starts rounds.
//!
//! Everything durable is in the ledger, so a master killed at any moment and
//! started again carries on: relays reconnect, re-register, receive the
//! instruction and the current round again, and resent completions are
//! counted once.

mod deny;
mod drive;
mod fetch;
pub(crate) mod filing;
mod hub;
mod live_fleet;
pub(crate) mod machine;
mod orders;
mod peer;
mod recorder;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use haifu_ledger::Ledger;
use haifu_protocol::Hello;
use haifu_protocol::Role;
use haifu_store::Store;

use crate::FleetError;
use crate::common::Shutdown;
use crate::common::accept_loop;
use crate::common::check_tls;
use crate::common::endpoint;
use crate::common::plugins;
use crate::config::MasterConfig;
use crate::config::TlsFiles;
use crate::link::Counters;
use crate::metrics::MasterMetrics;
use deny::deny_list;
use drive::drive_runs;
use hub::Hub;
use machine::MasterCore;
use peer::serve_peer;
use recorder::recorder;

pub(crate) use hub::TrafficLog;
#[cfg(test)]
pub(crate) use live_fleet::default_budget;
pub use live_fleet::{LiveFleet, create_live_run};

/// Runs the master until `shutdown` is set.
pub fn run(cfg: MasterConfig, shutdown: Shutdown) -> Result<(), FleetError> {
    let home = &cfg.home;
    // Everything that can be checked is checked before the home, the key,
    // the store or the ledger is created: a master that cannot start
    // leaves no new files behind.
    let tls = cfg.tls.clone().unwrap_or_else(|| {
        let ca = haifu_plugin_host::pki::ca_files(home);
        let mine = haifu_plugin_host::pki::cert_files(home, &cfg.name);
        TlsFiles {
            ca: ca.cert,
            cert: mine.cert,
            key: mine.key,
        }
    });
    check_tls(&tls)?;
    let (quic, _multicast) = plugins(cfg.plugins.as_deref(), &cfg.transports)?;
    haifu_store::create_private_dir(home).map_err(FleetError::store("creating the home"))?;
    let ledger_path = home.join("ledger.sqlite");
    let key = haifu_store::load_or_create_master_key(&home.join("keys"))
        .map_err(FleetError::store("master key"))?;
    let store = Store::open(home.join("store")).map_err(FleetError::store("opening the store"))?;
    // Open (and migrate) the ledger before anything listens; created 0600
    // first, since SQLite would use the umask (its -wal and -shm follow).
    haifu_store::create_private_file(&ledger_path)
        .map_err(FleetError::store("creating the ledger"))?;
    // The core's connection to its ledger, which first tells which relay
    // each known client is behind.
    let facts = Ledger::open(&ledger_path)?;
    let bound: HashMap<String, String> = facts
        .clients()?
        .into_iter()
        .filter_map(|c| c.relay.map(|r| (c.id, r)))
        .collect();
    let ep = Arc::new(endpoint(&quic, &tls, Some(cfg.listen))?);
    let addr = ep.local_addr().unwrap_or_else(|_| cfg.listen.to_string());
    tracing::info!(listen = %addr, name = %cfg.name, home = %home.display(), "master started");

    let counters = Arc::new(Counters::default());
    let metrics = Arc::new(MasterMetrics::new(
        Arc::clone(&counters),
        cfg.relays.clone(),
        Some(ledger_path.clone()),
    ));
    if let Some(a) = cfg.api {
        crate::api::spawn(
            a,
            cfg.api_limits.clone(),
            ledger_path.clone(),
            Arc::clone(&metrics),
            shutdown.clone(),
        )?;
    }
    let (tx, rx) = mpsc::channel::<haifu_ledger::FleetBatch>();
    let core = MasterCore::new(cfg.relays.clone(), bound, Arc::clone(&counters));
    let hub = Arc::new(Hub::new(
        core,
        facts,
        tx,
        store.clone(),
        ledger_path.clone(),
        Arc::clone(&metrics),
    ));
    {
        let hub = Arc::downgrade(&hub);
        metrics.watch(move || hub.upgrade().map(|h| h.peers()).unwrap_or_default());
    }
    if let Some(a) = cfg.metrics {
        crate::metrics::spawn(a, metrics.exporter(), shutdown.clone())?;
    }
    let recorder = {
        let path = ledger_path.clone();
        let shutdown = shutdown.clone();
        let hub = Arc::clone(&hub);
        let metrics = Arc::clone(&metrics);
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || recorder(&path, &rx, &hub, &metrics, &shutdown))
            .map_err(FleetError::thread("recorder"))?
    };
    {
        let hub = Arc::clone(&hub);
        let shutdown = shutdown.clone();
        let path = ledger_path.clone();
        let ep = Arc::clone(&ep);
        let every = Duration::from_millis(cfg.poll_ms);
        std::thread::Builder::new()
            .name("deny-list".into())
            .spawn(move || deny_list(&path, &ep, &hub, &shutdown, every))
            .map_err(FleetError::thread("deny-list"))?;
    }
    {
        let hub = Arc::clone(&hub);
        let shutdown = shutdown.clone();
        let path = ledger_path.clone();
        let every = Duration::from_millis(cfg.poll_ms);
        std::thread::Builder::new()
            .name("rollback-orders".into())
            .spawn(move || orders::rollback_orders(&path, &hub, &shutdown, every))
            .map_err(FleetError::thread("rollback-orders"))?;
    }
    {
        let hub = Arc::clone(&hub);
        let shutdown = shutdown.clone();
        let store = store.clone();
        let path = ledger_path.clone();
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("driver".into())
            .spawn(move || drive_runs(&cfg, &path, &store, &key, &hub, &shutdown))
            .map_err(FleetError::thread("driver"))?;
    }

    {
        let shutdown = shutdown.clone();
        let store = store.clone();
        let path = ledger_path.clone();
        let dir = home.join("deltas");
        std::thread::Builder::new()
            .name("delta-prebuild".into())
            .spawn(move || crate::deltas::prebuild(&store, &path, &dir, &shutdown))
            .map_err(FleetError::thread("delta-prebuild"))?;
    }

    let local = Hello::new(Role::Master, cfg.name.clone());
    accept_loop(&ep, &shutdown, |conn| {
        let hub = Arc::clone(&hub);
        let counters = Arc::clone(&counters);
        let shutdown = shutdown.clone();
        let local = local.clone();
        let spawned = std::thread::Builder::new()
            .name("peer".into())
            .spawn(move || serve_peer(&hub, conn, local, counters, &shutdown));
        if let Err(e) = spawned {
            tracing::error!("cannot start a connection thread: {e}");
        }
    });
    tracing::info!(counters = %counters.snapshot(), "master stopping");
    // The recorder commits what it holds, then ends.
    let _ = recorder.join();
    drop(ep);
    tracing::info!("master stopped");
    Ok(())
}
