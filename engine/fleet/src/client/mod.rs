//! `haifu client`: one machine of the fleet.
//!
//! - keeps a QUIC connection to its relay (reconnecting with back-off) and
//!   reports its installed version on every connect;
//! - on a session key, checks the signed manifest against the pinned master
//!   key and, unless it already runs that version, joins the multicast group
//!   and gathers symbols across rounds until every block decodes;
//! - holds every datagram to the signed manifest's layout and every decoded
//!   block to its signed hash (any key holder can sign a datagram), and
//!   logs and counts what it refuses;
//! - verifies sha3-256 and the signature, installs atomically (the previous
//!   version kept), runs the post-install command, and only then sends its
//!   completion, resending until the master's ack arrives. The pending
//!   completion is kept on disk, so a restart resends it;
//! - reports a version that failed after install (its post-install
//!   command, or its health command after the configured delay, which
//!   switches back) the same way, and does not install it again until the
//!   master says it was readmitted (module `health`), and a version it
//!   switched to that it finds put back outside haifu when it starts or
//!   its health check is due (`rolled-back`, module `machine::fallback`);
//! - a session whose bytes in hand reach no new high for
//!   `receive_stall_secs` stops holding back the boot check (the progress
//!   watchdog), so a straggler still asks the master for a delta (module
//!   `catch_up`); the delta or full copy is streamed
//!   to a staging file, never held in memory, and refused when announced
//!   or decoded larger than the signed manifest allows.

mod catch_up;
mod datagrams;
mod health;
pub(crate) mod listening;
pub(crate) mod machine;
pub(crate) mod outbox;
mod partial;
mod receive;
mod relay_link;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use haifu_core::PublicKey;
use haifu_install::InstallRoot;
use haifu_plugin_host::Plugin;
use haifu_protocol::ArtifactRef;
use jiff::Timestamp;

use crate::FleetError;
use crate::common::Shutdown;
use crate::common::endpoint;
use crate::common::plugins;
use crate::config::ClientConfig;
use crate::link::Counters;
use crate::link::Link;
use crate::metrics::{ClientMetrics, ClientView, Via};
use catch_up::boot_checks;
use machine::ClientCore;
use machine::Effect;
use machine::Event;
use outbox::PENDING;
use relay_link::relay_link;

struct Client {
    cfg: ClientConfig,
    pinned: PublicKey,
    root: InstallRoot,
    link: Mutex<Option<Arc<Link>>>,
    /// Every decision: admission, the outbox, the version report.
    core: Mutex<ClientCore>,
    /// Set to stop the receiver (a new session replaced it).
    cancel: Mutex<Arc<AtomicBool>>,
    counters: Arc<Counters>,
    metrics: ClientMetrics,
    /// What hostile or useless traffic the receivers met.
    hostile: Hostile,
    /// Set while the current receiver has made no progress for
    /// `receive_stall_secs`: the boot check may run meanwhile.
    stalled: AtomicBool,
    /// Held while verifying and installing, so a broadcast and a delta
    /// finishing together install once.
    installing: Mutex<()>,
    shutdown: Shutdown,
    multicast: Plugin,
}

/// Counters of datagrams and sessions a client refused or gave up on,
/// logged when it stops.
#[derive(Debug, Default)]
struct Hostile {
    /// Authentic datagrams whose shape or block count is not the manifest's.
    shape_mismatch: AtomicU64,
    /// Decoded blocks that failed their signed hash.
    block_hash_mismatch: AtomicU64,
    /// Symbol ids that came with two different tags.
    symbol_conflict: AtomicU64,
    /// Times the progress watchdog fired.
    stalls: AtomicU64,
}

impl std::fmt::Display for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "shape_mismatch={} block_hash_mismatch={} symbol_conflict={} stalls={}",
            get(&self.shape_mismatch),
            get(&self.block_hash_mismatch),
            get(&self.symbol_conflict),
            get(&self.stalls)
        )
    }
}

impl Client {
    fn link(&self) -> MutexGuard<'_, Option<Arc<Link>>> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending_path(&self) -> PathBuf {
        self.cfg.install_root.join(PENDING)
    }

    fn rollbacks_path(&self) -> PathBuf {
        self.cfg.install_root.join(outbox::ROLLBACKS)
    }

    /// Carries out a rollback order: its intent on disk first, then the
    /// switch (with the install root's own guards: the kept previous
    /// version, older, of this artifact, `to` if given); not while an
    /// install runs.
    fn roll_back(
        &self,
        intent: &machine::RollbackState,
        artifact: &str,
        to: Option<&str>,
    ) -> Result<ArtifactRef, machine::Refusal> {
        let _one = self.installing.lock().unwrap_or_else(|p| p.into_inner());
        outbox::write_rollbacks(&self.rollbacks_path(), intent)
            .map_err(machine::Refusal::Record)?;
        self.root.rollback(artifact, to)?;
        installed_ref(&self.root).ok_or(machine::Refusal::NothingCurrent)
    }

    fn core(&self) -> MutexGuard<'_, ClientCore> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `event` to the core and carries out its effects (with those
    /// of the events they lead to), under the core's lock so the relay
    /// gets messages in the core's order.
    fn handle(self: &Arc<Self>, event: Event) {
        if let Event::Installed { pending, .. } = &event {
            let via = if pending.delta {
                Via::Master
            } else {
                Via::Broadcast
            };
            self.metrics.installed(via, true);
        }
        let mut core = self.core();
        let mut events = vec![event];
        let mut receive = Vec::new();
        while let Some(event) = events.pop() {
            for effect in core.handle(Timestamp::now(), event) {
                match effect {
                    Effect::ToRelay(msg) => {
                        if let Some(l) = self.link().clone() {
                            let _ = l.send(&msg);
                        }
                    }
                    Effect::Persist(p) => match outbox::write_pending(&self.pending_path(), &p) {
                        Ok(()) => events.push(Event::Persisted),
                        Err(e) => {
                            tracing::error!("keeping the completion: {e}");
                            events.push(Event::PersistFailed);
                        }
                    },
                    Effect::Forget => {
                        self.metrics.acknowledged();
                        let _ = std::fs::remove_file(self.pending_path());
                    }
                    Effect::RefusedOlder => self.metrics.refused_older(Via::Broadcast),
                    Effect::KeepFailures(f) => {
                        let path = self.cfg.install_root.join(outbox::FAILURES);
                        if let Err(e) = outbox::write_failures(&path, &f) {
                            tracing::error!("keeping the failures' record: {e}");
                        }
                    }
                    Effect::KeepSwitched(sw) => {
                        let path = self.cfg.install_root.join(outbox::SWITCHED);
                        if let Err(e) = outbox::write_switched(&path, sw.as_ref()) {
                            tracing::error!("keeping the version switched to: {e}");
                        }
                    }
                    Effect::KeepRollbacks(r) => {
                        if let Err(e) = outbox::write_rollbacks(&self.rollbacks_path(), &r) {
                            tracing::error!("keeping the rollbacks' record: {e}");
                        }
                    }
                    Effect::RollBack {
                        intent,
                        artifact,
                        to,
                    } => events.push(Event::RolledBack(self.roll_back(
                        &intent,
                        &artifact,
                        to.as_deref(),
                    ))),
                    Effect::Receive { session, manifest } => receive.push((session, manifest)),
                }
            }
        }
        drop(core);
        for (session, manifest) in receive {
            receive::start(self, *session, *manifest);
        }
    }
}

