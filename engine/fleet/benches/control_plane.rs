//! Scale of the control plane: one `haifu relay` with N QUIC clients and a
//! `haifu master` behind it, both real release processes on loopback.
//!
//! Each client is a task of this process with its own QUIC endpoint (one
//! endpoint per certificate: the relay checks that the hello's identity is
//! the certificate's CN; `threads=1`, so N clients cost N runtime threads
//! plus N reader threads), registers with the relay, and then sends one
//! `Completion` per run for K runs, all clients at once, as fast as the
//! sender threads go. A `CompletionAck` leaves the master only after the
//! completion is committed to its ledger, so acks per second is the rate of
//! durable completions. Measured: completions acked per second, ack
//! latency (p50, p99: under that full load, queueing included), the
//! master's peak RSS (`VmHWM`). Then every completion is sent a second time
//! and the ledger (`haifu status RUN --json`) must still count each one
//! once. Last, K more runs' completions go out paced at the target rate,
//! for the latency when the master keeps up (its ratio is 1 by
//! construction). The multicast side is the relay's single group; clients
//! never join it (the one round of the run the master drives goes out to
//! nobody).
//!
//! ```sh
//! export CARGO_TARGET_DIR=/work/target-bench
//! # the daemons and the plugins, found beside the bench in $CARGO_TARGET_DIR/release
//! cargo build --release -p haifu-cli -p haifu-transport-quic -p haifu-transport-multicast
//! cargo bench -p haifu-fleet --bench control_plane
//! ```
//!
//! Environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HAIFU_BIN` | `$CARGO_TARGET_DIR/release/haifu` | the `haifu` binary |
//! | `HAIFU_PLUGINS` | the two `.so` copied from the release folder | folder with the quic and multicast plugins |
//! | `HAIFU_BENCH_CLIENTS` | 1000 | clients (QUIC connections, endpoints) |
//! | `HAIFU_BENCH_RUNS` | 10 | live runs; one completion per client per run |
//! | `HAIFU_BENCH_PACE` | 5000 | completions/s of the paced phase (K more runs); 0 skips it |
//! | `HAIFU_BENCH_SENDERS` | 4 | threads sending the completions |
//! | `HAIFU_BENCH_TIMEOUT_SECS` | 300 | longest wait for the acks of one phase |
//! | `HAIFU_BENCH_KEEP` | unset | keep the temporary folder (home, configs, daemon logs) |
//!
//! The exit status is 1 if an ack is missing or the ledger's counts differ
//! from the acks. Without `--bench` on the command line (as under
//! `cargo test --benches`) it only says how to run it.
//!
//! Everything runs on one machine: the clients' CPU competes with the
//! daemons' (the bench prints each process's CPU seconds per phase). The
//! home, ledger included, is in a fresh folder under `$TMPDIR` (the
//! ledger commits with `synchronous = FULL`, so that folder's disk counts).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use haifu_core::Digest;
use haifu_fleet::link::{self, Counters, Link};
use haifu_plugin_host::{Endpoint, Plugin};
use haifu_protocol::{Completion, Message, RegisterClient, Role, Via};
use sha3::Digest as _;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const TARGET_PER_SEC: f64 = 5000.0;
const RELAY: &str = "relay-0";

// ---------------------------------------------------------------- daemons

/// Every daemon started, killed on any way out (guard, panic hook, end).
static DAEMONS: Mutex<Vec<(String, Child)>> = Mutex::new(Vec::new());

fn kill_daemons() {
    let mut all = match DAEMONS.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    for (_, c) in all.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    all.clear();
}

/// Kills the daemons when dropped.
struct DaemonGuard;

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        kill_daemons();
    }
}

/// Whether the daemon `name` has exited, and how.
fn exited(name: &str) -> Option<String> {
    let mut all = DAEMONS.lock().unwrap_or_else(|p| p.into_inner());
    let (_, c) = all.iter_mut().find(|(n, _)| n == name)?;
    c.try_wait().ok().flatten().map(|s| s.to_string())
}

