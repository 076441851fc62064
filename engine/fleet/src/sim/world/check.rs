//! The invariants, checked after every step and once everything settled.

use super::RUN;
use super::World;

impl World {
    /// After every step: no client's version decreased but by a rollback
    /// order (the rollback resets its high mark); the ledger counts only
    /// clients that installed, each once, in a round that was started.
    pub(super) fn check(&mut self) {
        self.check_stages();
        for c in &mut self.clients {
            let now = c.disk.installed.as_ref().map(|a| a.version.clone());
            assert!(
                now >= c.highest,
                "seed {}: {} went back from {:?} to {now:?}",
                self.seed,
                c.id,
                c.highest
            );
            c.highest = now;
        }
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let rows = self.ledger.run_clients(RUN as i64).unwrap();
        for row in &rows {
            let c = self.clients.iter().find(|c| c.id == row.client).unwrap();
            assert!(
                !(row.state.is_complete() && row.late.is_some()),
                "seed {}: {} counted in the run and late",
                self.seed,
                row.client
            );
            if row.late.is_some() {
                assert!(
                    self.finished.is_some(),
                    "seed {}: a late record for {} while the run runs",
                    self.seed,
                    row.client
                );
                assert!(
                    c.got_target,
                    "seed {}: {} recorded late but never installed",
                    self.seed, row.client
                );
            }
            if row.state.is_complete() {
                assert!(
                    c.got_target,
                    "seed {}: {} counted but never installed",
                    self.seed, row.client
                );
            }
            if let Some(round) = row.round {
                assert!(
                    round >= 1 && round as usize <= self.started.len(),
                    "{} counted in round {round}, never started",
                    row.client
                );
            }
        }
        let audit = self.ledger.audit(RUN as i64).unwrap().unwrap();
        let mut seen: Vec<&String> = audit
            .relays
            .iter()
            .flat_map(|r| r.delivered_by_round.iter().flatten())
            .collect();
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(n, seen.len(), "a client counted twice: {audit:?}");
        // A finished run's record never changes; only late records are
        // added beside it.
        if let Some(done) = &self.finished {
            assert_eq!(
                &self.record(),
                done,
                "seed {}: the finished run's record changed",
                self.seed
            );
        }
    }

    /// The run's record as its audit shows it, without the late records
    /// and the fleet's live view of each straggler.
    pub(super) fn record(&self) -> serde_json::Value {
        let audit = self.ledger.audit(RUN as i64).unwrap().unwrap();
        let mut v = serde_json::to_value(&audit).unwrap();
        for r in v["relays"].as_array_mut().unwrap() {
            let r = r.as_object_mut().unwrap();
            r.remove("late");
            r.remove("stragglers");
        }
        // Rollbacks since are beside the record, as late records are.
        v.as_object_mut().unwrap().remove("rolled_back");
        // When the row was last written is not part of the record.
        v["run"].as_object_mut().unwrap().remove("updated_at");
        v
    }

    /// Whether nothing is left to do: no write, no message in flight, no
    /// completion being written or waiting for its ack, every relay and
    /// client connected (a relay replays its clients' reports when it
    /// reconnects).
    pub(super) fn settled(&self) -> bool {
        self.write.is_none()
            && self.master.is_some()
            && self.relays.iter().all(|r| r.wire.is_some())
            && self
                .wires
                .iter()
                .all(|w| !w.up || (w.upward.is_empty() && w.downward.is_empty()))
            && self.relays.iter().all(|r| r.on_air.is_none())
            && self.clients.iter().all(|c| {
                c.persisting.is_none()
                    && c.disk.pending.is_none()
                    && c.disk.rollbacks.reports.is_empty()
                    && c.wire.is_some()
            })
            && self.ledger.pending_rollbacks(1).unwrap().is_empty()
    }

    /// Once everything settled: everyone who installed is counted and has
    /// nothing left to send.
    pub(super) fn check_settled(&self) {
        let rows = self.ledger.run_clients(RUN as i64).unwrap();
        for c in &self.clients {
            let row = rows.iter().find(|r| r.client == c.id).unwrap();
            // A client whose completion was lost (killed before it reached
            // its disk) is counted by its version report; one rolled back
            // since reports the older version, and may stay uncounted.
            if c.got_target {
                assert!(
                    row.state.is_complete()
                        || row.late.is_some()
                        || c.rolled_back
                        || c.fell_back > 0,
                    "seed {}: {} installed but the ledger says {:?}",
                    self.seed,
                    c.id,
                    row.state
                );
                assert!(
                    c.disk.pending.is_none(),
                    "{} still has its completion",
                    c.id
                );
            } else {
                assert!(!row.state.is_complete() && row.late.is_none());
            }
        }
        self.check_rollbacks_settled();
        // Each version put back was reported, once, when it started again.
        for c in &self.clients {
            assert_eq!(
                c.put_back_reports.len(),
                c.fell_back as usize,
                "seed {}: {} was put back {} times and reported {:?}",
                self.seed,
                c.id,
                c.fell_back,
                c.put_back_reports
            );
        }
    }
}
