//! How an artifact is cut into objects, and each object into RaptorQ source
//! blocks.
//!
//! An artifact is split into fixed-size objects (64 MiB by default) so that
//! any artifact size works with at most 256 source blocks per object and the
//! encoder and decoder only ever hold one object's worth of symbols per
//! object in flight. Each object is split into `Z` source blocks of about
//! `block_symbols` symbols (4,000 by default, so 12 blocks of 3,972 symbols
//! per 64 MiB object). The spike measured blocks of 1,000 to 4,800 symbols
//! at two to three times the speed of the crate's default single huge block
//! with sub-blocking; within that range larger blocks are what let one round
//! survive 5% loss (see [`crate::loss`] for the figures).
//!
//! The layout is a pure function of a [`SessionShape`] and the sender's
//! block size target. Every datagram carries both the shape and `Z`, but a
//! receiver takes them from the signed manifest ([`crate::ReceivePlan`]) and
//! only checks that each datagram agrees: any key holder can sign a
//! datagram.

use std::ops::Range;

use raptorq::ObjectTransmissionInformation;
use thiserror::Error;

/// Payload bytes per symbol. A multiple of [`SYMBOL_ALIGNMENT`]; with the
/// header and tag a datagram is 1,448 bytes, the largest that fits a
/// 1,500-byte MTU over IPv6 (1,452 bytes of UDP payload) as well as IPv4
/// (1,472). [`MAX_SYMBOL_SIZE`](crate::datagram::MAX_SYMBOL_SIZE) (1,432)
/// fits IPv4 only, and would lower a round's bytes by only 0.05%.
pub const SYMBOL_SIZE: u16 = 1408;
/// RaptorQ symbol alignment (`Al`); symbol sizes must be a multiple of it.
pub const SYMBOL_ALIGNMENT: u8 = 8;
/// Objects are `2^DEFAULT_OBJECT_SHIFT` bytes (64 MiB) except the last.
pub const DEFAULT_OBJECT_SHIFT: u8 = 26;
/// Target source symbols per block. Large enough that at 5% random loss one
/// round covers a 256 MiB artifact for all but 4.8 in 10,000 clients (with
/// 1,000-symbol blocks almost none finished in one round, with 2,000 about
/// 91%); small enough to keep encoding and decoding above 1 Gbit/s on one
/// core. [`crate::loss`] has the computation.
pub const DEFAULT_BLOCK_SYMBOLS: u32 = 4000;
/// Repair symbols sent in round 1 beyond the source symbols, as a fraction of
/// them. As large as the budget allows: round 1 sends at most 1.1 × the
/// artifact's size on the wire including the 40 bytes of header and tag per
/// datagram (1.069 × 1448 / 1408 ≈ 1.0994, 1.0996 for 256 MiB once each
/// block's repair count is rounded up). Below about 7 MB the last symbol's
/// padding and that rounding can take a round up to 0.1% over 1.1.
pub const DEFAULT_REPAIR_OVERHEAD: f64 = 0.069;
/// Most source blocks per object (the SBN is a `u8`).
pub const MAX_BLOCKS: u32 = 256;
/// Most source symbols per block that RFC 6330 allows (`K'_max`).
pub const MAX_BLOCK_SYMBOLS: u32 = 56_403;
/// Smallest and largest object sizes, as powers of two.
pub const MIN_OBJECT_SHIFT: u8 = 10;
/// See [`MIN_OBJECT_SHIFT`].
pub const MAX_OBJECT_SHIFT: u8 = 32;
/// Most objects per artifact; bounds the receiver's per-object bookkeeping.
pub const MAX_OBJECTS: u64 = 1 << 20;
/// Largest artifact: the header carries its length in 48 bits.
pub const MAX_ARTIFACT_LEN: u64 = (1 << 48) - 1;
/// ESIs are 24-bit on the wire.
pub const MAX_ESI: u32 = (1 << 24) - 1;

