//! What a run cost on the wire: the bytes each relay multicast per round,
//! each relay's fetch of the artifact from the master, and each straggler's
//! delta or full copy. Recorded by the master as the traffic happens, summed
//! by [`Ledger::traffic`] for the audit.

use rusqlite::params;
use serde::Serialize;

use crate::{Ledger, LedgerError};

/// The kind of a traffic record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficKind {
    /// One relay's round, sent once to its multicast group.
    Multicast,
    /// A relay's fetch of the artifact from the master (unicast).
    Fetch,
    /// A delta sent to a straggler (unicast), made by zstd patch-from
    /// (stored as "delta", as before deltas had methods).
    Delta,
    /// A delta sent to a straggler (unicast), made by the bsdiff method.
    DeltaBsdiff,
    /// The compressed full artifact sent to a straggler (unicast).
    Full,
}

impl TrafficKind {
    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Multicast => "multicast",
            Self::Fetch => "fetch",
            Self::Delta => "delta",
            Self::DeltaBsdiff => "delta-bsdiff",
            Self::Full => "full",
        }
    }
}

/// One transfer, as the master saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// The run it served.
    pub run: i64,
    /// The relay or client at the other end.
    pub peer: String,
    /// What it was.
    pub kind: TrafficKind,
    /// The round, for multicast.
    pub round: Option<u32>,
    /// Bytes of payload sent.
    pub bytes: u64,
}

/// A run's traffic, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrafficTotals {
    /// Bytes multicast in each round, all relays together: index 0 is
    /// round 1.
    pub multicast_by_round: Vec<u64>,
    /// Bytes multicast, all rounds and relays.
    pub multicast_bytes: u64,
    /// Bytes the relays fetched from the master.
    pub fetch_bytes: u64,
    /// Bytes of deltas sent to stragglers.
    pub delta_bytes: u64,
    /// Deltas sent (all methods).
    pub deltas: u64,
    /// Of those, the deltas made by the bsdiff method (the others are zstd
    /// patch-from).
    pub bsdiff_deltas: u64,
    /// Their bytes (part of `delta_bytes`).
    pub bsdiff_delta_bytes: u64,
    /// Bytes of full (compressed) artifacts sent to stragglers.
    pub full_bytes: u64,
    /// Full artifacts sent.
    pub fulls: u64,
}

impl TrafficTotals {
    /// Every unicast byte: fetches, deltas and full copies.
    pub fn unicast_bytes(&self) -> u64 {
        self.fetch_bytes
            .saturating_add(self.delta_bytes)
            .saturating_add(self.full_bytes)
    }
}

/// Inserts one record if its run exists (a peer's bad run id must not fail
/// the batch it rides in); returns whether it was recorded.
pub(crate) fn insert(tx: &rusqlite::Connection, at: &str, t: &Traffic) -> rusqlite::Result<bool> {
    let bytes = i64::try_from(t.bytes).unwrap_or(i64::MAX);
    let n = tx
        .prepare_cached(
            "INSERT INTO run_traffic (run_id, peer, kind, round, bytes, at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
        )?
        .execute(params![t.run, t.peer, t.kind.as_str(), t.round, bytes, at])?;
    Ok(n == 1)
}

impl Ledger {
    /// Records one transfer now; `false` when its run does not exist.
    pub fn record_traffic(&mut self, t: &Traffic) -> Result<bool, LedgerError> {
        insert(&self.conn, &crate::now_text(), t).map_err(LedgerError::sqlite(&self.path))
    }

