//! One simulated fleet: a master, relays and clients as their cores, the
//! links between them, the ledger, and the truth (who really installed).

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;

use haifu_core::Digest;
use haifu_core::Manifest;
use haifu_core::ManifestBody;
use haifu_core::SigningKey;
use haifu_ledger::ClientState;
use haifu_ledger::FleetBatch;
use haifu_ledger::Ledger;
use haifu_ledger::testing::TestRun;
use haifu_protocol::ArtifactRef;
use haifu_protocol::Group;
use haifu_protocol::Instruction;
use haifu_protocol::Message;
use haifu_protocol::SessionSecret;
use haifu_runtime::machine::RunState;
use jiff::SignedDuration;
use jiff::Timestamp;

use crate::client::machine as client;
use crate::client::machine::ClientCore;
use crate::link::Counters;
use crate::master::machine as master;
use crate::master::machine::ActiveRun;
use crate::master::machine::MasterCore;
use crate::master::machine::SessionSeed;
use crate::relay::machine as relay;
use crate::relay::machine::RelayCore;

mod actions;
mod air;
mod check;
mod ear;
mod faults;
mod rng;
mod rollback;
mod route;
mod stages;

use rng::Rng;

const RUN: u64 = 1;
/// The artifact: four blocks of 16 symbols of 256 bytes, so that a round
/// is a few hundred datagrams and thousands of seeds stay quick.
const SIZE: u64 = 16 << 10;
const SYMBOL_SIZE: u16 = 256;
const BLOCK_SYMBOLS: u32 = 16;
/// The broadcast's rate: slow enough that a round spans several steps,
/// and faults land in the middle of rounds.
const RATE_BPS: u64 = 500_000;
const ROUNDS: u32 = 3;
/// Steps with faults, then quiet steps for everything to settle.
const STEPS: usize = 300;
const SETTLE: usize = 3000;

/// Who is at an end of a link.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    /// Relay `relay`'s link to the master, `master_conn` at the master.
    Master { relay: usize, master_conn: u64 },
    /// Client `client`'s link to its relay, `relay_conn` at the relay.
    Relay { client: usize, relay_conn: u64 },
}

/// A link: reliable and in order while up (a QUIC stream); what is in
/// flight when it is cut is lost.
struct Wire {
    link: Link,
    up: bool,
    /// Partitioned: up, but nothing gets through either way until it heals
    /// (what was sent waits).
    held: bool,
    /// How often it was partitioned.
    holds: u64,
    /// Towards the master (from a relay) or the relay (from a client).
    upward: VecDeque<Message>,
    downward: VecDeque<Message>,
}

struct RelayNode {
    name: String,
    core: Option<RelayCore>,
    wire: Option<usize>,
    /// The round on air.
    on_air: Option<Box<air::OnAir>>,
}

/// A client's disk: what survives a kill.
#[derive(Default, Clone)]
struct Disk {
    installed: Option<ArtifactRef>,
    /// The version kept before the installed one (for a rollback).
    previous: Option<ArtifactRef>,
    pending: Option<crate::client::outbox::Pending>,
    /// The rollbacks' record (`rollback.json`).
    rollbacks: client::RollbackState,
    /// The failures' record (`failure.json`).
    failures: client::FailureState,
    /// The version the client last switched to (`switched.json`).
    switched: Option<client::Switched>,
}

struct ClientNode {
    id: String,
    relay: usize,
    core: Option<ClientCore>,
    wire: Option<usize>,
    disk: Disk,
    /// A completion being written (lost if killed first).
    persisting: Option<crate::client::outbox::Pending>,
    /// The receiver of the run it receives (lost if killed).
    ear: Option<Box<ear::Ear>>,
    /// The share of the relay's datagrams it misses.
    loss: f64,
    /// Bumped when it is killed: a round it listened to from before is
    /// not one it heard whole.
    life: u64,
    /// The newest version this client ran since its last rollback: what
    /// it runs never goes below it except by a rollback order (versions
    /// only move forward otherwise).
    highest: Option<haifu_core::Version>,
    /// Whether it ever installed the run's version (the truth the run's
    /// record is checked against; a rollback later does not undo it).
    got_target: bool,
    /// Whether a rollback order took it back since.
    rolled_back: bool,
    /// Times its previous version was put back outside haifu (while it
    /// was down, as an A/B slot would at boot).
    fell_back: u32,
    /// The distinct `rolled-back` reports it sent (by when it made each).
    put_back_reports: std::collections::BTreeSet<String>,
}

