//! The daemons' YAML configuration files.
//!
//! Every file is read whole, unknown keys are refused (a typo must not
//! silently fall back to a default), and every error names the file, line
//! and column. Relative paths in a file are taken from the file's folder, so
//! a config works from any working directory.
//!
//! The same types give the JSON Schemas editors use ([`schema`], printed by
//! `haifu schema master|relay|client`): the keys, their types, defaults and
//! documentation come from the derives below, and the bounds [`Resolve::check`]
//! holds values to are the constants both read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

mod place;

/// Why a config file cannot be used: one line naming the file and place.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The certificate files a daemon presents and trusts.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The fleet CA certificate (PEM), trusted for every peer.
    pub ca: PathBuf,
    /// This daemon's certificate (PEM), issued by the fleet CA.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// Where a peer listens and the name its certificate must carry.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerAddr {
    /// `host:port` of the peer's QUIC endpoint.
    pub address: SocketAddr,
    /// The identity (certificate CN) the peer must prove.
    pub name: String,
}

/// Which transport plugins a daemon uses, by name, and the operator's
/// section for each (`transports:` in every daemon config):
///
/// ```yaml
/// transports:
///   control: quic          # peer streams: the links to the master, relay, clients
///   broadcast: udp-peers   # datagram groups: the rounds (relays and clients)
///   config:                # per plugin, passed through after the engine's keys
///     udp-peers: { peers: "10.0.1.21:7500,10.0.1.22:7500" }
/// ```
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransportsConfig {
    /// The stream plugin of the control links (default `quic`).
    #[serde(default = "default_control")]
    pub control: String,
    /// The datagram plugin of the broadcast rounds (default `multicast`).
    #[serde(default = "default_broadcast")]
    pub broadcast: String,
    /// Each plugin's section: scalar values, written as `key=value` lines
    /// after the keys the engine adds (SPEC.md §3.7).
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Scalar>>,
}

impl Default for TransportsConfig {
    fn default() -> Self {
        Self {
            control: default_control(),
            broadcast: default_broadcast(),
            config: std::collections::BTreeMap::new(),
        }
    }
}

fn default_control() -> String {
    "quic".into()
}

fn default_broadcast() -> String {
    "multicast".into()
}