impl Client {
    /// The client's state, for the metrics.
    fn view(&self) -> ClientView {
        let (receiving, pending) = {
            let core = self.core();
            (core.receiving().is_some(), u64::from(core.has_pending()))
        };
        ClientView {
            relay_connected: self.link().is_some(),
            receiving,
            pending,
            installed: installed_ref(&self.root)
                .map(|i| (i.name.to_string(), i.version.to_string())),
            stalls: self.hostile.stalls.load(Ordering::Relaxed),
        }
    }
}

/// What `root` has installed, as the protocol names it.
fn installed_ref(root: &InstallRoot) -> Option<ArtifactRef> {
    let i = root.installed().ok()??;
    Some(ArtifactRef {
        name: i.name.parse().ok()?,
        version: i.version.parse().ok()?,
        digest: i.digest,
    })
}

/// Runs a client until `shutdown` is set.
pub fn run(cfg: ClientConfig, shutdown: Shutdown) -> Result<(), FleetError> {
    let pinned =
        haifu_store::read_public_key(&cfg.master_key).map_err(FleetError::store("master_key"))?;
    let root = InstallRoot::open(&cfg.install_root).map_err(FleetError::install("install_root"))?;
    let installed = installed_ref(&root);
    let pending = outbox::read_pending(&cfg.install_root.join(PENDING));
    let rollbacks = outbox::read_rollbacks(&cfg.install_root.join(outbox::ROLLBACKS));
    let failures = outbox::read_failures(&cfg.install_root.join(outbox::FAILURES));
    let switched = outbox::read_switched(&cfg.install_root.join(outbox::SWITCHED));
    let core = ClientCore::new(
        cfg.id.clone(),
        cfg.relay.name.clone(),
        cfg.artifact.clone(),
        pinned,
        installed.clone(),
        pending,
    )
    .with_broadcast(cfg.transports.broadcast.clone())
    .with_rollbacks(rollbacks)
    .with_failures(failures)
    .with_switched(switched)
    .with_labels(cfg.labels.clone());
    let (quic, multicast) = plugins(cfg.plugins.as_deref(), &cfg.transports)?;
    let ep = Arc::new(endpoint(&quic, &cfg.tls, None)?);
    let counters = Arc::new(Counters::default());
    let client = Arc::new(Client {
        cfg: cfg.clone(),
        pinned,
        root,
        link: Mutex::new(None),
        core: Mutex::new(core),
        cancel: Mutex::new(Arc::new(AtomicBool::new(false))),
        metrics: ClientMetrics::new(Arc::clone(&counters)),
        counters,
        hostile: Hostile::default(),
        stalled: AtomicBool::new(false),
        installing: Mutex::new(()),
        shutdown: shutdown.clone(),
        multicast,
    });
    {
        let weak = Arc::downgrade(&client);
        client
            .metrics
            .watch(move || weak.upgrade().map(|c| c.view()).unwrap_or_default());
    }
    if let Some(a) = cfg.metrics {
        crate::metrics::spawn(a, client.metrics.exporter(), shutdown.clone())?;
    }
    tracing::info!(
        id = %cfg.id,
        relay = %cfg.relay.address,
        installed = ?installed.as_ref().map(|i| i.version.to_string()),
        "client started"
    );
    // Before any other thread: whether what this client switched to is
    // still current, or was put back outside haifu while it was away.
    client.handle(Event::Looked {
        current: installed.clone(),
        about: None,
    });
    if cfg.master.is_some() {
        let client = Arc::clone(&client);
        let ep = Arc::clone(&ep);
        std::thread::Builder::new()
            .name("boot-check".into())
            .spawn(move || boot_checks(&client, &ep))
            .map_err(FleetError::thread("boot-check"))?;
    }
    health::resume(&client);
    relay_link(&client, &ep);
    client
        .cancel
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .store(true, Ordering::SeqCst);
    tracing::info!(counters = %client.counters.snapshot(), hostile = %client.hostile, "client stopped");
    Ok(())
}
