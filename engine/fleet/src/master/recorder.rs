//! The recorder thread: carries out the core's writes, one transaction
//! each, and tells the core when each is durable (the core then sends the
//! acknowledgements it held back).

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;
use std::time::Instant;

use haifu_ledger::FleetBatch;
use haifu_ledger::Ledger;

use super::hub::Hub;
use super::machine::Event;
use crate::common::Shutdown;
use crate::metrics::MasterMetrics;

/// A commit slower than this is logged: completions wait for it.
const COMMIT_STALL: Duration = Duration::from_secs(1);

/// How long a failed write waits before it is written again.
const RETRY: Duration = Duration::from_millis(500);

/// Writes each batch, then reports it committed or failed; ends once the
/// master stops and nothing waits to be written.
pub(super) fn recorder(
    path: &std::path::Path,
    rx: &Receiver<FleetBatch>,
    hub: &Arc<Hub>,
    metrics: &MasterMetrics,
    shutdown: &Shutdown,
) {
    let mut ledger = match Ledger::open(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("recorder cannot open the ledger: {e}");
            shutdown.trigger();
            return;
        }
    };
    let watch = CommitWatch::default();
    std::thread::scope(|scope| {
        // Logged while it waits, not only once the commit is through: a
        // ledger locked for minutes must not leave the master silent.
        scope.spawn(|| watch.watch());
        record(&mut ledger, rx, hub, metrics, shutdown, &watch);
        watch.over();
    });
}

/// The commit in flight, for the thread that logs a stall while it lasts.
#[derive(Default)]
struct CommitWatch {
    /// The commit's number and when it began (`None`: none in flight).
    current: std::sync::Mutex<Option<(u64, Instant)>>,
    over: std::sync::atomic::AtomicBool,
}

impl CommitWatch {
    fn begin(&self, n: u64) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((n, Instant::now()));
    }

    fn end(&self) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn over(&self) {
        self.over.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every quarter second: a commit in flight for more than
    /// [`COMMIT_STALL`] is logged once, while it still waits.
    fn watch(&self) {
        let mut told = None;
        while !self.over.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(250));
            let current = *self.current.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((n, began)) = current
                && told != Some(n)
                && began.elapsed() > COMMIT_STALL
            {
                told = Some(n);
                tracing::warn!(
                    waiting_ms = began.elapsed().as_millis() as u64,
                    "a ledger commit is stalled (the ledger is locked or slow); completions wait for it"
                );
            }
        }
    }
}

fn record(
    ledger: &mut Ledger,
    rx: &Receiver<FleetBatch>,
    hub: &Arc<Hub>,
    metrics: &MasterMetrics,
    shutdown: &Shutdown,
    watch: &CommitWatch,
) {
    let mut total = 0u64;
    let mut commits = 0u64;
    loop {
        let batch = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) if shutdown.is_set() && hub.is_idle() => break,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let started = Instant::now();
        commits += 1;
        watch.begin(commits);
        let result = ledger.apply_fleet_counted(&batch);
        watch.end();
        let took = started.elapsed();
        metrics.committed(took, result.as_ref().ok().copied());
        if took > COMMIT_STALL {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                "a ledger commit stalled; it is through now"
            );
        }
        match result {
            Ok(counted) => {
                let n = counted.total();
                total += n;
                tracing::debug!(
                    new = n,
                    updates = batch.updates.len(),
                    reports = batch.touches.len(),
                    total,
                    "recorded"
                );
                hub.handle(Event::Committed);
            }
            Err(e) if shutdown.is_set() => {
                // Stopping: what it held is resent by the peers to the next
                // master (completions) or replayed by the relays (reports).
                tracing::error!("recording failed while stopping; dropped: {e}");
                break;
            }
            Err(e) => {
                tracing::error!("recording failed, writing it again shortly: {e}");
                // Not at once: a full disk or a locked ledger needs a moment.
                shutdown.sleep(RETRY);
                hub.handle(Event::CommitFailed);
            }
        }
    }
}
