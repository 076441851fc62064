//! The client's side: gather authenticated symbols and hand out decoded blocks.
//!
//! Call order: [`Receiver::new`] with the session key from the control
//! channel; for every datagram off the socket [`Receiver::handle_datagram`]
//! (count the errors by [`ReceiveError::kind`]); after each call drain
//! [`Receiver::poll_block`] and write every [`DecodedBlock`] at its offset in
//! the artifact's file; [`Receiver::progress`] at any time; stop when
//! [`Receiver::is_complete`]. Then check the file's sha3-256 against the
//! manifest (or use [`crate::ArtifactHasher`] on the blocks as they come).
//!
//! Symbols may arrive in any order, from any round, repeated, and the client
//! may join mid-round: the layout of every object is rebuilt from whichever
//! datagram comes first. Memory: each block being decoded holds its
//! received symbols; a decoded block is handed out and forgotten, so memory
//! stays near the size of the objects in flight, not the artifact.

use std::collections::{HashSet, VecDeque};

use raptorq::{EncodingPacket, PayloadId, SourceBlockDecoder};
use thiserror::Error;

use crate::datagram::{DatagramError, SessionKey, Symbol, object_layout, parse_datagram};
use crate::layout::{MAX_ESI, ObjectLayout, SessionShape};

/// Why a datagram did not help. Each variant is a counter the daemon keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Datagram(#[from] DatagramError),
    #[error("symbol's artifact shape differs from the session's")]
    ShapeMismatch,
    #[error("object {0} changed its block count")]
    LayoutMismatch(u32),
}

impl ReceiveError {
    /// A short stable name for metrics and the ledger.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Datagram(e) => e.kind(),
            Self::ShapeMismatch => "shape_mismatch",
            Self::LayoutMismatch(_) => "layout_mismatch",
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
}

/// How far a session has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The artifact's shape, once any symbol has arrived.
    pub shape: Option<SessionShape>,
    /// Objects in the artifact (0 before the first symbol).
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
}

/// Per-object progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectProgress {
    /// Source blocks (`Z`), 0 if no symbol of the object has arrived.
    pub blocks: u32,
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
    blocks: Vec<BlockRx>,
    blocks_done: u32,
}

#[derive(Debug)]
enum BlockRx {
    Receiving {
        decoder: Box<SourceBlockDecoder>,
        esis: HashSet<u32>,
    },
    Done,
}

/// One client's view of one broadcast session.
#[derive(Debug)]
pub struct Receiver {
    key: SessionKey,
    shape: Option<SessionShape>,
    objects: Vec<ObjectSlot>,
    ready: VecDeque<DecodedBlock>,
    objects_done: u32,
    bytes_done: u64,
    held: u64,
    needed: u64,
    in_flight: u32,
    max_in_flight: u32,
}

impl Receiver {
    /// A receiver for the session `key` names, with no limit on objects in
    /// flight.
    pub fn new(key: SessionKey) -> Self {
        Self::with_object_limit(key, u32::MAX)
    }

    /// A receiver that decodes at most `max_objects` objects at a time and
    /// defers symbols of any other object to a later round. This bounds its
    /// memory to about `max_objects` × object size × 1.1 whatever the loss,
    /// at the cost of extra rounds when the loss exceeds the round's repair
    /// overhead. Without it a client that loses more than the overhead holds
    /// symbols for every object until round 2.
    pub fn with_object_limit(key: SessionKey, max_objects: u32) -> Self {
        Self {
            in_flight: 0,
            max_in_flight: max_objects.max(1),
            key,
            shape: None,
            objects: Vec::new(),
            ready: VecDeque::new(),
            objects_done: 0,
            bytes_done: 0,
            held: 0,
            needed: 0,
        }
    }

    /// Authenticates and takes one datagram. Never panics, whatever the bytes.
    pub fn handle_datagram(&mut self, bytes: &[u8]) -> Result<Accepted, ReceiveError> {
        let symbol = parse_datagram(bytes, &self.key)?;
        self.handle_symbol(symbol)
    }

