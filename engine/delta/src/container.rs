//! The delta container: a fixed header naming the base and the target, then
//! one or more chunks, each a record followed by one standard zstd frame.
//!
//! ```text
//! header (112 bytes, little-endian)
//!   0  magic "HAIFUDLT"          8
//!   8  format version         u16   1 or 3 (2 is retired)
//!  10  window log (max)         u8   10..=31
//!  11  method                   u8   0 patch-from (version 1), 1 bsdiff (version 3)
//!  12  zstd level              i32   informative: what made it
//!  16  chunk count             u32   >= 1
//!  20  reserved (0)            u32
//!  24  from sha3-256          [32]
//!  56  to sha3-256            [32]
//!  88  from size               u64
//!  96  to size                 u64
//! 104  header check           [8]   first 8 bytes of sha3-256(bytes 0..104)
//! chunk record (32 bytes), then frame_len bytes of zstd frame
//!   0  ref offset in base      u64
//!   8  ref length              u64
//!  16  output length           u64
//!  24  frame length            u64
//! ```
//!
//! Method patch-from: a frame decodes with the base's `ref offset .. +ref
//! length` as its zstd reference prefix, which is what `zstd -d --long=31
//! --patch-from=REF` does: a single-chunk delta's frame is a plain `zstd
//! --patch-from` patch of the whole base. The outputs of the chunks,
//! concatenated, are the target.
//!
//! Method bsdiff: exactly one chunk over the whole base, and its "frame" is
//! the block body described in `bsdiff/body.rs` (four zstd streams).
//!
//! Versions: a patch-from delta is written as version 1, byte for byte what
//! builds before the bsdiff method wrote (old clients and cached deltas keep
//! working); a bsdiff delta as version 3, so an older client refuses it as
//! an unsupported version rather than as a corrupt header. Version 1 must
//! have method 0.
//!
//! Version 2 is retired: it was the bsdiff method while its body changed
//! (plain differences, then zero runs, then sparse differences) without a
//! new version, so a version-2 delta may hold any of three bodies and only
//! the last one decodes here. It is refused as
//! [`DeltaError::RetiredVersion`]; the cache key carries the version, so a
//! master holding one makes the delta again. The version changes whenever
//! the bytes of a body do.

use haifu_core::Digest;
use sha3::{Digest as _, Sha3_256};

use crate::{DeltaError, Method};

/// The first eight bytes of every delta.
pub const MAGIC: [u8; 8] = *b"HAIFUDLT";
/// The newest container format this build writes and reads (it reads
/// every version from 1 up to this one except [`RETIRED_VERSIONS`]).
pub const FORMAT_VERSION: u16 = 3;
/// Versions this build refuses although they are older than
/// [`FORMAT_VERSION`]: 2, the bsdiff method's body before it settled.
pub const RETIRED_VERSIONS: [u16; 1] = [2];
/// The format of patch-from deltas: the version before methods existed.
pub const FORMAT_VERSION_PATCH_FROM: u16 = 1;
/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 112;
/// Bytes in each chunk record.
pub const CHUNK_RECORD_LEN: usize = 32;
/// Smallest and largest zstd window log the format uses (zstd's own bounds
/// on 64-bit; 31 limits one frame's reference to about 2 GiB).
pub const WINDOW_LOG_MIN: u8 = 10;
/// See [`WINDOW_LOG_MIN`].
pub const WINDOW_LOG_MAX: u8 = 31;
/// More chunks than this is a corrupt header, not a real artifact
/// (65 536 chunks of 1 GiB is 64 TiB).
const MAX_CHUNKS: u32 = 1 << 16;
/// Where the header check starts.
const CHECKED_LEN: usize = 104;

/// sha3-256 of a byte slice, as the store names artifacts.
pub fn digest_of(bytes: &[u8]) -> Digest {
    Digest::from_bytes(Sha3_256::digest(bytes).into())
}

