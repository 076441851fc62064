//! The master's HTTP JSON API (axum, HTTP/1.1), for the operator's own
//! servers and dashboards. Read-only: everything comes from the ledger.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/runs` | every run, newest first |
//! | `GET /v1/runs/{id}` | one run with its report |
//! | `GET /v1/runs/{id}/audit` | the audit: per relay, who has what |
//! | `GET /v1/fleet` | every client: relay, version, last contact, cut-off |
//! | `GET /v1/gate?client=C&service=S` | `{"allow": bool, "reason": "…"}` |
//!
//! Bad parameters get 400, unknown runs 404, each with `{"error": "…"}`.
//! The gate answers from the restriction policy of the newest run's workflow
//! (compiled once per workflow), else the built-in default; unknown and
//! cut-off clients are denied with a reason.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use haifu_ledger::Ledger;
use haifu_policy::{PolicyPaths, PolicySet};
use serde_json::json;

use crate::FleetError;
use crate::common::Shutdown;

/// The restriction policy in use, and the workflow it came from.
type GateCache = Arc<Mutex<Option<(Option<PathBuf>, Arc<PolicySet>)>>>;

#[derive(Clone)]
struct Api {
    ledger: PathBuf,
    gate: GateCache,
}

/// An error answer: a status and a message, sent as `{"error": "…"}`.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError(code, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn ledger(api: &Api) -> Result<Ledger, ApiError> {
    Ledger::open(&api.ledger).map_err(internal)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Response, ApiError> {
    Ok(Json(serde_json::to_value(v).map_err(internal)?).into_response())
}

/// Runs `f` on the blocking pool (SQLite and Rhai are synchronous).
async fn blocking(
    api: Api,
    f: impl FnOnce(&Api) -> Result<Response, ApiError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&api)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(e) => internal(e).into_response(),
    }
}

async fn runs(State(api): State<Api>) -> Response {
    blocking(api, |api| to_json(&ledger(api)?.runs().map_err(internal)?)).await
}

fn run_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            format!("run {text:?} is not a number"),
        )
    })
}

async fn run(State(api): State<Api>, UrlPath(id): UrlPath<String>) -> Response {
    blocking(api, move |api| {
        let id = run_id(&id)?;
        let l = ledger(api)?;
        let Some(row) = l.run(id).map_err(internal)? else {
            return Err(error(
                StatusCode::NOT_FOUND,
                format!("run {id} does not exist"),
            ));
        };
        let report = haifu_runtime::report::Report::from_ledger(&l, id).map_err(internal)?;
        let mut v = serde_json::to_value(&row).map_err(internal)?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "report".into(),
                serde_json::to_value(&report).map_err(internal)?,
            );
        }
        Ok(Json(v).into_response())
    })
    .await
}

async fn audit(State(api): State<Api>, UrlPath(id): UrlPath<String>) -> Response {
    blocking(api, move |api| {
        let id = run_id(&id)?;
        match ledger(api)?.audit(id).map_err(internal)? {
            Some(a) => to_json(&a),
            None => Err(error(
                StatusCode::NOT_FOUND,
                format!("run {id} does not exist"),
            )),
        }
    })
    .await
}

async fn fleet(State(api): State<Api>) -> Response {
    blocking(api, |api| {
        to_json(&ledger(api)?.clients().map_err(internal)?)
    })
    .await
}

/// `client=C&service=S`, each exactly once and non-empty.
fn gate_params(query: Option<&str>) -> Result<(String, String), String> {
    let mut client = None;
    let mut service = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)
            .ok_or_else(|| format!("parameter {k:?} is not valid percent-encoding"))?;
        let slot = match k {
            "client" => &mut client,
            "service" => &mut service,
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (expected client and service)"
                ));
            }
        };
        if slot.replace(v).is_some() {
            return Err(format!("parameter {k:?} given twice"));
        }
    }
    match (client, service) {
        (Some(c), Some(s)) if !c.is_empty() && !s.is_empty() => Ok((c, s)),
        _ => Err("both client and service are required and must not be empty".into()),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn gate_policies(api: &Api, l: &Ledger) -> Result<Arc<PolicySet>, String> {
    let workflow = l
        .runs()
        .map_err(|e| e.to_string())?
        .first()
        .map(|r| PathBuf::from(&r.workflow));
    let mut cache = api.gate.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((w, set)) = cache.as_ref()
        && *w == workflow
    {
        return Ok(Arc::clone(set));
    }
    let restrict = workflow.as_deref().and_then(|w: &Path| {
        haifu_spec::load_and_validate(w)
            .ok()
            .and_then(|plan| plan.policies.restrict.map(|p| p.value))
    });
    let set = match restrict {
        Some(p) => PolicySet::load(&PolicyPaths {
            restrict: Some(p),
            ..PolicyPaths::default()
        })
        .map_err(|errs| {
            errs.first()
                .map_or_else(|| "policy error".to_owned(), ToString::to_string)
        })?,
        None => PolicySet::defaults(),
    };
    let set = Arc::new(set);
    *cache = Some((workflow, Arc::clone(&set)));
    Ok(set)
}

async fn gate(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    let (client, service) = match gate_params(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e).into_response(),
    };
    blocking(api, move |api| {
        let l = ledger(api)?;
        let policies = gate_policies(api, &l).map_err(internal)?;
        let answer =
            haifu_runtime::gate::decide(&l, &policies, &client, &service, jiff::Timestamp::now())
                .map_err(internal)?;
        Ok(Json(json!({ "allow": answer.allow, "reason": answer.reason })).into_response())
    })
    .await
}

/// Serves the API on `addr` until `shutdown` is set. Returns once bound (the
/// server runs on its own thread), or the error binding.
pub fn spawn(
    addr: SocketAddr,
    ledger_path: PathBuf,
    shutdown: Shutdown,
) -> Result<SocketAddr, FleetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| FleetError::Start(format!("api runtime: {e}")))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| FleetError::Start(format!("api: cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let api = Api {
        ledger: ledger_path,
        gate: Arc::new(Mutex::new(None)),
    };
    let app = Router::new()
        .route("/v1/runs", get(runs))
        .route("/v1/runs/{id}", get(run))
        .route("/v1/runs/{id}/audit", get(audit))
        .route("/v1/fleet", get(fleet))
        .route("/v1/gate", get(gate))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route (see /v1/runs, /v1/fleet, /v1/gate)",
            )
        })
        .with_state(api);
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let stop = async move {
                while !shutdown.is_set() {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            };
            if let Err(e) = rt.block_on(
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .into_future(),
            ) {
                tracing::error!("api: {e}");
            }
        })
        .map_err(|e| FleetError::Start(format!("api thread: {e}")))?;
    tracing::info!(listen = %bound, "HTTP API serving");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_parameters_are_checked() {
        assert_eq!(
            gate_params(Some("client=pos-1&service=refund%20v2")).unwrap(),
            ("pos-1".to_owned(), "refund v2".to_owned())
        );
        for bad in [
            None,
            Some("client=pos-1"),
            Some("client=&service=x"),
            Some("client=a&client=b&service=x"),
            Some("client=a&service=x&color=red"),
            Some("client=%zz&service=x"),
        ] {
            assert!(gate_params(bad).is_err(), "{bad:?}");
        }
    }
}
