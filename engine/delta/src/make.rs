//! Making a delta: zstd "patch-from" with the base as the reference prefix,
//! a long window sized to the files and long-distance matching, exactly as
//! `zstd --patch-from` does (see `notes/spikes.md`, section B); and, for
//! artifacts up to [`MakeOptions::bsdiff_max_size`], the bsdiff method
//! (`crate::bsdiff`). With [`MethodChoice::Smaller`] both are made and the
//! smaller is kept: patch-from wins on source and archives, bsdiff on
//! native code, and which one a pair is cannot be told cheaply beforehand.

use std::time::Instant;

use zstd::zstd_safe::{CCtx, CParameter, ResetDirective};

use haifu_core::Digest;

use crate::container::{
    CHUNK_RECORD_LEN, ChunkRecord, DeltaHeader, HEADER_LEN, digest_of, window_log_for,
};
use crate::{DeltaError, Method};

/// The largest base or target one zstd frame handles: a window log of 31
/// (zstd's 64-bit limit) reaches about 2 GiB back. Past it, the delta is
/// made of chunks.
pub const DEFAULT_MAX_FRAME: u64 = (1 << 31) - 1;
/// The smallest `max_frame` accepted (keeps chunk counts sane).
const MIN_MAX_FRAME: u64 = 1 << 12;
/// More chunks than this is refused (the container's limit).
const MAX_CHUNKS: u64 = 1 << 16;
/// The highest zstd level patch-from is made at when the bsdiff method is
/// not tried because the pair is too large. zstd's optimal parser (levels
/// 16 and up) keeps few of the long-distance matcher's matches on data its
/// own match finder cannot reach: on a generated 64 MiB pair (2,000 small
/// edits in random bytes) level 19 made 15.1 MB, level 15 44 KB (in a
/// third of the time); on a 1 GiB pair level 19 made 910 MB in 9 minutes.
/// Below the limit bsdiff is made too and the smaller kept, which covers
/// it.
pub const LARGE_PATCH_FROM_LEVEL_MAX: i32 = 15;
/// The default [`MakeOptions::bsdiff_max_size`]: 512 MiB.
pub const DEFAULT_BSDIFF_MAX_SIZE: u64 = 512 << 20;

/// Which methods [`make`] tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MethodChoice {
    /// zstd patch-from only (fast; what deltas made on the fly use).
    PatchFrom,
    /// The bsdiff method only (an error above
    /// [`MakeOptions::bsdiff_max_size`]); for tests and benchmarks.
    Bsdiff,
    /// Both, keeping the smaller delta (patch-from on a tie, as every
    /// client reads it); patch-from alone above
    /// [`MakeOptions::bsdiff_max_size`], at a level no higher than
    /// [`LARGE_PATCH_FROM_LEVEL_MAX`].
    Smaller,
}

/// How to make a delta. Everything here changes the bytes made, so all of
/// it is part of the cache key: a delta is made once per (from, to,
/// options).
///
/// # Memory
///
/// [`make`] holds the base and the target (the caller's) and, on top:
///
/// - patch-from: the delta, and zstd's match tables: zstd's own for the
///   level, capped at 1.5 × the larger input (see `table_logs`; at level 19
///   at most 80 MiB, reached by artifacts of 32 MiB and more), plus the
///   long-distance matcher's table (1/16 of the window for a GiB-sized
///   pair);
/// - bsdiff (only when both sides are at most [`Self::bsdiff_max_size`]):
///   the suffix array, 4 bytes per byte of base, while matching; the
///   uncompressed streams (controls, gaps and values of the non-zero
///   differences, new bytes: a few percent of the target for two builds
///   of one program, at most about 2 × the target for unrelated inputs);
///   then one zstd context with 8 MiB of tables and the window of the
///   largest stream (capped at 128 MiB).
///
/// So below the threshold the peak is about 5 × base + 1 × target plus
/// the streams and the process itself (on hexyl, 1.1 MB: 8.2 MiB, 7.9 ×
/// the target, 2.1 MiB of it the idle process; libcrypto, 4.7 MB:
/// 30.5 MiB, 6.8 ×; 64 MiB: 401 MiB, 6.3 ×; about 3 GiB for a 512 MiB
/// pair);
/// above it, bsdiff is not tried and a pair costs what patch-from costs (a
/// generated 1 GiB pair: 2.6 GiB, 2.6 × the target, in 30 s;
/// `bench/delta-large.sh` measures it). The two methods run one after the
/// other, so
/// [`MethodChoice::Smaller`] peaks at the larger of the two, not their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MakeOptions {
    /// zstd level, 1..=22, for patch-from frames and bsdiff streams alike.
    /// Applying costs the same whatever the level.
    pub level: i32,
    /// Largest base or target made as one frame; larger artifacts are cut
    /// into chunks of `max_frame / 2` bytes of target, each referencing the
    /// matching region of the base. Tests lower it to exercise chunking.
    pub max_frame: u64,
    /// Which methods to try.
    pub methods: MethodChoice,
    /// The bsdiff method is tried only when the base and the target are both
    /// at most this many bytes: its suffix array costs 4 bytes per byte of
    /// base (see the memory section above).
    pub bsdiff_max_size: u64,
}

