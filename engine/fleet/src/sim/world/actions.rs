//! What the fleet does in a step: links come up, messages arrive, time
//! passes, writes commit, completions reach the disk, the driver starts
//! rounds, rounds end and clients install.

use std::collections::VecDeque;

use haifu_ledger::RunStatus;
use haifu_ledger::Transition;
use haifu_protocol::ArtifactRef;
use haifu_protocol::Role;
use haifu_runtime::machine::RunState;
use haifu_spec::steps::broadcast::Phase;
use haifu_spec::steps::broadcast::State as Broadcast;
use haifu_spec::steps::machine::StepState;
use jiff::SignedDuration;

use super::Link;
use super::ROUNDS;
use super::RUN;
use super::SIZE;
use super::Wire;
use super::World;
use super::client;
use super::master;
use super::relay;

impl World {
    /// A relay without a master link, or a client without a relay link,
    /// connects (when the other side is alive).
    pub(super) fn connect(&mut self) {
        let relays: Vec<usize> = (0..self.relays.len())
            .filter(|&r| self.relays[r].core.is_some() && self.relays[r].wire.is_none())
            .collect();
        let clients: Vec<usize> = (0..self.clients.len())
            .filter(|&c| {
                let n = &self.clients[c];
                n.core.is_some() && n.wire.is_none() && self.relays[n.relay].core.is_some()
            })
            .collect();
        if self.master.is_some()
            && !relays.is_empty()
            && (clients.is_empty() || self.rng.chance(50))
        {
            let r = relays[self.rng.below(relays.len())];
            let master_conn = self.next_master_conn;
            self.next_master_conn += 1;
            self.wires.push(Wire {
                link: Link::Master {
                    relay: r,
                    master_conn,
                },
                up: true,
                held: false,
                holds: 0,
                upward: VecDeque::new(),
                downward: VecDeque::new(),
            });
            self.relays[r].wire = Some(self.wires.len() - 1);
            let peer = self.relays[r].name.clone();
            self.at_master(master::Event::Connected {
                conn: master_conn,
                peer,
                role: Role::Relay,
                delta: false,
                chunked: true,
                stages: true,
            });
            self.at_relay(r, relay::Event::MasterUp);
        } else if !clients.is_empty() {
            let c = clients[self.rng.below(clients.len())];
            let relay_conn = self.next_master_conn;
            self.next_master_conn += 1;
            self.wires.push(Wire {
                link: Link::Relay {
                    client: c,
                    relay_conn,
                },
                up: true,
                held: false,
                holds: 0,
                upward: VecDeque::new(),
                downward: VecDeque::new(),
            });
            self.clients[c].wire = Some(self.wires.len() - 1);
            let r = self.clients[c].relay;
            let id = self.clients[c].id.clone();
            self.at_relay(
                r,
                relay::Event::ClientUp {
                    conn: relay_conn,
                    client: id,
                },
            );
            self.at_client(c, client::Event::RelayUp);
        }
    }

    /// Delivers the next message of one link, in one direction: links
    /// interleave in any order, each in its own order.
    pub(super) fn deliver(&mut self) {
        let busy: Vec<usize> = (0..self.wires.len())
            .filter(|&i| {
                self.wires[i].up
                    && !self.wires[i].held
                    && (!self.wires[i].upward.is_empty() || !self.wires[i].downward.is_empty())
            })
            .collect();
        if busy.is_empty() {
            return;
        }
        let i = busy[self.rng.below(busy.len())];
        let w = &mut self.wires[i];
        let upward = !w.upward.is_empty() && (w.downward.is_empty() || self.rng.chance(50));
        let link = w.link;
        let msg = if upward {
            w.upward.pop_front()
        } else {
            w.downward.pop_front()
        };
        let Some(msg) = msg else { return };
        if std::env::var_os("HAIFU_SIM_TRACE").is_some() {
            let why = match &msg {
                haifu_protocol::Message::Error(e) => e.reason.as_str(),
                _ => "",
            };
            eprintln!(
                "{} {link:?} upward={upward} tag={:#04x} {why}",
                self.now,
                msg.tag()
            );
        }
        match (link, upward) {
            (Link::Master { master_conn, .. }, true) => {
                self.at_master(master::Event::Received {
                    conn: master_conn,
                    msg,
                });
            }
            (Link::Master { relay, .. }, false) => {
                self.at_relay(relay, relay::Event::FromMaster { msg, on_disk: true });
            }
            (Link::Relay { client, relay_conn }, true) => {
                let r = self.clients[client].relay;
                self.at_relay(
                    r,
                    relay::Event::FromClient {
                        conn: relay_conn,
                        msg,
                    },
                );
            }
            (Link::Relay { client, .. }, false) => {
                self.at_client(client, client::Event::FromRelay(msg));
            }
        }
    }

    pub(super) fn tick(&mut self) {
        let c = self.rng.below(self.clients.len());
        self.at_client(c, client::Event::Tick);
    }

    /// The write in flight commits, or (a fault) fails.
    pub(super) fn commit(&mut self) {
        let Some(batch) = self.write.take() else {
            return;
        };
        if self.faults && self.rng.chance(15) {
            self.totals.failed_writes += 1;
            self.at_master(master::Event::CommitFailed);
        } else {
            self.ledger.apply_fleet(&batch).unwrap();
            self.dirty = true;
            self.at_master(master::Event::Committed);
        }
    }

