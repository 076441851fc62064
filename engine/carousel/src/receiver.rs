//! The client's side: gather authenticated symbols and hand out decoded,
//! verified blocks.
//!
//! Call order: [`Receiver::new`] with the session key from the control
//! channel and the [`ReceivePlan`] built from the signed manifest; for every
//! datagram off the socket [`Receiver::handle_datagram`] (count the errors by
//! [`ReceiveError::kind`]); after each call drain [`Receiver::poll_block`]
//! and write every [`DecodedBlock`] at its offset in the artifact's file;
//! [`Receiver::progress`] at any time; stop when [`Receiver::is_complete`].
//! Then check the file's sha3-256 against the manifest (or use
//! [`crate::ArtifactHasher`] on the blocks as they come).
//!
//! Symbols may arrive in any order, from any round, repeated, and the client
//! may join mid-round. The session key is shared by every client, so a tag
//! proves only that *a* key holder sent the datagram: the layout comes from
//! the plan, never from a datagram, and a datagram that disagrees with it is
//! refused as [`ReceiveError::ShapeMismatch`] without changing any state.
//! When the plan has block hashes, a decoded block whose hash differs is not
//! handed out: its symbols are dropped, the block starts over with the
//! symbols that follow, and [`ReceiveError::BlockHashMismatch`] is returned
//! (a poisoner costs one block, not the round). Two datagrams with the same
//! symbol id and different tags prove a forgery before any decoding: the
//! block starts over at once and that id is refused for good
//! ([`ReceiveError::SymbolConflict`]), so garbage sent under the real ids
//! does not linger into the next round. A block that met forgery in round
//! `r` also starts over at its first symbol of a later round: garbage it
//! still holds (whose real twin was lost, or under an id the relay never
//! sends) would otherwise spoil that round's decode too. The round of a
//! symbol is read from its id ([`ReceivePlan::round_of`]); a wrong guess
//! only costs symbols, never accepts bytes. Memory: each block being
//! decoded holds room for its source symbols from its first symbol on
//! (each lands there directly, see `gather`) and the repair symbols it
//! received; a decoded block is handed out and
//! forgotten, so memory stays near the size of the objects in flight, not
//! the artifact.

use std::collections::{HashMap, HashSet, VecDeque};

use raptorq::ObjectTransmissionInformation;
use thiserror::Error;

use crate::datagram::{CarouselKey, DatagramError, Symbol, SymbolHeader, TAG_LEN, authenticate};
use crate::gather::Gather;
use crate::layout::{MAX_ESI, ObjectLayout, SessionShape};
use crate::plan::{BlockHash, ReceivePlan, block_hash};
use crate::repair::Report;

/// Why a datagram did not help. Each variant is a counter the daemon keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReceiveError {
    /// The datagram itself was refused.
    #[error(transparent)]
    Datagram(#[from] DatagramError),
    /// The datagram's artifact shape or block count is not the signed
    /// manifest's; nothing of it was kept.
    #[error("symbol's layout differs from the signed manifest's")]
    ShapeMismatch,
    /// This datagram completed a block whose bytes do not match the signed
    /// block hash: some key holder sent forged symbols for it. The block's
    /// symbols were dropped; it is gathered again from later ones.
    #[error("block {sbn} of object {object} decoded to bytes that fail its signed hash")]
    BlockHashMismatch {
        /// The object.
        object: u32,
        /// The source block.
        sbn: u8,
    },
    /// Two authentic datagrams carried different bytes under the same
    /// symbol id: one of them is forged. The block's symbols were dropped
    /// and that id is refused from now on.
    #[error("symbol {esi} of block {sbn} of object {object} came twice with different bytes")]
    SymbolConflict {
        /// The object.
        object: u32,
        /// The source block.
        sbn: u8,
        /// The symbol id.
        esi: u32,
    },
}

impl ReceiveError {
    /// A short stable name for metrics and the ledger.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Datagram(e) => e.kind(),
            Self::ShapeMismatch => "shape_mismatch",
            Self::BlockHashMismatch { .. } => "block_hash_mismatch",
            Self::SymbolConflict { .. } => "symbol_conflict",
        }
    }
}

/// What an authenticated symbol did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Kept; its block needs more.
    Held,
    /// Its block was already holding this symbol.
    Duplicate,
    /// Its block was already decoded.
    AlreadyDecoded,
    /// It completed its block: [`Receiver::poll_block`] has the bytes.
    BlockDecoded,
    /// Dropped because the in-flight object limit was reached; a later
    /// round sends the object again.
    Deferred,
}

