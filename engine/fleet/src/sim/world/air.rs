//! Rounds on air: each relay's round is a real [`RepairRound`] with the
//! params the relay's shell derives from the master's budget, paced by a
//! real [`Pacer`] in the simulation's time. Every datagram it orders
//! reaches each receiving client of that relay with the client's own loss;
//! a client counts the symbols of each block as a receiver does (a block
//! decodes at `K`, or now and then one or two more, as RaptorQ does) and
//! reports on the relay link as the real client does ([`Listening`] every
//! [`REPORT_EVERY`]), through its core and the relay's core into the
//! round. A client that has every block installs at once, and the relay
//! reports the round with what the `RepairRound` says of its listeners.
//!
//! What it does not model: the bytes of a symbol (no encoding, no
//! authentication tags) and the link's own queueing (a report reaches the
//! relay when it is written, with whatever was ahead of it on the link).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;
use std::time::Instant;

use haifu_carousel::EndReason;
use haifu_carousel::LinkOverhead;
use haifu_carousel::Next;
use haifu_carousel::OVERHEAD_LEN;
use haifu_carousel::Pacer;
use haifu_carousel::PacerConfig;
use haifu_carousel::RepairParams;
use haifu_carousel::RepairRound;
use haifu_core::Manifest;
use haifu_protocol::Feedback;
use haifu_protocol::Instruction;
use haifu_protocol::RoundBudget;
use haifu_protocol::RoundDone;
use jiff::SignedDuration;
use jiff::Timestamp;

use super::Link;
use super::World;
use super::client;
use super::relay;
use crate::client::listening::REPORT_EVERY;
use crate::client::listening::feedback;
use crate::relay::repair;

/// The longest a step of the simulation moves the clock: a round may end
/// this much after the moment its last listener let it go.
pub(super) const STEP: Duration = Duration::from_millis(400);

/// A relay's round on air.
pub(super) struct OnAir {
    pub(super) run: u64,
    round: u32,
    repair: RepairRound<String>,
    params: RepairParams,
    pacer: Pacer,
    datagram_len: usize,
    /// Whether the master gave a budget (a blind round reports no
    /// listeners).
    budgeted: bool,
    started: Instant,
    /// When the relay looks again (a send the pacer allows, a wait's end,
    /// or now after a report).
    wake: Instant,
    /// Block index of each `(object, sbn)`.
    blocks: BTreeMap<(u32, u8), usize>,
    /// Clients receiving the run when the round went on air, with their
    /// life, link and the link's partitions then: those that keep all
    /// three listened to all of it.
    listened: Vec<(usize, u64, usize, u64)>,
    /// Clients that decoded during the round.
    decoded: BTreeSet<usize>,
    /// When each listener's last report was taken, and its done report.
    last_report: BTreeMap<String, Instant>,
    done_at: BTreeMap<String, Instant>,
    first_pass_done_at: Option<Instant>,
    /// The worst loss the budget delivers with half again to spare.
    tolerance: f64,
}

/// What the rounds did, over seeds.
#[derive(Default, Debug)]
pub(in crate::sim) struct RoundTotals {
    pub(in crate::sim) rounds: u64,
    /// Clients that decoded in the round they heard.
    pub(in crate::sim) delivered: u64,
    /// Listeners a round let go for their silence.
    pub(in crate::sim) silent: u64,
    /// Rounds the byte or time budget ended.
    pub(in crate::sim) by_budget: u64,
    /// Clients that listened to a whole round within the budget's
    /// tolerance (each of them decoded in it).
    pub(in crate::sim) whole: u64,
}

impl RoundTotals {
    pub(in crate::sim) fn add(&mut self, o: &RoundTotals) {
        self.rounds += o.rounds;
        self.delivered += o.delivered;
        self.silent += o.silent;
        self.by_budget += o.by_budget;
        self.whole += o.whole;
    }
}

impl std::fmt::Display for RoundTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rounds, {} clients delivered in the round they heard ({} of them listened to all of it within the budget), {} dropped as silent, {} rounds ended by budget",
            self.rounds, self.delivered, self.whole, self.silent, self.by_budget
        )
    }
}

