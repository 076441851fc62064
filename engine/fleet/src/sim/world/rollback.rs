//! `haifu rollback` in the simulation: the operator orders a client back
//! (recorded in the real ledger), the master's reader hands the orders
//! over, and a client's disk switches to the version it keeps under the
//! same rules as `haifu_install::InstallRoot::rollback`.

use haifu_install::InstallError;
use haifu_ledger::RollbackState;
use haifu_protocol::ArtifactRef;

use super::World;
use super::client;
use super::master;

impl World {
    /// The operator orders a client back, now and then (fewer while
    /// faults are on, so most seeds also run without one).
    pub(super) fn order_rollback(&mut self) {
        if !self.rng.chance(30) || self.ledger.rollbacks().unwrap().len() >= 3 {
            return;
        }
        let c = self.rng.below(self.clients.len());
        let id = self.clients[c].id.clone();
        // A client the master never heard of is refused by the ledger,
        // nothing recorded (the CLI says so first).
        match self.ledger.order_rollbacks("app", &[id], None, "sim") {
            Ok(_) => self.orders_to_master(),
            Err(haifu_ledger::LedgerError::UnknownClient { .. }) => {}
            Err(e) => panic!("seed {}: ordering a rollback: {e}", self.seed),
        }
    }

    /// The master's reader of the ledger's orders.
    pub(super) fn orders_to_master(&mut self) {
        if self.master.is_none() {
            return;
        }
        let orders = self
            .ledger
            .pending_rollbacks(1024)
            .unwrap()
            .into_iter()
            .map(|o| haifu_protocol::Rollback {
                order: o.id as u64,
                client: o.client,
                artifact: o.artifact.parse().unwrap(),
                to: o.to_version.map(|v| v.parse().unwrap()),
                through_run: o.through_run as u64,
            })
            .collect();
        self.at_master(master::Event::Rollbacks(orders));
    }

    /// Client `c`'s shell carries out an order: its intent on disk, then
    /// the switch if the kept version may be gone back to (refused with
    /// the install root's errors).
    pub(super) fn roll_back(
        &mut self,
        c: usize,
        intent: client::RollbackState,
        to: Option<String>,
    ) -> Result<ArtifactRef, client::Refusal> {
        // Only ever for an order the ledger has and that waits for it.
        let order = self
            .ledger
            .rollback(intent.last_order as i64)
            .unwrap()
            .unwrap_or_else(|| panic!("seed {}: a rollback nobody ordered", self.seed));
        assert_eq!(order.client, self.clients[c].id, "seed {}", self.seed);
        let disk = &mut self.clients[c].disk;
        disk.rollbacks = intent;
        let path = std::path::PathBuf::from("previous");
        let (Some(prev), Some(cur)) = (disk.previous.clone(), disk.installed.clone()) else {
            return Err(InstallError::NoPrevious { path }.into());
        };
        let refused = |reason: &str| InstallError::RollbackRefused {
            path: path.clone(),
            reason: reason.into(),
        };
        if to.is_some_and(|v| v != prev.version.to_string()) {
            return Err(refused("not the version asked for").into());
        }
        if prev.version >= cur.version {
            return Err(refused("a rollback never moves forward").into());
        }
        disk.installed = Some(prev.clone());
        disk.previous = Some(cur);
        // The one way down: the high mark follows it.
        self.clients[c].highest = Some(prev.version.clone());
        self.clients[c].rolled_back = true;
        Ok(prev)
    }

    /// Once settled: every order was reported on, and a done one left its
    /// client on the version it reported or a newer one.
    pub(super) fn check_rollbacks_settled(&self) {
        for o in self.ledger.rollbacks().unwrap() {
            assert_ne!(
                o.state,
                RollbackState::Ordered,
                "seed {}: order {} for {} never reported on (client keeps {:?})",
                self.seed,
                o.id,
                o.client,
                self.clients
                    .iter()
                    .find(|c| c.id == o.client)
                    .map(|c| &c.disk.rollbacks)
            );
            if o.state == RollbackState::Done {
                let c = self.clients.iter().find(|c| c.id == o.client).unwrap();
                let now = c.disk.installed.as_ref().map(|a| a.version.to_string());
                let reported: Option<haifu_core::Version> =
                    o.version.as_deref().map(|v| v.parse().unwrap());
                let now: Option<haifu_core::Version> = now.map(|v| v.parse().unwrap());
                assert!(
                    now >= reported,
                    "seed {}: {} reported {reported:?} but runs {now:?}",
                    self.seed,
                    o.client
                );
            }
        }
    }
}