/// A decoded source block, to be written at `offset` in the artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBlock {
    /// Object the block belongs to.
    pub object: u32,
    /// Source block number in the object.
    pub sbn: u8,
    /// Byte offset of `data` in the artifact.
    pub offset: u64,
    /// The block's bytes, without padding.
    pub data: Vec<u8>,
    /// Set when checks are deferred ([`Receiver::defer_block_checks`]):
    /// the signed hash `data` must have. Write the block only if
    /// [`crate::block_hash`] of `data` matches, and report either way with
    /// [`Receiver::block_checked`].
    pub check: Option<BlockHash>,
}

/// How far a session has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The artifact's shape, from the plan.
    pub shape: SessionShape,
    /// Objects in the artifact.
    pub objects: u32,
    /// Objects fully decoded.
    pub objects_done: u32,
    /// Bytes handed out as decoded blocks.
    pub bytes_done: u64,
    /// Symbols held by blocks not yet decoded.
    pub symbols_held: u64,
    /// Source symbols (`K`) of the blocks not yet decoded: decoding needs
    /// about this many plus a fraction of a percent.
    pub symbols_needed: u64,
    /// Symbols accepted so far (new to their block), including those of
    /// blocks later discarded (so not, alone, a sign of progress: see
    /// `bytes_done` and `symbols_held`).
    pub symbols_accepted: u64,
    /// Decoded blocks discarded because they failed their signed hash.
    pub blocks_discarded: u64,
    /// Symbol ids that came with two different tags (each restarted its
    /// block).
    pub symbol_conflicts: u64,
}

/// Per-object progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectProgress {
    /// Source blocks (`Z`).
    pub blocks: u32,
    /// Whether the object is being decoded (counts against the object
    /// limit).
    pub in_flight: bool,
    /// Source blocks decoded.
    pub blocks_done: u32,
    /// Symbols held by its undecoded blocks.
    pub symbols_held: u64,
    /// Source symbols of its undecoded blocks.
    pub symbols_needed: u64,
}

#[derive(Debug)]
enum ObjectSlot {
    Waiting,
    Receiving(Box<ObjectRx>),
    Done { blocks: u32 },
}

#[derive(Debug)]
struct ObjectRx {
    layout: ObjectLayout,
    oti: ObjectTransmissionInformation,
    blocks: Vec<BlockRx>,
    blocks_done: u32,
}

#[derive(Debug)]
enum BlockRx {
    Receiving {
        gather: Gather,
        /// The tag of every symbol the block holds, by ESI.
        esis: HashMap<u32, [u8; TAG_LEN]>,
        /// The highest ESI heard of the block (held or not), for reports.
        newest: Option<u32>,
        guard: Guard,
    },
    /// Decoded, handed out, its hash being checked by the caller.
    Checking {
        guard: Guard,
    },
    Done,
}

/// What a block remembers of forgery across its restarts.
#[derive(Debug, Default)]
struct Guard {
    /// ESIs seen with two different tags, so neither version is taken
    /// again. At most [`MAX_REFUSED`].
    refused: HashSet<u32>,
    /// The round in which forgery was last detected in this block. The
    /// block starts over at its first symbol of a later round: what it still
    /// holds from that round may be garbage whose real twin was lost, and
    /// would spoil the next decode too.
    suspect: Option<u32>,
    /// The round the block's symbols are in (0 before the first). It moves
    /// one round at a time, and starts only at a plausible round, so ids far
    /// beyond what the relay sends (a forger's) cannot move it.
    round: u32,
}

/// The latest round a block's first symbol may claim (later ids are not
/// sent in practice, so they do not set the block's round).
const MAX_FIRST_ROUND: u32 = 64;

/// Conflicting ESIs remembered per block: bounds what a forger can make a
/// receiver hold. Past it, conflicts still restart the block.
const MAX_REFUSED: usize = 4096;

