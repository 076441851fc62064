//! The API's write endpoints: an operator's order on a run
//! (`POST /v1/runs/{id}/pause`, `/resume`, `/abort`), the same order as
//! `haifu run pause|resume|abort`, given in the name of the token that
//! called (`api:NAME`) so the audit says who.
//!
//! The body is optional: empty, or a JSON object `{"reason": "…"}` whose
//! reason is held to the CLI's rule ([`haifu_ledger::printable_reason`]);
//! the API's body limit bounds it before it is parsed. Refusals are the
//! ledger's ([`OrderError`]): an unknown run is 404, an order the run's
//! standing does not allow (not running, already paused, not paused) 409,
//! and nothing is written.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use haifu_ledger::{Ledger, OrderError, RunOrder};
use serde::Deserialize;
use serde_json::json;

use super::Api;
use super::auth::Caller;
use super::routes::{ApiError, blocking, error, internal, run_id};

/// An order's body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    /// Why, for the audit.
    reason: Option<String>,
}

/// The reason in `body` (empty: none), or a 400 naming what is wrong.
fn reason_of(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed: OrderBody = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("body: {e} (expected {{\"reason\": \"…\"}} or nothing)"),
        )
    })?;
    match parsed.reason {
        Some(r) if !haifu_ledger::printable_reason(&r) => Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "reason: must be at most {} bytes on one line, without control characters",
                haifu_ledger::MAX_REASON
            ),
        )),
        other => Ok(other),
    }
}

/// The answer to a refused order: 404 for an unknown run, 409 for an
/// order the run's standing does not allow.
fn refused(e: OrderError) -> ApiError {
    match e {
        OrderError::NoSuchRun(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        OrderError::NotRunning { .. }
        | OrderError::AlreadyPaused { .. }
        | OrderError::NotPaused(_) => error(StatusCode::CONFLICT, e.to_string()),
        OrderError::Ledger(e) => internal(e),
    }
}

/// Carries out `order` on the run `id` names for `caller`, and answers
/// with the run's new standing.
async fn order(api: Api, order: RunOrder, id: String, caller: Caller, body: Bytes) -> Response {
    let reason = match reason_of(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    blocking(api, move |api| {
        let id = run_id(&id)?;
        let mut l = Ledger::open(&api.ledger).map_err(internal)?;
        let by = caller.by();
        l.order_run(id, order, &by, reason.as_deref())
            .map_err(refused)?;
        let (status, paused) = l
            .run_standing(id)
            .map_err(internal)?
            .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("run {id} does not exist")))?;
        tracing::info!(
            run = id,
            order = order.as_str(),
            by,
            "order given through the API"
        );
        Ok(Json(json!({
            "run": id,
            "order": order.as_str(),
            "by": by,
            "status": status.as_str(),
            "paused": paused,
        }))
        .into_response())
    })
    .await
}

/// `POST /v1/runs/{id}/pause`.
pub(super) async fn pause(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    order(api, RunOrder::Pause, id, caller, body).await
}

/// `POST /v1/runs/{id}/resume`.
pub(super) async fn resume(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    order(api, RunOrder::Resume, id, caller, body).await
}

/// `POST /v1/runs/{id}/abort`.
pub(super) async fn abort(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    order(api, RunOrder::Abort, id, caller, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_body_is_nothing_or_a_reason_on_one_line() {
        assert_eq!(reason_of(b"").unwrap(), None);
        assert_eq!(reason_of(b" \n").unwrap(), None);
        assert_eq!(reason_of(b"{}").unwrap(), None);
        assert_eq!(
            reason_of(br#"{"reason": "bad build"}"#).unwrap().as_deref(),
            Some("bad build")
        );
        let long = format!(
            r#"{{"reason": "{}"}}"#,
            "x".repeat(haifu_ledger::MAX_REASON + 1)
        );
        for (bad, says) in [
            (&br#"{"reason": "two\nlines"}"#[..], "one line"),
            (long.as_bytes(), "at most 1024 bytes"),
            (br#"{"reason": 3}"#, "line 1 column"),
            (br#"{"why": "x"}"#, "unknown field `why`"),
            (b"reason=x", "expected {\"reason\""),
        ] {
            let ApiError(code, msg) = reason_of(bad).unwrap_err();
            assert_eq!(code, StatusCode::BAD_REQUEST, "{msg}");
            assert!(msg.contains(says), "{msg}");
            assert_eq!(msg.lines().count(), 1, "{msg}");
        }
    }

    #[test]
    fn refusals_are_404_for_an_unknown_run_and_409_for_the_run_s_standing() {
        let code = |e| refused(e).0;
        assert_eq!(code(OrderError::NoSuchRun(9)), StatusCode::NOT_FOUND);
        assert_eq!(code(OrderError::NotPaused(9)), StatusCode::CONFLICT);
        assert_eq!(
            code(OrderError::AlreadyPaused {
                run: 9,
                by: "api:ops".into(),
                at: "2026-12-05T00:00:00Z".into(),
            }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            code(OrderError::NotRunning {
                run: 9,
                order: RunOrder::Abort,
                status: haifu_ledger::RunStatus::Failed,
            }),
            StatusCode::CONFLICT
        );
    }
}
