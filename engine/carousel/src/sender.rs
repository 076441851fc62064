//! The relay's side: turn objects into the datagrams of a round.
//!
//! Call order: [`Sender::new`] once per session, then for each round and each
//! object `0..object_count()`: read the object's bytes (its
//! [`Sender::object_range`]) from the store, [`Sender::object_encoder`], and
//! send every datagram of [`ObjectEncoder::round`] through the pacer. Only one
//! object is encoded at a time, so the relay's memory is about 2× the object
//! size (the source symbols plus raptorq's intermediate symbols), whatever the
//! artifact's size.
//!
//! Symbol ids per block of `K` source symbols: each round has its own range
//! ([`crate::layout::round_first_esi`]); round 1 starts with the `K` source
//! symbols, every later round sends only repair symbols. Ranges never
//! overlap, so symbols a client keeps from any rounds add up. A round may
//! send any number of its ids ([`crate::RepairRound`] decides how many from
//! the receivers' feedback); [`ObjectEncoder::round`] is the blind
//! schedule of `K × (1 + repair overhead)` per block.
//!
//! Within an object the schedule is position-major: symbol 0 of every block,
//! then symbol 1 of every block, and so on. A burst of `n` lost datagrams
//! then costs each of `n` blocks one symbol instead of one block `n`.

use std::borrow::Cow;
use std::sync::OnceLock;

use raptorq::SourceBlockEncoder;
use thiserror::Error;

use crate::datagram::{CarouselKey, OVERHEAD_LEN, SymbolHeader, write_datagram};
use crate::layout::{
    CarouselConfig, LayoutError, MAX_ESI, ObjectLayout, SessionShape, round_first_esi,
    round_id_span,
};
use crate::plan::ReceivePlan;

/// A round or object the sender cannot encode.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum EncodeError {
    /// The layout cannot be carried out.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// An object of another length than the layout says.
    #[error("object {index} is {got} bytes, the layout says {want}")]
    ObjectLength {
        /// The object.
        index: u32,
        /// Its length.
        got: u64,
        /// The layout's length.
        want: u64,
    },
    /// Round 0 asked for.
    #[error("rounds are numbered from 1")]
    RoundZero,
    /// A round too late for 24-bit symbol ids.
    #[error("round {0} needs symbol ids beyond 24 bits")]
    RoundTooLate(u32),
}

/// One broadcast session of one artifact.
#[derive(Debug, Clone)]
pub struct Sender {
    key: CarouselKey,
    shape: SessionShape,
    config: CarouselConfig,
}

impl Sender {
    /// A session for an artifact of `artifact_len` bytes.
    pub fn new(
        key: CarouselKey,
        artifact_len: u64,
        config: CarouselConfig,
    ) -> Result<Self, EncodeError> {
        config.validate()?;
        let shape = SessionShape::new(artifact_len, config.object_shift, config.symbol_size)?;
        Ok(Self { key, shape, config })
    }

    /// The session's shape, as every datagram carries it.
    pub fn shape(&self) -> SessionShape {
        self.shape
    }

    /// What a receiver of this session holds it to (without block hashes;
    /// add those from the signed manifest).
    pub fn plan(&self) -> Result<ReceivePlan, EncodeError> {
        Ok(ReceivePlan::for_config(
            self.shape.artifact_len,
            &self.config,
        )?)
    }

    /// The configuration the session was made with.
    pub fn config(&self) -> &CarouselConfig {
        &self.config
    }

    /// Objects to send each round.
    pub fn object_count(&self) -> u32 {
        self.shape.object_count()
    }

    /// Where object `index` lies in the artifact: read these bytes from the
    /// store and pass them to [`Sender::object_encoder`].
    pub fn object_range(&self, index: u32) -> Result<std::ops::Range<u64>, EncodeError> {
        Ok(self.shape.object_range(index)?)
    }

    /// The block layout the sender uses for object `index`.
    pub fn object_layout(&self, index: u32) -> Result<ObjectLayout, EncodeError> {
        Ok(ObjectLayout::choose(
            &self.shape,
            index,
            self.config.block_symbols,
        )?)
    }