/// The zstd window log `zstd --patch-from` picks for a reference or output
/// of `len` bytes: `highbit(len) + 1`, clamped to 10..=31.
pub fn window_log_for(len: u64) -> u8 {
    let highbit = if len == 0 {
        0
    } else {
        63 - len.leading_zeros()
    };
    // Clamped to at most 31, so the cast is lossless.
    (highbit + 1).clamp(u32::from(WINDOW_LOG_MIN), u32::from(WINDOW_LOG_MAX)) as u8
}

/// What a delta is made from and makes: read before anything is decoded, so
/// a client can refuse a delta for a base it does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeltaHeader {
    /// Digest of the base the delta applies to.
    pub from: Digest,
    /// Digest of the result.
    pub to: Digest,
    /// Size of the base in bytes.
    pub from_size: u64,
    /// Size of the result in bytes.
    pub to_size: u64,
    /// The largest zstd window log of any chunk; the decoder's window limit.
    pub window_log: u8,
    /// The zstd level the delta was made with (for the record only).
    pub level: i32,
    /// Number of chunks (1 unless the artifact exceeds one zstd window;
    /// always 1 for [`Method::Bsdiff`]).
    pub chunks: u32,
    /// The algorithm that made the body.
    pub method: Method,
}

impl DeltaHeader {
    /// The header's bytes, check included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.version().to_le_bytes());
        b[10] = self.window_log;
        b[11] = self.method.code();
        b[12..16].copy_from_slice(&self.level.to_le_bytes());
        b[16..20].copy_from_slice(&self.chunks.to_le_bytes());
        b[24..56].copy_from_slice(self.from.as_bytes());
        b[56..88].copy_from_slice(self.to.as_bytes());
        b[88..96].copy_from_slice(&self.from_size.to_le_bytes());
        b[96..104].copy_from_slice(&self.to_size.to_le_bytes());
        let check = header_check(&b[..CHECKED_LEN]);
        b[CHECKED_LEN..].copy_from_slice(&check);
        b
    }

    /// Parses and checks a header: magic, version, the header check, then
    /// that the fields are consistent.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, DeltaError> {
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        if magic != MAGIC {
            return Err(DeltaError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if RETIRED_VERSIONS.contains(&version) {
            return Err(DeltaError::RetiredVersion { found: version });
        }
        if !(FORMAT_VERSION_PATCH_FROM..=FORMAT_VERSION).contains(&version) {
            return Err(DeltaError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if header_check(&b[..CHECKED_LEN]) != b[CHECKED_LEN..] {
            return Err(corrupt_header("header check does not match"));
        }
        let method = match (version, Method::from_code(b[11])) {
            (FORMAT_VERSION_PATCH_FROM, Some(Method::PatchFrom)) => Method::PatchFrom,
            (FORMAT_VERSION_PATCH_FROM, _) => {
                return Err(corrupt_header("reserved bytes are not zero"));
            }
            (_, Some(m)) => m,
            (_, None) => {
                return Err(corrupt_header(format!("unknown method {}", b[11])));
            }
        };
        let header = Self {
            method,
            window_log: b[10],
            level: i32::from_le_bytes(array(&b[12..16])),
            chunks: u32::from_le_bytes(array(&b[16..20])),
            from: Digest::from_bytes(array(&b[24..56])),
            to: Digest::from_bytes(array(&b[56..88])),
            from_size: u64::from_le_bytes(array(&b[88..96])),
            to_size: u64::from_le_bytes(array(&b[96..104])),
        };
        if b[20..24] != [0; 4] {
            return Err(corrupt_header("reserved bytes are not zero"));
        }
        if !(WINDOW_LOG_MIN..=WINDOW_LOG_MAX).contains(&header.window_log) {
            return Err(corrupt_header(format!(
                "window log {} is outside {WINDOW_LOG_MIN}..={WINDOW_LOG_MAX}",
                header.window_log
            )));
        }
        if header.chunks == 0 || header.chunks > MAX_CHUNKS {
            return Err(corrupt_header(format!(
                "chunk count {} is outside 1..={MAX_CHUNKS}",
                header.chunks
            )));
        }
        if header.method == Method::Bsdiff && header.chunks != 1 {
            return Err(corrupt_header(format!(
                "a bsdiff delta has one chunk, not {}",
                header.chunks
            )));
        }
        Ok(header)
    }

    /// The format version this header is written as: 1 for patch-from (as
    /// before methods existed), [`FORMAT_VERSION`] for anything else.
    pub fn version(&self) -> u16 {
        match self.method {
            Method::PatchFrom => FORMAT_VERSION_PATCH_FROM,
            Method::Bsdiff => FORMAT_VERSION,
        }
    }
}

/// One chunk: which part of the base is its reference, and how much output
/// its frame makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRecord {
    /// Start of the reference in the base.
    pub ref_offset: u64,
    /// Length of the reference.
    pub ref_len: u64,
    /// Bytes of output the frame decodes to.
    pub out_len: u64,
    /// Bytes of the zstd frame that follows the record.
    pub frame_len: u64,
}

impl ChunkRecord {
    /// The record's bytes.
    pub fn encode(&self) -> [u8; CHUNK_RECORD_LEN] {
        let mut b = [0u8; CHUNK_RECORD_LEN];
        b[0..8].copy_from_slice(&self.ref_offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.ref_len.to_le_bytes());
        b[16..24].copy_from_slice(&self.out_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.frame_len.to_le_bytes());
        b
    }

    /// Parses a record and checks it against the header and the output
    /// already produced (`out_done` bytes).
    pub fn decode(
        b: &[u8; CHUNK_RECORD_LEN],
        header: &DeltaHeader,
        out_done: u64,
    ) -> Result<Self, DeltaError> {
        let r = Self {
            ref_offset: u64::from_le_bytes(array(&b[0..8])),
            ref_len: u64::from_le_bytes(array(&b[8..16])),
            out_len: u64::from_le_bytes(array(&b[16..24])),
            frame_len: u64::from_le_bytes(array(&b[24..32])),
        };
        let corrupt = |detail: String| DeltaError::Corrupt { detail };
        match r.ref_offset.checked_add(r.ref_len) {
            Some(end) if end <= header.from_size => {}
            _ => {
                return Err(corrupt(format!(
                    "chunk reference {}+{} lies outside the {}-byte base",
                    r.ref_offset, r.ref_len, header.from_size
                )));
            }
        }
        match out_done.checked_add(r.out_len) {
            Some(end) if end <= header.to_size => {}
            _ => {
                return Err(DeltaError::OutputTooLarge {
                    limit: header.to_size,
                });
            }
        }
        if header.method == Method::Bsdiff {
            // One chunk: the whole base, the whole target.
            if r.ref_offset != 0 || r.ref_len != header.from_size || r.out_len != header.to_size {
                return Err(corrupt(format!(
                    "a bsdiff chunk covers the whole base and target, not {}+{} -> {}",
                    r.ref_offset, r.ref_len, r.out_len
                )));
            }
            if r.frame_len == 0 || r.frame_len > crate::bsdiff::body_bound(r.out_len) {
                return Err(corrupt(format!(
                    "bsdiff body length {} is impossible for {} bytes of output",
                    r.frame_len, r.out_len
                )));
            }
            return Ok(r);
        }
        // A zstd frame never needs more than compress_bound of its content
        // (it falls back to raw blocks), plus a frame header.
        let bound = usize::try_from(r.out_len)
            .map(|n| zstd::zstd_safe::compress_bound(n) as u64 + 64)
            .unwrap_or(u64::MAX);
        if r.frame_len == 0 || r.frame_len > bound {
            return Err(corrupt(format!(
                "chunk frame length {} is impossible for {} bytes of output",
                r.frame_len, r.out_len
            )));
        }
        if r.window_log() > header.window_log {
            return Err(corrupt(format!(
                "chunk needs window log {}, header allows {}",
                r.window_log(),
                header.window_log
            )));
        }
        Ok(r)
    }

    /// The window log this chunk's frame is made and decoded with.
    pub fn window_log(&self) -> u8 {
        window_log_for(self.ref_len.max(self.out_len))
    }
}

fn header_check(bytes: &[u8]) -> [u8; 8] {
    array(&Sha3_256::digest(bytes)[..8])
}

fn corrupt_header(detail: impl Into<String>) -> DeltaError {
    DeltaError::CorruptHeader {
        detail: detail.into(),
    }
}

/// Copies a slice of known length into an array. Callers slice with
/// constant bounds of the right length, so the fallback never runs; it keeps
/// the parser free of panics all the same.
fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let n = s.len().min(N);
    a[..n].copy_from_slice(&s[..n]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> DeltaHeader {
        DeltaHeader {
            from: Digest::from_bytes([1; 32]),
            to: Digest::from_bytes([2; 32]),
            from_size: 1000,
            to_size: 2000,
            window_log: 12,
            level: 19,
            chunks: 1,
            method: Method::PatchFrom,
        }
    }

    #[test]
    fn window_log_matches_the_cli_rule() {
        assert_eq!(window_log_for(0), 10);
        assert_eq!(window_log_for(1), 10);
        assert_eq!(window_log_for(1023), 10);
        assert_eq!(window_log_for(1024), 11);
        assert_eq!(window_log_for(450_560), 19);
        assert_eq!(window_log_for((128 << 20) - 1), 27);
        assert_eq!(window_log_for(128 << 20), 28);
        assert_eq!(window_log_for((1 << 31) - 1), 31);
        assert_eq!(window_log_for(1 << 31), 31, "clamped");
        assert_eq!(window_log_for(u64::MAX), 31, "clamped");
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        assert_eq!(DeltaHeader::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn header_refuses_bad_magic_version_and_check() {
        let mut b = header().encode();
        b[0] ^= 1;
        assert!(matches!(
            DeltaHeader::decode(&b),
            Err(DeltaError::BadMagic { .. })
        ));
        let mut b = header().encode();
        b[8] = 9;
        let e = DeltaHeader::decode(&b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported delta format version 9 (this build reads versions 1 to 3)"
        );
        let mut b = header().encode();
        b[90] ^= 0x40;
        let e = DeltaHeader::decode(&b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "delta header is corrupt: header check does not match"
        );
    }

    #[test]
    fn header_refuses_impossible_fields_even_with_a_valid_check() {
        for h in [
            DeltaHeader {
                window_log: 32,
                ..header()
            },
            DeltaHeader {
                window_log: 9,
                ..header()
            },
            DeltaHeader {
                chunks: 0,
                ..header()
            },
            DeltaHeader {
                chunks: u32::MAX,
                ..header()
            },
        ] {
            let e = DeltaHeader::decode(&h.encode()).unwrap_err();
            assert!(matches!(e, DeltaError::CorruptHeader { .. }), "{e}");
        }
    }

    #[test]
    fn chunk_records_are_checked_against_the_header() {
        let h = header();
        let ok = ChunkRecord {
            ref_offset: 0,
            ref_len: 1000,
            out_len: 2000,
            frame_len: 10,
        };
        assert_eq!(ChunkRecord::decode(&ok.encode(), &h, 0).unwrap(), ok);
        let bad = [
            ChunkRecord {
                ref_offset: 1,
                ..ok
            },
            ChunkRecord {
                ref_offset: u64::MAX,
                ..ok
            },
            ChunkRecord { frame_len: 0, ..ok },
            ChunkRecord {
                frame_len: 1 << 40,
                ..ok
            },
        ];
        for r in bad {
            let e = ChunkRecord::decode(&r.encode(), &h, 0).unwrap_err();
            assert!(matches!(e, DeltaError::Corrupt { .. }), "{r:?}: {e}");
        }
        let e = ChunkRecord::decode(&ok.encode(), &h, 1).unwrap_err();
        assert!(
            matches!(e, DeltaError::OutputTooLarge { limit: 2000 }),
            "{e}"
        );
    }
}
