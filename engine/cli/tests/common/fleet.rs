//! A fleet of real `haifu master`, `haifu relay` and `haifu client`
//! processes on loopback, with certificates from `haifu ca`, plugins loaded
//! from their `.so` files, and logs kept per process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A folder holding only the real plugins (the build folder also holds the
/// test kit's broken ones).
pub(crate) fn plugin_dir(into: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let out = into.join("plugins");
    std::fs::create_dir_all(&out).unwrap();
    for name in [
        "haifu_transport_quic",
        "haifu_transport_multicast",
        "haifu_transport_tls",
    ] {
        let file = format!(
            "{}{name}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        let src = [dir.join(&file), dir.join("deps").join(&file)]
            .into_iter()
            // The newer of the two: a plugin built on its own beside a newer
            // build as a dev-dependency must not shadow it.
            .filter(|p| p.exists())
            .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .unwrap_or_else(|| panic!("{file} is built with the tests (a dev-dependency)"));
        std::fs::copy(&src, out.join(&file)).unwrap();
    }
    out
}

/// The multicast group (`address:port`) of a relay whose group port is
/// `port`: the address follows the port as well.
fn group_addr(port: u16) -> String {
    format!("239.255.93.{}:{port}", 1 + port % 200)
}

/// Ports for one test process: distinct per process so tests in parallel
/// binaries do not collide.
pub(crate) fn base_port(slot: u16) -> u16 {
    20_000 + ((std::process::id() % 400) as u16) * 100 + slot * 20
}

/// What [`Fleet::with`] writes: a master, relays with the clients behind
/// each, certificates and configs for all of them.
#[derive(Default)]
pub(crate) struct Layout<'a> {
    /// Lines added to `master.yaml` (`api: ...`).
    pub master: &'a str,
    /// Each relay with its clients. Relay `i`'s multicast group is on port
    /// `master_port + 10 + i`.
    pub relays: &'a [(&'a str, &'a [&'a str])],
    /// Lines added to every relay's config.
    pub relay: &'a str,
    /// Lines added to every client's config.
    pub client: &'a str,
    /// Whether the clients know the master's address, so that their boot
    /// check may ask it for a delta or full copy.
    pub boot_check: bool,
}

pub(crate) struct Fleet {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub plugins: PathBuf,
    pub master_port: u16,
    procs: BTreeMap<String, Child>,
    port: u16,
    /// Each relay written: its multicast group port and its client port.
    relays: BTreeMap<String, (u16, u16)>,
    /// Each client written: its relay.
    relay_of: BTreeMap<String, String>,
}

impl Fleet {
    pub(crate) fn new(slot: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let plugins = plugin_dir(dir.path());
        let f = Self {
            home,
            plugins,
            master_port: base_port(slot),
            procs: BTreeMap::new(),
            port: base_port(slot),
            relays: BTreeMap::new(),
            relay_of: BTreeMap::new(),
            dir,
        };
        f.haifu_ok(&["ca", "init"]);
        // The master key, so clients can pin master.pub before the master runs.
        f.haifu_ok(&["keys", "show"]);
        f
    }

    /// A fleet in `slot` with everything in `layout` written, nothing
    /// started yet.
    pub(crate) fn with(slot: u16, layout: &Layout<'_>) -> Self {
        let mut f = Self::new(slot);
        f.write_master(layout.master);
        let client = if layout.boot_check {
            format!("{}{}", f.master_line(), layout.client)
        } else {
            layout.client.to_owned()
        };
        for (i, (relay, clients)) in (0u16..).zip(layout.relays) {
            let port = f.write_relay(relay, f.master_port + 10 + i);
            if !layout.relay.is_empty() {
                let path = f.path(&format!("{relay}.yaml"));
                let config = std::fs::read_to_string(&path).unwrap();
                std::fs::write(&path, config + layout.relay).unwrap();
            }
            for id in *clients {
                f.write_client(id, relay, port, &client);
            }
        }
        f
    }

    /// The client config line that names the master, for the boot check.
    pub(crate) fn master_line(&self) -> String {
        format!(
            "master: {{address: '127.0.0.1:{}', name: master}}\n",
            self.master_port
        )
    }

    /// The multicast group (`address:port`) of a relay written before.
    pub(crate) fn group_addr(&self, relay: &str) -> String {
        group_addr(self.relays[relay].0)
    }

    /// The port a relay written before listens for its clients on.
    pub(crate) fn relay_port(&self, relay: &str) -> u16 {
        self.relays[relay].1
    }

