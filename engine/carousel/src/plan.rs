//! What a receiver expects of a session, taken from the signed manifest:
//! the artifact's shape, its block layout and, when the manifest carries
//! them, one hash per source block.
//!
//! Why: every client of every relay holds the same session key, so a tag
//! only proves that *some* key holder sent a datagram. The plan is what a
//! key holder cannot forge. A datagram whose shape or block count differs
//! from the plan is refused without touching the receiver's state, and a
//! block that decodes to bytes other than the signed hash is thrown away and
//! gathered again from later symbols, so a poisoner costs one block, not the
//! round.
//!
//! Block hashes are sha3-256 of the block's real bytes (no padding),
//! truncated to [`BLOCK_HASH_LEN`] bytes. 128 bits is enough here: a forger
//! would need a second preimage of a block the master chose, and the
//! artifact's full sha3-256 is still checked before anything is installed.
//! Truncation halves the list, which travels inside the signed manifest.
//!
//! What it does not do: parse manifests (the client maps the manifest's
//! fields to a plan) or read files ([`BlockHasher`] takes bytes).

use sha3::{Digest, Sha3_256};

use crate::layout::{CarouselConfig, LayoutError, ObjectLayout, SessionShape};

/// Bytes of one block hash.
pub const BLOCK_HASH_LEN: usize = 16;

/// A source block's hash: sha3-256 of its bytes, first 16 bytes.
pub type BlockHash = [u8; BLOCK_HASH_LEN];

/// The hash of one block's real bytes.
pub fn block_hash(data: &[u8]) -> BlockHash {
    let digest = Sha3_256::digest(data);
    let mut out = [0u8; BLOCK_HASH_LEN];
    out.copy_from_slice(&digest[..BLOCK_HASH_LEN]);
    out
}

/// Source blocks in the whole artifact for a sender's `block_symbols`:
/// every object but the last has the first object's `Z`.
pub fn block_count(shape: &SessionShape, block_symbols: u32) -> Result<u64, LayoutError> {
    let objects = shape.object_count();
    let first = ObjectLayout::choose(shape, 0, block_symbols)?.block_count();
    let last = ObjectLayout::choose(shape, objects - 1, block_symbols)?.block_count();
    Ok(u64::from(first) * u64::from(objects - 1) + u64::from(last))
}

/// The layout and block hashes a receiver holds a session to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivePlan {
    shape: SessionShape,
    block_symbols: u32,
    /// `Z` of every object but the last.
    first_blocks: u32,
    /// `Z` of the last object.
    last_blocks: u32,
    blocks: u64,
    hashes: Option<Vec<BlockHash>>,
}

impl ReceivePlan {
    /// The plan of a session with `shape`, laid out by a sender whose
    /// target is `block_symbols` source symbols per block; no block hashes.
    pub fn new(shape: SessionShape, block_symbols: u32) -> Result<Self, LayoutError> {
        shape.validate()?;
        if !(1..=crate::layout::MAX_BLOCK_SYMBOLS).contains(&block_symbols) {
            return Err(LayoutError::BlockSymbols(block_symbols));
        }
        let objects = shape.object_count();
        let first_blocks = ObjectLayout::choose(&shape, 0, block_symbols)?.block_count();
        let last_blocks = ObjectLayout::choose(&shape, objects - 1, block_symbols)?.block_count();
        Ok(Self {
            shape,
            block_symbols,
            first_blocks,
            last_blocks,
            blocks: u64::from(first_blocks) * u64::from(objects - 1) + u64::from(last_blocks),
            hashes: None,
        })
    }

    /// The plan of an artifact of `artifact_len` bytes sent with `config`.
    pub fn for_config(artifact_len: u64, config: &CarouselConfig) -> Result<Self, LayoutError> {
        config.validate()?;
        let shape = SessionShape::new(artifact_len, config.object_shift, config.symbol_size)?;
        Self::new(shape, config.block_symbols)
    }

