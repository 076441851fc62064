//! One source block's symbols on their way to its bytes: what the receiver
//! holds of a block that is not decoded yet.
//!
//! Without loss every source symbol of a block arrives, and the block is
//! those symbols end to end (one sub-block, RFC 6330 §4.4.1.2): each is
//! copied once, straight from the datagram to its place in the block, and
//! no RaptorQ decoder is built. Only when a repair symbol is needed (the
//! block holds `K` symbols but not all of them are source symbols) does a
//! decoder take what is held, and from then on every symbol.
//!
//! No authentication or forgery handling here: the receiver decides what
//! may enter a block and starts it over (a fresh [`Gather`]) when needed.

use raptorq::{EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder};

use crate::layout::BlockLayout;

/// What a block holds before it decodes.
#[derive(Debug)]
pub(crate) struct Gather {
    sbn: u8,
    /// Source symbols (`K`).
    k: u32,
    symbol_size: usize,
    oti: ObjectTransmissionInformation,
    /// The source symbols held, each at its place; allocated at the first.
    source: Vec<u8>,
    /// Which source symbols `source` holds.
    have: Vec<bool>,
    sources: u32,
    /// Repair symbols held while no decoder runs.
    repair: Vec<EncodingPacket>,
    /// Built once repair symbols are needed; takes every symbol after.
    decoder: Option<Box<SourceBlockDecoder>>,
}

impl Gather {
    /// An empty block of `block`'s layout, with symbols of `symbol_size`.
    pub(crate) fn new(
        block: &BlockLayout,
        oti: &ObjectTransmissionInformation,
        symbol_size: u16,
    ) -> Self {
        Self {
            sbn: block.sbn,
            k: block.symbols,
            symbol_size: usize::from(symbol_size),
            oti: *oti,
            source: Vec::new(),
            have: Vec::new(),
            sources: 0,
            repair: Vec::new(),
            decoder: None,
        }
    }

    /// Takes symbol `esi` (`data` is `symbol_size` bytes, and `esi` new to
    /// the block: the receiver checks both) and returns the block's padded
    /// bytes (`K × T`) once they can be had.
    pub(crate) fn push(&mut self, esi: u32, data: &[u8]) -> Option<Vec<u8>> {
        let sbn = self.sbn;
        if let Some(decoder) = &mut self.decoder {
            let packet = EncodingPacket::new(PayloadId::new(sbn, esi), data.to_vec());
            return decoder.decode(std::iter::once(packet));
        }
        let t = self.symbol_size;
        if esi < self.k {
            if self.source.is_empty() {
                // K × T, bounded by the signed layout.
                self.source = vec![0; self.k as usize * t];
                self.have = vec![false; self.k as usize];
            }
            let i = esi as usize;
            let (Some(slot), Some(have)) = (
                self.source.get_mut(i * t..(i + 1) * t),
                self.have.get_mut(i),
            ) else {
                return None;
            };
            if *have || data.len() != t {
                return None;
            }
            slot.copy_from_slice(data);
            *have = true;
            self.sources += 1;
        } else {
            let packet = EncodingPacket::new(PayloadId::new(sbn, esi), data.to_vec());
            self.repair.push(packet);
        }
        if self.sources == self.k {
            self.repair.clear();
            return Some(std::mem::take(&mut self.source));
        }
        if (self.sources as usize).saturating_add(self.repair.len()) < self.k as usize {
            return None;
        }
        // K symbols, some of them repair: the decoder takes over. Below K
        // it returns at once; from K on it tries to solve.
        let block_len = u64::from(self.k) * self.symbol_size as u64;
        let mut decoder = Box::new(SourceBlockDecoder::new(self.sbn, &self.oti, block_len));
        let source = std::mem::take(&mut self.source);
        let have = std::mem::take(&mut self.have);
        let held = have
            .iter()
            .zip(source.chunks_exact(t.max(1)))
            .zip(0u32..)
            .filter(|((have, _), _)| **have)
            .map(|((_, bytes), esi)| EncodingPacket::new(PayloadId::new(sbn, esi), bytes.to_vec()));
        let repair = std::mem::take(&mut self.repair);
        let decoded = decoder.decode(held.chain(repair));
        self.decoder = Some(decoder);
        decoded
    }
}

#[cfg(test)]
mod tests {
    use raptorq::SourceBlockEncoder;

    use super::*;

    const T: u16 = 64;
    const K: u32 = 40;

    fn setup() -> (
        BlockLayout,
        ObjectTransmissionInformation,
        Vec<u8>,
        SourceBlockEncoder,
    ) {
        let len = u64::from(K) * u64::from(T);
        let block = BlockLayout {
            sbn: 0,
            symbols: K,
            offset: 0,
            len,
        };
        let oti = ObjectTransmissionInformation::new(len, T, 1, 1, 8);
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let encoder = SourceBlockEncoder::new(0, &oti, &data);
        (block, oti, data, encoder)
    }

    #[test]
    fn every_source_symbol_gives_the_block_without_a_decoder() {
        let (block, oti, data, encoder) = setup();
        let mut g = Gather::new(&block, &oti, T);
        let packets = encoder.source_packets();
        // In any order: the last one completes it.
        for p in packets[1..].iter().rev() {
            assert_eq!(g.push(p.payload_id().encoding_symbol_id(), p.data()), None);
        }
        let last = &packets[0];
        let got = g.push(last.payload_id().encoding_symbol_id(), last.data());
        assert!(got.as_deref() == Some(&data[..]), "the block's bytes");
        assert!(g.decoder.is_none());
    }

    #[test]
    fn missing_source_symbols_are_decoded_from_repair_symbols() {
        let (block, oti, data, encoder) = setup();
        let mut g = Gather::new(&block, &oti, T);
        // Every third source symbol lost, then repair symbols until it decodes.
        let sources = encoder.source_packets();
        for p in sources
            .iter()
            .filter(|p| p.payload_id().encoding_symbol_id() % 3 != 0)
        {
            assert_eq!(g.push(p.payload_id().encoding_symbol_id(), p.data()), None);
        }
        let mut got = None;
        for p in encoder.repair_packets(0, K) {
            got = g.push(p.payload_id().encoding_symbol_id(), p.data());
            if got.is_some() {
                break;
            }
        }
        assert!(got.as_deref() == Some(&data[..]), "the block's bytes");
        assert!(g.decoder.is_some());
    }
}
