//! One round on air with feedback repair: which symbol goes out next, and
//! when the round is over.
//!
//! NORM (RFC 5740) is the model, simplified by what haifu has: every
//! listening receiver holds a reliable control link to its relay, so it
//! reports its needs directly and no NAK suppression is needed. The round
//! sends each block's *first pass* (its `K` source symbols and a small
//! proactive share of repair symbols) in block order, so blocks complete
//! progressively through the round; each listener reports, a few times a
//! second, how many symbols each block it has not decoded holds; the relay
//! owes each block enough fresh repair symbols for the neediest listener,
//! inflated by that listener's loss rate, and sends what it owes before (or
//! alternating with) more first pass. The round ends when every listener
//! still talking has decoded, or when its byte or time budget is spent. A
//! listener silent for [`RepairParams::silence`] no longer holds the round:
//! it is a straggler like any client that was offline.
//!
//! Why a holdoff: a report says what the listener held when it wrote it.
//! Reports about a block are taken only once its first pass (or the last
//! repair ordered for it) went out at least [`RepairParams::holdoff`] ago,
//! so a report that cannot yet reflect those symbols does not order them
//! twice.
//!
//! What it does not do: encode, send, pace or read the clock. [`RepairRound::next`]
//! takes the time and says what to send or how long to wait; the relay
//! encodes the symbol ([`crate::ObjectEncoder::write_symbol`]) and paces it.
//! Memory is one small record per block of the artifact and per listener:
//! a report is folded into the blocks as it arrives, never kept.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;
use std::time::Instant;

use crate::layout::{LayoutError, round_first_esi, round_id_span};
use crate::plan::ReceivePlan;

/// Symbols beyond `K` a listener is taken to need to decode a block:
/// RaptorQ fails with about 1% at `K` and one in a million at `K + 2`.
pub const DECODE_MARGIN: u32 = 2;

/// The highest loss rate a repair is inflated for: beyond it a listener's
/// reports are likely wrong, and each repair cycle still halves its need.
const MAX_INFLATE_LOSS: f64 = 0.5;

/// Datagrams sent between two of a listener's reports before its loss
/// rate is trusted (fewer say too little).
const MIN_LOSS_SAMPLE: u64 = 64;

/// How a round spends its bytes and time. The master's broadcast policy
/// chooses them; [`RepairParams::blind`] is a round without feedback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepairParams {
    /// Repair symbols sent with each block's first pass, as a fraction of
    /// its `K` (0.02: 2% more than the source).
    pub proactive: f64,
    /// Most datagram bytes (headers and tags included) the round may send.
    pub budget_bytes: u64,
    /// Longest the round may last from its first symbol.
    pub budget_time: Duration,
    /// A listener that has not reported for this long no longer holds the
    /// round.
    pub silence: Duration,
    /// How long after a block's symbols went out a report is taken as
    /// reflecting them (a report interval and a round trip).
    pub holdoff: Duration,
    /// How long after its first pass the round waits for listeners that
    /// have not reported yet, before it may end (a report interval and a
    /// round trip, with some to spare).
    pub linger: Duration,
    /// The loss rate assumed for a listener until its own is measured
    /// (e.g. the worst seen in the previous round).
    pub assumed_loss: f64,
    /// Whether the round waits for and acts on reports at all.
    pub feedback: bool,
}

impl RepairParams {
    /// One pass of `K × (1 + proactive)` per block, no repair, no waiting:
    /// what a round was before feedback, and what a relay does for a
    /// master that does not say otherwise.
    pub fn blind(proactive: f64) -> Self {
        Self {
            proactive,
            budget_bytes: u64::MAX,
            budget_time: Duration::MAX,
            silence: Duration::ZERO,
            holdoff: Duration::ZERO,
            linger: Duration::ZERO,
            assumed_loss: 0.0,
            feedback: false,
        }
    }
}

/// A block and a symbol id to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolRef {
    /// The object.
    pub object: u32,
    /// The block in the object.
    pub sbn: u8,
    /// The symbol id.
    pub esi: u32,
    /// Whether it is a repair ordered by feedback (not first pass).
    pub repair: bool,
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send this symbol now (the pacer decides exactly when).
    Send(SymbolRef),
    /// Nothing to send before this instant, unless a report comes.
    Wait(Instant),
    /// The round is over: see [`RepairRound::outcome`].
    End,
}

/// Why a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Every listener still talking decoded (or nobody listened).
    AllDecoded,
    /// The byte budget is spent.
    ByteBudget,
    /// The time budget is spent.
    TimeBudget,
    /// A blind round sent its one pass.
    Blind,
}