    /// The run's traffic, summed (all zeros for a run without any).
    pub fn traffic(&self, run_id: i64) -> Result<TrafficTotals, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                // Summed here with saturation, not by SQL's sum(), which
                // fails the whole query on overflow: stored byte counts came
                // from peers once and must not break the audit.
                "SELECT kind, coalesce(round, 0), bytes FROM run_traffic WHERE run_id = ?1",
            )
            .map_err(&wrap)?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(&wrap)?;
        let mut t = TrafficTotals::default();
        for row in rows {
            let (kind, round, bytes) = row.map_err(&wrap)?;
            let bytes = u64::try_from(bytes).unwrap_or(0);
            match kind.as_str() {
                "multicast" => {
                    // No round recorded counts as round 1; a number no
                    // round can have counts in the total only.
                    let round = if round == 0 {
                        Ok(1)
                    } else {
                        u32::try_from(round)
                    };
                    if let Some(i) = round.ok().and_then(haifu_core::round_index) {
                        if t.multicast_by_round.len() <= i {
                            t.multicast_by_round.resize(i + 1, 0);
                        }
                        t.multicast_by_round[i] = t.multicast_by_round[i].saturating_add(bytes);
                    }
                    t.multicast_bytes = t.multicast_bytes.saturating_add(bytes);
                }
                "fetch" => t.fetch_bytes = t.fetch_bytes.saturating_add(bytes),
                "delta" => {
                    t.delta_bytes = t.delta_bytes.saturating_add(bytes);
                    t.deltas += 1;
                }
                "delta-bsdiff" => {
                    t.delta_bytes = t.delta_bytes.saturating_add(bytes);
                    t.deltas += 1;
                    t.bsdiff_delta_bytes = t.bsdiff_delta_bytes.saturating_add(bytes);
                    t.bsdiff_deltas += 1;
                }
                "full" => {
                    t.full_bytes = t.full_bytes.saturating_add(bytes);
                    t.fulls += 1;
                }
                _ => {}
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(ledger: &mut Ledger) -> i64 {
        ledger
            .conn
            .execute(
                "INSERT INTO runs (workflow, name, artifact, version, fleet, state, status, created_at, updated_at)
                 VALUES ('w', 'n', 'app', '1.0.0', 'live', '{}', 'running', 'now', 'now')",
                [],
            )
            .unwrap();
        ledger.conn.last_insert_rowid()
    }

    fn t(run: i64, peer: &str, kind: TrafficKind, round: Option<u32>, bytes: u64) -> Traffic {
        Traffic {
            run,
            peer: peer.into(),
            kind,
            round,
            bytes,
        }
    }

    #[test]
    fn sums_per_kind_and_round_and_skips_unknown_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        let r = run(&mut l);
        assert_eq!(l.traffic(r).unwrap(), TrafficTotals::default());
        for rec in [
            t(r, "east", TrafficKind::Multicast, Some(1), 1000),
            t(r, "west", TrafficKind::Multicast, Some(1), 900),
            t(r, "east", TrafficKind::Multicast, Some(3), 50),
            t(r, "east", TrafficKind::Fetch, None, 700),
            t(r, "c1", TrafficKind::Delta, None, 10),
            t(r, "c2", TrafficKind::Delta, None, 12),
            t(r, "c4", TrafficKind::DeltaBsdiff, None, 5),
            t(r, "c3", TrafficKind::Full, None, 400),
        ] {
            assert!(l.record_traffic(&rec).unwrap());
        }
        assert!(
            !l.record_traffic(&t(r + 99, "x", TrafficKind::Fetch, None, 5))
                .unwrap(),
            "a run that does not exist is not recorded"
        );
        let got = l.traffic(r).unwrap();
        assert_eq!(
            got,
            TrafficTotals {
                multicast_by_round: vec![1900, 0, 50],
                multicast_bytes: 1950,
                fetch_bytes: 700,
                delta_bytes: 27,
                deltas: 3,
                bsdiff_deltas: 1,
                bsdiff_delta_bytes: 5,
                full_bytes: 400,
                fulls: 1,
            }
        );
        assert_eq!(got.unicast_bytes(), 1127);
    }

    /// Rows a master that trusted a peer could have stored: a round
    /// number no run can have and byte counts that overflow a sum. The
    /// audit reads them without allocating by them or failing.
    #[test]
    fn hostile_stored_rows_read_fine() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        let r = run(&mut l);
        for rec in [
            t(r, "east", TrafficKind::Multicast, Some(u32::MAX), 10),
            t(r, "east", TrafficKind::Multicast, Some(2), u64::MAX),
            t(r, "east", TrafficKind::Multicast, Some(2), u64::MAX),
            t(r, "c1", TrafficKind::Delta, None, u64::MAX),
            t(r, "c1", TrafficKind::Delta, None, u64::MAX),
            t(r, "c2", TrafficKind::Full, None, u64::MAX),
        ] {
            assert!(l.record_traffic(&rec).unwrap());
        }
        // Written straight into the table too, as an old master would have.
        l.conn
            .execute(
                "INSERT INTO run_traffic (run_id, peer, kind, round, bytes, at)
                 VALUES (?1, 'east', 'multicast', 9223372036854775807, 9223372036854775807, 'now')",
                [r],
            )
            .unwrap();
        let got = l.traffic(r).unwrap();
        assert_eq!(got.multicast_by_round.len(), 2, "{got:?}");
        let max = i64::MAX as u64;
        assert_eq!(got.multicast_by_round, vec![0, 2 * max]);
        assert_eq!(got.multicast_bytes, u64::MAX, "saturated, not wrapped");
        assert_eq!(got.deltas, 2);
        assert_eq!(got.unicast_bytes(), u64::MAX);
    }
}
