//! The demo's fleet: its folder, certificates, artifacts, configs and
//! processes, and what the demo asks of it (the ledger, the HTTP gate).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use haifu_core::{ArtifactName, Manifest, Version};
use haifu_ledger::{Ledger, RunAudit};
use haifu_plugin_host::pki;

use super::procs::Procs;
use super::report::{Gate, Report};
use super::{Plan, artifact};

/// The part a client plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    /// Online throughout, dropping some datagrams.
    Online,
    /// Offline for round 1, back for the next rounds.
    Late,
    /// Offline for every round; boots after the audit and takes a delta.
    Straggler,
    /// Broken on purpose: its post-install check always fails.
    FailingCheck,
    /// Broken on purpose: off for good after reporting in once.
    NeverBack,
    /// `--stages`: its post-install check refuses 2.4.0 until the
    /// operator's fix (a marker file) is in.
    RefusesUntilFixed,
}

/// The service 2.4.0 brings, which the gate keeps from 2.3.0 clients.
pub(super) const SERVICE: &str = "loyalty-points";
const NAME: &str = "pos-app";
pub(super) const OLD: &str = "2.3.0";
pub(super) const NEW: &str = "2.4.0";
/// The marker the `--stages` refusing client's check looks for.
pub(super) const FIX: &str = "receipt-printer-fix";

pub(super) struct Fleet {
    pub dir: PathBuf,
    pub home: PathBuf,
    pub procs: Procs,
    api: SocketAddr,
    /// A read token made for the demo: the API answers nobody without one.
    api_token: String,
    pub new_len: u64,
    pub new_digest: haifu_core::Digest,
    pub old_digest: haifu_core::Digest,
    pub deadline_secs: u64,
}

/// A free port on 127.0.0.1 (UDP: QUIC and the multicast groups are UDP).
fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The two real plugins, copied into the demo's folder (a build folder may
/// hold other libraries too).
fn plugins(from: Option<&Path>, dir: &Path) -> Result<PathBuf> {
    let src = haifu_plugin_host::plugin_dir(from);
    let set = haifu_plugin_host::load_dir(&src)
        .map_err(|e| anyhow!("plugins in {}: {e}", src.display()))?;
    let out = dir.join("plugins");
    std::fs::create_dir_all(&out)?;
    for name in ["quic", "multicast"] {
        let p = set.get(name).with_context(|| {
            format!(
                "no {name} plugin in {} (build the plugins with: cargo build --release -p haifu-transport-quic -p haifu-transport-multicast; or name their folder with --plugins)",
                src.display()
            )
        })?;
        let file = &p.info().path;
        let to = out.join(file.file_name().unwrap_or_default());
        std::fs::copy(file, &to)
            .with_context(|| format!("cannot copy {} to {}", file.display(), to.display()))?;
    }
    Ok(out)
}

/// Seconds from the run's start to the cut-off: set-up of the rounds, three
/// rounds 2 s apart at 100 Mbit/s (1.1x the artifact each), the stragglers'
/// delta (built during the rounds at zstd -19, a few MB/s, then applied),
/// and room for the clients sharing this machine's CPUs.
fn default_deadline(plan: &Plan) -> u64 {
    let mib = plan.size as f64 / f64::from(1u32 << 20);
    let round = mib * 1.1 * 8.0 * 1.048_576 / 100.0;
    let secs = 12.0 + 3.0 * (2.0 + round) + mib / 2.0 + f64::from(plan.clients) / 4.0;
    secs.ceil() as u64
}