    /// Encodes object `index` from its bytes (the whole object, nothing
    /// more). This is the expensive step: about 400 MB/s on one core.
    pub fn object_encoder<'a>(
        &self,
        index: u32,
        object: &'a [u8],
    ) -> Result<ObjectEncoder<'a>, EncodeError> {
        self.encoder(index, Cow::Borrowed(object))
    }

    /// [`Sender::object_encoder`] owning the object's bytes, so that the
    /// encoder can be kept (a repair for an earlier object of the round).
    pub fn object_encoder_owned(
        &self,
        index: u32,
        object: Vec<u8>,
    ) -> Result<ObjectEncoder<'static>, EncodeError> {
        self.encoder(index, Cow::Owned(object))
    }

    fn encoder<'a>(
        &self,
        index: u32,
        object: Cow<'a, [u8]>,
    ) -> Result<ObjectEncoder<'a>, EncodeError> {
        let layout = self.object_layout(index)?;
        let got = object.len() as u64;
        if got != layout.len {
            return Err(EncodeError::ObjectLength {
                index,
                got,
                want: layout.len,
            });
        }
        // A block's RaptorQ encoder (its intermediate symbols: about 20 ms
        // for 4,000 symbols) is built when its first repair symbol is
        // asked for: source symbols come straight from the object, so a
        // round that needs no repair builds none, and one that does never
        // stalls the pacer for more than one block at a time.
        let encoders = layout.blocks.iter().map(|_| OnceLock::new()).collect();
        Ok(ObjectEncoder {
            key: self.key.clone(),
            shape: self.shape,
            config: self.config,
            layout,
            data: object,
            encoders,
        })
    }

    /// Datagrams every round sends for the whole artifact.
    pub fn round_datagrams(&self) -> Result<u64, EncodeError> {
        let mut total = 0u64;
        for i in 0..self.object_count() {
            let layout = self.object_layout(i)?;
            total += layout
                .blocks
                .iter()
                .map(|b| u64::from(self.config.symbols_per_round(b.symbols)))
                .sum::<u64>();
        }
        Ok(total)
    }

    /// UDP payload bytes every round sends for the whole artifact.
    pub fn round_bytes(&self) -> Result<u64, EncodeError> {
        let per = (OVERHEAD_LEN + usize::from(self.shape.symbol_size)) as u64;
        Ok(self.round_datagrams()? * per)
    }

    /// Every datagram of `round` for an artifact held in memory, object by
    /// object. For tests and small artifacts; the relay streams objects.
    pub fn encode_round(&self, artifact: &[u8], round: u32) -> Result<Vec<Vec<u8>>, EncodeError> {
        let mut out = Vec::new();
        for i in 0..self.object_count() {
            let range = self.object_range(i)?;
            let start = usize::try_from(range.start).unwrap_or(usize::MAX);
            let end = usize::try_from(range.end).unwrap_or(usize::MAX);
            let object = artifact.get(start..end).ok_or(EncodeError::ObjectLength {
                index: i,
                got: artifact.len() as u64,
                want: range.end,
            })?;
            out.extend(self.object_encoder(i, object)?.round(round)?);
        }
        Ok(out)
    }
}

/// The encoded blocks of one object, ready to produce any round's datagrams.
#[derive(Debug)]
pub struct ObjectEncoder<'a> {
    key: CarouselKey,
    shape: SessionShape,
    config: CarouselConfig,
    layout: ObjectLayout,
    data: Cow<'a, [u8]>,
    /// Per block, built on first use ([`ObjectEncoder::block_encoder`]).
    encoders: Vec<OnceLock<SourceBlockEncoder>>,
}

impl<'a> ObjectEncoder<'a> {
    /// The object's block layout.
    pub fn layout(&self) -> &ObjectLayout {
        &self.layout
    }

    /// Datagrams this object sends in every round.
    pub fn datagram_count(&self) -> u64 {
        self.layout
            .blocks
            .iter()
            .map(|b| u64::from(self.config.symbols_per_round(b.symbols)))
            .sum()
    }

