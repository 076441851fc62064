//! The bsdiff body: blocks, each making at most [`BLOCK_OUT`] bytes of the
//! target, over four zstd streams that run through all blocks.
//!
//! ```text
//! block header (20 bytes, little-endian)
//!   0  out_len     u32   bytes the block makes: 1..=BLOCK_OUT (0 only for
//!                        the single block of an empty target)
//!   4  ctrl_len    u32   bytes of the control stream's segment
//!   8  gaps_len    u32   bytes of the gap stream's segment
//!  12  values_len  u32   bytes of the value stream's segment
//!  16  extra_len   u32   bytes of the extra stream's segment
//! then the four segments, in that order
//! ```
//!
//! Each stream is one zstd frame over the whole target, flushed at every
//! block end (`ZSTD_e_flush`; `ZSTD_e_end` at the last), so a segment
//! decodes completely given the segments before it: the decoder keeps one
//! context per stream and never holds more than a block. Matches can still
//! reach back across blocks within the stream's window.
//!
//! The controls of a block decode to at most [`CTRL_MAX`] bytes: each is
//! three LEB128 varints, `seek` (zigzag: move in the base), `add` (that
//! many bytes of `base + difference`, wrapping), `copy` (that many bytes
//! from the extra stream), with `add + copy >= 1`. A block's controls make
//! exactly its `out_len` and the extra segment decodes to the sum of the
//! copies.
//!
//! The differences of a block (the sum of its adds, as one run) are stored
//! sparse: the gap segment holds, for each non-zero difference, the number
//! of zero differences before it since the last one (a LEB128 varint), the
//! value segment the differences themselves, one byte each, in the same
//! order; everything else is zero. Why two streams: on native code the
//! differences are ~95% zeros, and where the others fall (the bytes of
//! moved addresses) and what they are (the same few shifts) compress far
//! better apart than mixed, and than the plain difference bytes. On
//! libcrypto 3.0.19 → 3.0.20 the differences took 117,108 B as plain bytes
//! (zstd -19), 106,469 B in bsdiff's bzip2, 105,327 B as gaps and values
//! in one stream and 102,813 B in two. A canonical varint of a gap `g`
//! takes at most `g + 1` bytes, so either segment decodes to at most the
//! block's adds: the client's bound.

use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective as EndDirective;
use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer, ResetDirective};

use super::{BLOCK_OUT, CTRL_MAX, STREAM_WINDOW_LOG_MAX};
use crate::DeltaError;
use crate::container::{WINDOW_LOG_MIN, window_log_for};

/// The streams, in the order their segments follow a block header.
pub(crate) const STREAM_NAMES: [&str; 4] = ["control", "gap", "value", "extra"];
/// Bytes in a block header: the output length and one length per stream.
pub(crate) const BLOCK_HEADER_LEN: usize = 4 * (1 + STREAM_NAMES.len());
/// Largest zstd hash and chain table logs for the streams (4 MiB each).
/// Level 19's own choice for a 5 MB stream is 2^24 chain entries (64 MiB):
/// on libcrypto 3.0.20 → 3.0.22 that tripled the maker's peak memory for a
/// delta 0.01% smaller (the differences are mostly zeros, which need no
/// deep search).
const TABLE_LOG_MAX: u32 = 20;
/// The hash and chain table log for a stream of `len` bytes: at most
/// [`TABLE_LOG_MAX`], and at most half an entry per byte, so the tables of
/// a small stream cost at most 4 × its size (zstd's own would take 2^20
/// entries for a 1 MB stream: 8 MiB for a 1 MB target).
fn table_log(len: usize) -> u32 {
    len.max(1)
        .ilog2()
        .saturating_sub(1)
        .clamp(10, TABLE_LOG_MAX)
}

/// Longest encoded control: three 10-byte varints.
const CONTROL_MAX_LEN: usize = 30;

/// The largest body a target of `out_len` bytes can have: a sanity bound
/// checked against the chunk record before anything is read (reads are
/// streamed, so it sizes nothing). Generous: every byte its own control,
/// block and stream overhead.
pub(crate) fn body_bound(out_len: u64) -> u64 {
    out_len.saturating_mul(64).saturating_add(1024)
}

/// One block's share of each stream (uncompressed), and the differences
/// its adds make (`diff`, zeros included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BlockSizes {
    pub(crate) out: usize,
    pub(crate) ctrl: usize,
    pub(crate) diff: usize,
    pub(crate) gaps: usize,
    pub(crate) values: usize,
    pub(crate) extra: usize,
}

