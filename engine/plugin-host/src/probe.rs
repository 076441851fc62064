//! Probing a plugin file in a child process before this process loads it.
//!
//! Loading a library runs its code: a constructor or an `init` that
//! segfaults, aborts, calls `_exit` or never returns would take the whole
//! daemon (or `haifu plugins`) with it, and no `catch_unwind` can help. So
//! before a file is loaded here, a child process (haifu itself, run as
//! `haifu plugins probe FILE`) loads it, initialises it and shuts it down,
//! telling the parent on its stdout which stage it is in. The parent waits
//! at most a time limit; a child that dies or does not answer becomes a
//! [`ProbeFault`] naming the stage ("killed by SIGSEGV in init", "no answer
//! in 5 s in init"), and the file is never opened here. A child that
//! finishes (whether the plugin loaded or failed cleanly) lets the parent
//! load the file itself, which then reports clean failures as usual.
//!
//! What it does not do: sandbox anything. The child runs with the parent's
//! rights; the point is that a crash costs a child, not the daemon. A
//! plugin that crashes only sometimes can still crash the parent later.
//!
//! Which program answers is the binary's choice: it registers a [`Prober`]
//! once with [`set_prober`] (the `haifu` binary registers itself), and
//! [`load_dir`](crate::load_dir) and [`load_named`](crate::load_named) then
//! probe every file first. Without one they load in-process, as a library
//! embedded in a test does.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::loader::plugin_name_of_file;

/// How long a probe may take unless the binary says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Every line of the child's protocol starts with this; anything else a
/// plugin prints on stdout is ignored.
const TAG: &str = "haifu-probe: ";

/// The most the parent parses of a child's stdout, and keeps of its
/// stderr (the tail): a plugin's output is not trusted to be small. More
/// is read and dropped, so a chatty plugin never blocks on a full pipe.
const OUTPUT_CAP: usize = 64 * 1024;

/// The longest protocol line; longer lines are dropped.
const LINE_CAP: usize = 2048;

/// Reads `from` to its end, handing each complete line (at most
/// [`LINE_CAP`] bytes, within the first [`OUTPUT_CAP`]) to `each` until it
/// returns false; the rest is read and dropped.
fn read_lines(mut from: impl Read, mut each: impl FnMut(&str) -> bool) {
    let mut chunk = [0u8; 8192];
    let mut line = Vec::new();
    let mut too_long = false;
    let mut seen = 0usize;
    let mut listening = true;
    while let Ok(n) = from.read(&mut chunk) {
        if n == 0 {
            break;
        }
        seen += n;
        if !listening || seen > OUTPUT_CAP {
            continue;
        }
        for &b in chunk.get(..n).unwrap_or_default() {
            if b == b'\n' {
                if !too_long && !each(&String::from_utf8_lossy(&line)) {
                    listening = false;
                    break;
                }
                line.clear();
                too_long = false;
            } else if line.len() < LINE_CAP {
                line.push(b);
            } else {
                too_long = true;
            }
        }
    }
}

/// Reads `from` to its end and keeps its last [`OUTPUT_CAP`] bytes.
fn read_tail(mut from: impl Read) -> Vec<u8> {
    let mut chunk = [0u8; 8192];
    let mut tail = Vec::new();
    while let Ok(n) = from.read(&mut chunk) {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if tail.len() > 2 * OUTPUT_CAP {
            tail.drain(..tail.len() - OUTPUT_CAP);
        }
    }
    tail
}

/// What the child was doing when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The child started but did not reach the library yet.
    Start,
    /// `dlopen`: the library's constructors run here.
    Open,
    /// Calling `haifu_transport_entry`.
    Entry,
    /// Reading the function table (name, version, pointers).
    Table,
    /// `init`.
    Init,
    /// `shutdown`.
    Shutdown,
    /// Everything returned.
    Done,
}