/// What happened across seeds.
#[derive(Default, Debug)]
pub(super) struct Totals {
    pub(super) master_kills: u64,
    pub(super) relay_kills: u64,
    pub(super) client_kills: u64,
    pub(super) failed_writes: u64,
    pub(super) cuts: u64,
    pub(super) installed: u64,
    pub(super) delivered: u64,
    pub(super) steps: u64,
    pub(super) rollbacks_done: u64,
    pub(super) rollbacks_refused: u64,
    /// Clients a staged run never admitted (none of them installed).
    pub(super) withheld: u64,
    /// Versions put back outside haifu while their client was down.
    pub(super) put_back: u64,
    pub(super) rounds: air::RoundTotals,
}

impl Totals {
    pub(super) fn add(&mut self, o: &Totals) {
        self.master_kills += o.master_kills;
        self.relay_kills += o.relay_kills;
        self.client_kills += o.client_kills;
        self.failed_writes += o.failed_writes;
        self.cuts += o.cuts;
        self.installed += o.installed;
        self.delivered += o.delivered;
        self.steps += o.steps;
        self.rollbacks_done += o.rollbacks_done;
        self.rollbacks_refused += o.rollbacks_refused;
        self.withheld += o.withheld;
        self.put_back += o.put_back;
        self.rounds.add(&o.rounds);
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} steps, kills master/relay/client {}/{}/{}, {} failed writes, {} links cut, {} installs, {} counted, rollbacks done/refused {}/{}, {} withheld by a stage, {} put back outside haifu",
            self.steps,
            self.master_kills,
            self.relay_kills,
            self.client_kills,
            self.failed_writes,
            self.cuts,
            self.installed,
            self.delivered,
            self.rollbacks_done,
            self.rollbacks_refused,
            self.withheld,
            self.put_back
        )
    }
}

pub(super) struct World {
    seed: u64,
    rng: Rng,
    /// The datagrams' losses, apart from the steps' draws.
    air_rng: Rng,
    now: Timestamp,
    /// The start, as a timestamp and as the carousel's instant.
    epoch: (Timestamp, std::time::Instant),
    /// The relays' multicast group.
    group: Group,
    /// Source symbols of each block of the artifact.
    ks: Vec<u32>,
    _dir: tempfile::TempDir,
    ledger: Ledger,
    master: Option<MasterCore>,
    next_master_conn: u64,
    /// The write in flight.
    write: Option<FleetBatch>,
    relays: Vec<RelayNode>,
    clients: Vec<ClientNode>,
    wires: Vec<Wire>,
    key: SigningKey,
    target: ArtifactRef,
    manifest: Vec<u8>,
    /// Rounds the driver started, with their start.
    started: Vec<Timestamp>,
    faults: bool,
    /// Whether this seed's run ends once its rounds are over.
    finishes: bool,
    /// The run's final record (its audit without the late records and the
    /// fleet's live view), once it ended.
    finished: Option<serde_json::Value>,
    /// The ledger changed since the last check.
    dirty: bool,
    totals: Totals,
    /// The clients a staged run admits (`None`: unstaged).
    admitted: Option<Vec<String>>,
}

fn artifact(version: &str, digest: u8) -> ArtifactRef {
    ArtifactRef {
        name: "app".parse().unwrap(),
        version: version.parse().unwrap(),
        digest: Digest::from_bytes([digest; 32]),
    }
}

fn ram_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new().prefix("haifu-sim").tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