/// A YAML scalar of a plugin section, kept as the text the plugin reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
    /// `true` or `false`.
    Bool(bool),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(t) => f.write_str(t),
            Self::Int(i) => write!(f, "{i}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl TransportsConfig {
    /// The operator's pairs for plugin `name`.
    pub fn section(&self, name: &str) -> Vec<(String, String)> {
        self.config
            .get(name)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
            .unwrap_or_default()
    }

    /// Names are plugin names; sections belong to a plugin in use and hold
    /// one-line keys and values.
    fn check(&self) -> Result<(), String> {
        for (what, name) in [
            ("transports.control", &self.control),
            ("transports.broadcast", &self.broadcast),
        ] {
            if haifu_plugin_host::plugin_name_of_file(&haifu_plugin_host::plugin_file_name(name))
                .is_none()
            {
                return Err(format!(
                    "{what} {name:?} is not a plugin name (a-z, 0-9, '-', '_'; at most 64)"
                ));
            }
        }
        for (plugin, section) in &self.config {
            if plugin != &self.control && plugin != &self.broadcast {
                return Err(format!(
                    "transports.config.{plugin}: no transport of this daemon uses plugin {plugin:?} (control: {}, broadcast: {})",
                    self.control, self.broadcast
                ));
            }
            for (k, v) in section {
                let v = v.to_string();
                if k.is_empty() || k.contains(['=', '\n', '\r', '#']) || v.contains(['\n', '\r']) {
                    return Err(format!(
                        "transports.config.{plugin}.{k}: keys are one word without '=' or '#', values one line"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The master's config, `haifu master --config FILE`. Relative paths are
/// taken from the file's folder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MasterConfig {
    /// The master's home: ledger, store, keys, CA (as `haifu --home`).
    pub home: PathBuf,
    /// Where relays (and clients asking for deltas) connect.
    pub listen: SocketAddr,
    /// Where the HTTP JSON API listens (run status, audit, fleet, gate), e.g.
    /// `127.0.0.1:7480`; absent: no API. Every data endpoint needs a bearer
    /// token (`haifu api token create`); an address other than loopback is
    /// refused at start while the ledger holds no token.
    #[serde(default)]
    pub api: Option<SocketAddr>,
    /// The HTTP API's connection cap and timeouts.
    #[serde(default)]
    pub api_limits: ApiLimits,
    /// Where `GET /metrics` is served (Prometheus text; OpenMetrics when
    /// asked), e.g. `127.0.0.1:9464`; absent: no metrics listener. An
    /// address that is not loopback is refused unless `metrics_public:
    /// true`. The API also
    /// serves `/metrics`, behind a read token.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Serve `metrics:` on an address that is not loopback. The listener
    /// has no authentication and the metrics name relays, clients and
    /// versions: say so only for a trusted segment or behind a proxy.
    #[serde(default)]
    pub metrics_public: bool,
    /// The master's identity; its certificate is `home/certs/NAME.pem`
    /// unless `tls` names other files.
    #[serde(default = "default_master_name")]
    pub name: String,
    /// Certificate files, if not the ones under the home.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Folder of transport plugins (default: `$HAIFU_PLUGINS`, else
    /// `/usr/lib/haifu/plugins` for an installed `/usr/bin/haifu`, else the
    /// binary's folder).
    #[serde(default)]
    pub plugins: Option<PathBuf>,
    /// The transport plugins by name, and their sections.
    #[serde(default)]
    pub transports: TransportsConfig,
    /// How often the master looks for runs to drive, in milliseconds.
    #[serde(default = "default_poll_ms")]
    #[schemars(range(min = 1))]
    pub poll_ms: u64,
    /// How long a round may take beyond its expected time before the
    /// master stops waiting for a relay's report, in seconds.
    #[serde(default = "default_round_grace")]
    pub round_grace_secs: u64,
    /// How long after the relays report a round the master waits for the
    /// completions still in flight before the retry policy looks, in
    /// milliseconds.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// The relays this master accepts, by certificate name; empty (the
    /// default): every relay-role certificate of the fleet CA. A relay-role
    /// certificate not listed is refused at connection.
    #[serde(default)]
    pub relays: Vec<String>,
}

/// How much the HTTP API lets its callers hold: a peer that opens
/// connections and sends nothing, or sends headers a byte at a time, must not
/// use up the master's file descriptors or keep the others out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiLimits {
    /// Connections held open at once. Past it, a new connection evicts the
    /// oldest one with no request in progress (or is closed if every one is
    /// busy).
    #[schemars(range(min = *MAX_CONNECTIONS.start(), max = *MAX_CONNECTIONS.end()))]
    pub max_connections: usize,
    /// Seconds a connection has to send a request's headers. The same timer
    /// runs while a keep-alive connection waits for its next request, so it
    /// is also the idle timeout.
    #[schemars(range(min = *API_TIMEOUT_SECS.start(), max = *API_TIMEOUT_SECS.end()))]
    pub header_timeout_secs: u64,
    /// Seconds a request may take from its headers to its answer.
    #[schemars(range(min = *API_TIMEOUT_SECS.start(), max = *API_TIMEOUT_SECS.end()))]
    pub request_timeout_secs: u64,
    /// Bytes of request headers accepted (the whole head).
    #[schemars(range(min = *MAX_HEADER_BYTES.start(), max = *MAX_HEADER_BYTES.end()))]
    pub max_header_bytes: usize,
    /// Bytes of request body accepted (no endpoint takes one yet).
    pub max_body_bytes: u64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout_secs: 5,
            request_timeout_secs: 30,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// `api_limits.max_connections` is held to this (the check and the schema).
const MAX_CONNECTIONS: std::ops::RangeInclusive<usize> = 1..=65_536;
/// `api_limits.header_timeout_secs` and `request_timeout_secs`.
const API_TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=3600;
/// `api_limits.max_header_bytes`: hyper's read buffer cannot be smaller
/// than 8 KiB.
const MAX_HEADER_BYTES: std::ops::RangeInclusive<usize> = 8192..=1024 * 1024;

impl ApiLimits {
    fn check(&self) -> Result<(), String> {
        fn within<T: PartialOrd + std::fmt::Display>(
            key: &str,
            v: T,
            range: &std::ops::RangeInclusive<T>,
        ) -> Result<(), String> {
            if range.contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "api_limits.{key} {v} is not between {} and {}",
                    range.start(),
                    range.end()
                ))
            }
        }
        within("max_connections", self.max_connections, &MAX_CONNECTIONS)?;
        within(
            "header_timeout_secs",
            self.header_timeout_secs,
            &API_TIMEOUT_SECS,
        )?;
        within(
            "request_timeout_secs",
            self.request_timeout_secs,
            &API_TIMEOUT_SECS,
        )?;
        within("max_header_bytes", self.max_header_bytes, &MAX_HEADER_BYTES)
    }
}

fn default_settle_ms() -> u64 {
    5000
}

fn default_master_name() -> String {
    "master".into()
}

fn default_poll_ms() -> u64 {
    1000
}

fn default_round_grace() -> u64 {
    60
}

/// The multicast side of a relay.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayMulticast {
    /// Group and port, e.g. `239.255.91.7:7500`.
    pub group: SocketAddr,
    /// Interface to send from (name or address), e.g. `127.0.0.1`.
    #[serde(default)]
    pub interface: Option<String>,
    /// Time to live of the datagrams.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// The sending link's MTU in bytes, for the pacer's count of link
    /// bytes (a datagram larger than the MTU takes two frames). Default:
    /// read from the interface (`/sys/class/net/NAME/mtu`; an address or
    /// no interface is mapped through the kernel's routes), else 1,500.
    #[serde(default)]
    #[schemars(range(min = 68, max = 65535))]
    pub mtu: Option<u32>,
}

fn default_ttl() -> u32 {
    1
}

/// A relay's config, `haifu relay --config FILE`. Relative paths are taken
/// from the file's folder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The relay's name, also its certificate's CN.
    pub name: String,
    /// The master.
    pub master: PeerAddr,
    /// Where this relay's clients connect.
    pub listen: SocketAddr,
    /// Certificate files.
    pub tls: TlsFiles,
    /// The broadcast group.
    pub multicast: RelayMulticast,
    /// Where fetched artifacts are kept.
    pub data: PathBuf,
    /// Where `GET /metrics` is served (Prometheus text; OpenMetrics when
    /// asked), e.g. `127.0.0.1:9464`; absent: no metrics listener. An
    /// address that is not loopback is refused unless `metrics_public:
    /// true`.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Serve `metrics:` on an address that is not loopback. The listener
    /// has no authentication and the metrics name relays, clients and
    /// versions: say so only for a trusted segment or behind a proxy.
    #[serde(default)]
    pub metrics_public: bool,
    /// Folder of transport plugins (default as for the master).
    #[serde(default)]
    pub plugins: Option<PathBuf>,
    /// The transport plugins by name, and their sections.
    #[serde(default)]
    pub transports: TransportsConfig,
}

/// The multicast side of a client.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientMulticast {
    /// Interface to join on (name or address), e.g. `127.0.0.1`.
    #[serde(default)]
    pub interface: Option<String>,
}