impl MakeOptions {
    /// Level for deltas built once per pair in the background and cached:
    /// patches within a few percent of bsdiff, at 2–3 MB/s.
    pub const BACKGROUND_LEVEL: i32 = 19;
    /// Level for deltas made on the fly: 250–1000 MB/s, patches about
    /// 1.5–2× the background level's.
    pub const FAST_LEVEL: i32 = 3;

    /// Options for background, cached deltas ([`Self::BACKGROUND_LEVEL`],
    /// both methods, the smaller kept).
    pub const fn background() -> Self {
        Self {
            level: Self::BACKGROUND_LEVEL,
            max_frame: DEFAULT_MAX_FRAME,
            methods: MethodChoice::Smaller,
            bsdiff_max_size: DEFAULT_BSDIFF_MAX_SIZE,
        }
    }

    /// Options for deltas made on the fly ([`Self::FAST_LEVEL`],
    /// patch-from only: it makes hundreds of MB/s, bsdiff a few).
    pub const fn fast() -> Self {
        Self {
            level: Self::FAST_LEVEL,
            max_frame: DEFAULT_MAX_FRAME,
            methods: MethodChoice::PatchFrom,
            bsdiff_max_size: DEFAULT_BSDIFF_MAX_SIZE,
        }
    }

    /// The same options at another level.
    pub const fn with_level(self, level: i32) -> Self {
        Self { level, ..self }
    }

    /// The same options trying other methods.
    pub const fn with_methods(self, methods: MethodChoice) -> Self {
        Self { methods, ..self }
    }

    /// Whether the bsdiff method is tried for this pair.
    pub fn tries_bsdiff(&self, old_len: u64, new_len: u64) -> bool {
        self.methods != MethodChoice::PatchFrom && old_len.max(new_len) <= self.bsdiff_max_size
    }
}

impl Default for MakeOptions {
    fn default() -> Self {
        Self::background()
    }
}

/// A finished delta: its header and its bytes (header included), ready to
/// cache and send as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// What the delta is made from and makes.
    pub header: DeltaHeader,
    /// The whole container.
    pub bytes: Vec<u8>,
}

impl Delta {
    /// Bytes on the wire.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Never true: even an empty target has a header and a frame.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// One chunk of the plan: a region of the base as reference, a region of
/// the target as content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    ref_offset: u64,
    ref_len: u64,
    out_offset: u64,
    out_len: u64,
}