fn env_usize(name: &str, default: usize) -> Res<usize> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse().map_err(|e| format!("{name}={v:?}: {e}"))?),
        Err(_) => Ok(default),
    }
}

/// Where cargo put this bench: `$CARGO_TARGET_DIR/release`.
fn release_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Some(dir)
}

const BUILD: &str =
    "cargo build --release -p haifu-cli -p haifu-transport-quic -p haifu-transport-multicast";

/// The temporary folder, the home, the binary and the plugins.
struct Site {
    dir: PathBuf,
    home: PathBuf,
    bin: PathBuf,
    plugins: PathBuf,
}

impl Site {
    fn new(dir: &Path) -> Res<Self> {
        let release = release_dir().ok_or("cannot find the bench's own folder")?;
        let bin = std::env::var_os("HAIFU_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| release.join("haifu"));
        if !bin.is_file() {
            return Err(
                format!("{} does not exist: build it with `{BUILD}`", bin.display()).into(),
            );
        }
        let plugins = match std::env::var_os("HAIFU_PLUGINS").filter(|v| !v.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => {
                // Only the two real plugins: the release folder may also
                // hold the test kit's deliberately broken ones.
                let out = dir.join("plugins");
                std::fs::create_dir_all(&out)?;
                for name in ["haifu_transport_quic", "haifu_transport_multicast"] {
                    let file = format!(
                        "{}{name}{}",
                        std::env::consts::DLL_PREFIX,
                        std::env::consts::DLL_SUFFIX
                    );
                    let src = release.join(&file);
                    if !src.is_file() {
                        return Err(format!(
                            "{} does not exist: build it with `{BUILD}`",
                            src.display()
                        )
                        .into());
                    }
                    std::fs::copy(&src, out.join(&file))?;
                }
                out
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            home: dir.join("home"),
            bin,
            plugins,
        })
    }

    fn haifu(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--home")
            .arg(&self.home)
            .env_remove("HAIFU_HOME")
            .env("HAIFU_PLUGINS", &self.plugins)
            .env("RUST_LOG", "warn")
            .current_dir(&self.dir);
        c
    }

    /// Runs `haifu --home H ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> Res<String> {
        let out = self.haifu().args(args).output()?;
        if !out.status.success() {
            return Err(format!(
                "haifu {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    fn json(&self, args: &[&str]) -> Res<serde_json::Value> {
        Ok(serde_json::from_str(&self.ok(args)?)?)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// `haifu ROLE --config NAME.yaml`, logging to NAME.log at `info` (the
    /// bench waits for start-up lines); its pid.
    fn start(&self, role: &str, name: &str) -> Res<u32> {
        let log = std::fs::File::create(self.log_path(name))?;
        let child = self
            .haifu()
            .env("RUST_LOG", "info")
            .args([role, "--config", &format!("{name}.yaml")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let pid = child.id();
        DAEMONS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_owned(), child));
        Ok(pid)
    }

    /// Waits until NAME.log holds `needle`.
    fn wait_log(&self, name: &str, needle: &str, secs: u64) -> Res<()> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
            if text.contains(needle) {
                return Ok(());
            }
            if let Some(status) = exited(name) {
                return Err(format!("{name} exited ({status}):\n{}", tail(&text, 20)).into());
            }
            if Instant::now() > end {
                return Err(format!(
                    "no {needle:?} in {name}.log after {secs} s:\n{}",
                    tail(&text, 20)
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `n` UDP ports free now on loopback (QUIC is UDP).
fn free_ports(n: usize) -> Res<Vec<u16>> {
    let socks = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(socks
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()?)
}

/// A value from /proc/PID/status, in KiB (`VmHWM`, `VmRSS`) or as a count
/// (`Threads`).
fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) a process has used so far, from
/// /proc/PID/stat (in USER_HZ, 100 per second on Linux).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The command name may hold spaces: count fields after its ')'.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

// ---------------------------------------------------------------- clients

/// The runs, once created: ids, digests, and the index of each id.
struct Runs {
    ids: Vec<u64>,
    digests: Vec<Digest>,
    index: HashMap<u64, usize>,
}

/// What the receivers record, slot `client * runs + run`.
struct Shared {
    runs_n: usize,
    base: Instant,
    runs: OnceLock<Runs>,
    /// Nanoseconds after `base` (+1, so 0 means unset) per phase.
    sent: [Vec<AtomicU64>; 2],
    acked_at: [Vec<AtomicU64>; 2],
    /// Acks received per slot.
    acks: Vec<AtomicU32>,
    /// Slots acked at least once, twice.
    done: [AtomicUsize; 2],
    registered: AtomicUsize,
    /// Acks not matching any completion sent (wrong client, run, digest).
    stray: AtomicU64,
    errors: AtomicU64,
    lost: AtomicU64,
    samples: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn new(clients: usize, runs: usize) -> Self {
        let slots = || (0..clients * runs).map(|_| AtomicU64::new(0)).collect();
        Self {
            runs_n: runs,
            base: Instant::now(),
            runs: OnceLock::new(),
            sent: [slots(), slots()],
            acked_at: [slots(), slots()],
            acks: (0..clients * runs).map(|_| AtomicU32::new(0)).collect(),
            done: [AtomicUsize::new(0), AtomicUsize::new(0)],
            registered: AtomicUsize::new(0),
            stray: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }

    fn sample(&self, what: String) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() < 10 {
            s.push(what);
        }
    }
}

/// A client: leaked on purpose, so it is never dropped. Dropping a
/// connection closes it gracefully, waiting for the peer; a thousand of
/// those one after the other (worse once the relay is gone) would outlast
/// the bench. The process's exit closes them all at once.
struct Client {
    id: String,
    link: Arc<Link>,
    /// Kept open for the connection's life.
    _endpoint: Endpoint,
}

/// One client's reader: registration answers, acks, errors.
fn receive(i: usize, id: String, link: Arc<Link>, shared: Arc<Shared>) {
    let mut registered = false;
    while !shared.stop.load(Ordering::Relaxed) {
        let msg = match link.recv(Duration::from_millis(1000)) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                if !shared.stop.load(Ordering::Relaxed) {
                    shared.lost.fetch_add(1, Ordering::Relaxed);
                    shared.sample(format!("{id}: link lost: {e}"));
                }
                return;
            }
        };
        match msg {
            Message::Registered(_) if !registered => {
                registered = true;
                shared.registered.fetch_add(1, Ordering::Relaxed);
            }
            Message::CompletionAck(a) => {
                let at = shared.now();
                let slot = shared.runs.get().and_then(|r| {
                    let k = *r.index.get(&a.run)?;
                    (a.client == id && a.digest == r.digests[k]).then_some(i * shared.runs_n + k)
                });
                let Some(slot) = slot else {
                    shared.stray.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let before = shared.acks[slot].fetch_add(1, Ordering::Relaxed) as usize;
                if before < 2 {
                    shared.acked_at[before][slot].store(at, Ordering::Relaxed);
                    shared.done[before].fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Error(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                shared.sample(format!(
                    "{id}: error {:?} about {}: {}",
                    e.code, e.about, e.reason
                ));
            }
            Message::Ping { nonce } => {
                let _ = link.send(&Message::Pong { nonce });
            }
            // Session keys of the driven run, pongs: not this bench's business.
            _ => {}
        }
    }
}

/// Opens an endpoint per client, connects it to the relay, starts its
/// reader and sends its registration.
fn connect_all(
    site: &Site,
    quic: &Plugin,
    relay_addr: &str,
    ids: &[String],
    shared: &Arc<Shared>,
) -> Res<Vec<&'static Client>> {
    let counters = Arc::new(Counters::default());
    let threads = 8.min(ids.len()).max(1);
    let ca = haifu_plugin_host::pki::ca_files(&site.home).cert;
    let results: Vec<Res<Vec<(usize, &'static Client)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let counters = Arc::clone(&counters);
                let ca = ca.clone();
                s.spawn(move || -> Res<Vec<(usize, &'static Client)>> {
                    let mut mine = Vec::new();
                    for i in (t..ids.len()).step_by(threads) {
                        let id = &ids[i];
                        let files = haifu_plugin_host::pki::cert_files(&site.home, id);
                        // threads=1: one runtime worker per endpoint, so a
                        // thousand endpoints stay a thousand threads.
                        let cfg = format!(
                            "ca={}\ncert={}\nkey={}\nthreads=1\nbind=127.0.0.1:0\n\
                             idle_timeout_ms=30000\nclose_timeout_ms=500\n",
                            ca.display(),
                            files.cert.display(),
                            files.key.display()
                        );
                        let endpoint = quic
                            .open_endpoint(&cfg)
                            .map_err(|e| format!("{id}: endpoint: {e}"))?;
                        let link = link::connect(
                            &endpoint,
                            relay_addr,
                            RELAY,
                            Role::Client,
                            id,
                            Arc::clone(&counters),
                        )
                        .map_err(|e| format!("{id}: connect: {e}"))?;
                        let link = Arc::new(link);
                        {
                            let (id, link, shared) =
                                (id.clone(), Arc::clone(&link), Arc::clone(shared));
                            std::thread::Builder::new()
                                .name(format!("rx-{i}"))
                                .stack_size(256 << 10)
                                .spawn(move || receive(i, id, link, shared))?;
                        }
                        link.send(&Message::RegisterClient(RegisterClient {
                            client: id.clone(),
                            relay: RELAY.into(),
                            installed: None,
                            broadcast: None,
                        }))
                        .map_err(|e| format!("{id}: register: {e}"))?;
                        let client: &'static Client = Box::leak(Box::new(Client {
                            id: id.clone(),
                            link,
                            _endpoint: endpoint,
                        }));
                        mine.push((i, client));
                    }
                    Ok(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a connector panicked".into()))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(ids.len());
    for r in results {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, c)| c).collect())
}

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> Res<bool>) -> Res<()> {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f()? {
        if Instant::now() > end {
            return Err(format!("timed out after {secs} s waiting for {what}").into());
        }
        if let Some(s) = exited("master").or_else(|| exited(RELAY)) {
            return Err(format!("a daemon exited ({s}) while waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

// ---------------------------------------------------------------- phases

struct PhaseResult {
    name: &'static str,
    sent: usize,
    acked: usize,
    /// First send to last ack.
    secs: f64,
    /// First send to last send returning.
    send_secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    send_errors: u64,
    master_hwm_kib: Option<u64>,
    /// CPU seconds used during the phase: master, relay, this process.
    cpu: [f64; 3],
}

/// What one phase sends.
struct PhaseSpec {
    name: &'static str,
    /// 0: the first copy of each completion; 1: the resend.
    copy: usize,
    /// Which runs (indices into `Runs`).
    runs: std::ops::Range<usize>,
    /// Completions per second overall, or as fast as possible.
    pace: Option<f64>,
}

/// Sends every client's completion of every run of `spec` and waits for
/// the acks.
fn phase(
    spec: &PhaseSpec,
    clients: &[&'static Client],
    shared: &Arc<Shared>,
    senders: usize,
    timeout: Duration,
    pids: [u32; 3],
) -> Res<PhaseResult> {
    let cpu_before = pids.map(cpu_secs);
    let runs = shared.runs.get().ok_or("no runs")?;
    let k_n = runs.ids.len();
    let p = spec.copy;
    let slots: Vec<usize> = spec
        .runs
        .clone()
        .flat_map(|k| (0..clients.len()).map(move |i| i * k_n + k))
        .collect();
    let total = slots.len();
    let send_errors = AtomicU64::new(0);
    let done_before = shared.done[p].load(Ordering::Relaxed);
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..senders {
            let send_errors = &send_errors;
            s.spawn(move || {
                // Run by run, every client: what a fleet finishing rounds
                // of several runs at once looks like to the relay.
                let mut j = 0u32;
                for k in spec.runs.clone() {
                    for (i, c) in clients.iter().enumerate().skip(w).step_by(senders) {
                        if let Some(rate) = spec.pace {
                            let due = started
                                + Duration::from_secs_f64(f64::from(j) * senders as f64 / rate);
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            j += 1;
                        }
                        let slot = i * k_n + k;
                        shared.sent[p][slot].store(shared.now(), Ordering::Relaxed);
                        let msg = Message::Completion(Completion {
                            run: runs.ids[k],
                            client: c.id.clone(),
                            via: Via::Round(1),
                            digest: runs.digests[k],
                            at: jiff::Timestamp::now(),
                        });
                        if let Err(e) = c.link.send(&msg) {
                            send_errors.fetch_add(1, Ordering::Relaxed);
                            shared.sample(format!("{}: send: {e}", c.id));
                        }
                    }
                }
            });
        }
    });
    let send_secs = started.elapsed().as_secs_f64();
    let end = Instant::now() + timeout;
    while shared.done[p].load(Ordering::Relaxed) - done_before < total && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut first = u64::MAX;
    let mut last = 0u64;
    let mut lat: Vec<u64> = Vec::with_capacity(total);
    for &slot in &slots {
        let sent = shared.sent[p][slot].load(Ordering::Relaxed);
        first = first.min(sent);
        let at = shared.acked_at[p][slot].load(Ordering::Relaxed);
        if at != 0 && sent != 0 {
            last = last.max(at);
            lat.push(at.saturating_sub(sent));
        }
    }
    lat.sort_unstable();
    let pct = |q: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1e6
    };
    Ok(PhaseResult {
        name: spec.name,
        sent: total,
        acked: lat.len(),
        secs: last.saturating_sub(first) as f64 / 1e9,
        send_secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        send_errors: send_errors.load(Ordering::Relaxed),
        master_hwm_kib: proc_status(pids[0], "VmHWM"),
        cpu: [0, 1, 2].map(|i| cpu_secs(pids[i]) - cpu_before[i]),
    })
}

/// Per run: completions the ledger counts (sum of `delivered_by_round`)
/// and clients targeted.
fn ledger_counts(site: &Site, ids: &[u64]) -> Res<Vec<(u64, u64)>> {
    ids.iter()
        .map(|id| {
            let v = site.json(&["status", &id.to_string(), "--json"])?;
            let r = &v["report"];
            let delivered = r["delivered_by_round"]
                .as_array()
                .ok_or("status --json has no report.delivered_by_round")?
                .iter()
                .filter_map(serde_json::Value::as_u64)
                .sum();
            Ok((delivered, r["clients"].as_u64().unwrap_or(0)))
        })
        .collect()
}

/// A small artifact, different per run.
fn artifact_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------- main

fn bench(dir: &Path) -> Res<bool> {
    let n = env_usize("HAIFU_BENCH_CLIENTS", 1000)?.max(1);
    let k_n = env_usize("HAIFU_BENCH_RUNS", 10)?.max(1);
    let senders = env_usize("HAIFU_BENCH_SENDERS", 4)?.clamp(1, 64);
    let timeout = Duration::from_secs(env_usize("HAIFU_BENCH_TIMEOUT_SECS", 300)? as u64);
    let pace = env_usize("HAIFU_BENCH_PACE", TARGET_PER_SEC as usize)?;
    // The paced phase needs completions never sent: K runs of its own.
    let k_total = if pace > 0 { 2 * k_n } else { k_n };
    let site = Site::new(dir)?;
    eprintln!(
        "control plane: {n} clients, {k_n} runs, {senders} senders; haifu {}; plugins {}; folder {}",
        site.bin.display(),
        site.plugins.display(),
        dir.display()
    );

    // The CA, the master key, the daemons' certificates; the clients'
    // certificates in-process (a process per certificate is slow).
    site.ok(&["ca", "init"])?;
    site.ok(&["keys", "show"])?;
    site.ok(&["ca", "issue", "master", "--role", "master"])?;
    site.ok(&["ca", "issue", RELAY, "--role", "relay"])?;
    let t = Instant::now();
    let ids: Vec<String> = (0..n).map(|i| format!("c{i:05}")).collect();
    for id in &ids {
        haifu_plugin_host::pki::issue(&site.home, id, haifu_plugin_host::pki::CertRole::Client)
            .map_err(|e| format!("{id}: {e}"))?;
    }
    eprintln!(
        "{n} client certificates in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let ports = free_ports(3)?;
    let (master_port, relay_port, group_port) = (ports[0], ports[1], ports[2]);
    std::fs::write(
        dir.join("master.yaml"),
        format!(
            "home: home\nlisten: 127.0.0.1:{master_port}\nsettle_ms: 500\nround_grace_secs: 30\npoll_ms: 200\n"
        ),
    )?;
    std::fs::write(
        dir.join(format!("{RELAY}.yaml")),
        format!(
            "name: {RELAY}\nmaster: {{address: '127.0.0.1:{master_port}', name: master}}\n\
             listen: 127.0.0.1:{relay_port}\n\
             tls: {{ca: home/ca/ca.crt, cert: home/certs/{RELAY}.crt, key: home/certs/{RELAY}.key}}\n\
             multicast: {{group: '239.255.77.1:{group_port}', interface: 127.0.0.1}}\ndata: {RELAY}-data\n"
        ),
    )?;
    let _guard = DaemonGuard;
    let master_pid = site.start("master", "master")?;
    site.wait_log("master", "master started", 60)?;
    let relay_pid = site.start("relay", RELAY)?;
    site.wait_log(RELAY, "connected to the master", 60)?;

    // The clients: an endpoint, a connection and a reader thread each.
    let set = haifu_plugin_host::load_dir(&site.plugins)?;
    let quic = set.get("quic").ok_or("no quic plugin")?.clone();
    let shared = Arc::new(Shared::new(n, k_total));
    let t = Instant::now();
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let clients = connect_all(&site, &quic, &relay_addr, &ids, &shared)?;
    let connect_secs = t.elapsed().as_secs_f64();
    wait_until(120, "every client's Registered", || {
        Ok(shared.registered.load(Ordering::Relaxed) >= n)
    })?;
    let register_secs = t.elapsed().as_secs_f64();
    let ledger_path = site.home.join("ledger.sqlite");
    wait_until(120, "the ledger to know every client", || {
        let l = haifu_ledger::Ledger::open(&ledger_path)?;
        let known = l
            .clients()?
            .iter()
            .filter(|c| c.relay.as_deref() == Some(RELAY))
            .count();
        Ok(known >= n)
    })?;
    let me = std::process::id();
    eprintln!(
        "{n} clients connected in {connect_secs:.1} s, registered and in the ledger in {:.1} s; \
         this process: {} threads, {} MiB",
        t.elapsed().as_secs_f64(),
        proc_status(me, "Threads").unwrap_or(0),
        mib(proc_status(me, "VmRSS"))
    );

    // K live runs, each of its own version, registered first: the master
    // refuses a completion of a run whose version it does not know, and
    // remembers that refusal until it restarts.
    std::fs::write(dir.join("retry.rhai"), "fn next_round(ctx) {\n  3600\n}\n")?;
    let start = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 60)?;
    let mut run_ids = Vec::new();
    let mut digests = Vec::new();
    for k in 1..=k_total {
        let bytes = artifact_bytes(k as u64, 4096);
        let art = dir.join(format!("app-{k}.bin"));
        std::fs::write(&art, &bytes)?;
        let version = format!("1.0.{k}");
        let manifest = site.json(&[
            "register",
            "--name",
            "app",
            "--version",
            &version,
            &art.to_string_lossy(),
            "--json",
        ])?;
        let digest: Digest = manifest["sha3_256"]
            .as_str()
            .ok_or("register --json has no sha3_256")?
            .parse()?;
        let ours: [u8; 32] = sha3::Sha3_256::digest(&bytes).into();
        if digest != Digest::from_bytes(ours) {
            return Err(
                format!("version {version}: the manifest's digest is not the file's").into(),
            );
        }
        let wf = dir.join(format!("bench-{k}.yaml"));
        std::fs::write(
            &wf,
            format!(
                "name: bench-{k}\nartifact: {{name: app, version: {version}, path: {}}}\n\
                 targets: {{relays: [{RELAY}]}}\nschedule: {{start: {start}, deadline: 30d}}\n\
                 transports: {{broadcast: multicast, unicast: quic}}\nrate: 100Mbit/s\n\
                 policies: {{retry: {}}}\n\
                 steps:\n  - register\n  - broadcast: {{rounds: 2}}\n",
                art.display(),
                dir.join("retry.rhai").display()
            ),
        )?;
        let id: u64 = site
            .ok(&["run", &wf.to_string_lossy(), "--live", "--detach"])?
            .trim()
            .parse()?;
        run_ids.push(id);
        digests.push(digest);
    }
    let index = run_ids.iter().enumerate().map(|(k, id)| (*id, k)).collect();
    let _ = shared.runs.set(Runs {
        ids: run_ids.clone(),
        digests,
        index,
    });
    for (id, (_, clients_n)) in run_ids.iter().zip(ledger_counts(&site, &run_ids)?) {
        if clients_n != n as u64 {
            return Err(format!("run {id} targets {clients_n} clients, not {n}").into());
        }
    }
    // The master drives one run (the newest, in fact): instruction,
    // artifact fetch, one round, then an hour's wait. Measure once it waits.
    let mut driven = None;
    let waiting = wait_until(120, "a run's first round", || {
        let v = site.json(&["status", "--json"])?;
        driven = v.as_array().and_then(|runs| {
            runs.iter()
                .find(|r| !r["next_wake"].is_null())
                .and_then(|r| r["id"].as_u64())
        });
        Ok(driven.is_some())
    });
    match (waiting, driven) {
        (Ok(()), Some(id)) => eprintln!("the master drives run {id}: one round sent, waiting"),
        (e, _) => eprintln!("warning: {e:?}; measuring anyway"),
    }
    let master_rss_before = proc_status(master_pid, "VmRSS");

    let pids = [master_pid, relay_pid, me];
    let spec = |name, copy, runs, pace| PhaseSpec {
        name,
        copy,
        runs,
        pace,
    };
    let burst = phase(
        &spec("first sends", 0, 0..k_n, None),
        &clients,
        &shared,
        senders,
        timeout,
        pids,
    )?;
    let after_burst = ledger_counts(&site, &run_ids)?;
    let resends = phase(
        &spec("resends", 1, 0..k_n, None),
        &clients,
        &shared,
        senders,
        timeout,
        pids,
    )?;
    let mut results = vec![burst, resends];
    if pace > 0 {
        results.push(phase(
            &spec("first sends, paced", 0, k_n..k_total, Some(pace as f64)),
            &clients,
            &shared,
            senders,
            timeout,
            pids,
        )?);
    }
    let at_end = ledger_counts(&site, &run_ids)?;
    let master_hwm = proc_status(master_pid, "VmHWM");
    let relay_hwm = proc_status(relay_pid, "VmHWM");
    let still_running = exited("master").is_none() && exited(RELAY).is_none();

    // Each run: the ledger counts exactly the clients whose completion
    // was acked, before and after the resends.
    let mut ok = still_running && results.iter().all(|r| r.acked == r.sent);
    let mut check = Vec::new();
    for (k, id) in run_ids.iter().enumerate() {
        let acked = (0..n)
            .filter(|i| shared.acked_at[0][i * k_total + k].load(Ordering::Relaxed) != 0)
            .count() as u64;
        let (c1, c2) = (after_burst[k].0, at_end[k].0);
        let good = (k >= k_n || c1 == acked) && c2 == acked && acked == n as u64;
        ok &= good;
        check.push(format!(
            "run {id}: acked {acked}, ledger {}{c2} at the end{}",
            if k < k_n {
                format!("{c1} after the first sends, ")
            } else {
                String::new()
            },
            if good { "" } else { "  <-- MISMATCH" }
        ));
    }

    shared.stop.store(true, Ordering::Relaxed);
    println!();
    println!(
        "| phase | clients | runs | completions | seconds | completions/s | target | ratio | p50 ms | p99 ms | master peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        let rate = r.acked as f64 / r.secs.max(1e-9);
        println!(
            "| {} | {n} | {k_n} | {}{} | {:.2} | {:.0} | {TARGET_PER_SEC:.0} | {:.2} | {:.1} | {:.1} | {} |",
            r.name,
            r.acked,
            if r.acked == r.sent {
                String::new()
            } else {
                format!(" of {}", r.sent)
            },
            r.secs,
            rate,
            rate / TARGET_PER_SEC,
            r.p50_ms,
            r.p99_ms,
            mib(r.master_hwm_kib)
        );
    }
    println!();
    for r in &results {
        println!(
            "{}: senders done after {:.2} s, last ack after {:.2} s, max ack latency {:.1} ms, \
             send errors {}; CPU s: master {:.2}, relay {:.2}, clients {:.2}",
            r.name, r.send_secs, r.secs, r.max_ms, r.send_errors, r.cpu[0], r.cpu[1], r.cpu[2]
        );
    }
    println!(
        "master: RSS {} MiB before the completions, peak {} MiB (target < 1024); relay peak {} MiB; \
         bench process ({n} client endpoints): peak {} MiB, {} threads",
        mib(master_rss_before),
        mib(master_hwm),
        mib(relay_hwm),
        mib(proc_status(me, "VmHWM")),
        proc_status(me, "Threads").unwrap_or(0)
    );
    println!(
        "clients connected in {connect_secs:.1} s, all registered after {register_secs:.1} s; \
         errors from the relay/master: {}, stray acks: {}, links lost: {}",
        shared.errors.load(Ordering::Relaxed),
        shared.stray.load(Ordering::Relaxed),
        shared.lost.load(Ordering::Relaxed)
    );
    for s in shared
        .samples
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        println!("  {s}");
    }
    println!("ledger (haifu status RUN --json, sum of report.delivered_by_round):");
    for line in &check {
        println!("  {line}");
    }
    if !still_running {
        println!("a daemon exited during the bench; see its log");
    }
    println!(
        "{}",
        if ok {
            "every completion acked and counted exactly once"
        } else {
            "FAILED: see above"
        }
    );
    Ok(ok)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "control_plane: a benchmark with real daemons; run it with \
             `cargo bench -p haifu-fleet --bench control_plane`"
        );
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        kill_daemons();
        std::process::exit(101);
    }));
    let dir = match tempfile::Builder::new().prefix("haifu-bench-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("control_plane: temporary folder: {e}");
            std::process::exit(2);
        }
    };
    let outcome = bench(dir.path());
    kill_daemons();
    let keep = std::env::var_os("HAIFU_BENCH_KEEP").is_some();
    let code = match outcome {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("control_plane: {e}");
            1
        }
    };
    if keep || code != 0 {
        eprintln!("kept {}", dir.keep().display());
    } else {
        drop(dir);
    }
    // The clients were leaked (see `Client`): the exit closes them.
    std::process::exit(code);
}