/// A post-install command: run after the new version is in place and
/// before the completion is sent; a failure rolls back.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostInstallConfig {
    /// The program.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Seconds it may take.
    #[serde(default = "default_post_install_secs")]
    pub timeout_secs: u64,
}

fn default_receive_stall_secs() -> u64 {
    60
}

fn default_post_install_secs() -> u64 {
    300
}

/// Fault injection for tests and drills; never set in production.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Testing {
    /// Fraction of received datagrams dropped on purpose (0 to 1).
    #[serde(default)]
    #[schemars(range(min = *DROP_FRACTION.start(), max = *DROP_FRACTION.end()))]
    pub drop_datagrams: f64,
    /// Seed of the drop pattern.
    #[serde(default)]
    pub seed: u64,
    /// Cut the first transfer of a delta or full copy from the master once
    /// this many bytes have arrived, as a killed master or a lost link
    /// would (0: never); the next check resumes it.
    #[serde(default)]
    pub cut_catch_up_at: u64,
}

/// `testing.drop_datagrams` is a fraction.
const DROP_FRACTION: std::ops::RangeInclusive<f64> = 0.0..=1.0;

/// A client's config, `haifu client --config FILE`. Relative paths are
/// taken from the file's folder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client's id, also its certificate's CN.
    pub id: String,
    /// The artifact this client runs.
    pub artifact: String,
    /// Its relay.
    pub relay: PeerAddr,
    /// The master, asked directly on boot for a delta when a finished
    /// broadcast left this client behind. Without it the client only
    /// receives broadcasts.
    #[serde(default)]
    pub master: Option<PeerAddr>,
    /// Certificate files.
    pub tls: TlsFiles,
    /// The master's public key file (`master.pub`), pinned: manifests
    /// signed by any other key are refused.
    pub master_key: PathBuf,
    /// Where versions are installed (`current` points at the live one).
    pub install_root: PathBuf,
    /// Receiving side of the broadcast.
    #[serde(default)]
    pub multicast: ClientMulticast,
    /// The progress watchdog: a session whose bytes in hand (blocks decoded
    /// and checked, symbols held) reach no new high for this many seconds
    /// (nothing arrives, only refused datagrams, or blocks that keep being
    /// poisoned) stops holding back the boot check, so a client whose
    /// broadcast was poisoned or lost still asks the master for a delta. Longer than the
    /// pause between two rounds, so a client waiting for the next round
    /// does not give up on it.
    #[serde(default = "default_receive_stall_secs")]
    #[schemars(range(min = 1))]
    pub receive_stall_secs: u64,
    /// Run after installing, before reporting completion.
    #[serde(default)]
    pub post_install: Option<PostInstallConfig>,
    /// Where `GET /metrics` is served (Prometheus text; OpenMetrics when
    /// asked), e.g. `127.0.0.1:9464`; absent: no metrics listener. An
    /// address that is not loopback is refused unless `metrics_public:
    /// true`.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Serve `metrics:` on an address that is not loopback. The listener
    /// has no authentication and the metrics name relays, clients and
    /// versions: say so only for a trusted segment or behind a proxy.
    #[serde(default)]
    pub metrics_public: bool,
    /// Folder of transport plugins (default as for the master).
    #[serde(default)]
    pub plugins: Option<PathBuf>,
    /// The transport plugins by name, and their sections.
    #[serde(default)]
    pub transports: TransportsConfig,
    /// Fault injection.
    #[serde(default)]
    pub testing: Testing,
}