    /// Starts the master and every relay written, and waits until each
    /// relay is connected to the master.
    pub(crate) fn start_master_and_relays(&mut self) {
        self.start("master", "master");
        let relays: Vec<String> = self.relays.keys().cloned().collect();
        for relay in &relays {
            self.start("relay", relay);
        }
        for relay in &relays {
            self.wait_log(relay, "connected to the master", 1, 60);
        }
    }

    /// Starts (or starts again) the clients `ids` and waits until each one's
    /// relay has registered it once more.
    pub(crate) fn start_clients(&mut self, ids: &[&str]) {
        let mut waits = Vec::new();
        for id in ids {
            let relay = self.relay_of[*id].clone();
            let needle = format!("client registered client={id}");
            let seen = self.log(&relay).matches(&needle).count();
            self.start("client", id);
            waits.push((relay, needle, seen + 1));
        }
        for (relay, needle, n) in waits {
            self.wait_log(&relay, &needle, n, 60);
        }
    }

    /// Starts the master, the relays and the clients `ids`, then lets the
    /// relays' reports of their clients reach the master's ledger, so that
    /// a run created next targets them.
    pub(crate) fn start_fleet(&mut self, ids: &[&str]) {
        self.start_master_and_relays();
        self.start_clients(ids);
        self.settle();
    }