impl EndReason {
    /// A short stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllDecoded => "all_decoded",
            Self::ByteBudget => "byte_budget",
            Self::TimeBudget => "time_budget",
            Self::Blind => "blind",
        }
    }
}

/// One listener's report: what it holds of the blocks it has not decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Authentic datagrams of the session it has heard so far (any round,
    /// repeats included): with the relay's own count, its loss rate.
    pub heard: u64,
    /// Every block decoded.
    pub done: bool,
    /// Every block below this index is decoded.
    pub done_below: u32,
    /// The report covers the blocks below this index: those it lists are
    /// not decoded, those it does not list are. Beyond it, nothing is said.
    pub horizon: u32,
    /// `(block index, symbols held)` of every block in
    /// `done_below..horizon` that is not decoded, in increasing order.
    pub held: Vec<(u32, u32)>,
    /// For each entry of `held`, in order, the highest symbol id heard of
    /// that block (`None`: none yet); empty from a listener that does not
    /// say. With it a report is acted on at once (see [`RepairRound::report`]).
    pub newest: Vec<Option<u32>>,
}

/// What a round did, for the relay's log and the master.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<L> {
    /// Why it ended.
    pub reason: EndReason,
    /// Listeners that reported having decoded everything.
    pub decoded: Vec<L>,
    /// Listeners that reported and had not decoded when it ended (silent
    /// ones included).
    pub undecoded: Vec<L>,
    /// Of those, the ones dropped for silence.
    pub silent: Vec<L>,
    /// Datagrams and bytes of the first pass.
    pub first_pass: (u64, u64),
    /// Datagrams and bytes of repairs ordered by feedback.
    pub repairs: (u64, u64),
    /// Repair cycles ordered (a report asking for a block whose last
    /// cycle was out) and top-ups (a report asking more than the cycle
    /// going out was ordered for): many cycles per block mean reports
    /// come back late or listeners' loss is underestimated.
    pub cycles: (u64, u64),
    /// The highest loss rate measured among listeners (0 when none was).
    pub max_loss: f64,
}

#[derive(Debug, Clone)]
struct Block {
    object: u32,
    sbn: u8,
    k: u32,
    /// The round's first symbol id for this block.
    first_esi: u32,
    /// Next symbol id to send.
    next_esi: u32,
    /// When its latest symbol went out.
    last_sent: Option<Instant>,
    /// First id past the round's range.
    end_esi: u32,
    /// First id past the first pass.
    first_pass_end: u32,
    /// When the first pass, or the last repair ordered, went out: reports
    /// are taken `holdoff` after it.
    settled_at: Option<Instant>,
    /// Repair symbols still to send.
    owed: u32,
    /// The repair cycle in progress was ordered for this many symbols (the
    /// largest want reported since it began): a later report asking no
    /// more than that was already served, one asking more adds only the
    /// difference.
    ordered: u32,
}

impl Block {
    /// Symbols of this block a listener whose newest heard id is `newest`
    /// has still to hear from the round (or lose) at `now`: those sent
    /// after it (unless the block's latest went out `holdoff` ago: then
    /// they are lost, not on their way), the rest of the first pass and
    /// the repairs owed. `None` when a report cannot say: nothing of this
    /// round heard though some went out lately (lost, or on its way?), or
    /// an id not sent yet.
    fn coming(&self, newest: Option<u32>, now: Instant, holdoff: Duration) -> Option<u32> {
        let arrived = self.last_sent.is_none_or(|t| now >= t + holdoff);
        let in_flight = match newest {
            Some(e) if e >= self.next_esi => return None,
            _ if arrived => 0,
            Some(e) if e >= self.first_esi => self.next_esi - 1 - e,
            _ => return None,
        };
        let unsent = self.first_pass_end.saturating_sub(self.next_esi);
        Some(in_flight + unsent + self.owed)
    }
}

#[derive(Debug, Clone)]
struct Listener {
    last_report: Instant,
    done: bool,
    silent: bool,
    /// `(heard, sent)` at its first report: the base of its loss rate.
    base: Option<(u64, u64)>,
    /// Its count of datagrams heard in its last report.
    heard: u64,
    loss: Option<f64>,
}