/// The four streams, uncompressed, and where the blocks cut them.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    pub(crate) ctrl: Vec<u8>,
    pub(crate) gaps: Vec<u8>,
    pub(crate) values: Vec<u8>,
    pub(crate) extra: Vec<u8>,
    pub(crate) blocks: Vec<BlockSizes>,
    /// The block being filled.
    open: BlockSizes,
    /// Position in the base after the last control.
    old_pos: usize,
    /// Position in the open block's differences after the last non-zero
    /// one (where the next gap counts from).
    gap_from: usize,
}

impl Streams {
    /// Empty streams.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `add.len()` bytes made from the base at `old_at` plus
    /// differences (`add` is the target's bytes there), then `copy` as new
    /// bytes; cuts blocks as needed.
    pub(crate) fn push(&mut self, old: &[u8], mut old_at: usize, mut add: &[u8], mut copy: &[u8]) {
        while !add.is_empty() || !copy.is_empty() {
            if self.open.out == BLOCK_OUT || self.open.ctrl + CONTROL_MAX_LEN > CTRL_MAX {
                self.close();
            }
            let room = BLOCK_OUT - self.open.out;
            let a = add.len().min(room);
            let c = copy.len().min(room - a);
            let seek = old_at as i64 - self.old_pos as i64;
            let before = self.ctrl.len();
            for v in [zigzag(seek), a as u64, c as u64] {
                put_varint(&mut self.ctrl, v);
            }
            self.open.ctrl += self.ctrl.len() - before;
            let (gaps, values) = (self.gaps.len(), self.values.len());
            for (i, (n, o)) in add[..a].iter().zip(&old[old_at..old_at + a]).enumerate() {
                let d = n.wrapping_sub(*o);
                if d != 0 {
                    let at = self.open.diff + i;
                    put_varint(&mut self.gaps, (at - self.gap_from) as u64);
                    self.values.push(d);
                    self.gap_from = at + 1;
                }
            }
            self.extra.extend_from_slice(&copy[..c]);
            self.open.out += a + c;
            self.open.diff += a;
            self.open.gaps += self.gaps.len() - gaps;
            self.open.values += self.values.len() - values;
            self.open.extra += c;
            old_at += a;
            self.old_pos = old_at;
            add = &add[a..];
            copy = &copy[c..];
        }
    }

    /// Ends the open block.
    fn close(&mut self) {
        self.blocks.push(std::mem::take(&mut self.open));
        self.gap_from = 0;
    }

    /// Closes the last block (an empty target has one empty block, so
    /// every body has at least one).
    pub(crate) fn finish(&mut self) {
        if self.open.out > 0 || self.blocks.is_empty() {
            self.close();
        }
    }
}

/// Compresses the streams (finished) into a body; returns it and the
/// largest window log of its streams.
pub(crate) fn encode(streams: &Streams, level: i32) -> Result<(Vec<u8>, u8), DeltaError> {
    let blocks = &streams.blocks;
    let mut cctx = CCtx::try_create().ok_or_else(|| DeltaError::Zstd {
        op: "create context",
        detail: "out of memory".into(),
    })?;
    let mut window_log = WINDOW_LOG_MIN;
    let mut segments = Vec::with_capacity(STREAM_NAMES.len());
    let cut = |f: fn(&BlockSizes) -> usize| blocks.iter().map(f).collect::<Vec<usize>>();
    for (data, cuts) in [
        (&streams.ctrl, cut(|b| b.ctrl)),
        (&streams.gaps, cut(|b| b.gaps)),
        (&streams.values, cut(|b| b.values)),
        (&streams.extra, cut(|b| b.extra)),
    ] {
        let wlog = window_log_for(data.len() as u64).min(STREAM_WINDOW_LOG_MAX);
        window_log = window_log.max(wlog);
        segments.push(compress_stream(
            &mut cctx,
            data,
            cuts.into_iter(),
            level,
            wlog,
        )?);
    }
    let total: usize = segments.iter().flatten().map(Vec::len).sum();
    let mut body = Vec::with_capacity(total + blocks.len() * BLOCK_HEADER_LEN);
    for (i, b) in blocks.iter().enumerate() {
        let lens = std::iter::once(b.out).chain(segments.iter().map(|s| s[i].len()));
        for len in lens {
            let len = u32::try_from(len).map_err(|_| DeltaError::Unsupported {
                detail: format!("a bsdiff segment of {len} bytes does not fit its block header"),
            })?;
            body.extend_from_slice(&len.to_le_bytes());
        }
        for seg in &segments {
            body.extend_from_slice(&seg[i]);
        }
    }
    Ok((body, window_log))
}