    /// The datagrams of `round` (1-based), in schedule order.
    pub fn round(&self, round: u32) -> Result<RoundDatagrams<'_, 'a>, EncodeError> {
        if round == 0 {
            return Err(EncodeError::RoundZero);
        }
        for block in &self.layout.blocks {
            // A round's symbols must fit in its own id range.
            let s = self.config.symbols_per_round(block.symbols);
            if s > round_id_span(block.symbols) || block.symbols > MAX_ESI {
                return Err(EncodeError::RoundTooLate(round));
            }
        }
        let max_position = self
            .layout
            .blocks
            .iter()
            .map(|b| self.config.symbols_per_round(b.symbols))
            .max()
            .unwrap_or(0);
        Ok(RoundDatagrams {
            encoder: self,
            round,
            position: 0,
            block: 0,
            max_position,
        })
    }

    /// The ESI of schedule position `position` of block `b` in `round`.
    fn esi(&self, b: usize, round: u32, position: u32) -> u32 {
        // Bounded by the check in `round`.
        round_first_esi(self.layout.blocks[b].symbols, round) + position
    }

    fn datagram(&self, b: usize, esi: u32) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(b, esi, &mut out);
        out
    }

    /// Writes the datagram of symbol `esi` of block `sbn` into `out`
    /// (cleared first): any id of any round, as [`crate::RepairRound`]
    /// orders them. False (and `out` empty) for a block the object does not
    /// have or an id beyond 24 bits.
    pub fn write_symbol(&self, sbn: u8, esi: u32, out: &mut Vec<u8>) -> bool {
        out.clear();
        if usize::from(sbn) >= self.layout.blocks.len() || esi > MAX_ESI {
            return false;
        }
        self.write(usize::from(sbn), esi, out);
        true
    }

    fn write(&self, b: usize, esi: u32, out: &mut Vec<u8>) {
        let block = self.layout.blocks[b];
        let header = SymbolHeader {
            session_id: self.key.id(),
            shape: self.shape,
            object: self.layout.index,
            blocks: self.layout.block_count(),
            sbn: block.sbn,
            esi,
        };
        if esi < block.symbols {
            // Source symbols come straight from the object: no copy in raptorq.
            let t = u64::from(self.layout.symbol_size);
            let start = block.offset + u64::from(esi) * t;
            let end = (start + t).min(block.offset + block.len);
            let start = usize::try_from(start).unwrap_or(usize::MAX);
            let end = usize::try_from(end).unwrap_or(usize::MAX);
            let slice = self.data.get(start..end).unwrap_or(&[]);
            write_datagram(&self.key, &header, slice, out);
        } else {
            let packets = self.block_encoder(b).repair_packets(esi - block.symbols, 1);
            let data = packets.first().map(|p| p.data()).unwrap_or(&[]);
            write_datagram(&self.key, &header, data, out);
        }
    }
}

impl ObjectEncoder<'_> {
    /// Builds block `sbn`'s RaptorQ encoder now if it is not built yet: a
    /// sender calls it from another thread ahead of the block's repairs,
    /// so that writing them never waits for it. A block the object does
    /// not have is ignored.
    pub fn prepare(&self, sbn: u8) {
        if usize::from(sbn) < self.layout.blocks.len() {
            self.block_encoder(usize::from(sbn));
        }
    }

    /// Block `b`'s RaptorQ encoder, built the first time a repair symbol of
    /// the block is written (or [`ObjectEncoder::prepare`]d).
    fn block_encoder(&self, b: usize) -> &SourceBlockEncoder {
        self.encoders[b].get_or_init(|| {
            let block = self.layout.blocks[b];
            let oti = self.layout.oti();
            let t = usize::from(self.layout.symbol_size);
            let start = usize::try_from(block.offset).unwrap_or(usize::MAX);
            let real = usize::try_from(block.len).unwrap_or(usize::MAX);
            let padded_len = block.symbols as usize * t;
            let slice = self
                .data
                .get(start..start.saturating_add(real))
                .unwrap_or(&[]);
            if slice.len() == padded_len {
                SourceBlockEncoder::new(block.sbn, &oti, slice)
            } else {
                // The last block's last symbol is zero-padded (RFC 6330 4.4.1.2).
                let mut padded = Vec::with_capacity(padded_len);
                padded.extend_from_slice(slice);
                padded.resize(padded_len, 0);
                SourceBlockEncoder::new(block.sbn, &oti, &padded)
            }
        })
    }
}

