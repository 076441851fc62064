//! Operators' orders on a running run: pause, resume and abort
//! (`haifu run pause|resume|abort`, the API's `POST /runs/{id}/…`).
//!
//! Each order is checked and written in one transaction with its event
//! (`run-paused`, `run-resumed`, `run-aborted`), so two operators racing
//! cannot both pause, and a refused order writes nothing. A pause is three
//! columns of `runs` (who, when, why) while the status stays `running`:
//! completions, late records and deltas go on, and the driver only starts
//! nothing new. An abort ends the run as `failed` with the reason
//! "aborted by WHO: WHY" in its `run-failed` event, so every reader that
//! already knows a failed run (status, the API, `haifu run --live`) shows
//! it without a new status word.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::runs::insert_event;
use crate::{Ledger, LedgerError, RunStatus, now_text};

/// An operator's pause of a run, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// When it was paused.
    pub at: String,
    /// Who paused it.
    pub by: String,
    /// Why, if they said.
    pub reason: Option<String>,
}

/// An operator's order on a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOrder {
    /// Start nothing new until resumed.
    Pause,
    /// Go on where it was.
    Resume,
    /// End it now.
    Abort,
}

impl RunOrder {
    /// The order's verb, as typed and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Abort => "abort",
        }
    }

    fn event(self) -> &'static str {
        match self {
            Self::Pause => "run-paused",
            Self::Resume => "run-resumed",
            Self::Abort => "run-aborted",
        }
    }
}

/// An order given, as the audit shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRecord {
    /// When.
    pub at: String,
    /// Which.
    pub order: RunOrder,
    /// Who gave it.
    pub by: String,
    /// Why, if they said.
    pub reason: Option<String>,
}

/// The most orders [`Ledger::orders`] returns (the oldest first).
pub const MAX_ORDERS: usize = 1000;

/// Why an order was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// No such run.
    #[error("run {0} does not exist")]
    NoSuchRun(i64),
    /// The run has ended.
    #[error("cannot {} run {run}: it is {}, not running", order.as_str(), status.as_str())]
    NotRunning {
        /// The run.
        run: i64,
        /// The order refused.
        order: RunOrder,
        /// Its status.
        status: RunStatus,
    },
    /// Pausing a paused run.
    #[error("run {run} is already paused (by {by} at {at})")]
    AlreadyPaused {
        /// The run.
        run: i64,
        /// Who paused it.
        by: String,
        /// When.
        at: String,
    },
    /// Resuming a run that is not paused.
    #[error("run {0} is not paused; nothing to resume")]
    NotPaused(i64),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The bounds an operator's words are held to before they are stored.
pub const MAX_WHO: usize = 128;
/// See [`MAX_WHO`].
pub const MAX_REASON: usize = 1024;

/// Whether an operator's reason may be stored as given: at most
/// [`MAX_REASON`] bytes without control characters, since every reader
/// shows it on one line. The one rule the CLI's `--reason` and the API's
/// `{"reason": …}` are both held to.
pub fn printable_reason(reason: &str) -> bool {
    reason.len() <= MAX_REASON && !reason.chars().any(char::is_control)
}

impl Ledger {
    /// Carries out `order` on run `id` for `by`, with `reason`; refused
    /// (nothing written) for an unknown run, a run not running, a pause of
    /// a paused run or a resume of one not paused. `by` and `reason` are
    /// cut to [`MAX_WHO`] and [`MAX_REASON`] bytes.
    pub fn order_run(
        &mut self,
        id: i64,
        order: RunOrder,
        by: &str,
        reason: Option<&str>,
    ) -> Result<(), OrderError> {
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        order_in(&tx, &wrap, id, order, by, reason)?;
        tx.commit().map_err(&wrap)?;
        tracing::info!(
            run = id,
            order = order.as_str(),
            by,
            ?reason,
            "operator's order recorded"
        );
        Ok(())
    }

    /// Run `id`'s status and pause (`None` for an unknown run): what a
    /// driver reads between its steps, without the run's counts.
    pub fn run_standing(&self, id: i64) -> Result<Option<(RunStatus, Option<Pause>)>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        type Row = (RunStatus, Option<String>, Option<String>, Option<String>);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT status, paused_at, paused_by, paused_reason FROM runs WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(&wrap)?;
        Ok(row.map(|(status, at, by, reason)| {
            let pause = at.map(|at| Pause {
                at,
                by: by.unwrap_or_default(),
                reason,
            });
            (status, pause)
        }))
    }
}