/// One zstd frame of `data`, flushed after each of `cuts` (lengths summing
/// to `data.len()`): one segment per block.
fn compress_stream(
    cctx: &mut CCtx<'_>,
    data: &[u8],
    cuts: impl ExactSizeIterator<Item = usize>,
    level: i32,
    wlog: u8,
) -> Result<Vec<Vec<u8>>, DeltaError> {
    cctx.reset(ResetDirective::SessionAndParameters)
        .map_err(DeltaError::zstd("reset"))?;
    let tables = table_log(data.len());
    for p in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(u32::from(wlog)),
        CParameter::ChainLog(tables),
        CParameter::HashLog(tables),
        CParameter::ContentSizeFlag(true),
        // The container's sha3-256 of the result covers everything.
        CParameter::ChecksumFlag(false),
    ] {
        cctx.set_parameter(p)
            .map_err(DeltaError::zstd("set parameter"))?;
    }
    cctx.set_pledged_src_size(Some(data.len() as u64))
        .map_err(DeltaError::zstd("pledge size"))?;
    let count = cuts.len();
    let mut segments = Vec::with_capacity(count);
    let mut at = 0usize;
    for (i, len) in cuts.enumerate() {
        let piece = data.get(at..at + len).unwrap_or_default();
        at += len;
        let directive = if i + 1 == count {
            EndDirective::ZSTD_e_end
        } else {
            EndDirective::ZSTD_e_flush
        };
        let mut seg = Vec::with_capacity(zstd::zstd_safe::compress_bound(len) + 32);
        let mut input = InBuffer::around(piece);
        loop {
            if seg.capacity() - seg.len() < 4096 {
                seg.reserve(64 << 10);
            }
            let filled = seg.len();
            let mut out = OutBuffer::around_pos(&mut seg, filled);
            let left = cctx
                .compress_stream2(&mut out, &mut input, directive)
                .map_err(DeltaError::zstd("compress"))?;
            if left == 0 && input.pos() == piece.len() {
                break;
            }
        }
        segments.push(seg);
    }
    Ok(segments)
}

/// Calls `each(position, value)` for every non-zero difference of a block,
/// in increasing position, from its gap and value segments; `None` if a
/// gap does not decode, the two do not pair up, or `each` refuses a
/// position (one past the block's adds).
pub(crate) fn sparse_differences(
    gaps: &[u8],
    values: &[u8],
    mut each: impl FnMut(usize, u8) -> Option<()>,
) -> Option<()> {
    let (mut at, mut next) = (0usize, 0usize);
    for &value in values {
        let gap = usize::try_from(get_varint(gaps, &mut at)?).ok()?;
        let pos = next.checked_add(gap)?;
        each(pos, value)?;
        next = pos + 1;
    }
    (at == gaps.len()).then_some(())
}

/// Fills `diff` (a block's differences) from its gap and value segments;
/// `None` if a gap leaves it or the two do not pair up.
#[cfg(test)]
fn decode_sparse(gaps: &[u8], values: &[u8], diff: &mut [u8]) -> Option<()> {
    diff.fill(0);
    sparse_differences(gaps, values, |pos, value| {
        *diff.get_mut(pos)? = value;
        Some(())
    })
}