/// The datagrams of one object in one round, produced lazily.
#[derive(Debug)]
pub struct RoundDatagrams<'e, 'a> {
    encoder: &'e ObjectEncoder<'a>,
    round: u32,
    position: u32,
    block: usize,
    max_position: u32,
}

impl Iterator for RoundDatagrams<'_, '_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let blocks = &self.encoder.layout.blocks;
        while self.position < self.max_position {
            while self.block < blocks.len() {
                let b = self.block;
                self.block += 1;
                let per_round = self.encoder.config.symbols_per_round(blocks[b].symbols);
                if self.position < per_round {
                    let esi = self.encoder.esi(b, self.round, self.position);
                    return Some(self.encoder.datagram(b, esi));
                }
            }
            self.block = 0;
            self.position += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagram::{KEY_LEN, parse_datagram};
    use std::collections::HashSet;

    fn sender(len: u64) -> Sender {
        let config = CarouselConfig {
            object_shift: 16,
            block_symbols: 20,
            ..CarouselConfig::default()
        };
        Sender::new(CarouselKey::new(5, [1; KEY_LEN]), len, config).unwrap()
    }

    #[test]
    fn rounds_use_disjoint_symbol_ids() {
        let data = vec![9u8; 100_000];
        let s = sender(data.len() as u64);
        let key = CarouselKey::new(5, [1; KEY_LEN]);
        let mut seen = HashSet::new();
        for round in 1..=3 {
            let datagrams = s.encode_round(&data, round).unwrap();
            assert_eq!(datagrams.len() as u64, s.round_datagrams().unwrap());
            for d in datagrams {
                let sym = parse_datagram(&d, &key).unwrap();
                let id = (sym.header.object, sym.header.sbn, sym.header.esi);
                assert!(seen.insert(id), "{id:?} sent twice");
            }
        }
    }

    #[test]
    fn schedule_interleaves_blocks() {
        let data = vec![3u8; 60_000];
        let s = sender(data.len() as u64);
        let key = CarouselKey::new(5, [1; KEY_LEN]);
        let enc = s.object_encoder(0, &data).unwrap();
        let z = enc.layout().block_count() as usize;
        assert!(z > 1);
        let sbns: Vec<u8> = enc
            .round(1)
            .unwrap()
            .take(z)
            .map(|d| parse_datagram(&d, &key).unwrap().header.sbn)
            .collect();
        assert_eq!(sbns, (0..z).map(|b| b as u8).collect::<Vec<_>>());
    }

    #[test]
    fn default_datagrams_are_1448_bytes_within_the_ipv6_mtu() {
        let data = vec![1u8; 5000];
        let s = Sender::new(
            CarouselKey::new(1, [0; KEY_LEN]),
            5000,
            CarouselConfig::default(),
        )
        .unwrap();
        for d in s.encode_round(&data, 1).unwrap() {
            assert_eq!(d.len(), 1448);
            assert!(d.len() <= crate::MAX_DATAGRAM_LEN);
            // 1,500-byte MTU less 40 bytes of IPv6 and 8 of UDP.
            assert!(d.len() <= 1452);
        }
    }

    #[test]
    fn round_zero_and_wrong_object_length_are_errors() {
        let data = vec![0u8; 1000];
        let s = sender(1000);
        let enc = s.object_encoder(0, &data).unwrap();
        assert_eq!(enc.round(0).err(), Some(EncodeError::RoundZero));
        // Ids wrap after ID_ROUNDS rounds instead of running out.
        assert!(enc.round(u32::MAX).is_ok());
        assert!(matches!(
            s.object_encoder(0, &data[..10]),
            Err(EncodeError::ObjectLength { .. })
        ));
    }
}