/// Makes the delta that turns `old` into `new`.
///
/// Both are whole in memory: zstd needs the reference contiguous, and the
/// target is compressed in one call per chunk. Artifacts larger than
/// `options.max_frame` become chunked deltas; see [`MakeOptions::max_frame`].
pub fn make(old: &[u8], new: &[u8], options: &MakeOptions) -> Result<Delta, DeltaError> {
    let started = Instant::now();
    let (min, max) = (1, zstd::zstd_safe::max_c_level());
    if !(min..=max).contains(&options.level) {
        return Err(DeltaError::Unsupported {
            detail: format!("zstd level {} is outside {min}..={max}", options.level),
        });
    }
    let (from, to) = (digest_of(old), digest_of(new));
    let bsdiff = options.tries_bsdiff(old.len() as u64, new.len() as u64);
    let delta = match options.methods {
        MethodChoice::PatchFrom => patch_from(old, new, &from, &to, options)?,
        MethodChoice::Bsdiff if bsdiff => bsdiff_delta(old, new, &from, &to, options)?,
        MethodChoice::Bsdiff => {
            return Err(DeltaError::Unsupported {
                detail: format!(
                    "the bsdiff method takes artifacts up to {} bytes, not {}",
                    options.bsdiff_max_size,
                    old.len().max(new.len())
                ),
            });
        }
        MethodChoice::Smaller if !bsdiff => {
            let level = options.level.min(LARGE_PATCH_FROM_LEVEL_MAX);
            patch_from(old, new, &from, &to, &options.with_level(level))?
        }
        MethodChoice::Smaller => {
            let zstd = patch_from(old, new, &from, &to, options)?;
            let b = bsdiff_delta(old, new, &from, &to, options)?;
            tracing::debug!(
                patch_from = zstd.len(),
                bsdiff = b.len(),
                "both delta methods made"
            );
            if b.len() < zstd.len() { b } else { zstd }
        }
    };
    let header = &delta.header;
    tracing::debug!(
        from = %header.from,
        to = %header.to,
        from_size = header.from_size,
        to_size = header.to_size,
        delta_size = delta.bytes.len(),
        method = %header.method,
        level = header.level,
        chunks = header.chunks,
        seconds = started.elapsed().as_secs_f64(),
        "delta made"
    );
    Ok(delta)
}

/// The bsdiff method: one chunk over the whole base, its body the blocks of
/// `crate::bsdiff`.
fn bsdiff_delta(
    old: &[u8],
    new: &[u8],
    from: &Digest,
    to: &Digest,
    options: &MakeOptions,
) -> Result<Delta, DeltaError> {
    let (body, window_log) = crate::bsdiff::make_body(old, new, options.level)?;
    let header = DeltaHeader {
        from: *from,
        to: *to,
        from_size: old.len() as u64,
        to_size: new.len() as u64,
        window_log,
        level: options.level,
        chunks: 1,
        method: Method::Bsdiff,
    };
    let record = ChunkRecord {
        ref_offset: 0,
        ref_len: old.len() as u64,
        out_len: new.len() as u64,
        frame_len: body.len() as u64,
    };
    let mut bytes = Vec::with_capacity(HEADER_LEN + CHUNK_RECORD_LEN + body.len());
    bytes.extend_from_slice(&header.encode());
    bytes.extend_from_slice(&record.encode());
    bytes.extend_from_slice(&body);
    Ok(Delta { header, bytes })
}

/// The patch-from method: one zstd frame per chunk.
fn patch_from(
    old: &[u8],
    new: &[u8],
    from: &Digest,
    to: &Digest,
    options: &MakeOptions,
) -> Result<Delta, DeltaError> {
    let spans = plan(old.len() as u64, new.len() as u64, options.max_frame)?;
    let window_log = spans
        .iter()
        .map(|s| window_log_for(s.ref_len.max(s.out_len)))
        .max()
        .unwrap_or(crate::container::WINDOW_LOG_MIN);
    let header = DeltaHeader {
        from: *from,
        to: *to,
        from_size: old.len() as u64,
        to_size: new.len() as u64,
        window_log,
        level: options.level,
        // plan() refuses more than MAX_CHUNKS (which fits a u32).
        chunks: spans.len() as u32,
        method: Method::PatchFrom,
    };
    let mut bytes = Vec::with_capacity(HEADER_LEN + spans.len() * CHUNK_RECORD_LEN);
    bytes.extend_from_slice(&header.encode());
    let mut cctx = CCtx::try_create().ok_or_else(|| DeltaError::Zstd {
        op: "create context",
        detail: "out of memory".into(),
    })?;
    for span in &spans {
        let reference = slice(old, span.ref_offset, span.ref_len)?;
        let content = slice(new, span.out_offset, span.out_len)?;
        // zstd takes input that overlaps its reference in memory for input
        // that overwrote the reference, and stops referencing it: the delta
        // of a buffer against itself would be a plain compression. Copy.
        let copy;
        let content = if overlaps(reference, content) {
            copy = content.to_vec();
            &copy[..]
        } else {
            content
        };
        let frame = patch_frame(&mut cctx, reference, content, options.level)?;
        let record = ChunkRecord {
            ref_offset: span.ref_offset,
            ref_len: span.ref_len,
            out_len: span.out_len,
            frame_len: frame.len() as u64,
        };
        bytes.extend_from_slice(&record.encode());
        bytes.extend_from_slice(&frame);
    }
    Ok(Delta { header, bytes })
}

