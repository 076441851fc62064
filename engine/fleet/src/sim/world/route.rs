//! Where each core's effects go: onto the links, into the ledger's write,
//! onto a client's disk, on air.

use haifu_protocol::Message;

use super::Link;
use super::World;
use super::client;
use super::master;
use super::relay;

impl World {
    pub(super) fn at_master(&mut self, event: master::Event) {
        let Some(core) = self.master.as_mut() else {
            return;
        };
        let effects = core.handle(self.now, event, &self.ledger);
        for e in effects {
            match e {
                master::Effect::Send { conn, msg } => {
                    if let Message::CompletionAck(a) = &msg {
                        // Nothing is acknowledged before it is durable (in
                        // the run's record, or beside it as a late record;
                        // or superseded by the client's failure, recorded
                        // first, of the version it completed).
                        let row = self
                            .ledger
                            .run_clients(a.run as i64)
                            .unwrap()
                            .into_iter()
                            .find(|c| c.client == a.client);
                        assert!(
                            row.is_some_and(|r| r.state.is_complete()
                                || r.late.is_some()
                                || r.state == haifu_ledger::ClientState::Failed),
                            "ack for {} of run {} before the ledger has it",
                            a.client,
                            a.run
                        );
                    }
                    if let Message::RollbackAck(a) = &msg {
                        let state = self.ledger.rollback(a.order as i64).unwrap().map(|o| o.state);
                        assert!(
                            state.is_some_and(|s| s != haifu_ledger::RollbackState::Ordered),
                            "seed {}: rollback ack for order {} before the ledger has it",
                            self.seed,
                            a.order
                        );
                    }
                    let wire = self.wires.iter_mut().find(|w| {
                        w.up && matches!(w.link, Link::Master { master_conn, .. } if master_conn == conn)
                    });
                    if let Some(w) = wire {
                        w.downward.push_back(msg);
                    }
                }
                master::Effect::Close { conn } => {
                    if let Some(i) = self.wires.iter().position(|w| {
                        w.up && matches!(w.link, Link::Master { master_conn, .. } if master_conn == conn)
                    }) {
                        self.cut(i);
                    }
                }
                master::Effect::Write(batch) => {
                    assert!(self.write.is_none(), "two writes in flight");
                    self.write = Some(batch);
                }
                master::Effect::Fetch { .. } => {}
                master::Effect::Delta { .. } => self.at_master(master::Event::DeltaDone),
            }
        }
    }

    pub(super) fn at_relay(&mut self, r: usize, event: relay::Event) {
        let Some(core) = self.relays[r].core.as_mut() else {
            return;
        };
        let effects = core.handle(event);
        for e in effects {
            match e {
                relay::Effect::ToMaster(msg) => {
                    if let Some(i) = self.relays[r].wire {
                        self.wires[i].upward.push_back(msg);
                    }
                }
                relay::Effect::ToClient { conn, msg } => {
                    let wire = self.wires.iter_mut().find(|w| {
                        w.up && matches!(w.link, Link::Relay { relay_conn, .. } if relay_conn == conn)
                    });
                    if let Some(w) = wire {
                        w.downward.push_back(msg);
                    }
                }
                relay::Effect::Broadcast {
                    round,
                    session,
                    budget,
                } => self.go_on_air(r, round, &session, budget),
                relay::Effect::Feedback { client, feedback } => {
                    self.air_report(r, client, feedback);
                }
                relay::Effect::StopAir { run, round } => self.stop_air(r, run, round),
                relay::Effect::Deny(_)
                | relay::Effect::FetchStart { .. }
                | relay::Effect::FetchWrite { .. }
                | relay::Effect::FetchFinish { .. }
                | relay::Effect::FetchDrop { .. } => {}
            }
        }
    }

    pub(super) fn at_client(&mut self, c: usize, event: client::Event) {
        let now = self.now;
        let Some(core) = self.clients[c].core.as_mut() else {
            return;
        };
        let effects = core.handle(now, event);
        let mut then = Vec::new();
        for e in effects {
            match e {
                client::Effect::RollBack { intent, to, .. } => {
                    then.push(client::Event::RolledBack(self.roll_back(c, intent, to)));
                }
                client::Effect::KeepRollbacks(r) => self.clients[c].disk.rollbacks = r,
                client::Effect::ToRelay(msg) => {
                    if let Message::InstallFailed(f) = &msg {
                        // Versions fail here only by being put back
                        // outside haifu; an ordered rollback never is one.
                        let n = &mut self.clients[c];
                        assert!(
                            f.kind == haifu_protocol::FailureKind::RolledBack && n.fell_back > 0,
                            "seed {}: {} reported {} ({}) but was never put back",
                            self.seed,
                            n.id,
                            f.kind,
                            f.reason
                        );
                        n.put_back_reports.insert(f.at.to_string());
                        assert!(
                            n.put_back_reports.len() <= n.fell_back as usize,
                            "seed {}: {} reported a put-back version twice",
                            self.seed,
                            n.id
                        );
                    }
                    if let Some(i) = self.clients[c].wire {
                        self.wires[i].upward.push_back(msg);
                    }
                }
                client::Effect::Persist(p) => self.clients[c].persisting = Some(p),
                client::Effect::Forget => self.clients[c].disk.pending = None,
                // Versions never fail after install in the simulation.
                client::Effect::KeepFailures(f) => self.clients[c].disk.failures = f,
                client::Effect::KeepSwitched(s) => self.clients[c].disk.switched = s,
                client::Effect::RefusedOlder => {}
                client::Effect::Receive { session, .. } => {
                    let ear =
                        super::ear::Ear::new(*session, &self.ks, self.instant(), &mut self.air_rng);
                    self.clients[c].ear = Some(Box::new(ear));
                }
            }
        }
        for event in then {
            self.at_client(c, event);
        }
    }
}
