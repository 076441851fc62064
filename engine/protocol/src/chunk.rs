//! Chunked transfer: a payload too large for one frame (an artifact, a
//! delta) goes as [`DataChunk`]s, in order, each at most one frame.
//!
//! The rule: a header message ([`ArtifactHeader`](crate::ArtifactHeader) or
//! [`DeltaResponse`](crate::DeltaResponse)) announces the transfer id and the
//! total size; then chunks follow on the same stream with offsets
//! 0, len₀, len₀+len₁, … with no gap or overlap; the final chunk has
//! `last = true` and ends exactly at the total size. An empty payload is one
//! empty chunk with `last = true`. The receiver checks all of it with
//! [`Reassembly`]; any breach aborts the transfer (answered with
//! [`ErrorCode::TransferFailed`](crate::ErrorCode::TransferFailed)), not the
//! connection.

use crate::message::DataChunk;

/// Splits `payload` into chunks of at most `max_chunk` bytes (at least 1).
pub fn split(transfer: u64, payload: &[u8], max_chunk: usize) -> Vec<DataChunk> {
    let max_chunk = max_chunk.max(1);
    if payload.is_empty() {
        return vec![DataChunk {
            transfer,
            offset: 0,
            bytes: Vec::new(),
            last: true,
        }];
    }
    let n = payload.len().div_ceil(max_chunk);
    payload
        .chunks(max_chunk)
        .enumerate()
        .map(|(i, c)| DataChunk {
            transfer,
            offset: (i * max_chunk) as u64,
            bytes: c.to_vec(),
            last: i + 1 == n,
        })
        .collect()
}

/// The chunks of `payload` from byte `start` on, for a transfer resumed
/// there (offsets as in the whole payload); the whole payload when `start`
/// is not inside it.
pub fn split_from(transfer: u64, payload: &[u8], start: u64, max_chunk: usize) -> Vec<DataChunk> {
    let Some(rest) = usize::try_from(start)
        .ok()
        .filter(|s| *s > 0 && *s < payload.len())
        .map(|s| &payload[s..])
    else {
        return split(transfer, payload, max_chunk);
    };
    let mut chunks = split(transfer, rest, max_chunk);
    for c in &mut chunks {
        c.offset += start;
    }
    chunks
}

/// Why a chunk was refused; the transfer is abandoned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The header announced more than the receiver accepts.
    #[error("transfer {transfer} announces {size} bytes, more than the limit of {max}")]
    TooLarge {
        /// The transfer.
        transfer: u64,
        /// The size announced.
        size: u64,
        /// The receiver's limit.
        max: u64,
    },
    /// The chunk belongs to another transfer.
    #[error("chunk of transfer {got} arrived on transfer {expected}")]
    WrongTransfer {
        /// The transfer expected.
        expected: u64,
        /// The chunk's transfer.
        got: u64,
    },
    /// The chunk does not start where the previous one ended.
    #[error("chunk at offset {got}, expected offset {expected}")]
    OutOfOrder {
        /// The offset expected.
        expected: u64,
        /// The chunk's offset.
        got: u64,
    },
    /// The chunk runs past the announced size.
    #[error("chunk ends at {end}, past the announced size {size}")]
    Overrun {
        /// Where it ends.
        end: u64,
        /// The size announced.
        size: u64,
    },
    /// The last chunk ends before the announced size.
    #[error("last chunk ends at {end}, short of the announced size {size}")]
    Short {
        /// Where it ends.
        end: u64,
        /// The size announced.
        size: u64,
    },
    /// A chunk arrived after the last one.
    #[error("chunk after the end of transfer {transfer}")]
    Finished {
        /// The transfer.
        transfer: u64,
    },
}

/// The order and bounds of one transfer's chunks, checked before a byte is
/// kept: the transfer id, no chunk after the last, each chunk where the
/// previous one ended, none past the announced size, the last one ending
/// exactly at it. For receivers that stream the bytes elsewhere (a file, a
/// hasher); [`Reassembly`] keeps them in memory on top of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkCursor {
    transfer: u64,
    size: u64,
    received: u64,
    done: bool,
}

impl ChunkCursor {
    /// Starts transfer `transfer` of `size` bytes, refusing sizes above
    /// `max` before anything is sized by it.
    pub fn new(transfer: u64, size: u64, max: u64) -> Result<Self, TransferError> {
        if size > max {
            return Err(TransferError::TooLarge {
                transfer,
                size,
                max,
            });
        }
        Ok(Self {
            transfer,
            size,
            received: 0,
            done: false,
        })
    }

    /// Like [`ChunkCursor::new`], for a transfer resumed at byte `at`:
    /// the first chunk must start there (`at` is bounded by `size`).
    pub fn resumed(transfer: u64, size: u64, max: u64, at: u64) -> Result<Self, TransferError> {
        let mut c = Self::new(transfer, size, max)?;
        c.received = at.min(size);
        Ok(c)
    }