    /// A client's completion reaches its disk.
    pub(super) fn persist(&mut self) {
        let writing: Vec<usize> = (0..self.clients.len())
            .filter(|&c| self.clients[c].persisting.is_some())
            .collect();
        if writing.is_empty() {
            return;
        }
        let c = writing[self.rng.below(writing.len())];
        self.clients[c].disk.pending = self.clients[c].persisting.take();
        self.at_client(c, client::Event::Persisted);
    }

    /// The run driver: starts the next round every 10 s while the master
    /// is up, and keeps the run's snapshot as the real driver does.
    pub(super) fn drive(&mut self) {
        let due = self
            .started
            .last()
            .is_none_or(|t| self.now.duration_since(*t) >= SignedDuration::from_secs(10));
        if self.master.is_none() || !due || self.finished.is_some() {
            return;
        }
        if self.started.len() >= ROUNDS as usize {
            // A while after the last round, in some seeds, the run ends
            // (audit, done): its record is final from then on, and what
            // comes later is recorded as late.
            let long = self
                .started
                .last()
                .is_some_and(|t| self.now.duration_since(*t) >= SignedDuration::from_secs(30));
            if long && self.finishes && self.drained() {
                self.finish();
            }
            return;
        }
        self.started.push(self.now);
        let round = self.started.len() as u32;
        let state = RunState {
            step: 1,
            current: Some(StepState::Broadcast(Broadcast {
                phase: Phase::RoundOpen { round },
                started: self.started.clone(),
                stopped_early: None,
            })),
            finished: Vec::new(),
            finished_at: None,
        };
        self.ledger
            .transition(
                RUN as i64,
                &Transition {
                    state: serde_json::to_string(&state).unwrap(),
                    status: RunStatus::Running,
                    next_wake: None,
                    updates: Vec::new(),
                    events: Vec::new(),
                },
            )
            .unwrap();
        self.at_master(master::Event::RoundStarted {
            round,
            budget: Some(crate::master::default_budget(SIZE, super::RATE_BPS, 0)),
        });
    }

    /// What the master's drain says before the audit: the relays of the
    /// clients still pending are back, settled and have nothing on its way
    /// up (the ping's answer would come after it), and nothing waits to be
    /// written.
    fn drained(&self) -> bool {
        let Some(core) = self.master.as_ref() else {
            return false;
        };
        let pending: Vec<String> = self
            .ledger
            .run_clients(RUN as i64)
            .unwrap()
            .into_iter()
            .filter(|c| c.state == haifu_ledger::ClientState::Pending)
            .map(|c| c.relay)
            .collect();
        let relays: std::collections::BTreeSet<String> = pending.into_iter().collect();
        let answered = relays
            .iter()
            .filter(|name| {
                self.relays.iter().any(|r| {
                    &r.name == *name
                        && r.wire
                            .is_some_and(|i| self.wires[i].up && self.wires[i].upward.is_empty())
                })
            })
            .cloned()
            .collect();
        self.write.is_none()
            && core.drain(RUN, &relays, &answered, self.now)
                == crate::master::machine::drain::Drain::Drained
    }

    /// The driver audits and ends the run; the master takes it off the
    /// air. The run's record as it stands now is final.
    fn finish(&mut self) {
        let broadcast = StepState::Broadcast(Broadcast {
            phase: Phase::RoundOpen {
                round: self.started.len() as u32,
            },
            started: self.started.clone(),
            stopped_early: None,
        });
        let state = RunState {
            step: 5,
            current: None,
            finished: vec![broadcast],
            finished_at: Some(self.now),
        };
        self.ledger
            .transition(
                RUN as i64,
                &Transition {
                    state: serde_json::to_string(&state).unwrap(),
                    status: RunStatus::Done,
                    next_wake: None,
                    updates: vec![haifu_ledger::ClientUpdate::AuditPending],
                    events: Vec::new(),
                },
            )
            .unwrap();
        self.at_master(master::Event::OffAir);
        self.finished = Some(self.record());
        self.dirty = true;
    }

    /// Client `c` decoded `run`: it installs (the truth), then tells its
    /// core, which keeps the completion and sends it.
    pub(super) fn install(&mut self, c: usize, run: u64) {
        // The run a rollback undid never moves its client forward again
        // (every order here is given during run 1: `through_run` is 1).
        assert!(
            !self.clients[c].rolled_back,
            "seed {}: {} rolled back, then moved forward again by run {run}",
            self.seed, self.clients[c].id
        );
        let before = self.clients[c].disk.installed.clone();
        let version = |a: &Option<ArtifactRef>| a.as_ref().map(|a| a.version.clone());
        assert!(
            version(&before) < Some(self.target.version.clone()),
            "client {} would move from {before:?} to {}",
            self.clients[c].id,
            self.target.version
        );
        if std::env::var_os("HAIFU_SIM_TRACE").is_some() {
            eprintln!("{} client {c} installs {}", self.now, self.target.version);
        }
        self.clients[c].disk.previous = before;
        self.clients[c].disk.installed = Some(self.target.clone());
        self.clients[c].got_target = true;
        // The receiver ends with the install.
        self.clients[c].ear = None;
        let pending = crate::client::outbox::Pending {
            run,
            digest: self.target.digest.to_hex(),
            round: 0,
            at: self.now.to_string(),
            delta: false,
        };
        let installed = self.target.clone();
        self.at_client(c, client::Event::Installed { installed, pending });
        self.at_client(c, client::Event::ReceiverEnded { run });
    }
}
