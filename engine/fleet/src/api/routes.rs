//! The API's endpoints: each reads the ledger on the blocking pool and
//! answers JSON. They know nothing of tokens or connections; `auth` and
//! `serve` stand in front of them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use haifu_ledger::Ledger;
use haifu_policy::PolicySet;
use serde_json::json;

use super::Api;

/// An error answer: a status and a message, sent as `{"error": "…"}`.
#[derive(Debug)]
pub(super) struct ApiError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(super) fn error(code: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError(code, msg.into())
}

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn ledger(api: &Api) -> Result<Ledger, ApiError> {
    Ledger::open(&api.ledger).map_err(internal)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Response, ApiError> {
    Ok(Json(serde_json::to_value(v).map_err(internal)?).into_response())
}

/// Runs `f` on the blocking pool (SQLite and Rhai are synchronous).
pub(super) async fn blocking(
    api: Api,
    f: impl FnOnce(&Api) -> Result<Response, ApiError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&api)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(e) => internal(e).into_response(),
    }
}

pub(super) async fn runs(State(api): State<Api>) -> Response {
    blocking(api, |api| to_json(&ledger(api)?.runs().map_err(internal)?)).await
}

pub(super) fn run_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            format!("run {text:?} is not a number"),
        )
    })
}

pub(super) async fn run(State(api): State<Api>, UrlPath(id): UrlPath<String>) -> Response {
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

pub(super) async fn audit(State(api): State<Api>, UrlPath(id): UrlPath<String>) -> Response {
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

pub(super) async fn fleet(State(api): State<Api>) -> Response {
    blocking(api, |api| {
        to_json(&ledger(api)?.clients().map_err(internal)?)
    })
    .await
}

/// Why `GET /gate`'s query is refused (a 400 with this message).
#[derive(Debug, thiserror::Error)]
enum BadGateQuery {
    #[error("parameter {0:?} is not valid percent-encoding")]
    Encoding(String),
    #[error("unknown parameter {0:?} (expected client and service)")]
    Unknown(String),
    #[error("parameter {0:?} given twice")]
    Twice(String),
    #[error("both client and service are required and must not be empty")]
    Missing,
}

/// `client=C&service=S`, each exactly once and non-empty.
fn gate_params(query: Option<&str>) -> Result<(String, String), BadGateQuery> {
    let mut client = None;
    let mut service = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| BadGateQuery::Encoding(k.to_owned()))?;
        let slot = match k {
            "client" => &mut client,
            "service" => &mut service,
            other => {
                return Err(BadGateQuery::Unknown(other.to_owned()));
            }
        };
        if slot.replace(v).is_some() {
            return Err(BadGateQuery::Twice(k.to_owned()));
        }
    }
    match (client, service) {
        (Some(c), Some(s)) if !c.is_empty() && !s.is_empty() => Ok((c, s)),
        _ => Err(BadGateQuery::Missing),
    }
}

/// `application/x-www-form-urlencoded` decoding, strict: `%` must be
/// followed by exactly two hex digits (`u8::from_str_radix` alone would take
/// `%+1` as 0x01, since it accepts a sign), and the result must be UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    fn hex(d: u8) -> Option<u8> {
        match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            b'A'..=b'F' => Some(d - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
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

/// The newest run's restriction policies, compiled once per workflow; a
/// failure is the API's internal error, naming the first problem.
fn gate_policies(api: &Api, l: &Ledger) -> Result<Arc<PolicySet>, ApiError> {
    let source = haifu_runtime::gate::RestrictSource::newest(l).map_err(internal)?;
    let workflow = source.workflow;
    let mut cache = api.gate.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((w, set)) = cache.as_ref()
        && *w == workflow
    {
        return Ok(Arc::clone(set));
    }
    let set = haifu_runtime::gate::restrict_policies(source.script).map_err(|errs| {
        internal(
            errs.first()
                .map_or_else(|| "policy error".to_owned(), ToString::to_string),
        )
    })?;
    let set = Arc::new(set);
    *cache = Some((workflow, Arc::clone(&set)));
    Ok(set)
}

pub(super) async fn gate(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    let (client, service) = match gate_params(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    blocking(api, move |api| {
        let l = ledger(api)?;
        let policies = gate_policies(api, &l)?;
        let answer =
            haifu_runtime::gate::decide(&l, &policies, &client, &service, jiff::Timestamp::now())
                .map_err(internal)?;
        api.metrics.gate_answered(answer.allow);
        Ok(Json(json!({ "allow": answer.allow, "reason": answer.reason })).into_response())
    })
    .await
}

/// `GET /healthz`: the API is up. No token, no data.
pub(super) async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
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

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%2Fb+c%c3%A9").as_deref(), Some("a/b cé"));
        // Signs, a lone or short escape, non-hex digits and bad UTF-8.
        for bad in ["%+1", "%-1", "%", "%4", "x%4", "%g0", "% 1", "%ff"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
        let e = gate_params(Some("client=pos%+1&service=x"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"client\""),
            "the error names the parameter: {e}"
        );
    }
}