/// A layout or configuration that cannot be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum LayoutError {
    /// A symbol size RaptorQ cannot use.
    #[error("symbol size {0} is not a positive multiple of {SYMBOL_ALIGNMENT}")]
    SymbolSize(u16),
    /// An object size out of range.
    #[error("object shift {0} is outside {MIN_OBJECT_SHIFT}..={MAX_OBJECT_SHIFT}")]
    ObjectShift(u8),
    /// An artifact too long for one session.
    #[error("artifact of {0} bytes is longer than {MAX_ARTIFACT_LEN}")]
    ArtifactTooLong(u64),
    /// More objects than a session numbers.
    #[error("artifact needs {0} objects, more than {MAX_OBJECTS}")]
    TooManyObjects(u64),
    /// An object index past the last object.
    #[error("object {index} is outside the artifact's {count} objects")]
    ObjectOutOfRange {
        /// The index asked for.
        index: u32,
        /// Objects in the artifact.
        count: u32,
    },
    /// A block count that cannot hold the symbols.
    #[error("{blocks} source blocks cannot hold {symbols} symbols")]
    BlockCount {
        /// Source blocks.
        blocks: u32,
        /// Symbols to hold.
        symbols: u32,
    },
    /// A repair overhead out of range.
    #[error("repair overhead {0} is outside 0..=10")]
    RepairOverhead(f64),
    /// A block size target out of range.
    #[error("block size target {0} is outside 1..={MAX_BLOCK_SYMBOLS}")]
    BlockSymbols(u32),
    /// A block-hash list of the wrong length.
    #[error("{got} block hashes for {want} source blocks")]
    BlockHashCount {
        /// Hashes given.
        got: u64,
        /// Source blocks.
        want: u64,
    },
    /// Bytes hashed that are not the artifact's length.
    #[error("{got} bytes hashed for an artifact of {want}")]
    ArtifactLength {
        /// Bytes hashed.
        got: u64,
        /// The artifact's length.
        want: u64,
    },
}

/// How a sender lays out and schedules a session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CarouselConfig {
    /// Payload bytes per symbol, a multiple of 8.
    pub symbol_size: u16,
    /// Objects are `2^object_shift` bytes except the last.
    pub object_shift: u8,
    /// Target source symbols per block (the actual `K` is close to it).
    pub block_symbols: u32,
    /// Repair symbols per round as a fraction of the source symbols, on top
    /// of the source symbols in round 1; later rounds send
    /// `K × (1 + repair_overhead)` fresh repair symbols per block.
    pub repair_overhead: f64,
}

impl Default for CarouselConfig {
    fn default() -> Self {
        Self {
            symbol_size: SYMBOL_SIZE,
            object_shift: DEFAULT_OBJECT_SHIFT,
            block_symbols: DEFAULT_BLOCK_SYMBOLS,
            repair_overhead: DEFAULT_REPAIR_OVERHEAD,
        }
    }
}

impl CarouselConfig {
    /// Checks every field, without regard to any artifact.
    pub fn validate(&self) -> Result<(), LayoutError> {
        check_symbol_size(self.symbol_size)?;
        check_object_shift(self.object_shift)?;
        if !(1..=MAX_BLOCK_SYMBOLS).contains(&self.block_symbols) {
            return Err(LayoutError::BlockSymbols(self.block_symbols));
        }
        if !(0.0..=10.0).contains(&self.repair_overhead) {
            return Err(LayoutError::RepairOverhead(self.repair_overhead));
        }
        Ok(())
    }

    /// Repair symbols a block of `k` source symbols gets in round 1.
    pub fn repair_symbols(&self, k: u32) -> u32 {
        // Float to int: `as` saturates, and the value is at most 11 × K.
        (f64::from(k) * self.repair_overhead).ceil() as u32
    }

    /// Symbols a block of `k` source symbols sends in every round.
    pub fn symbols_per_round(&self, k: u32) -> u32 {
        k.saturating_add(self.repair_symbols(k))
    }
}

/// Rounds whose symbol ids never overlap. Past it, ids of a round may
/// repeat an earlier round's (harmless for decoding a fresh session, only
/// wasteful for a receiver that kept symbols).
pub const ID_ROUNDS: u32 = 128;