    /// Waits for what the relays reported of their clients to be in the
    /// master's ledger (its group commit), before a run targets them.
    pub(crate) fn settle(&self) {
        std::thread::sleep(Duration::from_millis(800));
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn haifu(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_haifu"));
        c.arg("--home")
            .arg(&self.home)
            .env_remove("HAIFU_HOME")
            .env_remove("HAIFU_LOG_FORMAT")
            .env("HAIFU_PLUGINS", &self.plugins)
            .env("RUST_LOG", "warn")
            .current_dir(self.dir.path());
        c
    }

    pub(crate) fn haifu_ok(&self, args: &[&str]) -> String {
        let out = self.haifu().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "haifu {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.haifu_ok(args)).unwrap()
    }

    /// Issues `name` a certificate in `role` (master, relay or client).
    pub(crate) fn issue(&self, name: &str, role: &str) {
        self.haifu_ok(&["ca", "issue", name, "--role", role]);
    }

    pub(crate) fn write_master(&self, extra: &str) {
        self.issue("master", "master");
        std::fs::write(
            self.path("master.yaml"),
            format!(
                "home: home\nlisten: 127.0.0.1:{}\nsettle_ms: 1500\nround_grace_secs: 30\npoll_ms: 200\n{extra}",
                self.master_port
            ),
        )
        .unwrap();
    }

    /// Writes a relay's config; returns its client port.
    pub(crate) fn write_relay(&mut self, name: &str, group_port: u16) -> u16 {
        self.issue(name, "relay");
        self.port += 1;
        let listen = self.port;
        std::fs::write(
            self.path(&format!("{name}.yaml")),
            format!(
                "name: {name}\nmaster: {{address: '127.0.0.1:{}', name: master}}\nlisten: 127.0.0.1:{listen}\n\
                 tls: {{ca: home/ca/ca.crt, cert: home/certs/{name}.crt, key: home/certs/{name}.key}}\n\
                 multicast: {{group: '{}', interface: 127.0.0.1}}\ndata: {name}-data\n",
                self.master_port,
                group_addr(group_port),
            ),
        )
        .unwrap();
        self.relays.insert(name.to_owned(), (group_port, listen));
        listen
    }

    pub(crate) fn write_client(&mut self, id: &str, relay: &str, relay_port: u16, extra: &str) {
        self.issue(id, "client");
        self.relay_of.insert(id.to_owned(), relay.to_owned());
        std::fs::write(
            self.path(&format!("{id}.yaml")),
            format!(
                "id: {id}\nartifact: app\nrelay: {{address: '127.0.0.1:{relay_port}', name: {relay}}}\n\
                 tls: {{ca: home/ca/ca.crt, cert: home/certs/{id}.crt, key: home/certs/{id}.key}}\n\
                 master_key: home/keys/master.pub\ninstall_root: {id}-root\n\
                 multicast: {{interface: 127.0.0.1}}\n{extra}"
            ),
        )
        .unwrap();
    }

    /// Starts `haifu ROLE --config NAME.yaml`, logging to NAME.log.
    pub(crate) fn start(&mut self, role: &str, name: &str) {
        self.start_logging(role, name, "text");
    }

    /// [`Fleet::start`] with `--log-format FORMAT`.
    pub(crate) fn start_logging(&mut self, role: &str, name: &str, format: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .unwrap();
        let child = self
            .haifu()
            .env("RUST_LOG", "info")
            .args(["--log-format", format])
            .args([role, "--config", &format!("{name}.yaml")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.insert(name.to_owned(), child);
    }

    pub(crate) fn log_path(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.log"))
    }

    pub(crate) fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self, name: &str) {
        if let Some(mut c) = self.procs.remove(name) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited 0.
    pub(crate) fn stop(&mut self, name: &str) -> bool {
        let Some(mut c) = self.procs.remove(name) else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.success();
            }
            if Instant::now() > end {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `f()` holds, or panics after `secs` naming `what`.
    pub(crate) fn wait_for(&self, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `name`'s log has `needle` at least `n` times.
    pub(crate) fn wait_log(&self, name: &str, needle: &str, n: usize, secs: u64) {
        self.wait_for(secs, &format!("{needle:?} ×{n} in {name}.log"), || {
            self.log(name).matches(needle).count() >= n
        });
    }

    /// The tails of every log, for failure messages.
    pub(crate) fn dump(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            let mut logs: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect();
            logs.sort();
            for p in logs {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(12)..];
                out.push_str(&format!("--- {}\n{}\n", p.display(), tail.join("\n")));
            }
        }
        out
    }

    /// A random-looking artifact of `len` bytes.
    pub(crate) fn artifact(&self, name: &str, len: usize, seed: u64) -> PathBuf {
        let mut x = seed | 1;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// A workflow of `artifact` at `version` with `rounds` rounds `gap`
    /// seconds apart (a short retry policy) and a short delta window.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn workflow(
        &self,
        name: &str,
        artifact: &str,
        version: &str,
        relays: &[&str],
        rounds: u32,
        gap: u32,
        rate: &str,
    ) {
        std::fs::write(
            self.path(&format!("{name}.rhai")),
            format!(
                "fn next_round(ctx) {{\n\
                   if ctx.delivered >= ctx.total {{ return #{{ stop: true, reason: \"all delivered\" }}; }}\n\
                   if ctx.round >= ctx.rounds {{ return #{{ stop: true, reason: \"planned rounds sent\" }}; }}\n\
                   {gap}\n}}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            self.path(&format!("{name}.yaml")),
            format!(
                "name: {name}\nartifact: {{name: app, version: {version}, path: {artifact}}}\n\
                 targets: {{relays: [{}]}}\nschedule: {{start: 2026-01-01T00:00:00Z, deadline: 10m}}\n\
                 transports: {{broadcast: multicast, unicast: quic}}\nrate: {rate}\n\
                 policies: {{retry: {name}.rhai}}\n\
                 steps:\n  - register\n  - broadcast: {{rounds: {rounds}}}\n  - audit\n  - delta: {{until: 2s}}\n  - disconnect\n",
                relays.join(", ")
            ),
        )
        .unwrap();
    }

    /// Makes workflow `name` (written by [`Fleet::workflow`]) start now
    /// with its delta window open for 40 s (deadline 45 s), so that a
    /// straggler asking during the test is served.
    pub(crate) fn open_delta_window(&self, name: &str) {
        let path = self.path(&format!("{name}.yaml"));
        let yaml = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            yaml.replace("delta: {until: 2s}", "delta: {until: 40s}")
                .replace(
                    "start: 2026-01-01T00:00:00Z, deadline: 10m",
                    &format!("start: {}, deadline: 45s", jiff::Timestamp::now()),
                ),
        )
        .unwrap();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.procs) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("HAIFU_TEST_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// A bare HTTP/1.1 GET with a bearer token: (status, body).
pub(crate) fn http_get(addr: &str, token: &str, path: &str) -> (u16, String) {
    http(addr, "GET", Some(token), path, None)
}

/// A bare HTTP/1.1 POST of `body` with a bearer token if given: (status,
/// body).
pub(crate) fn http_post(addr: &str, token: Option<&str>, path: &str, body: &str) -> (u16, String) {
    http(addr, "POST", token, path, Some(body))
}

/// One request on a new connection: (status, body).
fn http(
    addr: &str,
    method: &str,
    token: Option<&str>,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content = body
        .map(|b| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )
        })
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{content}Connection: close\r\n\r\n{}",
        body.unwrap_or("")
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}