    /// The round (from 1) in which the sender sends symbol `esi` of a block
    /// of `k` source symbols ([`crate::layout::round_first_esi`]): a hint
    /// for recovering from forgery, never a check. Ids a sender never uses
    /// map to far rounds.
    pub fn round_of(&self, esi: u32, k: u32) -> u32 {
        crate::layout::round_of_esi(esi, k)
    }

    /// The same plan, checking each decoded block against `hashes` (one per
    /// block, in artifact order: object by object, SBN by SBN).
    pub fn with_block_hashes(mut self, hashes: Vec<BlockHash>) -> Result<Self, LayoutError> {
        if hashes.len() as u64 != self.blocks {
            return Err(LayoutError::BlockHashCount {
                got: hashes.len() as u64,
                want: self.blocks,
            });
        }
        self.hashes = Some(hashes);
        Ok(self)
    }

    /// The artifact's shape every datagram must carry.
    pub fn shape(&self) -> SessionShape {
        self.shape
    }

    /// The sender's target symbols per block.
    pub fn block_symbols(&self) -> u32 {
        self.block_symbols
    }

    /// Source blocks in the artifact.
    pub fn block_count(&self) -> u64 {
        self.blocks
    }

    /// Whether decoded blocks are checked against signed hashes.
    pub fn has_block_hashes(&self) -> bool {
        self.hashes.is_some()
    }

    /// `Z` of object `index` (0 if out of range).
    pub fn object_blocks(&self, index: u32) -> u32 {
        let objects = self.shape.object_count();
        if index >= objects {
            0
        } else if index + 1 == objects {
            self.last_blocks
        } else {
            self.first_blocks
        }
    }

    /// The block layout of object `index`.
    pub fn object_layout(&self, index: u32) -> Result<ObjectLayout, LayoutError> {
        ObjectLayout::new(&self.shape, index, self.object_blocks(index))
    }

    /// The index of block `sbn` of object `object` among all the
    /// artifact's blocks (object by object, SBN by SBN), if it has one.
    pub fn block_index(&self, object: u32, sbn: u8) -> Option<u32> {
        if u32::from(sbn) >= self.object_blocks(object) {
            return None;
        }
        let index = u64::from(object) * u64::from(self.first_blocks) + u64::from(sbn);
        u32::try_from(index).ok()
    }

    /// The signed hash of block `sbn` of object `object`, if the plan has
    /// hashes.
    pub fn block_hash(&self, object: u32, sbn: u8) -> Option<&BlockHash> {
        let index = u64::from(object) * u64::from(self.first_blocks) + u64::from(sbn);
        self.hashes.as_ref()?.get(usize::try_from(index).ok()?)
    }
}

/// Computes every block's hash from the artifact's bytes in order, in one
/// pass, as registration reads them.
#[derive(Debug, Clone)]
pub struct BlockHasher {
    plan: ReceivePlan,
    object: u32,
    layout: ObjectLayout,
    sbn: usize,
    /// Bytes still to come in the current block.
    left: u64,
    consumed: u64,
    overflow: bool,
    hasher: Sha3_256,
    out: Vec<BlockHash>,
}

impl BlockHasher {
    /// A hasher for the blocks `plan` lays out. The output holds
    /// `plan.block_count()` hashes: bound it before calling.
    pub fn new(plan: &ReceivePlan) -> Result<Self, LayoutError> {
        let layout = plan.object_layout(0)?;
        let left = layout.blocks.first().map_or(0, |b| b.len);
        Ok(Self {
            plan: plan.clone(),
            object: 0,
            layout,
            sbn: 0,
            left,
            consumed: 0,
            overflow: false,
            hasher: Sha3_256::new(),
            out: Vec::with_capacity(usize::try_from(plan.block_count()).unwrap_or(0)),
        })
    }