/// The symbol ids one round may use for a block of `k` source symbols:
/// room for 16 × K (the most a round's budget lets it send), less for the
/// largest blocks so that [`ID_ROUNDS`] rounds fit in 24-bit ids.
pub fn round_id_span(k: u32) -> u32 {
    let fits = (MAX_ESI - k.min(MAX_ESI)) / ID_ROUNDS;
    k.saturating_mul(16).saturating_add(16).min(fits).max(1)
}

/// The first symbol id of `round` (from 1) in a block of `k` source
/// symbols. Round 1 starts with the source symbols (id 0); each round's
/// ids are `round_id_span(k)` apart, so rounds never repeat an id and a
/// receiver that kept symbols from an earlier round adds the new ones.
pub fn round_first_esi(k: u32, round: u32) -> u32 {
    let r = (round.max(1) - 1) % ID_ROUNDS;
    r * round_id_span(k)
}

/// The round (from 1) a symbol id of a block of `k` source symbols belongs
/// to: the inverse of [`round_first_esi`] within the first [`ID_ROUNDS`].
pub fn round_of_esi(esi: u32, k: u32) -> u32 {
    esi / round_id_span(k) + 1
}

fn check_symbol_size(t: u16) -> Result<(), LayoutError> {
    if t == 0 || !t.is_multiple_of(u16::from(SYMBOL_ALIGNMENT)) {
        return Err(LayoutError::SymbolSize(t));
    }
    Ok(())
}

fn check_object_shift(shift: u8) -> Result<(), LayoutError> {
    if !(MIN_OBJECT_SHIFT..=MAX_OBJECT_SHIFT).contains(&shift) {
        return Err(LayoutError::ObjectShift(shift));
    }
    Ok(())
}

/// What every datagram of a session carries about the artifact: enough to
/// find any object's place and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionShape {
    /// Artifact length in bytes.
    pub artifact_len: u64,
    /// Objects are `2^object_shift` bytes except the last.
    pub object_shift: u8,
    /// Payload bytes per symbol.
    pub symbol_size: u16,
}

impl SessionShape {
    /// A checked shape.
    pub fn new(artifact_len: u64, object_shift: u8, symbol_size: u16) -> Result<Self, LayoutError> {
        let shape = Self {
            artifact_len,
            object_shift,
            symbol_size,
        };
        shape.validate()?;
        Ok(shape)
    }

    /// Checks the fields and that the object count stays bounded.
    pub fn validate(&self) -> Result<(), LayoutError> {
        check_symbol_size(self.symbol_size)?;
        check_object_shift(self.object_shift)?;
        if self.artifact_len > MAX_ARTIFACT_LEN {
            return Err(LayoutError::ArtifactTooLong(self.artifact_len));
        }
        let objects = self.artifact_len.div_ceil(self.object_size()).max(1);
        if objects > MAX_OBJECTS {
            return Err(LayoutError::TooManyObjects(objects));
        }
        // The largest object must fit in 256 blocks of K'_max symbols.
        let symbols = self.object_size().div_ceil(u64::from(self.symbol_size));
        if symbols > u64::from(MAX_BLOCKS) * u64::from(MAX_BLOCK_SYMBOLS) {
            return Err(LayoutError::BlockCount {
                blocks: MAX_BLOCKS,
                symbols: u32::try_from(symbols).unwrap_or(u32::MAX),
            });
        }
        Ok(())
    }

    /// Bytes per object (all but the last).
    pub fn object_size(&self) -> u64 {
        1u64 << self.object_shift
    }