/// zigzag: small magnitudes of either sign become small unsigned numbers.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*at`; `None` if it ends early or overflows.
pub(crate) fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        let part = u64::from(b & 0x7f);
        if shift == 63 && part > 1 {
            return None;
        }
        v |= part << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, 1 << 40, i64::MAX, i64::MIN] {
            let mut b = Vec::new();
            put_varint(&mut b, zigzag(v));
            assert!(b.len() <= 10);
            let mut at = 0;
            assert_eq!(get_varint(&b, &mut at).map(unzigzag), Some(v));
            assert_eq!(at, b.len());
        }
        // Too long, overflowing, or cut short: refused.
        assert_eq!(get_varint(&[0x80; 11], &mut 0), None);
        assert_eq!(
            get_varint(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                &mut 0
            ),
            None
        );
        assert_eq!(get_varint(&[0x80], &mut 0), None);
    }

    /// The gap and value streams of `diff` as one block's adds.
    fn sparse(diff: &[u8]) -> Streams {
        let mut s = Streams::new();
        s.push(&vec![0u8; diff.len()], 0, diff, &[]);
        s.finish();
        s
    }

    #[test]
    fn sparse_differences_round_trip_and_refuse_what_does_not_fit() {
        let mut cases: Vec<Vec<u8>> = vec![vec![], vec![0], vec![5], vec![0; 1000]];
        cases.push(
            (0..3000u32)
                .map(|i| if i % 7 == 0 { 1 } else { 0 })
                .collect(),
        );
        cases.push(
            (0..3000u32)
                .map(|i| if i % 70 < 3 { i as u8 | 1 } else { 0 })
                .collect(),
        );
        cases.push((0..3000u32).map(|i| (i % 2) as u8).collect());
        cases.push([vec![0u8; 7], vec![9], vec![0; 8], vec![9, 9], vec![0; 3]].concat());
        cases.push([vec![0u8; 200_000], vec![1], vec![0; 20_000]].concat());
        for diff in cases {
            let s = sparse(&diff);
            assert_eq!(s.values.len(), diff.iter().filter(|&&d| d != 0).count());
            // The client's bound: neither segment passes the adds.
            assert!(s.gaps.len() <= diff.len() && s.values.len() <= diff.len());
            assert_eq!(s.blocks.len(), 1);
            let b = s.blocks[0];
            assert_eq!(
                (b.diff, b.gaps, b.values),
                (diff.len(), s.gaps.len(), s.values.len())
            );
            let mut back = vec![7u8; diff.len()];
            assert_eq!(decode_sparse(&s.gaps, &s.values, &mut back), Some(()));
            assert_eq!(back, diff);
            if s.values.is_empty() {
                continue;
            }
            // A value without its gap, a gap without its value, a gap
            // past the end: refused.
            let short = &s.values[..s.values.len() - 1];
            assert_eq!(decode_sparse(&s.gaps, short, &mut back), None);
            let mut more = s.values.clone();
            more.push(1);
            assert_eq!(decode_sparse(&s.gaps, &more, &mut back), None);
            let last = diff.iter().rposition(|&d| d != 0).unwrap_or(0);
            assert_eq!(decode_sparse(&s.gaps, &s.values, &mut back[..last]), None);
        }
        // A gap of u64::MAX, or cut short: refused.
        let mut huge = Vec::new();
        put_varint(&mut huge, u64::MAX);
        assert_eq!(decode_sparse(&huge, &[1], &mut [0; 4]), None);
        assert_eq!(decode_sparse(&[0x80], &[1], &mut [0; 4]), None);
        // 64 KiB of zeros is nothing at all.
        let s = sparse(&[0; 65536]);
        assert!(s.gaps.is_empty() && s.values.is_empty());
    }

    #[test]
    fn stream_tables_shrink_with_the_stream() {
        assert_eq!(table_log(0), 10);
        assert_eq!(table_log(1 << 30), TABLE_LOG_MAX);
        assert_eq!(table_log(1_100_000), 19);
        for len in [1usize << 14, 300_000, 1 << 21] {
            assert!(8 << table_log(len) <= 4 * len, "{len}");
        }
    }

    #[test]
    fn blocks_are_cut_at_the_block_size() {
        let old = vec![7u8; 3 * BLOCK_OUT];
        let new = vec![9u8; 3 * BLOCK_OUT];
        let mut s = Streams::new();
        s.push(
            &old,
            0,
            &new[..2 * BLOCK_OUT + 5],
            &new[2 * BLOCK_OUT + 5..],
        );
        s.finish();
        let blocks = s.blocks.clone();
        assert_eq!(blocks.len(), 3);
        assert!(blocks.iter().all(|b| b.out == BLOCK_OUT));
        assert_eq!(blocks[2].diff, 5);
        assert_eq!(blocks[2].extra, BLOCK_OUT - 5);
        assert_eq!(
            blocks.iter().map(|b| b.diff).sum::<usize>(),
            2 * BLOCK_OUT + 5
        );
        // Every difference is 2: each block's gaps are all zero.
        assert_eq!(s.values.len(), 2 * BLOCK_OUT + 5);
        assert!(s.values.iter().all(|&v| v == 2));
        assert!(s.gaps.iter().all(|&g| g == 0));
    }
}