impl Stage {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "start" => Self::Start,
            "open" => Self::Open,
            "entry" => Self::Entry,
            "table" => Self::Table,
            "init" => Self::Init,
            "shutdown" => Self::Shutdown,
            "done" => Self::Done,
            _ => return None,
        })
    }

    fn word(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Open => "open",
            Self::Entry => "entry",
            Self::Table => "table",
            Self::Init => "init",
            Self::Shutdown => "shutdown",
            Self::Done => "done",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Start => "before loading the library",
            Self::Open => "in dlopen (the library's constructors)",
            Self::Entry => "in haifu_transport_entry",
            Self::Table => "reading the function table",
            Self::Init => "in init",
            Self::Shutdown => "in shutdown",
            Self::Done => "after shutdown",
        })
    }
}

/// Why a probe failed: the child died, hung, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFault {
    /// A signal killed the child (a segfault, an abort).
    #[error("killed by {} {stage}{}", signal_name(*signal), said(stderr))]
    Killed {
        /// The signal number.
        signal: i32,
        /// Where it happened.
        stage: Stage,
        /// The last line the child wrote on stderr, cleaned, if any.
        stderr: String,
    },
    /// The child exited (the plugin called `exit` or `_exit`) before
    /// finishing.
    #[error("exited with status {code} {stage}{}", said(stderr))]
    Exited {
        /// The exit status.
        code: i32,
        /// Where it happened.
        stage: Stage,
        /// The last line the child wrote on stderr, cleaned, if any.
        stderr: String,
    },
    /// The child gave no answer within the time limit and was killed.
    #[error("no answer in {} {stage} (killed)", seconds(*timeout))]
    NoAnswer {
        /// The time limit.
        timeout: Duration,
        /// Where it was when the time ran out.
        stage: Stage,
    },
    /// The probing program could not be run.
    #[error("cannot run the plugin probe {}", program.display())]
    Start {
        /// The program.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn said(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(" (stderr: {stderr})")
    }
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The usual name of a signal number, e.g. `SIGSEGV`.
pub fn signal_name(signal: i32) -> String {
    let known = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        #[cfg(target_os = "linux")]
        7 => "SIGBUS",
        #[cfg(target_os = "linux")]
        31 => "SIGSYS",
        #[cfg(target_os = "macos")]
        10 => "SIGBUS",
        #[cfg(target_os = "macos")]
        12 => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    known.to_owned()
}

/// What a probe child reported beyond its stages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probed {
    /// The plugin's declared name and shapes, when it loaded.
    pub plugin: Option<(String, crate::Shapes)>,
    /// The loader's one-line error, when it failed cleanly.
    pub error: Option<String>,
}

/// One line of the child's protocol.
enum Line {
    Stage(Stage),
    Plugin(String, crate::Shapes),
    Error(String),
}

impl Line {
    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix(TAG)?;
        if let Some(p) = rest.strip_prefix("plugin ") {
            let (name, shapes) = p.split_once(' ').unwrap_or((p, ""));
            let shapes = crate::Shapes {
                datagram: shapes.split(',').any(|s| s == "datagram"),
                stream: shapes.split(',').any(|s| s == "stream"),
            };
            return Some(Self::Plugin(name.chars().take(64).collect(), shapes));
        }
        if let Some(e) = rest.strip_prefix("error ") {
            return Some(Self::Error(e.chars().take(1024).collect()));
        }
        Stage::parse(rest).map(Self::Stage)
    }
}

/// Runs a program that answers as [`serve`] does, with a time limit.
#[derive(Debug, Clone)]
pub struct Prober {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
}

