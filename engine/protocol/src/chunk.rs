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

/// The receiving side of one transfer: checks each chunk against the rule
/// and gathers the payload.
///
/// It never reserves the announced size up front (a hostile header could
/// claim anything up to `max`); memory grows with the bytes that actually
/// arrive, and never past the announced size.
#[derive(Debug)]
pub struct Reassembly {
    transfer: u64,
    size: u64,
    buf: Vec<u8>,
    done: bool,
}

impl Reassembly {
    /// Starts transfer `transfer` of `size` bytes, refusing sizes above
    /// `max`.
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
            buf: Vec::new(),
            done: false,
        })
    }

    /// How many bytes have arrived.
    pub fn received(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Takes one chunk. Returns the whole payload after the last chunk,
    /// `None` before it.
    pub fn push(&mut self, chunk: &DataChunk) -> Result<Option<Vec<u8>>, TransferError> {
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
        let expected = self.received();
        if chunk.offset != expected {
            return Err(TransferError::OutOfOrder {
                expected,
                got: chunk.offset,
            });
        }
        let end = expected.saturating_add(chunk.bytes.len() as u64);
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
        self.buf.extend_from_slice(&chunk.bytes);
        if chunk.last {
            self.done = true;
            return Ok(Some(std::mem::take(&mut self.buf)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