    /// Objects in the artifact; an empty artifact still has one (empty)
    /// object so that its completion can be signalled like any other.
    pub fn object_count(&self) -> u32 {
        let n = self.artifact_len.div_ceil(self.object_size()).max(1);
        // validate() bounds n by MAX_OBJECTS.
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Byte range of object `index` in the artifact.
    pub fn object_range(&self, index: u32) -> Result<Range<u64>, LayoutError> {
        let count = self.object_count();
        if index >= count {
            return Err(LayoutError::ObjectOutOfRange { index, count });
        }
        let start = u64::from(index) << self.object_shift;
        let end = (start + self.object_size()).min(self.artifact_len);
        Ok(start..end.max(start))
    }

    /// Source symbols of object `index` (`Kt`, at least 1).
    pub fn object_symbols(&self, index: u32) -> Result<u32, LayoutError> {
        let range = self.object_range(index)?;
        Ok(symbols_for(range.end - range.start, self.symbol_size))
    }

    /// Source symbols in the whole artifact (the sum of every `K`).
    pub fn source_symbols(&self) -> u64 {
        (0..self.object_count())
            .map(|i| u64::from(self.object_symbols(i).unwrap_or(0)))
            .sum()
    }
}

fn symbols_for(len: u64, symbol_size: u16) -> u32 {
    // Bounded by validate(): object_size / T ≤ 256 × 56403.
    let n = len.div_ceil(u64::from(symbol_size)).max(1);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One source block of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    /// Source block number.
    pub sbn: u8,
    /// Source symbols (`K`).
    pub symbols: u32,
    /// Byte offset of the block in its object.
    pub offset: u64,
    /// Real bytes of the block; the last symbol is zero-padded on the wire.
    pub len: u64,
}

/// The source blocks of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLayout {
    /// Object index in the artifact.
    pub index: u32,
    /// Byte offset of the object in the artifact.
    pub offset: u64,
    /// Bytes of the object.
    pub len: u64,
    /// Payload bytes per symbol.
    pub symbol_size: u16,
    /// The source blocks, in SBN order.
    pub blocks: Vec<BlockLayout>,
}

impl ObjectLayout {
    /// The layout of object `index` with `block_count` source blocks (the `Z`
    /// a datagram carries), partitioned as RFC 6330 section 4.4.1.2 says.
    pub fn new(shape: &SessionShape, index: u32, block_count: u32) -> Result<Self, LayoutError> {
        shape.validate()?;
        let range = shape.object_range(index)?;
        let len = range.end - range.start;
        let kt = symbols_for(len, shape.symbol_size);
        if block_count == 0
            || block_count > MAX_BLOCKS
            || block_count > kt
            || kt.div_ceil(block_count) > MAX_BLOCK_SYMBOLS
        {
            return Err(LayoutError::BlockCount {
                blocks: block_count,
                symbols: kt,
            });
        }
        let (kl, ks, zl, _zs) = raptorq::partition(kt, block_count);
        let t = u64::from(shape.symbol_size);
        let mut blocks = Vec::with_capacity(block_count as usize);
        let mut offset = 0u64;
        for b in 0..block_count {
            let k = if b < zl { kl } else { ks };
            let block_len = (u64::from(k) * t).min(len.saturating_sub(offset));
            blocks.push(BlockLayout {
                // block_count ≤ 256, so b ≤ 255.
                sbn: u8::try_from(b).unwrap_or(u8::MAX),
                symbols: k,
                offset,
                len: block_len,
            });
            offset += u64::from(k) * t;
        }
        Ok(Self {
            index,
            offset: range.start,
            len,
            symbol_size: shape.symbol_size,
            blocks,
        })
    }

    /// The layout a sender picks: `Z = ceil(Kt / block_symbols)`, at most 256.
    pub fn choose(
        shape: &SessionShape,
        index: u32,
        block_symbols: u32,
    ) -> Result<Self, LayoutError> {
        let kt = shape.object_symbols(index)?;
        let z = kt.div_ceil(block_symbols.max(1)).clamp(1, MAX_BLOCKS);
        Self::new(shape, index, z)
    }

    /// Source blocks (`Z`).
    pub fn block_count(&self) -> u32 {
        // At most 256 by construction.
        u32::try_from(self.blocks.len()).unwrap_or(u32::MAX)
    }

    /// Source symbols in the object (`Kt`).
    pub fn source_symbols(&self) -> u32 {
        self.blocks.iter().map(|b| b.symbols).sum()
    }

