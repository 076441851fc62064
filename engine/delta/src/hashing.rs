//! sha3-256 on a helper thread, fed with the decoder's output buffers, so
//! that hashing the result overlaps decoding and writing it.
//!
//! sha3-256 runs at about 300 MB/s here, slower than zstd decodes: hashing
//! inline would make it the client's bottleneck.

use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use haifu_core::Digest;
use sha3::{Digest as _, Sha3_256};

/// Buffers in flight between the decoder and the hasher.
const BUFFERS: usize = 4;

/// The decoder's side of the hashing thread: take a buffer, fill it, submit
/// it; the hasher hands it back once hashed.
pub(crate) struct PipelinedHasher<'scope> {
    to_hasher: SyncSender<(Vec<u8>, usize)>,
    free: Receiver<Vec<u8>>,
    handle: ScopedJoinHandle<'scope, Digest>,
    size: usize,
}

impl<'scope> PipelinedHasher<'scope> {
    /// Starts the hashing thread with [`BUFFERS`] buffers of `size` bytes.
    pub(crate) fn start<'env>(scope: &'scope Scope<'scope, 'env>, size: usize) -> Self {
        let (to_hasher, work) = sync_channel::<(Vec<u8>, usize)>(BUFFERS);
        let (give_back, free) = channel();
        for _ in 0..BUFFERS {
            // The receiver is alive right here.
            let _ = give_back.send(vec![0u8; size]);
        }
        let handle = scope.spawn(move || {
            let mut h = Sha3_256::new();
            for (buf, n) in work {
                h.update(buf.get(..n).unwrap_or_default());
                // The decoder may have stopped early: nobody to give it to.
                let _ = give_back.send(buf);
            }
            Digest::from_bytes(h.finalize().into())
        });
        Self {
            to_hasher,
            free,
            handle,
            size,
        }
    }

    /// A buffer to decode into (waits while all are being hashed).
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        // The hasher only stops early by panicking; `finish` surfaces that
        // panic, so carry on with a fresh buffer until then.
        self.free.recv().unwrap_or_else(|_| vec![0u8; self.size])
    }

    /// Hashes the first `n` bytes of `buf` (after the ones submitted before).
    pub(crate) fn submit(&mut self, buf: Vec<u8>, n: usize) {
        // An error means the hasher panicked: see `buffer`.
        let _ = self.to_hasher.send((buf, n));
    }

    /// The digest of everything submitted.
    pub(crate) fn finish(self) -> Digest {
        drop(self.to_hasher);
        self.handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::container::digest_of;

    /// Feeds `data` through the hashing thread in pieces of `piece` bytes
    /// (each in a buffer of `size`), as the decoder does.
    fn pipelined(data: &[u8], size: usize, piece: usize) -> Digest {
        std::thread::scope(|s| {
            let mut hasher = PipelinedHasher::start(s, size);
            for part in data.chunks(piece) {
                let mut buf = hasher.buffer();
                buf[..part.len()].copy_from_slice(part);
                hasher.submit(buf, part.len());
            }
            hasher.finish()
        })
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9) >> 7) as u8)
            .collect()
    }

    #[test]
    fn pipelined_digest_equals_the_sequential_one() {
        // Sizes around sha3-256's 136-byte block, and more pieces than
        // buffers so every buffer comes back and is reused.
        for len in [0, 1, 135, 136, 137, 4096, 100_003] {
            let data = sample(len);
            for (size, piece) in [(1, 1), (136, 136), (4096, 1000), (1 << 20, 1 << 20)] {
                if piece <= size {
                    assert_eq!(
                        pipelined(&data, size, piece),
                        digest_of(&data),
                        "len {len}, pieces of {piece}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_the_submitted_prefix_of_a_buffer_is_hashed() {
        let data = sample(300);
        let digest = std::thread::scope(|s| {
            let mut hasher = PipelinedHasher::start(s, 1024);
            let mut buf = hasher.buffer();
            // Stale bytes past `n` from an earlier use must not count.
            buf.fill(0xAA);
            buf[..300].copy_from_slice(&data);
            hasher.submit(buf, 300);
            hasher.finish()
        });
        assert_eq!(digest, digest_of(&data));
    }

    #[test]
    fn nothing_submitted_is_the_digest_of_nothing() {
        let digest = std::thread::scope(|s| PipelinedHasher::start(s, 64).finish());
        assert_eq!(digest, digest_of(b""));
    }
}