    /// Takes one symbol that [`parse_datagram`] authenticated.
    pub fn handle_symbol(&mut self, symbol: Symbol) -> Result<Accepted, ReceiveError> {
        let h = symbol.header;
        if h.session_id != self.key.id() {
            return Err(DatagramError::ForeignSession(h.session_id).into());
        }
        if symbol.data.len() != usize::from(h.shape.symbol_size) || h.esi > MAX_ESI {
            return Err(DatagramError::Malformed("symbol").into());
        }
        let shape = match self.shape {
            Some(shape) if shape != h.shape => return Err(ReceiveError::ShapeMismatch),
            Some(shape) => shape,
            None => {
                h.shape
                    .validate()
                    .map_err(|_| DatagramError::Malformed("session shape"))?;
                self.shape = Some(h.shape);
                self.objects = (0..h.shape.object_count())
                    .map(|_| ObjectSlot::Waiting)
                    .collect();
                self.needed = h.shape.source_symbols();
                h.shape
            }
        };
        debug_assert_eq!(shape, h.shape);
        let slot = self
            .objects
            .get_mut(h.object as usize)
            .ok_or(DatagramError::Malformed("object index"))?;
        if let ObjectSlot::Waiting = slot {
            if self.in_flight >= self.max_in_flight {
                return Ok(Accepted::Deferred);
            }
            let layout = object_layout(&h)?;
            let oti = layout.oti();
            let t = u64::from(layout.symbol_size);
            let blocks = layout
                .blocks
                .iter()
                .map(|b| BlockRx::Receiving {
                    // The padded length, so even an empty block has one symbol;
                    // the output is cut to the real length.
                    decoder: Box::new(SourceBlockDecoder::new(
                        b.sbn,
                        &oti,
                        u64::from(b.symbols) * t,
                    )),
                    esis: HashSet::new(),
                })
                .collect();
            self.in_flight += 1;
            *slot = ObjectSlot::Receiving(Box::new(ObjectRx {
                layout,
                blocks,
                blocks_done: 0,
            }));
        }
        let object = match slot {
            ObjectSlot::Done { .. } => return Ok(Accepted::AlreadyDecoded),
            ObjectSlot::Waiting => return Err(DatagramError::Malformed("object layout").into()),
            ObjectSlot::Receiving(object) => object,
        };
        if object.layout.block_count() != h.blocks {
            return Err(ReceiveError::LayoutMismatch(h.object));
        }
        let block_layout = *object
            .layout
            .blocks
            .get(usize::from(h.sbn))
            .ok_or(DatagramError::Malformed("source block number"))?;
        let block = object
            .blocks
            .get_mut(usize::from(h.sbn))
            .ok_or(DatagramError::Malformed("source block number"))?;
        let BlockRx::Receiving { decoder, esis } = block else {
            return Ok(Accepted::AlreadyDecoded);
        };
        if !esis.insert(h.esi) {
            return Ok(Accepted::Duplicate);
        }
        self.held += 1;
        // Below K symbols this returns at once; from K on it tries to solve.
        let packet = EncodingPacket::new(PayloadId::new(h.sbn, h.esi), symbol.data);
        let Some(mut data) = decoder.decode(std::iter::once(packet)) else {
            return Ok(Accepted::Held);
        };
        self.held -= esis.len() as u64;
        self.needed -= u64::from(block_layout.symbols);
        *block = BlockRx::Done;
        data.truncate(usize::try_from(block_layout.len).unwrap_or(usize::MAX));
        self.bytes_done += data.len() as u64;
        self.ready.push_back(DecodedBlock {
            object: h.object,
            sbn: h.sbn,
            offset: object.layout.offset + block_layout.offset,
            data,
        });
        object.blocks_done += 1;
        let blocks = object.layout.block_count();
        if object.blocks_done == blocks {
            *slot = ObjectSlot::Done { blocks };
            self.objects_done += 1;
            self.in_flight -= 1;
        }
        Ok(Accepted::BlockDecoded)
    }

    /// The next decoded block, if any; write it at its offset.
    pub fn poll_block(&mut self) -> Option<DecodedBlock> {
        self.ready.pop_front()
    }

    /// Every object decoded (the blocks may still wait in `poll_block`).
    pub fn is_complete(&self) -> bool {
        self.shape.is_some() && self.objects_done as usize == self.objects.len()
    }

    /// The session's progress.
    pub fn progress(&self) -> Progress {
        Progress {
            shape: self.shape,
            objects: self.objects.len() as u32,
            objects_done: self.objects_done,
            bytes_done: self.bytes_done,
            symbols_held: self.held,
            symbols_needed: self.needed,
        }
    }

    /// Progress of object `index`, once the session's shape is known.
    pub fn object_progress(&self, index: u32) -> Option<ObjectProgress> {
        let shape = self.shape?;
        match self.objects.get(index as usize)? {
            ObjectSlot::Waiting => Some(ObjectProgress {
                blocks: 0,
                blocks_done: 0,
                symbols_held: 0,
                symbols_needed: u64::from(shape.object_symbols(index).ok()?),
            }),
            ObjectSlot::Done { blocks } => Some(ObjectProgress {
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
                    blocks: object.layout.block_count(),
                    blocks_done: object.blocks_done,
                    symbols_held: held,
                    symbols_needed: needed,
                })
            }
        }
    }
}