/// Checks and writes `order` on run `id` with its events in `tx` (the
/// caller commits): [`Ledger::order_run`]'s work, shared with an abort
/// that writes rollback orders in the same transaction.
pub(crate) fn order_in(
    tx: &rusqlite::Connection,
    wrap: &impl Fn(rusqlite::Error) -> LedgerError,
    id: i64,
    order: RunOrder,
    by: &str,
    reason: Option<&str>,
) -> Result<(), OrderError> {
    let by = cut(by, MAX_WHO);
    let reason = reason.map(|r| cut(r, MAX_REASON));
    let row: Option<(RunStatus, Option<String>, Option<String>)> = tx
        .query_row(
            "SELECT status, paused_at, paused_by FROM runs WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(wrap)?;
    let (status, paused_at, paused_by) = row.ok_or(OrderError::NoSuchRun(id))?;
    if status != RunStatus::Running {
        return Err(OrderError::NotRunning {
            run: id,
            order,
            status,
        });
    }
    let now = now_text();
    match (order, paused_at) {
        (RunOrder::Pause, Some(at)) => {
            return Err(OrderError::AlreadyPaused {
                run: id,
                by: paused_by.unwrap_or_default(),
                at,
            });
        }
        (RunOrder::Resume, None) => return Err(OrderError::NotPaused(id)),
        (RunOrder::Pause, None) => {
            tx.execute(
                "UPDATE runs SET paused_at = ?2, paused_by = ?3, paused_reason = ?4 WHERE id = ?1",
                params![id, now, by, reason],
            )
            .map_err(wrap)?;
        }
        (RunOrder::Resume, Some(_)) => {
            tx.execute(
                    "UPDATE runs SET paused_at = NULL, paused_by = NULL, paused_reason = NULL WHERE id = ?1",
                    params![id],
                )
                .map_err(wrap)?;
        }
        (RunOrder::Abort, _) => {
            tx.execute(
                "UPDATE runs SET status = ?2, next_wake = NULL, updated_at = ?3,
                     paused_at = NULL, paused_by = NULL, paused_reason = NULL WHERE id = ?1",
                params![id, RunStatus::Failed, now],
            )
            .map_err(wrap)?;
        }
    }
    let subject = format!("run:{id}");
    let detail = serde_json::json!({ "by": by, "reason": reason }).to_string();
    insert_event(tx, &now, order.event(), &subject, &detail).map_err(wrap)?;
    if order == RunOrder::Abort {
        let why = match reason {
            Some(r) => format!("aborted by {by}: {r}"),
            None => format!("aborted by {by}"),
        };
        let detail = serde_json::json!({ "reason": why }).to_string();
        insert_event(tx, &now, "run-failed", &subject, &detail).map_err(wrap)?;
    }
    Ok(())
}

impl Ledger {
    /// The orders given on run `id`, oldest first, at most [`MAX_ORDERS`].
    pub fn orders(&self, id: i64) -> Result<Vec<OrderRecord>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at, kind, detail FROM events
                 WHERE subject = ?1 AND kind IN ('run-paused', 'run-resumed', 'run-aborted')
                 ORDER BY id LIMIT ?2",
            )
            .map_err(&wrap)?;
        let rows: Vec<(String, String, String)> = stmt
            .query_map(params![format!("run:{id}"), MAX_ORDERS as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .and_then(|r| r.collect())
            .map_err(&wrap)?;
        rows.into_iter()
            .map(|(at, kind, detail)| {
                let order = [RunOrder::Pause, RunOrder::Resume, RunOrder::Abort]
                    .into_iter()
                    .find(|o| o.event() == kind)
                    .ok_or_else(|| LedgerError::Damaged {
                        path: self.path.clone(),
                        detail: format!("run {id}: unknown order event {kind:?}"),
                    })?;
                let v: serde_json::Value =
                    serde_json::from_str(&detail).map_err(|e| LedgerError::Damaged {
                        path: self.path.clone(),
                        detail: format!("run {id}: {kind} event: {e}"),
                    })?;
                let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
                Ok(OrderRecord {
                    at,
                    order,
                    by: text("by").unwrap_or_default(),
                    reason: text("reason"),
                })
            })
            .collect()
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