/// One client's view of one broadcast session.
#[derive(Debug)]
pub struct Receiver {
    key: CarouselKey,
    plan: ReceivePlan,
    objects: Vec<ObjectSlot>,
    ready: VecDeque<DecodedBlock>,
    objects_done: u32,
    bytes_done: u64,
    held: u64,
    needed: u64,
    accepted: u64,
    discarded: u64,
    conflicts: u64,
    defer_checks: bool,
    /// Blocks are checked by the artifact's digest, not one by one
    /// ([`Receiver::check_blocks_by_digest`]), but for these, reopened
    /// after the digest failed.
    by_digest: bool,
    reopened: HashSet<(u32, u8)>,
    in_flight: u32,
    max_in_flight: u32,
    /// Authentic datagrams of the session that agreed with the plan.
    heard: u64,
    /// The highest block index any of them was for.
    top_block: Option<u32>,
}

impl Receiver {
    /// A receiver for the session `key` names, held to `plan`, with no
    /// limit on objects in flight.
    pub fn new(key: CarouselKey, plan: ReceivePlan) -> Self {
        Self::with_object_limit(key, plan, u32::MAX)
    }

    /// A receiver that decodes at most `max_objects` objects at a time and
    /// defers symbols of any other object to a later round. This bounds its
    /// memory to about `max_objects` × object size × 1.1 whatever the loss,
    /// at the cost of extra rounds when the loss exceeds the round's repair
    /// overhead. Without it a client that loses more than the overhead holds
    /// symbols for every object until round 2.
    pub fn with_object_limit(key: CarouselKey, plan: ReceivePlan, max_objects: u32) -> Self {
        let shape = plan.shape();
        Self {
            in_flight: 0,
            max_in_flight: max_objects.max(1),
            key,
            // Bounded by the plan's checked shape (at most MAX_OBJECTS).
            objects: (0..shape.object_count())
                .map(|_| ObjectSlot::Waiting)
                .collect(),
            needed: shape.source_symbols(),
            plan,
            ready: VecDeque::new(),
            objects_done: 0,
            bytes_done: 0,
            held: 0,
            accepted: 0,
            discarded: 0,
            conflicts: 0,
            defer_checks: false,
            by_digest: false,
            reopened: HashSet::new(),
            heard: 0,
            top_block: None,
        }
    }

    /// Hands decoded blocks out before their hash is checked, with the
    /// signed hash in [`DecodedBlock::check`], so that hashing (sha3-256,
    /// slower than decoding) runs on another thread than decoding. Each such
    /// block counts as decoded only once [`Receiver::block_checked`]
    /// confirms it; until then its object stays in flight and
    /// [`Receiver::is_complete`] is false.
    pub fn defer_block_checks(&mut self) {
        self.defer_checks = true;
    }

    /// Hands decoded blocks out unchecked and counts them decoded at once,
    /// as if the plan had no block hashes: the caller checks them all in one
    /// pass, by the artifact's sha3-256, and each byte is hashed once
    /// instead of twice (its block's hash and the artifact's). Only if that
    /// digest fails does the caller hash the blocks one by one, and
    /// [`Receiver::reopen_block`] the ones that do not match theirs: those
    /// are gathered again and, from then on, checked as they decode (with
    /// [`Receiver::defer_block_checks`] or inline). A poisoner still costs
    /// one block per forgery, found at the end instead of at once.
    pub fn check_blocks_by_digest(&mut self) {
        self.by_digest = true;
    }

    /// Puts a decoded block back to be gathered from nothing, because its
    /// bytes failed the signed hash after it was counted decoded (see
    /// [`Receiver::check_blocks_by_digest`]); it is checked as it decodes
    /// from now on. Returns false, and changes nothing, for a block the
    /// session does not have or one not decoded.
    pub fn reopen_block(&mut self, object: u32, sbn: u8) -> bool {
        let Ok(layout) = self.plan.object_layout(object) else {
            return false;
        };
        let Some(block_layout) = layout.blocks.get(usize::from(sbn)).copied() else {
            return false;
        };
        let Some(slot) = self.objects.get_mut(object as usize) else {
            return false;
        };
        if let ObjectSlot::Done { blocks } = *slot {
            // The object comes back in flight with its other blocks done.
            let oti = layout.oti();
            *slot = ObjectSlot::Receiving(Box::new(ObjectRx {
                blocks: (0..blocks).map(|_| BlockRx::Done).collect(),
                blocks_done: blocks,
                layout,
                oti,
            }));
            self.objects_done -= 1;
            self.in_flight += 1;
        }
        let ObjectSlot::Receiving(rx) = slot else {
            return false;
        };
        let Some(block) = rx.blocks.get_mut(usize::from(sbn)) else {
            return false;
        };
        if !matches!(block, BlockRx::Done) {
            return false;
        }
        *block = BlockRx::Receiving {
            gather: Gather::new(&block_layout, &rx.oti, rx.layout.symbol_size),
            esis: HashMap::new(),
            newest: None,
            guard: Guard::default(),
        };
        rx.blocks_done -= 1;
        self.needed += u64::from(block_layout.symbols);
        self.bytes_done -= block_layout.len;
        self.discarded += 1;
        self.reopened.insert((object, sbn));
        true
    }