impl World {
    /// The simulation's clock as the carousel reads it.
    pub(super) fn instant(&self) -> Instant {
        let d = self.now.duration_since(self.epoch.0);
        self.epoch.1 + Duration::from_nanos(d.as_nanos().max(0) as u64)
    }

    fn timestamp(&self, at: Instant) -> Timestamp {
        let d = at.saturating_duration_since(self.epoch.1);
        self.epoch.0 + SignedDuration::from_nanos(d.as_nanos() as i64)
    }

    /// Moves the clock to `to`, sending what the relays on air send and
    /// taking the reports their listeners write meanwhile, in time order.
    pub(super) fn air_until(&mut self, to: Timestamp) {
        loop {
            let now = self.instant();
            let relays = (0..self.relays.len())
                .filter_map(|r| Some((self.relays[r].on_air.as_ref()?.wake.max(now), Some(r), 0)));
            let clients = (0..self.clients.len()).filter_map(|c| {
                let n = &self.clients[c];
                let ear = n.ear.as_ref()?;
                // A receiver reports only while it hears something, and
                // hears something only while its relay is on air.
                self.relays[n.relay].on_air.as_ref()?;
                Some((ear.next_report.max(now), None, c))
            });
            let Some((at, relay, c)) = relays.chain(clients).min_by_key(|(at, _, _)| *at) else {
                break;
            };
            let at_ts = self.timestamp(at);
            if at_ts > to {
                break;
            }
            self.now = self.now.max(at_ts);
            match relay {
                Some(r) => self.air_relay(r, at),
                None => self.listen(c, at),
            }
        }
        self.now = self.now.max(to);
    }

    /// Relay `r`'s `Broadcast`: the round goes on air now, held to what the
    /// relay's shell would derive from the session and the budget.
    pub(super) fn go_on_air(
        &mut self,
        r: usize,
        round: u32,
        session: &Instruction,
        budget: Option<RoundBudget>,
    ) {
        let now = self.instant();
        let manifest = Manifest::from_json(&session.manifest).unwrap();
        let key = haifu_carousel::CarouselKey::new(session.session_id, session.session_key.0);
        let sender = haifu_runtime::session::sender_for(key, &manifest).unwrap();
        let plan = sender.plan().unwrap();
        let datagram_len = OVERHEAD_LEN + usize::from(sender.shape().symbol_size);
        let params = repair::repair_params(
            budget.as_ref(),
            session.size,
            sender.config().repair_overhead,
        );
        let repair = RepairRound::new(&plan, round, params, datagram_len, now).unwrap();
        let overhead = LinkOverhead::ethernet_for(self.group.addr);
        let pacer =
            Pacer::with_config(PacerConfig::new(session.rate_bps.max(1)).overhead(overhead))
                .unwrap();
        let blocks: BTreeMap<(u32, u8), usize> = (0..plan.shape().object_count())
            .flat_map(|o| {
                let layout = plan.object_layout(o).unwrap();
                layout.blocks.into_iter().map(move |b| (o, b.sbn))
            })
            .enumerate()
            .map(|(i, key)| (key, i))
            .collect();
        let needed: u64 = self.ks.iter().map(|&k| u64::from(k) + 2).sum();
        let datagrams = params.budget_bytes / datagram_len as u64;
        let tolerance = 1.0 - 1.5 * needed as f64 / datagrams.max(1) as f64;
        let listened = (0..self.clients.len())
            .filter_map(|c| {
                let n = &self.clients[c];
                let wire = n
                    .wire
                    .filter(|&i| self.wires[i].up && !self.wires[i].held)?;
                let receiving = n.core.is_some()
                    && n.relay == r
                    && n.ear.as_ref().is_some_and(|e| e.run == session.run);
                receiving.then_some((c, n.life, wire, self.wires[wire].holds))
            })
            .collect();
        self.relays[r].on_air = Some(Box::new(OnAir {
            run: session.run,
            round,
            repair,
            params,
            pacer,
            datagram_len,
            budgeted: budget.is_some(),
            started: now,
            wake: now,
            blocks,
            listened,
            decoded: BTreeSet::new(),
            last_report: BTreeMap::new(),
            done_at: BTreeMap::new(),
            first_pass_done_at: None,
            tolerance,
        }));
    }

