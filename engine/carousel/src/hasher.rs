//! SHA3-256 of the artifact, computed from decoded blocks as they come.
//!
//! Blocks arrive out of order. The hasher consumes the block that continues
//! the hashed prefix and keeps later ones up to a memory budget; with the
//! sender's object-by-object schedule a budget of one or two objects
//! suffices. If the budget would be exceeded the hasher gives up and the
//! caller hashes the written file instead.

use std::collections::BTreeMap;

use sha3::{Digest, Sha3_256};

/// In-order SHA3-256 over out-of-order blocks, within a memory budget.
#[derive(Debug, Clone)]
pub struct ArtifactHasher {
    hasher: Sha3_256,
    next: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    budget: usize,
    gave_up: bool,
}

impl ArtifactHasher {
    /// A hasher that buffers at most `budget_bytes` of out-of-order blocks.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            hasher: Sha3_256::new(),
            next: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            budget: budget_bytes,
            gave_up: false,
        }
    }

    /// Feeds the block at `offset`. Returns `false` once the hasher has given
    /// up (budget exceeded, or an overlapping block): hash the file instead.
    pub fn push(&mut self, offset: u64, data: &[u8]) -> bool {
        if self.gave_up {
            return false;
        }
        if offset < self.next || self.pending.contains_key(&offset) {
            return self.give_up();
        }
        if offset > self.next {
            if self.pending_bytes + data.len() > self.budget {
                return self.give_up();
            }
            self.pending_bytes += data.len();
            self.pending.insert(offset, data.to_vec());
            return true;
        }
        self.hasher.update(data);
        self.next += data.len() as u64;
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.next {
                if *entry.key() < self.next {
                    return self.give_up();
                }
                break;
            }
            let block = entry.remove();
            self.pending_bytes -= block.len();
            self.hasher.update(&block);
            self.next += block.len() as u64;
        }
        true
    }

    fn give_up(&mut self) -> bool {
        self.gave_up = true;
        self.pending.clear();
        self.pending_bytes = 0;
        false
    }

    /// Bytes of the prefix hashed so far.
    pub fn hashed(&self) -> u64 {
        self.next
    }

    /// The digest, if exactly `artifact_len` contiguous bytes were hashed.
    pub fn finish(self, artifact_len: u64) -> Option<[u8; 32]> {
        if self.gave_up || self.next != artifact_len || !self.pending.is_empty() {
            return None;
        }
        Some(self.hasher.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_blocks_hash_like_the_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut h = ArtifactHasher::new(1 << 20);
        for (off, len) in [(4000, 3000), (0, 1000), (7000, 3000), (1000, 3000)] {
            assert!(h.push(off as u64, &data[off..off + len]));
        }
        let want: [u8; 32] = Sha3_256::digest(&data).into();
        assert_eq!(h.finish(data.len() as u64), Some(want));
    }

    #[test]
    fn gives_up_past_the_budget_or_on_overlap() {
        let mut h = ArtifactHasher::new(10);
        assert!(!h.push(100, &[0; 11]));
        assert_eq!(h.finish(111), None);
        let mut h = ArtifactHasher::new(100);
        assert!(h.push(0, &[0; 10]));
        assert!(!h.push(5, &[0; 10]));
    }
}