/// zstd's own chain and hash table logs for inputs above 256 KiB, by level
/// (1..=22; `lib/compress/clevels.h` of zstd 1.5.7): what [`table_logs`]
/// never goes above.
const ZSTD_TABLE_LOGS: [(u32, u32); 22] = [
    (13, 14),
    (15, 16),
    (16, 17),
    (18, 18),
    (18, 19),
    (18, 19),
    (19, 20),
    (19, 20),
    (20, 21),
    (21, 22),
    (21, 22),
    (22, 23),
    (22, 22),
    (22, 23),
    (23, 23),
    (22, 22),
    (23, 23),
    (23, 23),
    (24, 22),
    (25, 23),
    (26, 24),
    (27, 25),
];

/// The chain and hash table logs of a patch-from frame whose larger side
/// (base or target) is `len` bytes: zstd's own for the level, but no more
/// than 2^(⌊log2 len⌋ - 2) chain and half as many hash entries (4 bytes
/// each), so the tables take at most 1.5 × `len` (zstd shrinks them further
/// for small inputs). zstd's tables do not scale down with the input above
/// 256 KiB: at level 19 they are 80 MiB whatever the size, 18 × a 4.7 MB
/// shared library. On libcrypto 3.0.19 → 3.0.20 a cap of 3 × `len` made
/// the maker's peak 30 MiB instead of 97 MiB and the patch-from delta 0.9%
/// larger (`zstd --zstd=clog=21,hlog=20`). 1.5 × (issue 16) keeps the
/// maker within 8 × a small target: on hexyl 0.16 → 0.17 (1.1 MB) the
/// patch-from step peaked at 9.6 MiB with 3 ×, above the bsdiff step's
/// 8.3 MiB; see `bench/delta/results.md` for what it costs in size.
fn table_logs(level: i32, len: u64) -> (u32, u32) {
    let (chain, hash) = usize::try_from(level - 1)
        .ok()
        .and_then(|i| ZSTD_TABLE_LOGS.get(i).copied())
        .unwrap_or(ZSTD_TABLE_LOGS[0]);
    let cap = len.max(1).ilog2().saturating_sub(2).max(12);
    (chain.min(cap), hash.min(cap - 1))
}

/// One zstd frame of `content` with `reference` as its prefix: the frame
/// `zstd --patch-from=reference` would write (windowLog = highbit + 1, long
/// distance matching, content size in the frame header), with its match
/// tables capped by [`table_logs`].
fn patch_frame<'a>(
    cctx: &mut CCtx<'a>,
    reference: &'a [u8],
    content: &[u8],
    level: i32,
) -> Result<Vec<u8>, DeltaError> {
    let larger = reference.len().max(content.len()) as u64;
    let wlog = window_log_for(larger);
    let (chain_log, hash_log) = table_logs(level, larger);
    cctx.reset(ResetDirective::SessionAndParameters)
        .map_err(DeltaError::zstd("reset"))?;
    for p in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(u32::from(wlog)),
        CParameter::ChainLog(chain_log),
        CParameter::HashLog(hash_log),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ContentSizeFlag(true),
        // The container carries sha3-256 of the whole result; a second
        // checksum per frame would cost the client time for nothing.
        CParameter::ChecksumFlag(false),
    ] {
        cctx.set_parameter(p)
            .map_err(DeltaError::zstd("set parameter"))?;
    }
    cctx.set_pledged_src_size(Some(content.len() as u64))
        .map_err(DeltaError::zstd("pledge size"))?;
    // A ref prefix holds for one frame only, so it is set for each chunk.
    cctx.ref_prefix(reference)
        .map_err(DeltaError::zstd("reference prefix"))?;
    let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(content.len()));
    cctx.compress2(&mut frame, content)
        .map_err(DeltaError::zstd("compress"))?;
    Ok(frame)
}