/// One round on air: the first pass, the repairs listeners' reports ask
/// for, and when to stop. `L` names a listener (the relay uses the client's
/// id).
#[derive(Debug, Clone)]
pub struct RepairRound<L> {
    params: RepairParams,
    datagram_len: u64,
    started: Instant,
    blocks: Vec<Block>,
    /// The block whose first pass is going out.
    first_pass: usize,
    first_pass_done_at: Option<Instant>,
    /// Blocks that owe repairs, by index.
    owing: BTreeSet<usize>,
    /// Alternates repairs with first pass while both are pending.
    repair_turn: bool,
    listeners: BTreeMap<L, Listener>,
    first_pass_sent: (u64, u64),
    repairs_sent: (u64, u64),
    /// New repair cycles and top-ups ordered ([`Outcome::cycles`]).
    cycles: (u64, u64),
    ended: Option<EndReason>,
}

impl<L: Ord + Clone> RepairRound<L> {
    /// Round `round` (from 1) of the session `plan` lays out, starting at
    /// `now`, every datagram `datagram_len` bytes.
    pub fn new(
        plan: &ReceivePlan,
        round: u32,
        params: RepairParams,
        datagram_len: usize,
        now: Instant,
    ) -> Result<Self, LayoutError> {
        let mut blocks = Vec::new();
        for object in 0..plan.shape().object_count() {
            for b in plan.object_layout(object)?.blocks {
                let first = round_first_esi(b.symbols, round);
                let span = round_id_span(b.symbols);
                let extra = (f64::from(b.symbols) * params.proactive.clamp(0.0, 16.0)).ceil();
                // Round 1 sends the source symbols; every pass is at least K.
                let pass = (f64::from(b.symbols) + extra).min(f64::from(span)) as u32;
                blocks.push(Block {
                    object,
                    sbn: b.sbn,
                    k: b.symbols,
                    first_esi: first,
                    next_esi: first,
                    last_sent: None,
                    end_esi: first + span,
                    first_pass_end: first + pass.max(1),
                    settled_at: None,
                    owed: 0,
                    ordered: 0,
                });
            }
        }
        Ok(Self {
            params,
            datagram_len: datagram_len as u64,
            started: now,
            blocks,
            first_pass: 0,
            first_pass_done_at: None,
            owing: BTreeSet::new(),
            repair_turn: true,
            listeners: BTreeMap::new(),
            first_pass_sent: (0, 0),
            repairs_sent: (0, 0),
            cycles: (0, 0),
            ended: None,
        })
    }

    /// The mean time between datagrams so far (zero before any), to tell
    /// when a block's first pass will end.
    fn mean_gap(&self, now: Instant) -> Duration {
        let sent = self.sent().0;
        if sent == 0 {
            return Duration::ZERO;
        }
        now.saturating_duration_since(self.started) / u32::try_from(sent).unwrap_or(u32::MAX)
    }