/// The JSON Schema of config type `T` (`MasterConfig`, `RelayConfig`,
/// `ClientConfig`), titled `title`: what `haifu schema` prints and
/// `examples/schemas/` holds. It says what serde reads (keys, types,
/// defaults, unknown keys refused) and the bounds [`Resolve::check`] holds
/// numbers to; names, artifact names and multicast groups are only checked
/// when the file is loaded.
pub fn schema<T: JsonSchema>(title: &str) -> serde_json::Value {
    let mut schema = schemars::schema_for!(T);
    schema.insert("title".into(), title.into());
    schema.to_value()
}

/// The largest daemon config read, in bytes: a config is a few hundred
/// bytes, and the cap keeps a wrong path from being read whole.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads and checks a config file of type `T`.
pub fn load<T: for<'de> Deserialize<'de> + Resolve>(path: &Path) -> Result<T, ConfigError> {
    let text = haifu_policy::input::read_text(path, MAX_CONFIG_BYTES, "daemon configs")
        .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
    // serde_yaml expands aliases as it goes (a 1 MB file of nested aliases
    // took 3.9 GB); the workflow reader's shape check refuses them first.
    haifu_spec::check_shape(&text).map_err(|e| ConfigError(format!("{}:{e}", path.display())))?;
    let mut value: T = serde_yaml::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{}:{}:{}", path.display(), l.line(), l.column()))
            .unwrap_or_else(|| path.display().to_string());
        // serde_yaml appends " at line L column C"; the prefix says it.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        ConfigError(format!("{at}: {msg}"))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    value.resolve(base);
    value.check().map_err(|m| {
        let at = match place::find(&text, place::key_of(&m)) {
            Some(pos) => format!("{}:{pos}", path.display()),
            None => path.display().to_string(),
        };
        ConfigError(format!("{at}: {m}"))
    })?;
    Ok(value)
}

