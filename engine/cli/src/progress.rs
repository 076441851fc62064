//! Progress bars for long work, shown only when a person watches stderr.

use std::io::IsTerminal;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A byte progress bar for `total` bytes labelled `msg`, or a hidden one
/// when stderr is not a terminal (scripts, CI, pipes).
pub(crate) fn bytes_bar(total: u64, msg: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(msg.to_owned());
    bar
}

/// A status line for a run in progress, refreshed from the ledger once a
/// second on its own read connection (WAL lets it read beside the driver).
/// Does nothing when stderr is not a terminal.
#[derive(Debug)]
pub(crate) struct RunWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RunWatcher {
    /// Stops and clears the status line.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Watches run `id` in the ledger at `path`.
pub(crate) fn watch_run(path: PathBuf, id: i64) -> RunWatcher {
    let stop = Arc::new(AtomicBool::new(false));
    if !std::io::stderr().is_terminal() {
        return RunWatcher { stop, thread: None };
    }
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let Ok(ledger) = haifu_ledger::Ledger::open(&path) else {
            return;
        };
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        while !flag.load(Ordering::Relaxed) {
            if let Ok(Some(run)) = ledger.run(id) {
                let n = |k: &str| run.counts.get(k).copied().unwrap_or(0);
                let total: u64 = run.counts.values().sum();
                // A snapshot that does not read shows as "starting" here;
                // the run's driver reports the error.
                let state = haifu_runtime::machine::RunState::of_run(&run).unwrap_or_default();
                let step = state
                    .current
                    .as_ref()
                    .map(|s| s.kind().name())
                    .unwrap_or("starting");
                bar.set_message(format!(
                    "run {id}: {step}, {} rounds sent, delivered {} + delta {} of {total}, cut off {}{}",
                    state.rounds_started().len(),
                    n("delivered"),
                    n("delta"),
                    n("disconnected"),
                    run.next_wake
                        .map(|w| format!(", next wake-up {w}"))
                        .unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bar.finish_and_clear();
    });
    RunWatcher {
        stop,
        thread: Some(thread),
    }
}
