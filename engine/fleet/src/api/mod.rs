//! The master's HTTP JSON API (axum over hyper, HTTP/1.1), for the
//! operator's own servers and dashboards. Everything comes from the
//! ledger; the only writes are operators' orders on a run, which the
//! master's driver reads from there like those of `haifu run
//! pause|resume|abort`.
//!
//! | route | scope | answer |
//! |---|---|---|
//! | `GET /healthz` | none | `{"status": "ok"}`: the API is up; no data |
//! | `GET /v1/runs` | read | every run, newest first |
//! | `GET /v1/runs/{id}` | read | one run with its report |
//! | `GET /v1/runs/{id}/audit` | read | the audit: per relay, who has what |
//! | `GET /v1/fleet` | read | every client: relay, version, last contact, cut-off |
//! | `GET /v1/gate?client=C&service=S` | read | `{"allow": bool, "reason": "…"}` |
//! | `GET /metrics` | read | the master's metrics, Prometheus text ([`crate::metrics`]) |
//! | `POST /v1/runs/{id}/pause` | admin | pause a running run: no new round, no cut-off, no delta |
//! | `POST /v1/runs/{id}/resume` | admin | resume a paused run where it was |
//! | `POST /v1/runs/{id}/abort` | admin | end a running or paused run now, failed; its round on air stops |
//!
//! An order's body is nothing or `{"reason": "…"}`; it is given in the
//! token's name (`api:NAME`) and answered with the run's new standing
//! (`{"run", "order", "by", "status", "paused"}`), 404 for an unknown run,
//! 409 with the refusal for an order the run's standing does not allow
//! (not running, already paused, not paused); a refused order writes
//! nothing.
//!
//! Every route but `/healthz`, unknown ones included, needs
//! `Authorization: Bearer hfu_…` with a token from `haifu api token create`
//! (see [`auth`]): none or a bad one gets 401 with `WWW-Authenticate:
//! Bearer`, a token whose scope is too small 403 (a `read` token on a
//! write endpoint). Bad parameters or bodies get 400,
//! unknown runs 404, each with `{"error": "…"}`. The gate answers from the
//! restriction policy of the newest run's workflow (compiled once per
//! workflow), else the built-in default; unknown and cut-off clients are
//! denied with a reason.
//!
//! What it does not do: listen on a non-loopback address while the ledger
//! holds no token (the master refuses to start), or let any caller hold more
//! than its share of the master: connections are capped, slow or idle ones
//! time out, heads and bodies are bounded ([`crate::http`], `api_limits` in
//! the master's config).

pub mod auth;
mod orders;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use haifu_ledger::Ledger;
use haifu_policy::PolicySet;

use crate::FleetError;
use crate::common::Shutdown;
use crate::config::ApiLimits;
use crate::metrics::MasterMetrics;
use routes::error;

pub use crate::http::is_loopback;

/// The restriction policy in use, and the workflow it came from.
type GateCache = Arc<Mutex<Option<(Option<PathBuf>, Arc<PolicySet>)>>>;

/// What every handler shares.
#[derive(Clone)]
struct Api {
    ledger: PathBuf,
    gate: GateCache,
    tokens: Arc<auth::Tokens>,
    max_body: u64,
    /// The master's metrics: `/metrics`, and the gate's answers.
    metrics: Arc<MasterMetrics>,
}

/// Why the API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A non-loopback address with nobody able to authenticate.
    #[error(
        "api: {addr} is not a loopback address and the ledger holds no API token; \
         create one with `haifu api token create --name NAME --scope read` or listen on 127.0.0.1"
    )]
    Unguarded {
        /// The configured `api:` address.
        addr: SocketAddr,
    },
    /// The ledger could not be read.
    #[error("api: {0}")]
    Ledger(#[from] haifu_ledger::LedgerError),
    /// The runtime, the socket or the thread.
    #[error(transparent)]
    Listen(#[from] crate::http::ListenError),
}

/// The API's routes and layers: limits, then auth (all but `/healthz`):
/// `admin` on the writes, `read` on the rest.
fn router(api: Api) -> Router {
    let orders = Router::new()
        .route("/v1/runs/{id}/pause", post(orders::pause))
        .route("/v1/runs/{id}/resume", post(orders::resume))
        .route("/v1/runs/{id}/abort", post(orders::abort))
        .layer(middleware::from_fn_with_state(
            api.clone(),
            auth::require_admin,
        ));
    let data = Router::new()
        .route("/v1/runs", get(routes::runs))
        .route("/v1/runs/{id}", get(routes::run))
        .route("/v1/runs/{id}/audit", get(routes::audit))
        .route("/v1/fleet", get(routes::fleet))
        .route("/v1/gate", get(routes::gate))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route (see /v1/runs, /v1/fleet, /v1/gate, /metrics)",
            )
        })
        .layer(middleware::from_fn_with_state(
            api.clone(),
            auth::require_read,
        ));
    orders
        .merge(data)
        .route("/healthz", get(routes::healthz))
        .layer(middleware::from_fn_with_state(api.clone(), limit_body))
        // For a body sent without a length (chunked), as orders read it.
        .layer(DefaultBodyLimit::max(
            usize::try_from(api.max_body).unwrap_or(usize::MAX),
        ))
        .with_state(api)
}

/// 413 for a request announcing a body over the limit, before anything
/// reads it (only orders read theirs; hyper closes a connection whose
/// request body was left unread rather than draining it).
async fn limit_body(State(api): State<Api>, req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > api.max_body) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {} bytes", api.max_body),
        )
        .into_response();
    }
    next.run(req).await
}

/// `GET /metrics` on the API: the same text as the `metrics:` listener,
/// behind a read token (the way to scrape the master off loopback with
/// authentication: Prometheus's `authorization: { credentials_file: … }`).
async fn metrics(State(api): State<Api>, req: Request) -> Response {
    crate::metrics::answer(&api.metrics.exporter(), req.headers()).await
}

/// Serves the API on `addr` until `shutdown` is set. Returns once bound (the
/// server runs on its own thread), or why it cannot: the address is not
/// loopback and no token exists, the ledger or the socket failed.
pub fn spawn(
    addr: SocketAddr,
    limits: ApiLimits,
    ledger_path: PathBuf,
    metrics: Arc<MasterMetrics>,
    shutdown: Shutdown,
) -> Result<SocketAddr, FleetError> {
    // Tokens are required on every address; off loopback, the master also
    // refuses to serve until one exists, so an API reachable from the
    // network is never one nobody can use but everybody can knock on.
    if !is_loopback(addr)
        && !Ledger::open(&ledger_path)
            .and_then(|l| l.has_tokens())
            .map_err(StartError::Ledger)?
    {
        return Err(StartError::Unguarded { addr }.into());
    }
    let api = Api {
        tokens: Arc::new(auth::Tokens::new(ledger_path.clone())),
        ledger: ledger_path,
        gate: Arc::new(Mutex::new(None)),
        max_body: limits.max_body_bytes,
        metrics,
    };
    let bound =
        crate::http::spawn("api", addr, router(api), limits, shutdown).map_err(StartError::from)?;
    tracing::info!(listen = %bound, "HTTP API serving");
    Ok(bound)
}