    /// The plan the session is held to.
    pub fn plan(&self) -> &ReceivePlan {
        &self.plan
    }

    /// Authenticates and takes one datagram. Never panics, whatever the bytes.
    pub fn handle_datagram(&mut self, bytes: &[u8]) -> Result<Accepted, ReceiveError> {
        // The symbol's bytes are read where they lie in the datagram: a
        // source symbol is copied once, into its block.
        let (header, data, tag) = authenticate(bytes, &self.key)?;
        self.take(header, data, tag)
    }

    /// Takes one symbol that [`crate::parse_datagram`] authenticated.
    pub fn handle_symbol(&mut self, symbol: Symbol) -> Result<Accepted, ReceiveError> {
        self.take(symbol.header, &symbol.data, symbol.tag)
    }

    fn take(
        &mut self,
        h: SymbolHeader,
        data: &[u8],
        tag: [u8; TAG_LEN],
    ) -> Result<Accepted, ReceiveError> {
        if h.session_id != self.key.id() {
            return Err(DatagramError::ForeignSession(h.session_id).into());
        }
        if data.len() != usize::from(h.shape.symbol_size) || h.esi > MAX_ESI {
            return Err(DatagramError::Malformed("symbol").into());
        }
        // Everything a datagram says about the layout must be the signed
        // manifest's, checked before any state changes.
        if h.shape != self.plan.shape() || h.blocks != self.plan.object_blocks(h.object) {
            return Err(ReceiveError::ShapeMismatch);
        }
        let index = self
            .plan
            .block_index(h.object, h.sbn)
            .ok_or(DatagramError::Malformed("source block number"))?;
        self.heard += 1;
        self.top_block = self.top_block.max(Some(index));
        let slot = self
            .objects
            .get_mut(h.object as usize)
            .ok_or(DatagramError::Malformed("object index"))?;
        if let ObjectSlot::Waiting = slot {
            if self.in_flight >= self.max_in_flight {
                return Ok(Accepted::Deferred);
            }
            let layout = self
                .plan
                .object_layout(h.object)
                .map_err(|_| DatagramError::Malformed("object layout"))?;
            let oti = layout.oti();
            let blocks = layout
                .blocks
                .iter()
                .map(|b| BlockRx::Receiving {
                    gather: Gather::new(b, &oti, layout.symbol_size),
                    esis: HashMap::new(),
                    newest: None,
                    guard: Guard::default(),
                })
                .collect();
            self.in_flight += 1;
            *slot = ObjectSlot::Receiving(Box::new(ObjectRx {
                layout,
                oti,
                blocks,
                blocks_done: 0,
            }));
        }
        let object = match slot {
            ObjectSlot::Done { .. } => return Ok(Accepted::AlreadyDecoded),
            ObjectSlot::Waiting => return Err(DatagramError::Malformed("object layout").into()),
            ObjectSlot::Receiving(object) => object,
        };
        let block_layout = *object
            .layout
            .blocks
            .get(usize::from(h.sbn))
            .ok_or(DatagramError::Malformed("source block number"))?;
        let block = object
            .blocks
            .get_mut(usize::from(h.sbn))
            .ok_or(DatagramError::Malformed("source block number"))?;
        let BlockRx::Receiving {
            gather,
            esis,
            newest,
            guard,
        } = block
        else {
            return Ok(Accepted::AlreadyDecoded);
        };
        *newest = (*newest).max(Some(h.esi));
        if guard.refused.contains(&h.esi) {
            return Ok(Accepted::Duplicate);
        }
        let round = self.plan.round_of(h.esi, block_layout.symbols);
        match esis.get(&h.esi) {
            Some(held) if *held == tag => return Ok(Accepted::Duplicate),
            Some(_) => {
                // Which of the two is forged cannot be told, and the
                // decoder cannot give one symbol back: the block starts
                // over and the id is refused from now on.
                self.held -= esis.len() as u64;
                *gather = Gather::new(&block_layout, &object.oti, object.layout.symbol_size);
                esis.clear();
                if guard.refused.len() < MAX_REFUSED {
                    guard.refused.insert(h.esi);
                }
                guard.suspect = Some(guard.round);
                self.conflicts += 1;
                return Err(ReceiveError::SymbolConflict {
                    object: h.object,
                    sbn: h.sbn,
                    esi: h.esi,
                });
            }
            None => {}
        }
        let new_round = if guard.round == 0 {
            round <= MAX_FIRST_ROUND
        } else {
            round == guard.round + 1
        };
        if new_round {
            guard.round = round;
            if guard.suspect.is_some_and(|r| round > r) {
                self.held -= esis.len() as u64;
                *gather = Gather::new(&block_layout, &object.oti, object.layout.symbol_size);
                esis.clear();
                guard.suspect = None;
            }
        }
        esis.insert(h.esi, tag);
        self.held += 1;
        self.accepted += 1;
        let Some(mut data) = gather.push(h.esi, data) else {
            return Ok(Accepted::Held);
        };
        self.held -= esis.len() as u64;
        data.truncate(usize::try_from(block_layout.len).unwrap_or(usize::MAX));
        let by_digest = self.by_digest && !self.reopened.contains(&(h.object, h.sbn));
        let check = match self.plan.block_hash(h.object, h.sbn).copied() {
            _ if by_digest => None,
            Some(want) if !self.defer_checks => {
                if block_hash(&data) != want {
                    // Which symbols were forged cannot be told apart, so all
                    // of them go; the block starts over with the symbols
                    // that follow (the rest of this round's and every later
                    // round's fresh ESIs).
                    *gather = Gather::new(&block_layout, &object.oti, object.layout.symbol_size);
                    esis.clear();
                    guard.suspect = Some(guard.round);
                    self.discarded += 1;
                    return Err(ReceiveError::BlockHashMismatch {
                        object: h.object,
                        sbn: h.sbn,
                    });
                }
                None
            }
            Some(want) => {
                let guard = std::mem::take(guard);
                *block = BlockRx::Checking { guard };
                Some(want)
            }
            None => None,
        };
        self.ready.push_back(DecodedBlock {
            object: h.object,
            sbn: h.sbn,
            offset: object.layout.offset + block_layout.offset,
            data,
            check,
        });
        if check.is_none() {
            self.complete_block(h.object, h.sbn);
        }
        Ok(Accepted::BlockDecoded)
    }

