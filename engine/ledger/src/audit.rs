//! The audit of a run: per relay, who completed in which round, by delta,
//! who already had the version, who never did and who was cut off, with
//! what was recorded after the run had finished kept beside that final
//! record. Read from `run_clients`; never sized by a stored number.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fleet::ClientRow;
use crate::run_clients::{ClientState, LateRecord};
use crate::runs::RunRow;
use crate::{Ledger, LedgerError};

/// The audit of one relay's clients.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayAudit {
    /// Relay name.
    pub relay: String,
    /// Clients delivered in each round: index 0 is round 1 (never longer
    /// than [`haifu_core::MAX_ROUNDS`]).
    pub delivered_by_round: Vec<Vec<String>>,
    /// Clients delivered by broadcast under a round number no run can have
    /// (written by a master that took a peer's word for it); empty on any
    /// ledger this version wrote.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delivered_unknown_round: Vec<String>,
    /// Clients delivered by delta.
    pub delta: Vec<String>,
    /// Clients that already had the version when they reported in.
    pub current: Vec<String>,
    /// Clients that never completed and were not cut off.
    pub undelivered: Vec<String>,
    /// Clients still pending (the audit has not run yet).
    pub pending: Vec<String>,
    /// Clients cut off, with the reason.
    pub disconnected: Vec<(String, String)>,
    /// Clients whose install failed after it was in place (post-install,
    /// health, or a rollback of their own), with what and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<crate::FailureRow>,
    /// Each undelivered or pending client with what the fleet table knows
    /// of it: last contact and installed version.
    pub stragglers: Vec<ClientRow>,
    /// What was recorded after the run had finished, marked as such; the
    /// lists above are the run's final record and do not change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub late: Vec<LateRecord>,
}

/// The audit of a run, per relay.
#[derive(Debug, Clone, Serialize)]
pub struct RunAudit {
    /// The run.
    pub run: RunRow,
    /// One entry per relay, by name.
    pub relays: Vec<RelayAudit>,
    /// The bytes the run cost on the wire.
    pub traffic: crate::TrafficTotals,
    /// Clients of the run an operator rolled back from the run's version
    /// afterwards (`haifu rollback`): the lists above say what the run
    /// delivered, these what was undone since.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rolled_back: Vec<crate::RollbackRow>,
}

impl Ledger {
    /// The audit of a run: per relay, who completed in which round, by
    /// delta, who never did, and who was cut off.
    pub fn audit(&self, run_id: i64) -> Result<Option<RunAudit>, LedgerError> {
        let Some(run) = self.run(run_id)? else {
            return Ok(None);
        };
        let mut relays: BTreeMap<String, RelayAudit> = BTreeMap::new();
        for c in self.run_clients(run_id)? {
            let a = relays.entry(c.relay.clone()).or_insert_with(|| RelayAudit {
                relay: c.relay.clone(),
                ..RelayAudit::default()
            });
            if let Some(late) = c.late.clone() {
                a.late.push(late);
            }
            match c.state {
                ClientState::Delivered => {
                    // Never sized by a stored number: the index is bounded by
                    // MAX_ROUNDS, anything else (a missing round included)
                    // is filed as unknown, never under a round it may not be.
                    match c.round.and_then(haifu_core::round_index) {
                        Some(i) => {
                            if a.delivered_by_round.len() <= i {
                                a.delivered_by_round.resize(i + 1, Vec::new());
                            }
                            a.delivered_by_round[i].push(c.client);
                        }
                        None => a.delivered_unknown_round.push(c.client),
                    }
                }
                ClientState::Delta => a.delta.push(c.client),
                ClientState::Current => a.current.push(c.client),
                ClientState::Undelivered | ClientState::Pending => {
                    let row = self.client(&c.client)?.unwrap_or_else(|| ClientRow {
                        id: c.client.clone(),
                        relay: Some(c.relay.clone()),
                        artifact: None,
                        version: None,
                        last_contact: None,
                        denied_reason: None,
                    });
                    a.stragglers.push(row);
                    if c.state == ClientState::Pending {
                        a.pending.push(c.client);
                    } else {
                        a.undelivered.push(c.client);
                    }
                }
                ClientState::Disconnected => a
                    .disconnected
                    .push((c.client, c.reason.unwrap_or_default())),
                ClientState::Failed => {}
            }
        }
        for f in self.run_failures(run_id)? {
            relays
                .entry(f.relay.clone())
                .or_insert_with(|| RelayAudit {
                    relay: f.relay.clone(),
                    ..RelayAudit::default()
                })
                .failed
                .push(f);
        }
        Ok(Some(RunAudit {
            traffic: self.traffic(run_id)?,
            rolled_back: self.run_rollbacks(run_id)?,
            run,
            relays: relays.into_values().collect(),
        }))
    }
}