    /// The OTI raptorq wants: `Z` blocks, one sub-block, alignment 8. Only
    /// symbol size, sub-blocks and alignment matter to the per-block coders.
    pub fn oti(&self) -> ObjectTransmissionInformation {
        // Every raptorq assertion was checked in `new`: T % Al == 0, the
        // transfer length ≤ 2^32 < 942574504275, ceil(Kt / Z) ≤ K'_max.
        // Z = 256 is stored as 0 in the u8 field; raptorq only uses it for
        // its own whole-object coders, which this crate never builds.
        ObjectTransmissionInformation::new(
            self.len,
            self.symbol_size,
            u8::try_from(self.block_count()).unwrap_or(0),
            1,
            SYMBOL_ALIGNMENT,
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_id_ranges_are_disjoint_and_fit_24_bits() {
        for k in [1u32, 10, 1000, 3972, 4000, 20_000, MAX_BLOCK_SYMBOLS] {
            let span = round_id_span(k);
            assert!(
                span > k,
                "k {k}: a round has room beyond its source symbols"
            );
            assert_eq!(round_first_esi(k, 1), 0);
            let last = round_first_esi(k, ID_ROUNDS) + span - 1;
            assert!(last <= MAX_ESI, "k {k}");
            for r in 1..ID_ROUNDS {
                assert_eq!(round_first_esi(k, r) + span, round_first_esi(k, r + 1));
                assert_eq!(round_of_esi(round_first_esi(k, r), k), r);
                assert_eq!(round_of_esi(round_first_esi(k, r) + span - 1, k), r);
            }
            assert_eq!(round_first_esi(k, ID_ROUNDS + 1), 0);
        }
        // The default block's rounds have room for 16 x K.
        assert_eq!(round_id_span(4000), 64_016);
    }

    use super::*;

    #[test]
    fn default_64_mib_object_has_12_blocks_of_about_4000_symbols() {
        let shape = SessionShape::new(3 << 26, DEFAULT_OBJECT_SHIFT, SYMBOL_SIZE).unwrap();
        assert_eq!(shape.object_count(), 3);
        let layout = ObjectLayout::choose(&shape, 1, DEFAULT_BLOCK_SYMBOLS).unwrap();
        assert_eq!(layout.block_count(), 12);
        assert_eq!(layout.source_symbols(), 47_663);
        assert!(
            layout
                .blocks
                .iter()
                .all(|b| (3971..=3972).contains(&b.symbols))
        );
        assert_eq!(layout.offset, 1 << 26);
        let total: u64 = layout.blocks.iter().map(|b| b.len).sum();
        assert_eq!(total, 1 << 26);
    }

    #[test]
    fn blocks_tile_the_object_exactly() {
        let t = u64::from(SYMBOL_SIZE);
        for len in [0u64, 1, t - 1, t, t + 1, 5000, 123_456] {
            let shape = SessionShape::new(len, 16, SYMBOL_SIZE).unwrap();
            for i in 0..shape.object_count() {
                let layout = ObjectLayout::choose(&shape, i, 7).unwrap();
                let mut next = 0;
                for b in &layout.blocks {
                    assert_eq!(b.offset, next);
                    next += u64::from(b.symbols) * t;
                }
                let total: u64 = layout.blocks.iter().map(|b| b.len).sum();
                assert_eq!(total, layout.len, "len {len} object {i}");
            }
        }
    }

    #[test]
    fn empty_artifact_is_one_object_of_one_symbol() {
        let shape = SessionShape::new(0, DEFAULT_OBJECT_SHIFT, SYMBOL_SIZE).unwrap();
        assert_eq!(shape.object_count(), 1);
        assert_eq!(shape.object_symbols(0).unwrap(), 1);
        assert_eq!(shape.source_symbols(), 1);
    }

    #[test]
    fn bad_shapes_and_block_counts_are_rejected() {
        assert!(SessionShape::new(1, 26, 1401).is_err());
        assert!(SessionShape::new(1, 26, 0).is_err());
        assert!(SessionShape::new(1, 9, 1400).is_err());
        assert!(SessionShape::new(1 << 48, 26, 1400).is_err());
        assert!(SessionShape::new(1 << 40, 10, 1400).is_err());
        let shape = SessionShape::new(10_000, 26, 1400).unwrap();
        assert!(ObjectLayout::new(&shape, 0, 0).is_err());
        assert!(ObjectLayout::new(&shape, 0, 9).is_err()); // only 8 symbols
        assert!(ObjectLayout::new(&shape, 1, 1).is_err());
        assert!(ObjectLayout::new(&shape, 0, 8).is_ok());
    }
}