impl World {
    pub(super) fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let relays = 1 + rng.below(2);
        let clients = 2 + rng.below(5);
        let key = SigningKey::from_seed([3; 32]);
        let target = artifact("1.1.0", 7);
        let now: Timestamp = "2026-12-03T10:00:00Z".parse().unwrap();
        let body = ManifestBody {
            format: haifu_core::MANIFEST_FORMAT,
            name: "app".into(),
            version: "1.1.0".into(),
            size: SIZE,
            sha3_256: target.digest,
            created_at: now,
            compression: haifu_core::Compression::Zstd,
            stored_size: SIZE,
            carousel: Some(haifu_core::CarouselLayout {
                symbol_size: SYMBOL_SIZE,
                object_shift: haifu_carousel::CarouselConfig::default().object_shift,
                block_symbols: BLOCK_SYMBOLS,
                block_hashes: String::new(),
            }),
        };
        let signed = Manifest::sign(body, &key);
        let dir = ram_dir();
        let mut ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        ledger.record_version(&signed).unwrap();
        let relays: Vec<RelayNode> = (0..relays)
            .map(|i| RelayNode {
                name: format!("r{i}"),
                core: None,
                wire: None,
                on_air: None,
            })
            .collect();
        // Most clients lose up to 25% of the datagrams; in some seeds one
        // loses more than the round's budget can make up for.
        let beyond = rng.chance(10).then(|| rng.below(clients));
        let clients: Vec<ClientNode> = (0..clients)
            .map(|i| {
                let loss = if beyond == Some(i) {
                    0.7 + rng.unit() * 0.2
                } else {
                    rng.unit() * 0.25
                };
                // Some clients already moved past the run's version (another
                // run took them to 1.2.0): the run's sessions must not take
                // them back, whatever the faults.
                let installed = if rng.chance(20) {
                    artifact("1.2.0", 2)
                } else {
                    artifact("1.0.0", 1)
                };
                ClientNode {
                    id: format!("c{i}"),
                    relay: i % relays.len(),
                    core: None,
                    wire: None,
                    highest: Some(installed.version.clone()),
                    got_target: false,
                    rolled_back: false,
                    fell_back: 0,
                    put_back_reports: Default::default(),
                    disk: Disk {
                        installed: Some(installed),
                        ..Disk::default()
                    },
                    persisting: None,
                    ear: None,
                    loss,
                    life: 0,
                }
            })
            .collect();
        let listed: Vec<(String, String)> = clients
            .iter()
            .map(|c| (c.id.clone(), relays[c.relay].name.clone()))
            .collect();
        TestRun::new()
            .workflow("sim.yaml", "sim")
            .version("1.1.0")
            .state(serde_json::to_string(&RunState::default()).unwrap())
            .clients(listed)
            .create(&mut ledger)
            .unwrap();
        let finishes = rng.chance(50);
        let admitted = stages::admitted(seed, &clients, relays.len());
        let plan = haifu_runtime::session::receive_plan(&signed).unwrap();
        let ks = (0..plan.shape().object_count())
            .flat_map(|o| plan.object_layout(o).unwrap().blocks)
            .map(|b| b.symbols)
            .collect();
        let mut w = Self {
            air_rng: Rng(seed ^ 0x5eed_0fa1),
            epoch: (now, std::time::Instant::now()),
            group: Group {
                addr: "239.1.1.1".parse().unwrap(),
                port: 5000,
            },
            ks,
            finishes,
            finished: None,
            seed,
            rng,
            now,
            _dir: dir,
            ledger,
            master: None,
            next_master_conn: 1,
            write: None,
            relays,
            clients,
            wires: Vec::new(),
            key,
            target,
            manifest: signed.to_json().into_bytes(),
            started: Vec::new(),
            faults: true,
            dirty: true,
            totals: Totals::default(),
            admitted,
        };
        w.start_master();
        for r in 0..w.relays.len() {
            w.start_relay(r);
        }
        for c in 0..w.clients.len() {
            w.start_client(c);
        }
        w
    }

    /// Runs the seed: faulty steps, then quiet ones until everything
    /// settles; checks the invariants throughout and the audit at the end.
    pub(super) fn run(mut self) -> Totals {
        for _ in 0..STEPS {
            self.step();
            self.check();
        }
        self.faults = false;
        for w in &mut self.wires {
            w.held = false;
        }
        if self.master.is_none() {
            self.start_master();
        }
        for r in 0..self.relays.len() {
            if self.relays[r].core.is_none() {
                self.start_relay(r);
            }
        }
        for c in 0..self.clients.len() {
            if self.clients[c].core.is_none() {
                self.start_client(c);
            }
        }
        for i in 0..SETTLE {
            self.step();
            self.check();
            if i % 50 == 49 && self.settled() {
                break;
            }
        }
        self.check_settled();
        let delivered = self
            .ledger
            .run_clients(RUN as i64)
            .unwrap()
            .iter()
            .filter(|c| c.state == ClientState::Delivered)
            .count();
        self.totals.delivered = delivered as u64;
        self.totals.installed = self.clients.iter().filter(|c| c.got_target).count() as u64;
        self.totals.withheld = self.withheld();
        self.totals.put_back = self.clients.iter().map(|c| u64::from(c.fell_back)).sum();
        for o in self.ledger.rollbacks().unwrap() {
            match o.state {
                haifu_ledger::RollbackState::Done => self.totals.rollbacks_done += 1,
                haifu_ledger::RollbackState::Refused => self.totals.rollbacks_refused += 1,
                haifu_ledger::RollbackState::Ordered => {}
            }
        }
        self.totals
    }

    fn active(&self) -> ActiveRun {
        ActiveRun {
            budget: None,
            instruction: Instruction {
                run: RUN,
                artifact: self.target.clone(),
                size: SIZE,
                manifest: self.manifest.clone(),
                start: self.now,
                rounds: ROUNDS,
                rate_bps: RATE_BPS,
                session_id: 0,
                session_key: SessionSecret([0; 32]),
                admitted: None,
            },
            seed: SessionSeed([5; 32]),
            round: None,
            starts: Vec::new(),
            relays: Vec::new(),
            broadcast: None,
            left_out: Default::default(),
            staged: self.admitted.is_some(),
        }
    }

    fn start_master(&mut self) {
        let bound: HashMap<String, String> = self
            .ledger
            .clients()
            .unwrap()
            .into_iter()
            .filter_map(|c| c.relay.map(|r| (c.id, r)))
            .collect();
        self.master = Some(MasterCore::new(
            Vec::new(),
            bound,
            Arc::new(Counters::default()),
        ));
        // The orders waiting in the ledger, as its reader hands them over.
        self.orders_to_master();
        // The driver resumes the run: it goes on air again, unless it ended.
        if self.finished.is_some() {
            return;
        }
        let active = self.active();
        self.at_master(master::Event::OnAir(Box::new(active)));
        self.admit();
    }

    fn start_relay(&mut self, r: usize) {
        let name = self.relays[r].name.clone();
        self.relays[r].core = Some(RelayCore::new(
            name,
            self.group,
            Arc::new(Counters::default()),
        ));
    }

    fn start_client(&mut self, c: usize) {
        let n = &mut self.clients[c];
        n.core = Some(
            ClientCore::new(
                n.id.clone(),
                format!("r{}", n.relay),
                "app".into(),
                self.key.public_key(),
                n.disk.installed.clone(),
                n.disk.pending.clone(),
            )
            .with_rollbacks(n.disk.rollbacks.clone())
            .with_failures(n.disk.failures.clone())
            .with_switched(n.disk.switched.clone()),
        );
        // As the shell does before anything else: is what it switched to
        // still current?
        let current = n.disk.installed.clone();
        self.at_client(
            c,
            client::Event::Looked {
                current,
                about: None,
            },
        );
    }

    /// One step: something the fleet does, or (while faults are on) a fault.
    fn step(&mut self) {
        self.totals.steps += 1;
        let to = self.now
            + SignedDuration::from_millis(self.rng.below(air::STEP.as_millis() as usize) as i64);
        self.air_until(to);
        let roll = self.rng.below(100);
        match roll {
            0..=39 => self.deliver(),
            40..=49 => self.connect(),
            50..=59 => self.tick(),
            60..=67 => self.commit(),
            68..=73 => self.persist(),
            74..=78 => self.drive(),
            79 => self.order_rollback(),
            80..=83 => self.tick(),
            84..=87 => self.deliver(),
            _ if self.faults => self.fault(),
            _ => self.deliver(),
        }
    }
}
