//! Progress bars for long work, shown only when a person watches stderr.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A byte progress bar for `total` bytes labelled `msg`, or a hidden one
/// when stderr is not a terminal (scripts, CI, pipes).
pub fn bytes_bar(total: u64, msg: &str) -> ProgressBar {
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