impl Prober {
    /// A prober running `program args… FILE`; the time limit is
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same with another time limit.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Probes `path` in a child process: `Ok` when the child went through
    /// every stage (the plugin may still have failed cleanly, which
    /// [`Probed::error`] says), the fault otherwise.
    pub fn probe(&self, path: &Path) -> Result<Probed, ProbeFault> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The child must not probe in turn, nor log into our output.
            .env("RUST_LOG", "off")
            .spawn()
            .map_err(|source| ProbeFault::Start {
                program: self.program.clone(),
                source,
            })?;
        // Readers on their own threads: a plugin that forks keeps the pipes
        // open after the child dies, so they are never joined.
        let (tx, rx) = std::sync::mpsc::channel::<Line>();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                read_lines(out, |line| match Line::parse(line) {
                    Some(l) => tx.send(l).is_ok(),
                    None => true,
                });
            });
        }
        let mut probed = Probed::default();
        let mut take = |l: Line, stage: &mut Stage| match l {
            Line::Stage(s) => *stage = s,
            Line::Plugin(n, sh) => probed.plugin = Some((n, sh)),
            Line::Error(e) => probed.error = Some(e),
        };
        let (etx, erx) = std::sync::mpsc::channel::<Vec<u8>>();
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                let _ = etx.send(read_tail(err));
            });
        }

        let deadline = Instant::now() + self.timeout;
        let mut stage = Stage::Start;
        let status = loop {
            while let Ok(l) = rx.try_recv() {
                take(l, &mut stage);
            }
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(_) => break None,
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            while let Ok(l) = rx.try_recv() {
                take(l, &mut stage);
            }
            return Err(ProbeFault::NoAnswer {
                timeout: self.timeout,
                stage,
            });
        };
        // The child is gone: what it wrote is all there is (a short grace
        // for the reader threads to hand it over).
        let grace = Instant::now() + Duration::from_millis(200);
        while let Ok(l) = rx.recv_timeout(grace.saturating_duration_since(Instant::now())) {
            take(l, &mut stage);
        }
        if stage == Stage::Done && status.success() {
            return Ok(probed);
        }
        let stderr = erx
            .recv_timeout(Duration::from_millis(200))
            .map(|b| last_line(&b))
            .unwrap_or_default();
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt as _;
            if let Some(signal) = status.signal() {
                return Err(ProbeFault::Killed {
                    signal,
                    stage,
                    stderr,
                });
            }
        }
        Err(ProbeFault::Exited {
            code: status.code().unwrap_or(-1),
            stage,
            stderr,
        })
    }
}

/// The last non-empty line of a child's stderr, as printable text of at
/// most 200 characters.
fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    line.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

static PROBER: OnceLock<Prober> = OnceLock::new();

/// Registers the prober [`load_dir`](crate::load_dir) and
/// [`load_named`](crate::load_named) use for every file from now on. The
/// first registration wins; returns whether this one did.
pub fn set_prober(prober: Prober) -> bool {
    PROBER.set(prober).is_ok()
}

/// The registered prober, if any.
pub fn prober() -> Option<&'static Prober> {
    PROBER.get()
}

/// The child's side: loads `path` (applying the naming rule when its file
/// name follows it), initialises and shuts it down, writing one line per
/// stage to `out` before entering it, and `done` at the end. Returns the
/// process exit status to use: 0 when every stage returned, even if the
/// plugin failed cleanly (the parent reports that itself).
pub fn serve(path: &Path, out: &mut dyn Write) -> i32 {
    fn say(out: &mut dyn Write, line: &str) {
        let _ = writeln!(out, "{TAG}{line}");
        let _ = out.flush();
    }
    say(out, Stage::Start.word());
    let expected = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(plugin_name_of_file)
        .map(str::to_owned);
    match crate::loader::load_staged(path, expected.as_deref(), &mut |s| say(out, s.word())) {
        Ok(plugin) => {
            let i = plugin.info();
            say(
                out,
                &format!("plugin {} {}", i.name, i.shapes.names().join(",")),
            );
            say(out, Stage::Shutdown.word());
            drop(plugin);
        }
        Err(e) => {
            let line = crate::error_chain(&e).replace(['\n', '\r'], " ");
            say(out, &format!("error {line}"));
        }
    }
    say(out, Stage::Done.word());
    0
}

/// One plugin file of a folder as [`inventory`] sees it.
#[derive(Debug, Clone)]
pub struct InventoryEntry {
    /// The declared name, or the name its file name stands for when it
    /// does not load.
    pub name: String,
    /// Its shapes, or the one-line reason it does not load.
    pub state: Result<crate::Shapes, NotLoadable>,
}

/// Why a plugin file does not load, as one printable line: a probe child
/// reports it as text, so the cause's type does not cross the process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotLoadable(pub String);

/// What each plugin file of `dir` is, as a daemon would find it, without
/// loading any into this process when a prober is registered (each is
/// loaded in a child; without a prober they are loaded here): what `haifu
/// check` resolves a workflow's transports against.
pub fn inventory(dir: &Path) -> Result<Vec<InventoryEntry>, crate::DirError> {
    inventory_except(dir, &[], usize::MAX)
}