    /// Blocks in the session.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Datagrams and bytes sent so far.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.first_pass_sent.0 + self.repairs_sent.0,
            self.first_pass_sent.1 + self.repairs_sent.1,
        )
    }

    /// Whether the first pass is out.
    pub fn first_pass_done(&self) -> bool {
        self.first_pass >= self.blocks.len()
    }

    /// Whether this round is likely to send repair symbols: a proactive
    /// share, a loss assumed from the last round, or a listener that has
    /// lost datagrams or asked for a repair. A sender prepares repair
    /// encoders ahead only then (a round without loss needs none).
    pub fn repairs_expected(&self) -> bool {
        self.params.proactive > 0.0
            || self.params.assumed_loss > 0.0
            || self.cycles.0 > 0
            || self
                .listeners
                .values()
                .any(|l| l.loss.is_some_and(|x| x > 0.0))
    }

    /// Listeners that have reported and are neither done nor silent.
    pub fn waiting_for(&self) -> usize {
        self.listeners
            .values()
            .filter(|l| !l.done && !l.silent)
            .count()
    }

    /// Takes `listener`'s report, received at `now`. Returns false, and
    /// changes nothing, for a report that contradicts the session (a block
    /// index or count that cannot be): the caller counts it as hostile.
    pub fn report(&mut self, listener: L, report: &Report, now: Instant) -> bool {
        if self.ended.is_some() || !self.params.feedback {
            return true;
        }
        let n = self.blocks.len() as u64;
        // Any count held is harmless (it only lowers a need); indices are
        // what could reach outside the blocks.
        let plausible = u64::from(report.done_below) <= n
            && report.held.windows(2).all(|w| w[0].0 < w[1].0)
            && report
                .held
                .iter()
                .all(|&(b, _)| b >= report.done_below && b < report.horizon && u64::from(b) < n);
        if !plausible {
            return false;
        }
        let sent = self.sent().0;
        let assumed = self.params.assumed_loss;
        let l = self.listeners.entry(listener).or_insert(Listener {
            last_report: now,
            done: false,
            silent: false,
            base: None,
            heard: 0,
            loss: None,
        });
        l.last_report = now;
        l.silent = false;
        l.done = report.done;
        // A count lower than its last: the listener's receiver started over
        // (a client restarted mid-round counts from nothing). Its loss is
        // measured again from here, not taken as every datagram lost.
        if report.heard < l.heard {
            l.base = None;
        }
        l.heard = report.heard;
        match l.base {
            None => l.base = Some((report.heard, sent)),
            Some((heard0, sent0)) => {
                let sent = sent.saturating_sub(sent0);
                if sent >= MIN_LOSS_SAMPLE {
                    let heard = report.heard.saturating_sub(heard0).min(sent);
                    l.loss = Some(1.0 - heard as f64 / sent as f64);
                }
            }
        }
        if report.done {
            return true;
        }
        let loss = l.loss.unwrap_or(assumed).clamp(0.0, MAX_INFLATE_LOSS);
        let newest = (report.newest.len() == report.held.len()).then_some(&report.newest);
        let gap = self.mean_gap(now);
        for (j, &(index, held)) in report.held.iter().enumerate() {
            let i = index as usize;
            let block = &mut self.blocks[i];
            let need = (block.k + DECODE_MARGIN).saturating_sub(held).max(1);
            let holdoff = self.params.holdoff;
            // What the listener wants sent from now on, how much of it is
            // not covered yet, and the ids left for it.
            let (want, more, room) = match newest.and_then(|n| block.coming(n[j], now, holdoff)) {
                Some(coming) => {
                    // The listener said what it heard last: what it cannot
                    // reflect yet is known, so no holdoff. During the
                    // block's first pass, only once the pass is about to
                    // end (earlier, the need is a guess that later luck may
                    // undo), and for the listener's mean need: the spread
                    // is left to its reports after the pass, or a run of
                    // bad luck early on would be paid for even when later
                    // luck evens it out (over 8 listeners at 5%: 0.2% more
                    // bytes).
                    let unsent = block.first_pass_end.saturating_sub(block.next_esi);
                    if unsent > 0 && gap.saturating_mul(unsent) > holdoff {
                        continue;
                    }
                    let spread = if unsent > 0 { 0.0 } else { SPREAD };
                    // A listener that loses nothing gets every source
                    // symbol and decodes without the margin.
                    let want = if loss > 0.0 {
                        inflate(need, loss, spread)
                    } else {
                        block.k.saturating_sub(held).max(1)
                    };
                    let room = block
                        .end_esi
                        .saturating_sub(block.next_esi.max(block.first_pass_end));
                    (want, want.saturating_sub(coming), room)
                }
                None => {
                    // Only blocks whose symbols had time to arrive and be
                    // reported.
                    let Some(settled) = block.settled_at else {
                        continue;
                    };
                    if now < settled + holdoff {
                        continue;
                    }
                    let want = inflate(need, loss, SPREAD);
                    // While a cycle is going out, a report cannot reflect
                    // it yet: it adds only what it wants beyond what the
                    // cycle was ordered for. Once a cycle is out (and the
                    // holdoff passed), a report starts the next one.
                    let more = if block.owed > 0 {
                        want.saturating_sub(block.ordered)
                    } else {
                        block.ordered = 0;
                        want
                    };
                    (want, more, block.end_esi - block.next_esi)
                }
            };
            let add = more.min(room.saturating_sub(block.owed));
            if add > 0 {
                if block.owed == 0 {
                    self.cycles.0 += 1;
                } else {
                    self.cycles.1 += 1;
                }
                block.owed += add;
                block.ordered = block.ordered.max(want);
                self.owing.insert(i);
            }
        }
        true
    }

    /// What to do at `now`.
    pub fn next(&mut self, now: Instant) -> Next {
        if self.ended.is_some() {
            return Next::End;
        }
        let first_pass_done = self.first_pass_done();
        let out_of_time = self
            .started
            .checked_add(self.params.budget_time)
            .is_some_and(|end| now >= end);
        if first_pass_done && out_of_time {
            return self.end(EndReason::TimeBudget);
        }
        let (_, bytes) = self.sent();
        if bytes.saturating_add(self.datagram_len) > self.params.budget_bytes {
            return self.end(EndReason::ByteBudget);
        }
        if self.params.feedback {
            for l in self.listeners.values_mut() {
                if !l.done && now >= l.last_report + self.params.silence {
                    l.silent = true;
                }
            }
        }
        // A block ordered repairs in its first pass sends them after it.
        let repair = self
            .owing
            .iter()
            .copied()
            .find(|&i| self.blocks[i].next_esi >= self.blocks[i].first_pass_end);
        let take_repair = match repair {
            Some(_) if first_pass_done => true,
            Some(_) => self.repair_turn,
            None => false,
        };
        if let (Some(i), true) = (repair, take_repair) {
            self.repair_turn = false;
            let block = &mut self.blocks[i];
            let esi = block.next_esi;
            block.next_esi += 1;
            block.last_sent = Some(now);
            block.owed -= 1;
            if block.owed == 0 || block.next_esi >= block.end_esi {
                block.owed = 0;
                block.settled_at = Some(now);
                self.owing.remove(&i);
            }
            self.repairs_sent.0 += 1;
            self.repairs_sent.1 += self.datagram_len;
            return Next::Send(SymbolRef {
                object: block.object,
                sbn: block.sbn,
                esi,
                repair: true,
            });
        }
        if !first_pass_done {
            self.repair_turn = true;
            let i = self.first_pass;
            let count = self.blocks.len();
            let block = &mut self.blocks[i];
            let esi = block.next_esi;
            block.next_esi += 1;
            block.last_sent = Some(now);
            if block.next_esi >= block.first_pass_end {
                block.settled_at = Some(now);
                self.first_pass += 1;
                if self.first_pass >= count {
                    self.first_pass_done_at = Some(now);
                }
            }
            self.first_pass_sent.0 += 1;
            self.first_pass_sent.1 += self.datagram_len;
            return Next::Send(SymbolRef {
                object: block.object,
                sbn: block.sbn,
                esi,
                repair: false,
            });
        }
        if !self.params.feedback {
            return self.end(EndReason::Blind);
        }
        // Nobody waits by name for a listener that has not spoken yet: the
        // round gives every one `linger` after its first pass to speak, or
        // a first pass shorter than a report interval would end when the
        // fastest listeners say they are done, before a slower one said it
        // is there.
        let spoken = self.first_pass_done_at.unwrap_or(now) + self.params.linger;
        if self.listeners.is_empty() || self.waiting_for() == 0 {
            if now >= spoken {
                return self.end(EndReason::AllDecoded);
            }
            return Next::Wait(spoken);
        }
        // Wake for the next silence deadline, the time budget, or a report.
        let silence = self
            .listeners
            .values()
            .filter(|l| !l.done && !l.silent)
            .map(|l| l.last_report + self.params.silence)
            .min()
            .unwrap_or(now);
        let budget = self.started.checked_add(self.params.budget_time);
        Next::Wait(budget.map_or(silence, |b| silence.min(b)))
    }

    fn end(&mut self, reason: EndReason) -> Next {
        self.ended = Some(reason);
        Next::End
    }

    /// What the round did. Meaningful once [`RepairRound::next`] said
    /// [`Next::End`]; before, it is the round so far.
    pub fn outcome(&self) -> Outcome<L> {
        let mut out = Outcome {
            reason: self.ended.unwrap_or(EndReason::TimeBudget),
            decoded: Vec::new(),
            undecoded: Vec::new(),
            silent: Vec::new(),
            first_pass: self.first_pass_sent,
            repairs: self.repairs_sent,
            cycles: self.cycles,
            max_loss: 0.0,
        };
        for (id, l) in &self.listeners {
            if l.done {
                out.decoded.push(id.clone());
            } else {
                out.undecoded.push(id.clone());
                if l.silent {
                    out.silent.push(id.clone());
                }
            }
            out.max_loss = out.max_loss.max(l.loss.unwrap_or(0.0));
        }
        out
    }
}

/// Standard deviations of a listener's loss a repair is ordered with, to
/// spare: most blocks then take one repair cycle, not several.
const SPREAD: f64 = 1.5;

/// Symbols to send so that a listener losing `loss` of them gets `need`,
/// with `spread` standard deviations to spare.
fn inflate(need: u32, loss: f64, spread: f64) -> u32 {
    let n = f64::from(need);
    let keep = 1.0 - loss;
    let mean = n / keep;
    let spare = spread * (n * loss).sqrt() / keep;
    (mean + spare).ceil().min(f64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