    /// Reports the check of a block handed out with [`DecodedBlock::check`]
    /// set: `matches` says whether its bytes hash to it. A block that does
    /// not match starts over like one checked inline, and the call returns
    /// [`ReceiveError::BlockHashMismatch`] to be counted. Reports for blocks
    /// not waiting on a check are ignored.
    pub fn block_checked(
        &mut self,
        object: u32,
        sbn: u8,
        matches: bool,
    ) -> Result<(), ReceiveError> {
        let Some(ObjectSlot::Receiving(rx)) = self.objects.get_mut(object as usize) else {
            return Ok(());
        };
        let Some(layout) = rx.layout.blocks.get(usize::from(sbn)).copied() else {
            return Ok(());
        };
        let Some(block @ BlockRx::Checking { .. }) = rx.blocks.get_mut(usize::from(sbn)) else {
            return Ok(());
        };
        if matches {
            self.complete_block(object, sbn);
            return Ok(());
        }
        let mut guard = match block {
            BlockRx::Checking { guard } => std::mem::take(guard),
            _ => Guard::default(),
        };
        guard.suspect = Some(guard.round);
        *block = BlockRx::Receiving {
            gather: Gather::new(&layout, &rx.oti, rx.layout.symbol_size),
            esis: HashMap::new(),
            newest: None,
            guard,
        };
        self.discarded += 1;
        Err(ReceiveError::BlockHashMismatch { object, sbn })
    }

    /// Marks a decoded (and, if it has a hash, checked) block done.
    fn complete_block(&mut self, object: u32, sbn: u8) {
        let Some(ObjectSlot::Receiving(rx)) = self.objects.get_mut(object as usize) else {
            return;
        };
        let Some(layout) = rx.layout.blocks.get(usize::from(sbn)).copied() else {
            return;
        };
        let Some(block) = rx.blocks.get_mut(usize::from(sbn)) else {
            return;
        };
        if matches!(block, BlockRx::Done) {
            return;
        }
        *block = BlockRx::Done;
        self.needed -= u64::from(layout.symbols);
        self.bytes_done += layout.len;
        rx.blocks_done += 1;
        let blocks = rx.layout.block_count();
        if rx.blocks_done == blocks {
            if let Some(slot) = self.objects.get_mut(object as usize) {
                *slot = ObjectSlot::Done { blocks };
            }
            self.objects_done += 1;
            self.in_flight -= 1;
        }
    }