/// [`inventory`] for a daemon that already runs some plugins of `dir`:
/// the files of the plugins in `in_use` are reported as given, not probed
/// again, and at most `most` other files are probed (in name order), so a
/// folder full of files costs a bounded number of children. Without a
/// registered prober this is [`inventory`] (nothing is probed then; every
/// file is loaded here).
pub fn inventory_except(
    dir: &Path,
    in_use: &[InventoryEntry],
    most: usize,
) -> Result<Vec<InventoryEntry>, crate::DirError> {
    let Some(prober) = prober() else {
        let set = crate::load_dir(dir)?;
        let mut out: Vec<InventoryEntry> = set
            .loaded
            .iter()
            .map(|p| InventoryEntry {
                name: p.name().to_owned(),
                state: Ok(p.info().shapes),
            })
            .collect();
        out.extend(set.failed.iter().map(|e| InventoryEntry {
            name: file_name_of(e.path()),
            state: Err(NotLoadable(crate::error_chain(e))),
        }));
        return Ok(out);
    };
    crate::loader::check_folder(dir)?;
    let used: Vec<String> = in_use
        .iter()
        .map(|e| crate::plugin_file_name(&e.name))
        .collect();
    let files: Vec<std::path::PathBuf> = crate::candidates(dir)?
        .into_iter()
        .filter(|path| {
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !used.iter().any(|u| u == file)
        })
        .take(most)
        .collect();
    let mut out = in_use.to_vec();
    out.extend(std::thread::scope(|s| {
        let hs: Vec<_> = files
            .iter()
            .map(|path| {
                s.spawn(move || {
                    let name = file_name_of(path);
                    let state = match crate::loader::trusted(path) {
                        Err(e) => Err(NotLoadable(crate::error_chain(&e))),
                        Ok(_) => match prober.probe(path) {
                            Ok(Probed {
                                plugin: Some((declared, shapes)),
                                ..
                            }) => {
                                return InventoryEntry {
                                    name: declared,
                                    state: Ok(shapes),
                                };
                            }
                            Ok(p) => Err(NotLoadable(
                                p.error.unwrap_or_else(|| "did not load".into()),
                            )),
                            Err(fault) => Err(NotLoadable(format!("{}: {fault}", path.display()))),
                        },
                    };
                    InventoryEntry { name, state }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Vec<_>>()
    }));
    Ok(out)
}

/// The plugin name a file's name stands for (or the file name itself).
fn file_name_of(path: &Path) -> String {
    let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    plugin_name_of_file(file).unwrap_or(file).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_read_as_one_line() {
        let f = ProbeFault::Killed {
            signal: 11,
            stage: Stage::Init,
            stderr: String::new(),
        };
        assert_eq!(f.to_string(), "killed by SIGSEGV in init");
        let f = ProbeFault::NoAnswer {
            timeout: Duration::from_secs(5),
            stage: Stage::Init,
        };
        assert_eq!(f.to_string(), "no answer in 5 s in init (killed)");
        let f = ProbeFault::Exited {
            code: 3,
            stage: Stage::Open,
            stderr: "bye".into(),
        };
        assert_eq!(
            f.to_string(),
            "exited with status 3 in dlopen (the library's constructors) (stderr: bye)"
        );
        assert_eq!(last_line(b"a\nb\x1b[0m\n\n"), "b [0m");
        assert_eq!(signal_name(99), "signal 99");
    }

    #[test]
    fn output_is_bounded_and_drained() {
        let mut text = b"haifu-probe: start\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 10_000));
        text.extend_from_slice(b"\nhaifu-probe: init\n");
        text.extend(std::iter::repeat_n(b'y', 200_000));
        text.extend_from_slice(b"\nhaifu-probe: done\n");
        let mut lines = Vec::new();
        read_lines(&text[..], |l| {
            lines.push(l.to_owned());
            true
        });
        // The over-long line is dropped; past the cap nothing is parsed.
        assert_eq!(lines, ["haifu-probe: start", "haifu-probe: init"]);
        let tail = read_tail(&vec![b'z'; 500_000][..]);
        assert!(tail.len() >= OUTPUT_CAP && tail.len() <= 2 * OUTPUT_CAP);
    }
}
