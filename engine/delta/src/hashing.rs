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
