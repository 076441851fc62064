//! The stages of a phased rollout as the ledger keeps them: each client's
//! stage within its run, placed by the run driver, and what the ledger
//! counts per stage for the stage's gate. Which client belongs to which
//! stage is decided outside (haifu-runtime's membership); the ledger only
//! stores the placement and counts from it.

use std::collections::BTreeMap;

use rusqlite::{TransactionBehavior, params};
use serde::Serialize;

use crate::failures::stage_of;
use crate::{ClientState, FailureKind, Ledger, LedgerError};

/// What the ledger counts for one stage of a run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StageTally {
    /// Clients placed in the stage.
    pub targeted: u64,
    /// Those with the version: delivered by a round or a delta, or
    /// already current.
    pub delivered: u64,
    /// Failed clients, by [`FailureKind::as_str`].
    pub failures: BTreeMap<String, u64>,
    /// Those still pending.
    pub pending: u64,
}

impl StageTally {
    /// Failed clients, all kinds.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// The most stages a run's tallies are counted for: more than any
/// workflow may declare (haifu-spec bounds them far lower), so a stored
/// index beyond it is damage and is not counted, never a vector sized by
/// it.
pub const MAX_STAGES: u32 = 64;

impl Ledger {
    /// Places clients of run `run` in stages (from 0): `(client, stage)`
    /// for clients the run targets; others are ignored. In one
    /// transaction. A stage at or past [`MAX_STAGES`] is refused.
    pub fn set_client_stages(
        &mut self,
        run: i64,
        placed: &[(String, u32)],
    ) -> Result<(), LedgerError> {
        check_stages(placed)?;
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        place(&tx, run, placed).map_err(&wrap)?;
        tx.commit().map_err(&wrap)?;
        Ok(())
    }

    /// Per stage of run `run` (index = stage, up to the highest placed),
    /// what the ledger counts now. Clients not placed are not counted.
    pub fn stage_tallies(&self, run: i64) -> Result<Vec<StageTally>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT stage, state, failure, COUNT(*) FROM run_clients
                 WHERE run_id = ?1 AND stage IS NOT NULL
                 GROUP BY stage, state, failure",
            )
            .map_err(&wrap)?;
        let rows: Vec<(Option<i64>, ClientState, Option<FailureKind>, i64)> = stmt
            .query_map(params![run], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .and_then(|r| r.collect())
            .map_err(&wrap)?;
        let mut tallies: Vec<StageTally> = Vec::new();
        for (stage, state, failure, n) in rows {
            let Some(i) = stage_of(stage).filter(|s| *s < MAX_STAGES) else {
                continue;
            };
            let i = i as usize;
            if tallies.len() <= i {
                tallies.resize(i + 1, StageTally::default());
            }
            let n = u64::try_from(n).unwrap_or(0);
            let t = &mut tallies[i];
            t.targeted += n;
            match state {
                s if s.is_complete() => t.delivered += n,
                ClientState::Pending => t.pending += n,
                ClientState::Failed => {
                    let kind = failure.map_or("unknown", FailureKind::as_str);
                    *t.failures.entry(kind.to_owned()).or_default() += n;
                }
                _ => {}
            }
        }
        Ok(tallies)
    }

    /// The clients of run `run` in `stage` (with `None`: not placed) and
    /// in `state`, by name.
    pub fn stage_clients_in(
        &self,
        run: i64,
        stage: Option<u32>,
        state: ClientState,
    ) -> Result<Vec<String>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT client FROM run_clients
                 WHERE run_id = ?1 AND stage IS ?2 AND state = ?3 ORDER BY client",
            )
            .map_err(&wrap)?;
        stmt.query_map(params![run, stage, state], |r| r.get(0))
            .and_then(|r| r.collect())
            .map_err(&wrap)
    }
}

/// Refuses a placement past [`MAX_STAGES`] before anything is written.
pub(crate) fn check_stages(placed: &[(String, u32)]) -> Result<(), LedgerError> {
    match placed.iter().find(|(_, s)| *s >= MAX_STAGES) {
        Some((client, stage)) => Err(LedgerError::StageOutOfRange {
            client: client.clone(),
            stage: *stage,
        }),
        None => Ok(()),
    }
}

/// Writes a placement inside the caller's transaction.
pub(crate) fn place(
    tx: &rusqlite::Transaction<'_>,
    run: i64,
    placed: &[(String, u32)],
) -> rusqlite::Result<()> {
    let mut set =
        tx.prepare_cached("UPDATE run_clients SET stage = ?3 WHERE run_id = ?1 AND client = ?2")?;
    for (client, stage) in placed {
        set.execute(params![run, client, stage])?;
    }
    Ok(())
}
