//! The master's shell around [`MasterCore`]: it numbers connections, hands
//! the core every event with the time and a ledger connection to read
//! from, and carries out the effects: messages sent on the links (in the
//! order the core chose, under the lock), writes handed to the recorder
//! thread, fetches and deltas run on threads of their own.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Duration;
use std::time::Instant;

use haifu_ledger::FleetBatch;
use haifu_ledger::Ledger;
use haifu_ledger::Traffic;
use haifu_ledger::TrafficKind;
use haifu_store::Store;
use jiff::Timestamp;

use super::fetch::serve_fetch;
use super::machine::ActiveRun;
use super::machine::ConnId;
use super::machine::Effect;
use super::machine::Event;
use super::machine::MasterCore;
use super::machine::drain;
use super::machine::drain::Drain;
use crate::common::Shutdown;
use crate::link::Link;
use crate::metrics::{MasterMetrics, PeerView};
use haifu_protocol::Role;

/// How often a round's wait asks whether its run has ended: an abort
/// stops the round on the relays within about this.
pub(super) const ORDER_POLL: Duration = Duration::from_millis(500);

struct Shared {
    core: MasterCore,
    /// What the core reads (the recorder writes on a connection of its own).
    facts: Ledger,
    links: HashMap<ConnId, Arc<Link>>,
}