    /// The next decoded block, if any; write it at its offset.
    pub fn poll_block(&mut self) -> Option<DecodedBlock> {
        self.ready.pop_front()
    }

    /// Every object decoded (the blocks may still wait in `poll_block`).
    pub fn is_complete(&self) -> bool {
        self.objects_done as usize == self.objects.len()
    }

    /// The session's progress.
    pub fn progress(&self) -> Progress {
        Progress {
            shape: self.plan.shape(),
            objects: self.objects.len() as u32,
            objects_done: self.objects_done,
            bytes_done: self.bytes_done,
            symbols_held: self.held,
            symbols_needed: self.needed,
            symbols_accepted: self.accepted,
            blocks_discarded: self.discarded,
            symbol_conflicts: self.conflicts,
        }
    }

    /// What this receiver holds of the blocks it has not decoded, for its
    /// relay ([`crate::RepairRound::report`]), listing at most
    /// `max_entries` blocks (the report's horizon stops before the rest).
    /// A block handed out and waiting on its hash check counts as decoded:
    /// if the check fails it is listed again in the next report.
    pub fn report(&self, max_entries: usize) -> Report {
        let mut out = Report {
            heard: self.heard,
            done: self.is_complete(),
            done_below: 0,
            horizon: self.top_block.map_or(0, |b| b + 1),
            held: Vec::new(),
            newest: Vec::new(),
        };
        if out.done {
            out.done_below = u32::try_from(self.plan.block_count()).unwrap_or(u32::MAX);
            out.horizon = out.done_below;
            return out;
        }
        let mut all_done_so_far = true;
        let mut index = 0u32;
        'objects: for (o, slot) in self.objects.iter().enumerate() {
            let blocks = self.plan.object_blocks(o as u32);
            for sbn in 0..blocks {
                if index >= out.horizon {
                    break 'objects;
                }
                let held = match slot {
                    ObjectSlot::Done { .. } => None,
                    ObjectSlot::Waiting => Some((0, None)),
                    ObjectSlot::Receiving(rx) => match rx.blocks.get(sbn as usize) {
                        Some(BlockRx::Receiving { esis, newest, .. }) => {
                            Some((u32::try_from(esis.len()).unwrap_or(u32::MAX), *newest))
                        }
                        _ => None,
                    },
                };
                match held {
                    None if all_done_so_far => out.done_below = index + 1,
                    None => {}
                    Some((held, newest)) => {
                        all_done_so_far = false;
                        if out.held.len() >= max_entries {
                            out.horizon = index;
                            break 'objects;
                        }
                        out.held.push((index, held));
                        out.newest.push(newest);
                    }
                }
                index += 1;
            }
        }
        out
    }

    /// Progress of object `index`.
    pub fn object_progress(&self, index: u32) -> Option<ObjectProgress> {
        let shape = self.plan.shape();
        match self.objects.get(index as usize)? {
            ObjectSlot::Waiting => Some(ObjectProgress {
                in_flight: false,
                blocks: self.plan.object_blocks(index),
                blocks_done: 0,
                symbols_held: 0,
                symbols_needed: u64::from(shape.object_symbols(index).ok()?),
            }),
            ObjectSlot::Done { blocks } => Some(ObjectProgress {
                in_flight: false,
                blocks: *blocks,
                blocks_done: *blocks,
                symbols_held: 0,
                symbols_needed: 0,
            }),
            ObjectSlot::Receiving(object) => {
                let mut held = 0;
                let mut needed = 0;
                for (rx, b) in object.blocks.iter().zip(&object.layout.blocks) {
                    if let BlockRx::Receiving { esis, .. } = rx {
                        held += esis.len() as u64;
                        needed += u64::from(b.symbols);
                    }
                }
                Some(ObjectProgress {
                    in_flight: true,
                    blocks: object.layout.block_count(),
                    blocks_done: object.blocks_done,
                    symbols_held: held,
                    symbols_needed: needed,
                })
            }
        }
    }
}