impl Fleet {
    /// Everything before the first process starts: CA, certificates, key,
    /// artifacts (registered), 2.3.0 installed on every client, configs.
    pub(super) fn set_up(plan: &Plan, plugin_dir: Option<&Path>, dir: &Path) -> Result<Self> {
        let plugins = plugins(plugin_dir, dir)?;
        let home = dir.join("home");
        std::fs::create_dir_all(&home)?;
        pki::init_ca(&home, pki::DEFAULT_CA_NAME)?;
        pki::issue(&home, "master", pki::CertRole::Master)?;
        for r in 1..=plan.relays {
            pki::issue(&home, &format!("relay-{r}"), pki::CertRole::Relay)?;
        }
        for (id, _) in &plan.roles {
            pki::issue(&home, id, pki::CertRole::Client)?;
        }
        let h = crate::home::Home::new(home.clone());
        let key = h.master_key()?;
        let mut ledger = h.ledger()?;
        let store = h.store()?;

        let (old, new) = artifact::releases(plan.size, plan.seed);
        let name: ArtifactName = NAME.parse()?;
        let mut manifests: Vec<Manifest> = Vec::new();
        for (version, bytes) in [(OLD, &old), (NEW, &new)] {
            let path = dir.join(format!("{NAME}-{version}.bin"));
            std::fs::write(&path, bytes)?;
            let v: Version = version.parse()?;
            let done = haifu_runtime::register::register_file(
                &mut ledger,
                &store,
                &key,
                &name,
                &v,
                &path,
                &mut |_, _, _| {},
            )?;
            manifests.push(done.manifest);
        }
        ledger.set_service(SERVICE, NAME, NEW)?;
        // What `haifu api token create --name demo --scope read` does.
        let token = haifu_fleet::api::auth::new_token()?;
        ledger
            .create_token("demo", haifu_ledger::TokenScope::Read, &token.sha3_256)?
            .context("the demo's fresh ledger already holds a token named \"demo\"")?;
        // Every client runs 2.3.0, installed and verified as a client would.
        let pinned = key.public_key();
        for (id, _) in &plan.roles {
            let root = haifu_install::InstallRoot::open(dir.join(format!("{id}-root")))?;
            let mut staging = root.stage(old.len() as u64)?;
            staging.write_at(0, &old)?;
            let verified = staging.verify(&manifests[0], &pinned)?;
            root.install(verified, None)?;
        }

        let master_port = free_udp_port()?;
        let api: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()?).parse()?;
        write(
            &dir.join("master.yaml"),
            &format!(
                "home: home\nlisten: 127.0.0.1:{master_port}\napi: {api}\nsettle_ms: 1000\npoll_ms: 200\n"
            ),
        )?;
        let mut relay_ports = Vec::new();
        // Groups unique to this process, so demos and tests can run at once.
        let net = 1 + (std::process::id() % 200);
        for r in 1..=plan.relays {
            let port = free_udp_port()?;
            let group_port = free_udp_port()?;
            relay_ports.push(port);
            write(
                &dir.join(format!("relay-{r}.yaml")),
                &format!(
                    "name: relay-{r}\nmaster: {{address: '127.0.0.1:{master_port}', name: master}}\n\
                     listen: 127.0.0.1:{port}\n\
                     tls: {{ca: home/ca/ca.crt, cert: home/certs/relay-{r}.crt, key: home/certs/relay-{r}.key}}\n\
                     multicast: {{group: '239.255.{net}.{r}:{group_port}', interface: 127.0.0.1}}\n\
                     data: relay-{r}-data\n"
                ),
            )?;
        }
        let mut rng = artifact::Rng::new(plan.seed ^ 0x1055);
        for (i, (id, role)) in plan.roles.iter().enumerate() {
            let r = i % plan.relays as usize;
            // Links differ: each client drops between a quarter of and
            // 1.75 times the mean loss.
            let drop = plan.loss / 100.0 * (0.25 + 1.5 * (rng.below(1001) as f64 / 1000.0));
            let check = match role {
                // A check that always fails: the new version is never
                // switched to, the old one stays current and intact, and the
                // client reports the failure.
                Role::FailingCheck => {
                    "post_install: {program: 'false', timeout_secs: 10}\n".to_owned()
                }
                Role::RefusesUntilFixed => {
                    write(
                        &dir.join("refuse.sh"),
                        &format!(
                            "[ \"$HAIFU_VERSION\" = {OLD} ] || [ -f '{}' ] || \
                             {{ echo '{NAME} {NEW} refuses to start: the receipt-printer migration is missing' >&2; exit 3; }}\n",
                            dir.join(FIX).display()
                        ),
                    )?;
                    format!(
                        "post_install: {{program: sh, args: ['{}'], timeout_secs: 10}}\n",
                        dir.join("refuse.sh").display()
                    )
                }
                _ => String::new(),
            };
            write(
                &dir.join(format!("{id}.yaml")),
                &format!(
                    "id: {id}\nartifact: {NAME}\n\
                     relay: {{address: '127.0.0.1:{}', name: relay-{}}}\n\
                     master: {{address: '127.0.0.1:{master_port}', name: master}}\n\
                     tls: {{ca: home/ca/ca.crt, cert: home/certs/{id}.crt, key: home/certs/{id}.key}}\n\
                     master_key: home/keys/master.pub\ninstall_root: {id}-root\n\
                     multicast: {{interface: 127.0.0.1}}\n{check}\
                     testing: {{drop_datagrams: {}, seed: {}}}\n",
                    relay_ports[r],
                    r + 1,
                    (drop * 1e4).round() / 1e4,
                    plan.seed.wrapping_mul(1000).wrapping_add(i as u64),
                ),
            )?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            procs: Procs::new(dir, &plugins)?,
            home,
            api,
            api_token: token.text,
            new_len: new.len() as u64,
            new_digest: manifests[1].body.sha3_256,
            old_digest: manifests[0].body.sha3_256,
            deadline_secs: default_deadline(plan),
        })
    }

    pub(super) fn ledger(&self) -> Result<Ledger> {
        Ok(Ledger::open(&self.home.join("ledger.sqlite"))?)
    }

    /// Starts the master, the relays and every client; returns once every
    /// client has reported its version through its relay.
    pub(super) fn start_daemons(&mut self, plan: &Plan) -> Result<()> {
        self.procs.start("master", "master")?;
        for r in 1..=plan.relays {
            self.procs.start("relay", &format!("relay-{r}"))?;
        }
        for r in 1..=plan.relays {
            self.procs
                .wait_log(&format!("relay-{r}"), "connected to the master", 60)?;
        }
        for (id, _) in &plan.roles {
            self.procs.start("client", id)?;
        }
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let known = self.ledger()?.clients()?;
            let reported = plan
                .roles
                .iter()
                .filter(|(id, _)| {
                    known
                        .iter()
                        .any(|c| &c.id == id && c.version.as_deref() == Some(OLD))
                })
                .count();
            if reported == plan.roles.len() {
                return Ok(());
            }
            self.check_daemons(plan)?;
            if Instant::now() > end {
                bail!(
                    "only {reported} of {} clients reported in within 60 s",
                    plan.roles.len()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Fails if the master or a relay has exited.
    pub(super) fn check_daemons(&mut self, plan: &Plan) -> Result<()> {
        self.procs.check_alive("master")?;
        for r in 1..=plan.relays {
            self.procs.check_alive(&format!("relay-{r}"))?;
        }
        Ok(())
    }

    /// Writes the workflow and hands the run to the master. `stages`: the
    /// `stages:` block of a phased rollout (its advance policy is the
    /// shipped one); the run then ends after its last stage's audit, with
    /// no straggler to wait for.
    pub(super) fn start_run(&self, relays: u32, stages: Option<&str>) -> Result<i64> {
        write(
            &self.dir.join("demo-retry.rhai"),
            "// Rounds 2 s apart until everyone has it or 3 rounds are sent.\n\
             fn next_round(ctx) {\n\
             \x20   if ctx.delivered >= ctx.total { return #{ stop: true, reason: \"every client has it\" }; }\n\
             \x20   if ctx.round >= ctx.rounds { return #{ stop: true, reason: \"all planned rounds sent\" }; }\n\
             \x20   2\n}\n",
        )?;
        write(
            &self.dir.join("restrict.rhai"),
            include_str!("../../../../../policies/restrict.rhai"),
        )?;
        write(
            &self.dir.join("cut-off-at-deadline.rhai"),
            include_str!("../../../../../policies/cut-off-at-deadline.rhai"),
        )?;
        write(
            &self.dir.join("broadcast.rhai"),
            include_str!("../../../../../policies/broadcast.rhai"),
        )?;
        write(
            &self.dir.join("advance.rhai"),
            include_str!("../../../../../policies/advance.rhai"),
        )?;
        let (advance, steps) = match stages {
            Some(s) => (
                ", advance: advance.rhai".to_owned(),
                format!(
                    "stages:\n{s}steps:\n  - register\n  - broadcast: {{rounds: 3}}\n  - audit\n"
                ),
            ),
            None => (
                String::new(),
                format!(
                    "steps:\n  - register\n  - broadcast: {{rounds: 3}}\n  - audit\n  - delta: {{until: {}s}}\n  - disconnect\n",
                    self.deadline_secs - 1
                ),
            ),
        };
        let relays: Vec<String> = (1..=relays).map(|r| format!("relay-{r}")).collect();
        let wf = self.dir.join("rollout.yaml");
        write(
            &wf,
            &format!(
                "name: demo-rollout\ndescription: pos-app {NEW} to the demo fleet, now\n\
                 artifact: {{name: {NAME}, version: {NEW}, path: {NAME}-{NEW}.bin}}\n\
                 targets: {{relays: [{}]}}\n\
                 schedule: {{start: {}, deadline: {}s}}\n\
                 transports: {{broadcast: multicast, unicast: quic}}\nrate: 100Mbit/s\n\
                 policies: {{retry: demo-retry.rhai, restrict: restrict.rhai, disconnect: cut-off-at-deadline.rhai, \
                 broadcast: broadcast.rhai{advance}}}\n{steps}",
                relays.join(", "),
                jiff::Timestamp::now(),
                self.deadline_secs,
            ),
        )?;
        let plan = super::super::check::load(&wf)?;
        super::super::check::policies(&plan)?;
        let mut ledger = self.ledger()?;
        let (id, _) = haifu_fleet::master::create_live_run(&mut ledger, &plan)?;
        Ok(id)
    }

    pub(super) fn audit(&self, run: i64) -> Result<RunAudit> {
        self.ledger()?
            .audit(run)?
            .with_context(|| format!("run {run} vanished from the ledger"))
    }

    /// Asks the master's HTTP API whether `client` may use the service.
    pub(super) fn gate(&self, client: &str, when: &str) -> Result<Gate> {
        let path = format!("/v1/gate?client={client}&service={SERVICE}");
        let mut s = TcpStream::connect_timeout(&self.api, Duration::from_secs(5))
            .with_context(|| format!("the master's API at {}", self.api))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.api, self.api_token
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .with_context(|| format!("GET {path}: no HTTP body in {text:?}"))?;
        let v: serde_json::Value = serde_json::from_str(body)
            .with_context(|| format!("GET {path}: not JSON: {body:?}"))?;
        // A refusal (401: the token) must not read as the gate denying.
        let status = head.split_whitespace().nth(1).unwrap_or_default();
        if status != "200" {
            bail!(
                "GET {path}: HTTP {status}: {}",
                v["error"].as_str().unwrap_or(body)
            );
        }
        let version = self
            .ledger()?
            .client(client)?
            .and_then(|c| c.version)
            .unwrap_or_default();
        Ok(Gate {
            client: client.to_owned(),
            when: when.to_owned(),
            version,
            service: SERVICE.to_owned(),
            allow: v["allow"].as_bool().unwrap_or(false),
            reason: v["reason"].as_str().unwrap_or_default().to_owned(),
            url: format!("http://{}{path}", self.api),
        })
    }

    /// The report, with every client's install checked byte for byte.
    pub(super) fn report(
        &self,
        plan: &Plan,
        run: i64,
        audit: RunAudit,
        gates: Vec<Gate>,
    ) -> Result<Report> {
        let mut problems = Vec::new();
        let delivered: Vec<String> = audit
            .relays
            .iter()
            .flat_map(|r| {
                r.delivered_by_round
                    .iter()
                    .flatten()
                    .chain(&r.delta)
                    .chain(&r.current)
                    .cloned()
            })
            .collect();
        for (id, role) in &plan.roles {
            let root = self.dir.join(format!("{id}-root"));
            let (_, digest) = haifu_install::digest_of(&root.join("current").join("artifact"))
                .with_context(|| format!("{id}'s install"))?;
            let is_new = digest == self.new_digest;
            let ok = if delivered.contains(id) {
                is_new
            } else {
                // Not updated: the old version must still be there, intact.
                digest == self.old_digest
            };
            if !ok {
                problems.push(format!(
                    "{id} ({role:?}): installed bytes do not match the ledger ({digest})"
                ));
            }
        }
        Ok(Report::new(
            plan,
            run,
            &audit,
            gates,
            self.new_len,
            problems,
        ))
    }
}