/// The master's state behind one lock, and what carries out its effects.
pub(super) struct Hub {
    shared: Mutex<Shared>,
    /// Notified after every event (the driver waits on it for rounds).
    changed: Condvar,
    serial: AtomicU64,
    /// To the recorder thread: at most one write in flight.
    writes: Sender<FleetBatch>,
    store: Store,
    ledger_path: PathBuf,
    metrics: Arc<MasterMetrics>,
    /// When this master started: the relays of its last life take a moment
    /// to come back, and their completions with them.
    started: Instant,
    /// The last drain's ping nonce (each drain asks with a higher one).
    drains: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    pub(super) fn new(
        core: MasterCore,
        facts: Ledger,
        writes: Sender<FleetBatch>,
        store: Store,
        ledger_path: PathBuf,
        metrics: Arc<MasterMetrics>,
    ) -> Self {
        Self {
            shared: Mutex::new(Shared {
                core,
                facts,
                links: HashMap::new(),
            }),
            changed: Condvar::new(),
            serial: AtomicU64::new(1),
            writes,
            store,
            ledger_path,
            metrics,
            started: Instant::now(),
            drains: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `event` now.
    pub(super) fn handle(self: &Arc<Self>, event: Event) {
        self.handle_at(Timestamp::now(), event);
    }

    /// Takes `event` at `now` (the driver's clock).
    pub(super) fn handle_at(self: &Arc<Self>, now: Timestamp, event: Event) {
        if matches!(event, Event::RoundStarted { .. }) {
            self.metrics.round_started();
        }
        let mut sh = self.lock();
        let Shared { core, facts, .. } = &mut *sh;
        let effects = core.handle(now, event, facts);
        let mut later = Vec::new();
        for effect in effects {
            match effect {
                // Sent under the lock, so each link gets messages in the
                // order the core decided them.
                Effect::Send { conn, msg } => {
                    if let Some(l) = sh.links.get(&conn) {
                        let _ = l.send(&msg);
                    }
                }
                Effect::Close { conn } => {
                    sh.links.remove(&conn);
                }
                Effect::Write(batch) => later.push((None, Effect::Write(batch))),
                Effect::Fetch { conn, fetch } => {
                    let link = sh.links.get(&conn).cloned();
                    later.push((link, Effect::Fetch { conn, fetch }));
                }
                Effect::Delta { conn, request } => {
                    let link = sh.links.get(&conn).cloned();
                    later.push((link, Effect::Delta { conn, request }));
                }
            }
        }
        drop(sh);
        self.changed.notify_all();
        for (link, effect) in later {
            self.spawn(link, effect);
        }
    }

    fn spawn(self: &Arc<Self>, link: Option<Arc<Link>>, effect: Effect) {
        match (effect, link) {
            (Effect::Write(batch), _) => {
                // The recorder is gone only when the master stops; what is
                // lost is resent by the clients to the next master.
                let _ = self.writes.send(batch);
            }
            (Effect::Fetch { fetch, .. }, Some(link)) => {
                let hub = Arc::clone(self);
                let spawned = std::thread::Builder::new()
                    .name("fetch".into())
                    .spawn(move || {
                        let traffic = TrafficLog(Arc::clone(&hub));
                        serve_fetch(&link, &hub.store, &hub.ledger_path, &fetch, &traffic);
                    });
                if let Err(e) = spawned {
                    tracing::error!("cannot start a fetch thread: {e}");
                }
            }
            (Effect::Delta { request, .. }, Some(link)) => {
                let hub = Arc::clone(self);
                let spawned = std::thread::Builder::new()
                    .name("delta".into())
                    .spawn(move || {
                        let _slot = DeltaSlot(Arc::clone(&hub));
                        let dir = hub
                            .ledger_path
                            .parent()
                            .unwrap_or(std::path::Path::new("."))
                            .join("deltas");
                        let traffic = TrafficLog(Arc::clone(&hub));
                        crate::deltas::serve(
                            &link,
                            &hub.store,
                            &hub.ledger_path,
                            &dir,
                            &request,
                            &traffic,
                        );
                    });
                if let Err(e) = spawned {
                    tracing::error!("cannot start a delta thread: {e}");
                    self.handle(Event::DeltaDone);
                }
            }
            // The connection closed meanwhile.
            (Effect::Delta { .. }, None) => self.handle(Event::DeltaDone),
            _ => {}
        }
    }

    /// Numbers a new connection and tells the core; `None` when the core
    /// closed it at once (a relay this master does not list).
    pub(super) fn connected(self: &Arc<Self>, link: &Arc<Link>) -> Option<ConnId> {
        let conn = self.serial.fetch_add(1, Ordering::Relaxed);
        self.lock().links.insert(conn, Arc::clone(link));
        let session = link.session();
        self.handle(Event::Connected {
            conn,
            peer: link.peer().to_owned(),
            role: session.peer_role,
            delta: session.has("delta"),
            chunked: session.has("chunked-transfer"),
            stages: session.has(haifu_protocol::features::STAGES),
        });
        self.lock().links.contains_key(&conn).then_some(conn)
    }

    /// The connection ended.
    pub(super) fn closed(self: &Arc<Self>, conn: ConnId) {
        self.lock().links.remove(&conn);
        self.handle(Event::Closed { conn });
    }

    /// The peers connected now, for the metrics.
    pub(super) fn peers(&self) -> PeerView {
        let mut v = PeerView::default();
        for l in self.lock().links.values() {
            match l.session().peer_role {
                Role::Relay => v.relays.push(l.peer().to_owned()),
                Role::Client => v.clients += 1,
                _ => {}
            }
        }
        v.relays.sort();
        v
    }

    /// The run on air.
    pub(super) fn active(&self) -> Option<ActiveRun> {
        self.lock().core.active().cloned()
    }

    /// Whether nothing waits to be written or acknowledged.
    pub(super) fn is_idle(&self) -> bool {
        self.lock().core.is_idle()
    }

    /// Waits until every targeted relay connected now has reported `round`
    /// done (and at least one has), until `deadline`, or until shutdown.
    /// Returns the relays still waiting; `None` as soon as `ended()` says
    /// the run has ended meanwhile (an operator aborted it), which is asked
    /// at least every [`ORDER_POLL`], never under the hub's lock (it reads
    /// the ledger).
    pub(super) fn wait_round(
        &self,
        run: u64,
        round: u32,
        deadline: Instant,
        shutdown: &Shutdown,
        ended: &mut dyn FnMut() -> bool,
    ) -> Option<Vec<String>> {
        loop {
            let poll = Instant::now() + ORDER_POLL;
            {
                let mut sh = self.lock();
                loop {
                    let (waiting, any_done) = sh.core.round_waiting(run, round);
                    let now = Instant::now();
                    if (waiting.is_empty() && any_done) || shutdown.is_set() || now >= deadline {
                        return Some(waiting);
                    }
                    if now >= poll {
                        break;
                    }
                    sh = self
                        .changed
                        .wait_timeout(
                            sh,
                            (deadline.min(poll) - now).min(Duration::from_millis(500)),
                        )
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            }
            if ended() {
                return None;
            }
        }
    }

    /// Completions of `run` made durable so far.
    pub(super) fn recorded(&self, run: u64) -> u64 {
        self.lock().core.recorded(run)
    }

    /// What the relays said of `round`'s listeners (decoded, worst loss
    /// per mille), if any said.
    pub(super) fn round_listeners(&self, run: u64, round: u32) -> Option<(u64, u32)> {
        self.lock().core.round_listeners(run, round)
    }

    /// Waits until `decoded` more completions of `run` than `before` are
    /// durable (the clients that decoded in the round have installed), or
    /// until `deadline`. Returns how many are still missing.
    pub(super) fn wait_recorded(
        &self,
        run: u64,
        before: u64,
        decoded: u64,
        deadline: Instant,
        shutdown: &Shutdown,
    ) -> u64 {
        let mut sh = self.lock();
        loop {
            let got = sh.core.recorded(run).saturating_sub(before);
            let now = Instant::now();
            if got >= decoded || shutdown.is_set() || now >= deadline {
                return decoded.saturating_sub(got);
            }
            sh = self
                .changed
                .wait_timeout(sh, (deadline - now).min(Duration::from_millis(200)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// What stands between run `run` and its final report, given the
    /// relays its undelivered clients are behind
    /// ([`super::machine::drain`]). Each of those relays connected now is
    /// pinged with `nonce` until it answers. Right after this master
    /// started, its relays are not back yet, which counts as settling.
    pub(super) fn drain(&self, run: u64, relays: &BTreeSet<String>, nonce: u64) -> Drain {
        if self.started.elapsed() < drain::SETTLE {
            return Drain::Settling(Vec::new());
        }
        let sh = self.lock();
        let answered: BTreeSet<String> = relays
            .iter()
            .filter(|r| {
                let Some(link) = sh.core.relay_conn(r).and_then(|c| sh.links.get(&c)) else {
                    return false;
                };
                let yes = link.answered(nonce);
                if !yes {
                    // Best effort: a relay that went away shows as gone.
                    let _ = link.ping(nonce);
                }
                yes
            })
            .cloned()
            .collect();
        sh.core.drain(run, relays, &answered, Timestamp::now())
    }

    /// A ping nonce for a new drain, higher than every one before in this
    /// master's life (a relay's link is new after a master restart).
    pub(super) fn drain_nonce(&self) -> u64 {
        self.drains.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The relays connected now that `active` targets.
    pub(super) fn targeted_relays(&self, run: u64, round: u32) -> usize {
        self.lock().core.round_waiting(run, round).0.len()
    }
}

/// Where the threads that send bytes record them.
#[derive(Clone)]
pub(crate) struct TrafficLog(Arc<Hub>);

impl TrafficLog {
    /// Records `bytes` sent to `peer` for `run` (a run that does not exist
    /// is skipped by the ledger).
    pub(crate) fn record(
        &self,
        run: i64,
        peer: &str,
        kind: TrafficKind,
        round: Option<u32>,
        bytes: u64,
    ) {
        self.0.metrics.sent(kind, bytes);
        self.0.handle(Event::Traffic(Traffic {
            run,
            peer: peer.to_owned(),
            kind,
            round,
            bytes,
        }));
    }
}

/// A delta slot, given back when the serving thread ends however it ends.
struct DeltaSlot(Arc<Hub>);

impl Drop for DeltaSlot {
    fn drop(&mut self) {
        self.0.handle(Event::DeltaDone);
    }
}