    /// Feeds the next bytes of the artifact.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.left == 0 && !self.advance() {
                self.overflow = true;
                return;
            }
            let n = usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .min(data.len());
            self.hasher.update(&data[..n]);
            self.left -= n as u64;
            self.consumed += n as u64;
            data = &data[n..];
        }
    }

    /// Closes the current block and opens the next; false past the last.
    fn advance(&mut self) -> bool {
        let done = std::mem::replace(&mut self.hasher, Sha3_256::new()).finalize();
        let mut hash = [0u8; BLOCK_HASH_LEN];
        hash.copy_from_slice(&done[..BLOCK_HASH_LEN]);
        self.out.push(hash);
        self.sbn += 1;
        if self.sbn >= self.layout.blocks.len() {
            if self.object + 1 >= self.plan.shape.object_count() {
                return false;
            }
            self.object += 1;
            match self.plan.object_layout(self.object) {
                Ok(layout) => self.layout = layout,
                Err(_) => return false,
            }
            self.sbn = 0;
        }
        self.left = self.layout.blocks.get(self.sbn).map_or(0, |b| b.len);
        true
    }

    /// The hashes, if exactly the artifact's bytes were fed.
    pub fn finish(mut self) -> Result<Vec<BlockHash>, LayoutError> {
        let want = self.plan.shape.artifact_len;
        if self.overflow || self.consumed != want {
            return Err(LayoutError::ArtifactLength {
                got: self.consumed,
                want,
            });
        }
        // Closes the last block (the empty artifact's only block included).
        let _ = self.advance();
        if self.out.len() as u64 != self.plan.block_count() {
            return Err(LayoutError::BlockHashCount {
                got: self.out.len() as u64,
                want: self.plan.block_count(),
            });
        }
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(len: u64) -> ReceivePlan {
        ReceivePlan::new(SessionShape::new(len, 12, 16).unwrap(), 20).unwrap()
    }

    /// The hashes computed block by block from the layouts.
    fn by_layout(plan: &ReceivePlan, data: &[u8]) -> Vec<BlockHash> {
        let mut out = Vec::new();
        for i in 0..plan.shape().object_count() {
            let l = plan.object_layout(i).unwrap();
            for b in &l.blocks {
                let s = (l.offset + b.offset) as usize;
                out.push(block_hash(&data[s..s + b.len as usize]));
            }
        }
        out
    }

    #[test]
    fn streaming_hashes_match_the_layout_whatever_the_chunking() {
        for len in [0u64, 1, 15, 16, 17, 4095, 4096, 4097, 12_345] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let p = plan(len);
            let want = by_layout(&p, &data);
            assert_eq!(want.len() as u64, p.block_count(), "len {len}");
            for chunk in [1usize, 7, 1000, 1 << 20] {
                let mut h = BlockHasher::new(&p).unwrap();
                for c in data.chunks(chunk) {
                    h.update(c);
                }
                assert_eq!(h.finish().unwrap(), want, "len {len} chunk {chunk}");
            }
        }
    }

    #[test]
    fn too_few_or_too_many_bytes_are_refused() {
        let p = plan(5000);
        let mut h = BlockHasher::new(&p).unwrap();
        h.update(&[0; 4999]);
        assert!(h.finish().is_err());
        let mut h = BlockHasher::new(&p).unwrap();
        h.update(&[0; 5001]);
        assert!(h.finish().is_err());
        assert!(p.clone().with_block_hashes(vec![[0; 16]; 3]).is_err());
    }

    #[test]
    fn block_hash_lookup_follows_object_and_sbn() {
        let data: Vec<u8> = (0..12_345u32).map(|i| i as u8).collect();
        let p = plan(12_345);
        let hashes = by_layout(&p, &data);
        let p = p.with_block_hashes(hashes.clone()).unwrap();
        let mut i = 0;
        for o in 0..p.shape().object_count() {
            for sbn in 0..p.object_blocks(o) {
                assert_eq!(p.block_hash(o, sbn as u8), Some(&hashes[i]));
                i += 1;
            }
        }
    }
}