    /// Relay `r` sends what its round orders at `now`, as the pacer lets
    /// it.
    fn air_relay(&mut self, r: usize, now: Instant) {
        loop {
            let Some(air) = self.relays[r].on_air.as_mut() else {
                return;
            };
            if air.pacer.allowance(now, air.datagram_len) == 0 {
                let at = air.pacer.next_send_for(now, air.datagram_len, 1);
                air.wake = at.max(now + Duration::from_micros(1));
                return;
            }
            match air.repair.next(now) {
                Next::Send(s) => {
                    air.pacer.handle_sent(now, air.datagram_len, 1);
                    if air.first_pass_done_at.is_none() && air.repair.first_pass_done() {
                        air.first_pass_done_at = Some(now);
                    }
                    let b = air.blocks[&(s.object, s.sbn)];
                    let run = air.run;
                    self.hear(r, run, b, s.esi, now);
                }
                Next::Wait(until) => {
                    // Not before the next instant: a report wakes it sooner.
                    air.wake = until.max(now + Duration::from_micros(1));
                    return;
                }
                Next::End => return self.end_round(r, now),
            }
        }
    }

    /// A datagram (symbol `esi` of block `b` of `run`) from relay `r`:
    /// each of its clients receiving the run hears it unless its loss
    /// takes it.
    fn hear(&mut self, r: usize, run: u64, b: usize, esi: u32, now: Instant) {
        let mut finished = Vec::new();
        for c in 0..self.clients.len() {
            let n = &mut self.clients[c];
            let Some(ear) = n.ear.as_mut().filter(|e| e.run == run) else {
                continue;
            };
            if n.relay != r || n.core.is_none() || self.air_rng.unit() < n.loss {
                continue;
            }
            if ear.hear(b, esi) {
                finished.push(c);
            }
        }
        for c in finished {
            self.decoded(c, now);
        }
    }

    /// Client `c` holds every block: its receiver says so to the relay
    /// (the relay stops repairing for it now), then it installs.
    fn decoded(&mut self, c: usize, now: Instant) {
        let Some(mut ear) = self.clients[c].ear.take() else {
            return;
        };
        if let Some(report) = ear.listening.tick(now, ear.report(), 0) {
            self.said(c, feedback(&ear.session, report));
        }
        let r = self.clients[c].relay;
        if let Some(air) = self.relays[r].on_air.as_mut()
            && air.run == ear.run
        {
            air.decoded.insert(c);
        }
        self.install(c, ear.run);
    }

    /// Client `c`'s receiver at its report tick.
    fn listen(&mut self, c: usize, now: Instant) {
        let Some(ear) = self.clients[c].ear.as_mut() else {
            return;
        };
        ear.next_report = ear.next_report.max(now) + REPORT_EVERY;
        let said = ear.listening.tick(now, ear.report(), 0);
        let session = ear.session.clone();
        if let Some(report) = said {
            self.said(c, feedback(&session, report));
        }
    }

    /// Client `c`'s core takes its receiver's report; what it sends on
    /// the relay link reaches the relay now.
    fn said(&mut self, c: usize, f: Feedback) {
        self.at_client(c, client::Event::Listening(f));
        let Some(i) = self.clients[c].wire else {
            return;
        };
        let Link::Relay { relay_conn, .. } = self.wires[i].link else {
            return;
        };
        let r = self.clients[c].relay;
        while self.wires[i].up && !self.wires[i].held {
            let Some(msg) = self.wires[i].upward.pop_front() else {
                break;
            };
            self.at_relay(
                r,
                relay::Event::FromClient {
                    conn: relay_conn,
                    msg,
                },
            );
        }
    }

    /// Relay `r`'s core passes on a listener's report to its round.
    pub(super) fn air_report(&mut self, r: usize, listener: String, f: Feedback) {
        let now = self.instant();
        let Some(air) = self.relays[r].on_air.as_mut().filter(|a| a.run == f.run) else {
            return;
        };
        let report = repair::report(f);
        let done = report.done;
        assert!(
            air.repair.report(listener.clone(), &report, now),
            "seed {}: relay {r} refused {listener}'s truthful report {report:?}",
            self.seed
        );
        air.wake = now;
        air.last_report.insert(listener.clone(), now);
        if done {
            air.done_at.insert(listener, now);
        }
    }