/// Makes relative paths relative to the config file, then checks values.
pub trait Resolve {
    /// Joins every relative path onto `base`.
    fn resolve(&mut self, base: &Path);
    /// Checks values serde cannot. A message starts with the dotted key it
    /// is about (`multicast.group 10.0.0.1:7500 is not …`), so [`load`]
    /// can name the line and column of its value.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

fn fix(p: &mut PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl TlsFiles {
    fn resolve(&mut self, base: &Path) {
        fix(&mut self.ca, base);
        fix(&mut self.cert, base);
        fix(&mut self.key, base);
    }
}

impl Resolve for MasterConfig {
    fn resolve(&mut self, base: &Path) {
        fix(&mut self.home, base);
        if let Some(t) = &mut self.tls {
            t.resolve(base);
        }
        if let Some(p) = &mut self.plugins {
            fix(p, base);
        }
    }

    fn check(&self) -> Result<(), String> {
        check_name("name", &self.name)?;
        self.transports.check()?;
        if self.poll_ms == 0 {
            return Err("poll_ms must be at least 1".into());
        }
        check_metrics(self.metrics, self.metrics_public, MASTER_METRICS_HINT)?;
        self.api_limits.check()
    }
}

impl Resolve for RelayConfig {
    fn resolve(&mut self, base: &Path) {
        self.tls.resolve(base);
        fix(&mut self.data, base);
        if let Some(p) = &mut self.plugins {
            fix(p, base);
        }
    }

    fn check(&self) -> Result<(), String> {
        check_name("name", &self.name)?;
        check_name("master.name", &self.master.name)?;
        self.transports.check()?;
        check_metrics(self.metrics, self.metrics_public, "")?;
        // Another broadcast plugin (unicast to a peer list, say) reads only
        // what it needs of the group, such as its port.
        if let Some(mtu) = self.multicast.mtu
            && !(68..=65_535).contains(&mtu)
        {
            return Err(format!(
                "multicast.mtu {mtu} is not an MTU (68 to 65535 bytes)"
            ));
        }
        if self.transports.broadcast == "multicast" && !self.multicast.group.ip().is_multicast() {
            return Err(format!(
                "multicast.group {} is not a multicast address",
                self.multicast.group
            ));
        }
        Ok(())
    }
}

impl Resolve for ClientConfig {
    fn resolve(&mut self, base: &Path) {
        self.tls.resolve(base);
        fix(&mut self.master_key, base);
        fix(&mut self.install_root, base);
        if let Some(p) = &mut self.plugins {
            fix(p, base);
        }
    }

    fn check(&self) -> Result<(), String> {
        check_name("id", &self.id)?;
        check_name("relay.name", &self.relay.name)?;
        self.transports.check()?;
        if let Some(m) = &self.master {
            check_name("master.name", &m.name)?;
        }
        self.artifact
            .parse::<haifu_core::ArtifactName>()
            .map_err(|e| format!("artifact {:?}: {e}", self.artifact))?;
        if !DROP_FRACTION.contains(&self.testing.drop_datagrams) {
            return Err(format!(
                "testing.drop_datagrams {} is not between 0 and 1",
                self.testing.drop_datagrams
            ));
        }
        if self.receive_stall_secs == 0 {
            return Err("receive_stall_secs must be at least 1".into());
        }
        check_metrics(self.metrics, self.metrics_public, "")
    }
}

/// What the master's refusal adds: its authenticated way.
const MASTER_METRICS_HINT: &str = ", or scrape the API's /metrics with a read token";

/// `metrics:` off loopback only with `metrics_public: true`, and
/// `metrics_public` only with a `metrics:` address.
fn check_metrics(addr: Option<SocketAddr>, public: bool, hint: &str) -> Result<(), String> {
    match addr {
        Some(a) if !public && !crate::http::is_loopback(a) => Err(format!(
            "metrics: {a} is not a loopback address, and metrics name relays, clients and \
             versions to anyone who connects; set `metrics_public: true` beside it to serve them \
             there (a trusted segment, or behind a proxy), or listen on 127.0.0.1{hint}"
        )),
        None if public => Err(
            "metrics_public: true without a `metrics:` address; add the address or drop it".into(),
        ),
        _ => Ok(()),
    }
}

fn check_name(key: &str, v: &str) -> Result<(), String> {
    haifu_plugin_host::pki::validate_name(v).map_err(|e| format!("{key} {v:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.yaml");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let (_d, p) = write("home: h\nlisten: 127.0.0.1:7400\nlisen: 1\n");
        let e = load::<MasterConfig>(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:3:", p.display())), "{e}");
        assert!(e.contains("unknown field `lisen`"), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let (_d, p) = write("home: h\nlisten: nowhere\n");
        let e = load::<MasterConfig>(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2:", p.display())), "{e}");
    }

    #[test]
    fn transports_are_named_with_sections_for_the_plugins_in_use() {
        let base = "home: h\nlisten: 127.0.0.1:7400\n";
        let (_d, p) = write(base);
        let t = load::<MasterConfig>(&p).unwrap().transports;
        assert_eq!(
            (t.control.as_str(), t.broadcast.as_str()),
            ("quic", "multicast")
        );
        let (_d, p) = write(&format!(
            "{base}transports: {{broadcast: udp-peers, config: {{udp-peers: {{peers: '10.0.0.5', ttl: 3, join: true}}}}}}\n"
        ));
        let t = load::<MasterConfig>(&p).unwrap().transports;
        assert_eq!(
            t.section("udp-peers"),
            [
                ("join".into(), "true".into()),
                ("peers".into(), "10.0.0.5".into()),
                ("ttl".into(), "3".into())
            ]
        );
        let (_d, p) = write(&format!(
            "{base}transports: {{config: {{udp-peer: {{peers: x}}}}}}\n"
        ));
        let e = load::<MasterConfig>(&p).unwrap_err().to_string();
        assert!(
            e.contains(
                "transports.config.udp-peer: no transport of this daemon uses plugin \"udp-peer\""
            ),
            "{e}"
        );
        let (_d, p) = write(&format!("{base}transports: {{control: ../quic}}\n"));
        let e = load::<MasterConfig>(&p).unwrap_err().to_string();
        assert!(
            e.contains("transports.control \"../quic\" is not a plugin name"),
            "{e}"
        );
        let (_d, p) = write(&format!("{base}transports: {{contrl: quic}}\n"));
        let e = load::<MasterConfig>(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:3:", p.display())) && e.contains("contrl"),
            "{e}"
        );
    }

    #[test]
    fn api_limits_default_and_are_checked() {
        let (_d, p) = write("home: h\nlisten: 127.0.0.1:7400\napi: 127.0.0.1:7480\n");
        assert_eq!(
            load::<MasterConfig>(&p).unwrap().api_limits,
            ApiLimits::default()
        );
        let (_d, p) = write(
            "home: h\nlisten: 127.0.0.1:7400\napi_limits: {max_connections: 64, header_timeout_secs: 2}\n",
        );
        let l = load::<MasterConfig>(&p).unwrap().api_limits;
        assert_eq!((l.max_connections, l.header_timeout_secs), (64, 2));
        assert_eq!(l.request_timeout_secs, 30, "the others keep their defaults");
        let (_d, p) = write("home: h\nlisten: 127.0.0.1:7400\napi_limits: {max_connections: 0}\n");
        let e = load::<MasterConfig>(&p).unwrap_err().to_string();
        assert!(e.contains("api_limits.max_connections 0"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_file_and_values_are_checked() {
        let (d, p) = write(
            "name: relay-a\nmaster: {address: '127.0.0.1:7400', name: master}\n\
             listen: 127.0.0.1:7401\ntls: {ca: ca.pem, cert: r.pem, key: r.key}\n\
             multicast: {group: '239.255.91.7:7500', interface: 127.0.0.1}\ndata: cache\n",
        );
        let c = load::<RelayConfig>(&p).unwrap();
        assert_eq!(c.data, d.path().join("cache"));
        assert_eq!(c.tls.ca, d.path().join("ca.pem"));

        let (_d, p) = write(
            "name: relay-a\nmaster: {address: '127.0.0.1:7400', name: master}\n\
             listen: 127.0.0.1:7401\ntls: {ca: ca.pem, cert: r.pem, key: r.key}\n\
             multicast: {group: '10.0.0.1:7500'}\ndata: cache\n",
        );
        let e = load::<RelayConfig>(&p).unwrap_err().to_string();
        assert!(
            e.contains("10.0.0.1:7500 is not a multicast address"),
            "{e}"
        );

        let (_d, p) = write(
            "name: relay-a\nmaster: {address: '127.0.0.1:7400', name: master}\n\
             listen: 127.0.0.1:7401\ntls: {ca: ca.pem, cert: r.pem, key: r.key}\n\
             multicast: {group: '239.255.91.7:7500', mtu: 9}\ndata: cache\n",
        );
        let e = load::<RelayConfig>(&p).unwrap_err().to_string();
        assert!(e.contains("multicast.mtu 9 is not an MTU"), "{e}");
    }
}

#[cfg(test)]
mod examples {
    use super::*;

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/fleet")
            .join(name)
    }

    #[test]
    fn the_shipped_example_configs_load() {
        let m = load::<MasterConfig>(&example("master.yaml")).unwrap();
        assert_eq!(m.name, "master");
        let r = load::<RelayConfig>(&example("relay-east.yaml")).unwrap();
        assert_eq!(r.name, "store-east");
        let c = load::<ClientConfig>(&example("pos-0001.yaml")).unwrap();
        assert_eq!(c.artifact, "pos-app");
        assert!(c.post_install.is_some());
    }
}
