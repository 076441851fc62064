//! What the daemons tell a Prometheus server: `GET /metrics` in the
//! Prometheus text format (0.0.4), or OpenMetrics 1.0 text when the scraper
//! asks for it (`Accept: application/openmetrics-text`, as Prometheus does),
//! both from the `prometheus-client` crate's encoders.
//!
//! Each daemon builds its registry once at start ([`MasterMetrics`],
//! [`RelayMetrics`], [`ClientMetrics`]): counters its threads bump as things
//! happen, and collectors that read what is already kept elsewhere at scrape
//! time (the links' refusal counters, a relay's connected clients, the
//! master's ledger). The master's ledger figures come from one bounded query
//! ([`haifu_ledger::Ledger::census`]: live runs only, at most
//! [`CENSUS_RUNS`] of them) cached for [`CENSUS_TTL`], so a
//! scraper polling in a loop costs the ledger one query every two seconds.
//!
//! Served on the daemon's `metrics:` address by the daemons' one HTTP
//! server ([`crate::http`]) with small fixed limits ([`LIMITS`]): 16
//! connections (the oldest idle one evicted past that), 5 s for a request's
//! headers, 8 KiB of them, no body, 10 s per answer. Any other path is 404,
//! any other method 405. The master also answers `GET /metrics` on its API,
//! behind a read token ([`crate::api`]).
//!
//! Who may read it: metrics name relays, clients and versions. A `metrics:`
//! address that is not loopback is refused when the config is loaded unless
//! the same file says `metrics_public: true`: the operator states that the
//! segment is trusted (or that a proxy guards it). The master's API route
//! is the authenticated alternative.
//!
//! What it does not do: push, keep history, or export anything a peer
//! could grow without bound: label values are relay names, run ids (bounded
//! by the census), fixed reasons and kinds, and the versions the fleet runs
//! (the 64 most common).

mod census;
mod client;
mod deltas;
mod families;
mod master;
mod process;
mod relay;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

pub use client::{ClientMetrics, ClientView, Via};
pub(crate) use deltas::{delta_built, delta_refused};
pub use master::{CENSUS_RUNS, CENSUS_TTL, MasterMetrics, PeerView};
pub(crate) use process::watch_plugin_folder;
pub use relay::{RelayMetrics, RelayView};

use crate::common::Shutdown;
use crate::config::ApiLimits;

/// The `metrics:` listener's limits: a scraper or two and an operator's
/// `curl`, never a crowd.
pub const LIMITS: ApiLimits = ApiLimits {
    max_connections: 16,
    header_timeout_secs: 5,
    request_timeout_secs: 10,
    max_header_bytes: 8192,
    max_body_bytes: 0,
};

/// The `Content-Type` of an OpenMetrics answer.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A daemon's registry, ready to encode; cheap to clone.
#[derive(Clone)]
pub struct Exporter(Arc<Registry>);

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    fn new(registry: Registry) -> Self {
        Self(Arc::new(registry))
    }

    /// Every metric in the Prometheus text format (0.0.4). Collectors run
    /// here (the master's may query its ledger): call it off the async
    /// runtime.
    pub fn text(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.0)?;
        Ok(out)
    }

    /// Every metric in the OpenMetrics 1.0 text format, `# EOF` included.
    pub fn openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0)?;
        Ok(out)
    }
}

/// Whether the scraper asked for OpenMetrics (Prometheus lists it first in
/// its `Accept`); anything else gets the plain text format.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// The answer to `GET /metrics`: encoded on the blocking pool, since the
/// master's collector may read its ledger.
pub(crate) async fn answer(exporter: &Exporter, headers: &HeaderMap) -> Response {
    let open = wants_openmetrics(headers);
    let exporter = exporter.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        if open {
            exporter.openmetrics()
        } else {
            exporter.text()
        }
    })
    .await;
    let content_type = if open {
        OPENMETRICS
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    };
    match encoded {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Ok(Err(_)) | Err(_) => {
            tracing::warn!("metrics: encoding failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics: encoding failed\n",
            )
                .into_response()
        }
    }
}

/// `GET /metrics`; 404 elsewhere, 405 for another method.
fn router(exporter: Exporter) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|headers: HeaderMap| async move { answer(&exporter, &headers).await }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found; see /metrics\n") })
}

/// Serves `exporter` on `addr` until `shutdown` is set; returns the bound
/// address (the OS's choice for port 0). The config has already refused a
/// non-loopback address without `metrics_public: true`.
pub fn spawn(
    addr: SocketAddr,
    exporter: Exporter,
    shutdown: Shutdown,
) -> Result<SocketAddr, crate::http::ListenError> {
    spawn_limited(addr, exporter, LIMITS, shutdown)
}

/// [`spawn`] under other limits (tests: a short header timeout).
fn spawn_limited(
    addr: SocketAddr,
    exporter: Exporter,
    limits: ApiLimits,
    shutdown: Shutdown,
) -> Result<SocketAddr, crate::http::ListenError> {
    let bound = crate::http::spawn("metrics", addr, router(exporter), limits, shutdown)?;
    tracing::info!(listen = %bound, "metrics serving");
    Ok(bound)
}

/// The daemon a metric belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Daemon {
    /// `haifu master`.
    Master,
    /// `haifu relay`.
    Relay,
    /// `haifu client`.
    Client,
}

impl Daemon {
    /// Every daemon.
    pub const ALL: [Daemon; 3] = [Daemon::Master, Daemon::Relay, Daemon::Client];

    /// The daemon's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Relay => "relay",
            Self::Client => "client",
        }
    }

    /// A fresh registry of this daemon, with nothing counted and no source
    /// behind its collectors: what [`catalogue`] reads.
    fn empty(self) -> Exporter {
        match self {
            Self::Master => MasterMetrics::new(Arc::default(), Vec::new(), None).exporter(),
            Self::Relay => RelayMetrics::new(Arc::default()).exporter(),
            Self::Client => ClientMetrics::new(Arc::default()).exporter(),
        }
    }
}

/// One metric a daemon exports, as PromQL names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Described {
    /// The daemon.
    pub daemon: Daemon,
    /// The name (`haifu_relay_multicast_sent_bytes_total`).
    pub name: String,
    /// `counter`, `gauge` or `histogram` (an info metric is a gauge of 1).
    pub kind: String,
    /// The HELP text.
    pub help: String,
}

impl Described {
    /// The series names a query may use: the name, and for a histogram its
    /// `_bucket`, `_sum` and `_count`.
    pub fn series(&self) -> Vec<String> {
        if self.kind == "histogram" {
            ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", self.name))
                .collect()
        } else {
            vec![self.name.clone()]
        }
    }
}

/// Every metric `daemon` exports, in the order it writes them: read from
/// the HELP and TYPE lines of an empty registry's text, so the list is made
/// by the same code that registers the metrics and cannot go stale
/// (`haifu metrics list`).
pub fn catalogue(daemon: Daemon) -> Vec<Described> {
    let text = daemon.empty().text().unwrap_or_default();
    let mut out: Vec<Described> = Vec::new();
    let mut help = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(
                name.to_owned(),
                h.replace("\\n", "\n").replace("\\\\", "\\"),
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push(Described {
                daemon,
                name: name.to_owned(),
                kind: kind.to_owned(),
                help: help.remove(name).unwrap_or_default(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