    /// The announced size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many bytes have arrived.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Checks `chunk` against the rules and counts it; true for the last
    /// chunk. A refused chunk changes nothing.
    pub fn check(&mut self, chunk: &DataChunk) -> Result<bool, TransferError> {
        if chunk.transfer != self.transfer {
            return Err(TransferError::WrongTransfer {
                expected: self.transfer,
                got: chunk.transfer,
            });
        }
        if self.done {
            return Err(TransferError::Finished {
                transfer: self.transfer,
            });
        }
        if chunk.offset != self.received {
            return Err(TransferError::OutOfOrder {
                expected: self.received,
                got: chunk.offset,
            });
        }
        let end = self.received.saturating_add(chunk.bytes.len() as u64);
        if end > self.size {
            return Err(TransferError::Overrun {
                end,
                size: self.size,
            });
        }
        if chunk.last && end != self.size {
            return Err(TransferError::Short {
                end,
                size: self.size,
            });
        }
        self.received = end;
        self.done = chunk.last;
        Ok(chunk.last)
    }
}

/// The receiving side of one transfer: checks each chunk against the rule
/// and gathers the payload.
///
/// It never reserves the announced size up front (a hostile header could
/// claim anything up to `max`); memory grows with the bytes that actually
/// arrive, and never past the announced size.
#[derive(Debug)]
pub struct Reassembly {
    cursor: ChunkCursor,
    buf: Vec<u8>,
}

impl Reassembly {
    /// Starts transfer `transfer` of `size` bytes, refusing sizes above
    /// `max`.
    pub fn new(transfer: u64, size: u64, max: u64) -> Result<Self, TransferError> {
        Ok(Self {
            cursor: ChunkCursor::new(transfer, size, max)?,
            buf: Vec::new(),
        })
    }

    /// How many bytes have arrived.
    pub fn received(&self) -> u64 {
        self.cursor.received()
    }

    /// Takes one chunk. Returns the whole payload after the last chunk,
    /// `None` before it.
    pub fn push(&mut self, chunk: &DataChunk) -> Result<Option<Vec<u8>>, TransferError> {
        let last = self.cursor.check(chunk)?;
        self.buf.extend_from_slice(&chunk.bytes);
        Ok(last.then(|| std::mem::take(&mut self.buf)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chunk(transfer: u64, offset: u64, len: usize, last: bool) -> DataChunk {
        DataChunk {
            transfer,
            offset,
            last,
            bytes: vec![0; len],
        }
    }

    #[test]
    fn chunks_are_checked_against_the_announced_size_and_order() {
        let mut t = ChunkCursor::new(7, 100, 100).unwrap();
        assert!(!t.check(&chunk(7, 0, 60, false)).unwrap());
        assert!(matches!(
            t.check(&chunk(8, 60, 10, false)),
            Err(TransferError::WrongTransfer { .. })
        ));
        assert!(matches!(
            t.check(&chunk(7, 50, 10, false)),
            Err(TransferError::OutOfOrder { .. })
        ));
        assert!(matches!(
            t.check(&chunk(7, 60, 41, false)),
            Err(TransferError::Overrun { .. })
        ));
        assert!(matches!(
            t.check(&chunk(7, 60, 30, true)),
            Err(TransferError::Short { .. })
        ));
        assert!(t.check(&chunk(7, 60, 40, true)).unwrap());
        assert!(matches!(
            t.check(&chunk(7, 100, 0, true)),
            Err(TransferError::Finished { .. })
        ));
    }

    #[test]
    fn split_and_reassemble_agree_at_every_size() {
        for len in [0usize, 1, 6, 7, 8, 20, 21] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let chunks = split(9, &payload, 7);
            assert!(chunks.iter().all(|c| c.bytes.len() <= 7));
            assert_eq!(chunks.iter().filter(|c| c.last).count(), 1);
            let mut r = Reassembly::new(9, len as u64, 100).unwrap();
            let mut out = None;
            for c in &chunks {
                out = r.push(c).unwrap();
            }
            assert_eq!(out.unwrap(), payload);
        }
    }

    #[test]
    fn breaches_of_the_rule_are_refused() {
        let chunks = split(1, &[0u8; 10], 4);
        let mut r = Reassembly::new(1, 10, 100).unwrap();
        assert!(matches!(
            r.push(&chunks[1]),
            Err(TransferError::OutOfOrder { .. })
        ));
        let mut other = chunks[0].clone();
        other.transfer = 2;
        assert!(matches!(
            r.push(&other),
            Err(TransferError::WrongTransfer { .. })
        ));
        let mut r = Reassembly::new(1, 3, 100).unwrap();
        assert!(matches!(
            r.push(&chunks[0]),
            Err(TransferError::Overrun { .. })
        ));
        let mut r = Reassembly::new(1, 12, 100).unwrap();
        for c in &chunks[..2] {
            r.push(c).unwrap();
        }
        assert!(matches!(
            r.push(&chunks[2]),
            Err(TransferError::Short { .. })
        ));
        assert!(matches!(
            Reassembly::new(1, 101, 100),
            Err(TransferError::TooLarge { .. })
        ));
        let mut r = Reassembly::new(1, 10, 100).unwrap();
        for c in &chunks {
            r.push(c).unwrap();
        }
        assert!(matches!(
            r.push(&chunks[0]),
            Err(TransferError::Finished { .. })
        ));
    }
}
