//! Staged runs in the simulation: in a fifth of the seeds the run is
//! staged and its driver admits only part of the fleet (relay r0's
//! clients, or every other client behind a single relay), again after each
//! master restart as the real driver does. A client it never admitted must
//! never install the run's version, whatever the faults.

use super::ClientNode;
use super::RUN;
use super::World;
use super::master;
use super::rng::Rng;

/// The clients seed `seed`'s staged run admits, or `None` for an unstaged
/// run. Drawn from its own stream so the other draws of a seed stay as
/// they were.
pub(super) fn admitted(seed: u64, clients: &[ClientNode], relays: usize) -> Option<Vec<String>> {
    let mut rng = Rng(seed ^ 0x57a6_ed00_57a6_ed00);
    if !rng.chance(20) {
        return None;
    }
    Some(
        clients
            .iter()
            .enumerate()
            .filter(|(i, c)| if relays > 1 { c.relay == 0 } else { i % 2 == 0 })
            .map(|(_, c)| c.id.clone())
            .collect(),
    )
}

impl World {
    /// The driver admits the stage reached (before its first round, and on
    /// resuming after a restart).
    pub(super) fn admit(&mut self) {
        if let Some(clients) = self.admitted.clone() {
            self.at_master(master::Event::Admit { run: RUN, clients });
        }
    }

    /// No client outside the admitted ones installed the run's version.
    pub(super) fn check_stages(&self) {
        let Some(admitted) = &self.admitted else {
            return;
        };
        for c in &self.clients {
            assert!(
                admitted.contains(&c.id) || !c.got_target,
                "seed {}: {} installed in a staged run that never admitted it",
                self.seed,
                c.id
            );
        }
    }

    /// Clients a staged run kept out, for the totals.
    pub(super) fn withheld(&self) -> u64 {
        self.admitted.as_ref().map_or(0, |a| {
            self.clients.iter().filter(|c| !a.contains(&c.id)).count() as u64
        })
    }
}
