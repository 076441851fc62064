//! The master's config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Invalid, Resolve, TlsFiles, TransportsConfig, check_metrics, check_name, fix};

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
    fn check(&self) -> Result<(), Invalid> {
        fn within<T: PartialOrd + std::fmt::Display>(
            key: &str,
            v: T,
            range: &std::ops::RangeInclusive<T>,
        ) -> Result<(), Invalid> {
            if range.contains(&v) {
                Ok(())
            } else {
                Err(Invalid(format!(
                    "api_limits.{key} {v} is not between {} and {}",
                    range.start(),
                    range.end()
                )))
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

    fn check(&self) -> Result<(), Invalid> {
        check_name("name", &self.name)?;
        self.transports.check()?;
        if self.poll_ms == 0 {
            return Err(Invalid("poll_ms must be at least 1".into()));
        }
        check_metrics(self.metrics, self.metrics_public, MASTER_METRICS_HINT)?;
        self.api_limits.check()
    }
}

/// What the master's refusal adds: its authenticated way.
const MASTER_METRICS_HINT: &str = ", or scrape the API's /metrics with a read token";
