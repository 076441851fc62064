//! The optional command a client runs after a version is on disk and before
//! `current` switches to it (e.g. unpack, migrate, restart a service).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{InstallError, Result};
use crate::layout::Installed;

/// Lines of output kept for the error message when the command fails.
const TAIL_LINES: usize = 10;
/// How often the child is polled for exit.
const POLL: Duration = Duration::from_millis(20);
/// How long output is still collected after the command exits.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// A post-install command from the client's config.
///
/// It runs with the new version folder as its working directory and these
/// environment variables: `HAIFU_NAME`, `HAIFU_VERSION`, `HAIFU_DIGEST`
/// (sha3-256 hex), `HAIFU_ARTIFACT` (the new artifact file),
/// `HAIFU_MANIFEST` (its `manifest.json`), `HAIFU_VERSION_DIR`, and, when a
/// version is installed, `HAIFU_CURRENT_VERSION` and `HAIFU_CURRENT_DIR`
/// (the one being replaced). Its stdout and stderr go to the log through
/// `tracing`, line by line. A non-zero exit, a signal, or running past
/// `timeout` (the child is then killed) fails the install and `current` is
/// not switched.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostInstall {
    /// The program, found through `PATH` when it has no slash.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// How long it may run; `"5m"`, `"30s"` or ISO 8601 in config.
    #[serde(default = "default_timeout")]
    pub timeout: jiff::SignedDuration,
}

fn default_timeout() -> jiff::SignedDuration {
    jiff::SignedDuration::from_mins(5)
}

impl PostInstall {
    /// A command with no arguments and the default timeout of five minutes.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            timeout: default_timeout(),
        }
    }

    /// Runs the command for `new`; `old` is the version being replaced.
    pub(crate) fn run(&self, new: &Installed, old: Option<&Installed>) -> Result<()> {
        let fail = |reason: String| InstallError::PostInstall {
            path: new.dir.clone(),
            program: self.program.clone(),
            reason,
        };
        let timeout = Duration::try_from(self.timeout)
            .map_err(|_| fail(format!("has a negative timeout {}", self.timeout)))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&new.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("HAIFU_NAME", &new.name)
            .env("HAIFU_VERSION", &new.version)
            .env("HAIFU_DIGEST", new.digest.to_hex())
            .env("HAIFU_ARTIFACT", &new.path)
            .env("HAIFU_MANIFEST", new.dir.join(crate::layout::MANIFEST))
            .env("HAIFU_VERSION_DIR", &new.dir);
        if let Some(old) = old {
            cmd.env("HAIFU_CURRENT_VERSION", &old.version)
                .env("HAIFU_CURRENT_DIR", &old.dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("could not be started: {e}")))?;
        let tail = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(log_lines(out, "stdout", &self.program, &new.dir, &tail));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(log_lines(err, "stderr", &self.program, &new.dir, &tail));
        }
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() >= timeout => {
                    // Our own child, by its handle: SIGKILL, then reap it.
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("ran past its timeout of {}", self.timeout));
                }
                Ok(None) => thread::sleep(POLL),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("could not be waited for: {e}"));
                }
            }
        };
        // The pipes close when the child and everything it started exit. A
        // service the command started in the background may keep them open,
        // so give the readers a short grace and then leave them running.
        let grace = Instant::now();
        while !readers.iter().all(|r| r.is_finished()) && grace.elapsed() < OUTPUT_GRACE {
            thread::sleep(POLL);
        }
        for r in readers {
            if r.is_finished() {
                let _ = r.join();
            }
        }
        let tail_text = || {
            let lines = tail.lock().map(|t| t.join(" | ")).unwrap_or_default();
            if lines.is_empty() {
                String::new()
            } else {
                format!("; last output: {lines}")
            }
        };
        match status {
            Ok(s) if s.success() => {
                tracing::info!(program = %self.program, dir = %new.dir.display(), "post-install command succeeded");
                Ok(())
            }
            Ok(s) => Err(fail(format!("exited with {s}{}", tail_text()))),
            Err(reason) => Err(fail(format!("{reason}{}", tail_text()))),
        }
    }
}

/// Logs each line of `stream` and keeps the last [`TAIL_LINES`].
fn log_lines(
    stream: impl Read + Send + 'static,
    which: &'static str,
    program: &str,
    dir: &Path,
    tail: &Arc<Mutex<Vec<String>>>,
) -> thread::JoinHandle<()> {
    let program = program.to_owned();
    let dir = dir.display().to_string();
    let tail = Arc::clone(tail);
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            tracing::info!(program = %program, dir = %dir, stream = which, "post-install: {line}");
            if let Ok(mut t) = tail.lock() {
                if t.len() == TAIL_LINES {
                    t.remove(0);
                }
                t.push(line);
            }
        }
    })
}
