//! The faults: links cut, cores killed (each keeps only its disk) and
//! started again.

use super::Link;
use super::World;
use super::client;
use super::master;
use super::relay;

impl World {
    pub(super) fn fault(&mut self) {
        match self.rng.below(7) {
            0 => {
                // Cut a link: both ends learn it.
                let up: Vec<usize> = (0..self.wires.len())
                    .filter(|&i| self.wires[i].up)
                    .collect();
                if !up.is_empty() {
                    let i = up[self.rng.below(up.len())];
                    self.totals.cuts += 1;
                    self.cut(i);
                }
            }
            1 if self.master.is_some() && self.rng.chance(30) => self.kill_master(),
            2 => {
                let r = self.rng.below(self.relays.len());
                self.kill_relay(r);
            }
            3 => {
                let c = self.rng.below(self.clients.len());
                self.kill_client(c);
                if self.rng.chance(25) {
                    self.put_back(c);
                }
            }
            4 => self.partition(),
            _ => self.restart_someone(),
        }
    }

    /// A client's link to its relay is partitioned (it stays up, nothing
    /// gets through), or a partition heals.
    fn partition(&mut self) {
        if let Some(i) = self.wires.iter().position(|w| w.up && w.held) {
            self.wires[i].held = false;
            return;
        }
        let links: Vec<usize> = (0..self.wires.len())
            .filter(|&i| self.wires[i].up && matches!(self.wires[i].link, Link::Relay { .. }))
            .collect();
        if !links.is_empty() {
            let i = links[self.rng.below(links.len())];
            self.wires[i].held = true;
            self.wires[i].holds += 1;
        }
    }

    pub(super) fn restart_someone(&mut self) {
        if self.master.is_none() {
            return self.start_master();
        }
        if let Some(r) = (0..self.relays.len()).find(|&r| self.relays[r].core.is_none()) {
            return self.start_relay(r);
        }
        if let Some(c) = (0..self.clients.len()).find(|&c| self.clients[c].core.is_none()) {
            self.start_client(c);
        }
    }

    pub(super) fn kill_master(&mut self) {
        self.totals.master_kills += 1;
        self.master = None;
        // A write in flight either reached the disk or did not.
        if let Some(batch) = self.write.take()
            && self.rng.chance(50)
        {
            self.ledger.apply_fleet(&batch).unwrap();
            self.dirty = true;
        }
        let wires: Vec<usize> = (0..self.wires.len())
            .filter(|&i| self.wires[i].up && matches!(self.wires[i].link, Link::Master { .. }))
            .collect();
        for i in wires {
            self.cut(i);
        }
    }

    pub(super) fn kill_relay(&mut self, r: usize) {
        if self.relays[r].core.is_none() {
            return;
        }
        self.totals.relay_kills += 1;
        let wires: Vec<usize> = (0..self.wires.len())
            .filter(|&i| {
                self.wires[i].up
                    && match self.wires[i].link {
                        Link::Master { relay, .. } => relay == r,
                        Link::Relay { client, .. } => self.clients[client].relay == r,
                    }
            })
            .collect();
        for i in wires {
            self.cut(i);
        }
        let n = &mut self.relays[r];
        n.core = None;
        n.on_air = None;
    }

    pub(super) fn kill_client(&mut self, c: usize) {
        if self.clients[c].core.is_none() {
            return;
        }
        self.totals.client_kills += 1;
        if let Some(i) = self.clients[c].wire {
            self.cut(i);
        }
        let n = &mut self.clients[c];
        n.core = None;
        n.persisting = None;
        n.ear = None;
        n.life += 1;
    }

    /// While client `c` is down, its machine puts the previous version
    /// back (an A/B slot, a watchdog): only after the run's version was
    /// installed and is still current.
    fn put_back(&mut self, c: usize) {
        let n = &mut self.clients[c];
        if n.core.is_some() || n.disk.installed.as_ref() != Some(&self.target) {
            return;
        }
        let Some(prev) = n.disk.previous.clone() else {
            return;
        };
        n.disk.previous = n.disk.installed.replace(prev.clone());
        n.highest = Some(prev.version);
        n.fell_back += 1;
    }

    /// Cuts wire `i`; each end that is alive learns it.
    pub(super) fn cut(&mut self, i: usize) {
        let w = &mut self.wires[i];
        if !w.up {
            return;
        }
        w.up = false;
        w.upward.clear();
        w.downward.clear();
        match w.link {
            Link::Master { relay, master_conn } => {
                self.relays[relay].wire = None;
                self.at_master(master::Event::Closed { conn: master_conn });
                self.at_relay(relay, relay::Event::MasterDown);
            }
            Link::Relay { client, relay_conn } => {
                self.clients[client].wire = None;
                let r = self.clients[client].relay;
                self.at_relay(r, relay::Event::ClientDown { conn: relay_conn });
                self.at_client(client, client::Event::RelayDown);
            }
        }
    }
}