/// Cuts the work into chunks. One chunk when both sides fit one frame;
/// otherwise target chunks of `max_frame / 2` bytes, each referencing the
/// base region at the same relative position, widened by a quarter chunk on
/// both sides so that content that moved a little is still found.
fn plan(old_len: u64, new_len: u64, max_frame: u64) -> Result<Vec<Span>, DeltaError> {
    if !(MIN_MAX_FRAME..=DEFAULT_MAX_FRAME).contains(&max_frame) {
        return Err(DeltaError::Unsupported {
            detail: format!(
                "max frame {max_frame} is outside {MIN_MAX_FRAME}..={DEFAULT_MAX_FRAME}"
            ),
        });
    }
    if old_len.max(new_len) <= max_frame {
        return Ok(vec![Span {
            ref_offset: 0,
            ref_len: old_len,
            out_offset: 0,
            out_len: new_len,
        }]);
    }
    let chunk = max_frame / 2;
    let slack = chunk / 4;
    let count = new_len.div_ceil(chunk).max(1);
    if count > MAX_CHUNKS {
        return Err(DeltaError::Unsupported {
            detail: format!(
                "a {new_len}-byte target needs {count} chunks of {chunk} bytes, more than {MAX_CHUNKS}"
            ),
        });
    }
    let mut spans = Vec::with_capacity(count as usize);
    for i in 0..count {
        let out_offset = i * chunk;
        let out_len = chunk.min(new_len - out_offset);
        // Same relative position in the base (u128: no overflow).
        let centre =
            (u128::from(out_offset) * u128::from(old_len) / u128::from(new_len.max(1))) as u64;
        let ref_offset = centre.saturating_sub(slack).min(old_len);
        let ref_end = centre
            .saturating_add(out_len)
            .saturating_add(slack)
            .min(old_len);
        spans.push(Span {
            ref_offset,
            ref_len: ref_end - ref_offset,
            out_offset,
            out_len,
        });
    }
    Ok(spans)
}

fn overlaps(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (a.as_ptr_range(), b.as_ptr_range());
    !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end
}

fn slice(bytes: &[u8], offset: u64, len: u64) -> Result<&[u8], DeltaError> {
    let range = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(offset + len).ok())
        .and_then(|(a, b)| bytes.get(a..b));
    range.ok_or_else(|| DeltaError::Unsupported {
        detail: format!("chunk {offset}+{len} is outside the input"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_artifacts_are_one_chunk_over_the_whole_base() {
        let p = plan(1000, 2000, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(
            p,
            vec![Span {
                ref_offset: 0,
                ref_len: 1000,
                out_offset: 0,
                out_len: 2000
            }]
        );
        assert_eq!(plan(0, 0, DEFAULT_MAX_FRAME).unwrap().len(), 1);
    }

    #[test]
    fn large_artifacts_are_chunked_within_one_window_each() {
        let max = 1 << 20;
        for (old, new) in [
            (5 << 20, 5 << 20),
            (3 << 20, 7 << 20),
            (9 << 20, 1 << 20),
            (5 << 20, 0),
        ] {
            let p = plan(old, new, max).unwrap();
            assert!(!p.is_empty());
            let mut next = 0;
            for s in &p {
                assert_eq!(s.out_offset, next, "contiguous output");
                next += s.out_len;
                assert!(s.ref_offset + s.ref_len <= old);
                assert!(s.ref_len.max(s.out_len) <= max, "{s:?}");
            }
            assert_eq!(next, new);
        }
    }

    #[test]
    fn patch_from_tables_are_zstds_capped_by_the_input() {
        // Level 19's own tables for anything past 32 MiB; less below.
        assert_eq!(table_logs(19, 1 << 30), (24, 22));
        assert_eq!(table_logs(19, 4_734_232), (20, 19));
        assert_eq!(table_logs(19, 1000), (12, 11));
        // Level 3's are small: never raised.
        assert_eq!(table_logs(3, 1 << 30), (16, 17));
        assert_eq!(table_logs(3, 4_734_232), (16, 17));
        // Out-of-range levels (refused before, by `make`) do not panic.
        assert_eq!(table_logs(0, 0), (12, 11));
        assert_eq!(table_logs(99, 5), (12, 11));
        // At most 1.5 x the input in 4-byte entries, down to the floor.
        for len in [1u64 << 20, 1_098_728, 5_000_000, 30_000_000, 1 << 31] {
            let (c, h) = table_logs(22, len);
            assert!(8 * ((1u64 << c) + (1u64 << h)) <= 3 * len, "{len}: {c} {h}");
        }
    }

    #[test]
    fn absurd_sizes_are_refused_not_mangled() {
        let e = plan(0, u64::MAX, 1 << 12).unwrap_err();
        assert!(matches!(e, DeltaError::Unsupported { .. }), "{e}");
        let e = plan(0, 0, 10).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot make a delta: max frame 10"),
            "{e}"
        );
    }
}