    /// Relay `r`'s `StopAir`: its round on air of `run` ends now, cut
    /// short, with none of a finished round's promises.
    pub(super) fn stop_air(&mut self, r: usize, run: u64, round: u32) {
        if self.relays[r]
            .on_air
            .as_ref()
            .is_some_and(|a| (a.run, a.round) == (run, round))
        {
            self.relays[r].on_air = None;
            self.at_relay(r, relay::Event::RoundStopped { run, round });
        }
    }

    /// Relay `r`'s round is over: the invariants of a round, then its
    /// `RoundDone` from the round's own outcome.
    fn end_round(&mut self, r: usize, now: Instant) {
        let Some(air) = self.relays[r].on_air.take() else {
            return;
        };
        let o = air.repair.outcome();
        let (datagrams, bytes) = air.repair.sent();
        let t = &mut self.totals.rounds;
        t.rounds += 1;
        t.delivered += air.decoded.len() as u64;
        t.silent += o.silent.len() as u64;
        if matches!(o.reason, EndReason::ByteBudget | EndReason::TimeBudget) {
            t.by_budget += 1;
        }
        if air.params.feedback {
            self.check_round(r, &air, &o, bytes, now);
        }
        let done = RoundDone {
            run: air.run,
            round: air.round,
            datagrams,
            bytes,
            elapsed_ms: now.duration_since(air.started).as_millis() as u64,
            listeners: air.budgeted.then(|| repair::listeners(&o)),
        };
        if std::env::var_os("HAIFU_SIM_TRACE").is_some() {
            eprintln!("{} relay {r} round done: {done:?} {o:?}", self.now);
        }
        self.at_relay(r, relay::Event::RoundSent(done));
    }

    /// What a round with feedback promises: every client that listened to
    /// all of it (alive and linked throughout) with a loss the budget
    /// covers decoded in it; a silent listener held it no longer than the
    /// silence and a step; its bytes stayed within the budget.
    fn check_round(
        &mut self,
        r: usize,
        air: &OnAir,
        o: &haifu_carousel::Outcome<String>,
        bytes: u64,
        now: Instant,
    ) {
        let seed = self.seed;
        assert!(
            bytes <= air.params.budget_bytes,
            "seed {seed}: relay {r} sent {bytes} bytes in round {} over its budget of {}",
            air.round,
            air.params.budget_bytes
        );
        // The loss the round measured is its listeners' (what the master
        // assumes for the next round), whatever restarts did to their
        // counts: within sampling noise of the worst client's.
        let worst = self.clients.iter().map(|c| c.loss).fold(0.0, f64::max);
        assert!(
            o.max_loss <= worst + 0.3,
            "seed {seed}: round {} of relay {r} measured a loss of {:.3}; the worst client loses {worst:.3}",
            air.round,
            o.max_loss
        );
        for &(c, life, wire, holds) in &air.listened {
            let n = &self.clients[c];
            let w = &self.wires[wire];
            let whole = n.life == life && n.wire == Some(wire) && w.up && w.holds == holds;
            if !whole || n.loss > air.tolerance {
                continue;
            }
            self.totals.rounds.whole += 1;
            assert!(
                air.decoded.contains(&c),
                "seed {seed}: {} (loss {:.3}, tolerance {:.3}) listened to all of round {} of relay {r} and did not decode in it; {:?} after {:?}",
                n.id,
                n.loss,
                air.tolerance,
                air.round,
                o.reason,
                now.duration_since(air.started)
            );
        }
        if o.reason == EndReason::AllDecoded {
            // The round ends when its last listener decodes, the last
            // silent one's silence runs out, or (nobody listening) the
            // linger after the first pass.
            let silent = o
                .silent
                .iter()
                .filter_map(|l| air.last_report.get(l))
                .map(|&t| t + air.params.silence);
            let nobody = air.first_pass_done_at.map(|t| t + air.params.linger);
            let bound = air
                .done_at
                .values()
                .copied()
                .chain(silent)
                .chain(nobody)
                .max()
                .unwrap_or(air.started);
            assert!(
                now <= bound + STEP,
                "seed {seed}: round {} of relay {r} ended {:?} after its last listener let it go ({o:?})",
                air.round,
                now.duration_since(bound)
            );
        }
    }
}
