//! Applying a bsdiff body on the client, block by block: the controls are
//! decoded and checked against the base and the block's size before the
//! difference and extra segments are decoded into buffers of exactly the
//! size the controls imply; then the block's output is made, written and
//! handed to the hasher. Memory: the base, four zstd windows of at most
//! 2^[`STREAM_WINDOW_LOG_MAX`] bytes, and a few block-sized buffers,
//! whatever the delta declares.

use std::io::{Read, Write};

use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

use super::body::{BLOCK_HEADER_LEN, STREAM_NAMES, decode_sparse, get_varint, unzigzag};
use super::{BLOCK_OUT, CTRL_MAX, STREAM_WINDOW_LOG_MAX};
use crate::DeltaError;
use crate::apply::{read_exact, read_some};
use crate::container::{ChunkRecord, DeltaHeader};
use crate::hashing::PipelinedHasher;

/// One of the four streams: its decoder and whether its frame has ended.
struct Stream {
    name: &'static str,
    dctx: DCtx<'static>,
    ended: bool,
}

/// A control, resolved: `add` bytes from the base at `old_at` plus
/// differences, then `copy` extra bytes.
#[derive(Debug, Clone, Copy)]
struct Control {
    old_at: usize,
    add: usize,
    copy: usize,
}

/// Where the reader is in the body.
struct Body<'r, R> {
    reader: &'r mut R,
    /// Bytes of the body not read yet.
    left: u64,
    input: Vec<u8>,
}

/// Applies the body of a bsdiff delta (its chunk record already read and
/// checked) to `base`, writing the output and feeding the hasher; returns
/// the bytes made (the caller checks the total and the digest).
pub(crate) fn apply_body<R: Read, W: Write>(
    reader: &mut R,
    record: &ChunkRecord,
    header: &DeltaHeader,
    base: &[u8],
    out: &mut W,
    hasher: &mut PipelinedHasher<'_>,
) -> Result<u64, DeltaError> {
    if header.window_log > STREAM_WINDOW_LOG_MAX {
        return Err(corrupt(format!(
            "window log {} is above the bsdiff method's {STREAM_WINDOW_LOG_MAX}",
            header.window_log
        )));
    }
    let mut streams = Vec::with_capacity(STREAM_NAMES.len());
    for name in STREAM_NAMES {
        let mut dctx = DCtx::try_create().ok_or_else(|| DeltaError::Zstd {
            op: "create context",
            detail: "out of memory".into(),
        })?;
        dctx.set_parameter(DParameter::WindowLogMax(u32::from(header.window_log)))
            .map_err(DeltaError::zstd("set window log"))?;
        streams.push(Stream {
            name,
            dctx,
            ended: false,
        });
    }
    let mut body = Body {
        reader,
        left: record.frame_len,
        input: vec![0u8; DCtx::in_size()],
    };
    // One byte past each limit: see `Body::segment`.
    let mut ctrl = vec![0u8; CTRL_MAX + 1];
    let mut gaps = vec![0u8; BLOCK_OUT + 1];
    let mut values = vec![0u8; BLOCK_OUT + 1];
    let mut diff = vec![0u8; BLOCK_OUT];
    let mut extra = vec![0u8; BLOCK_OUT + 1];
    let mut controls: Vec<Control> = Vec::new();
    let mut old_pos = 0usize;
    let mut done = 0u64;
    let mut blocks = 0u64;
    while done < header.to_size || blocks == 0 {
        let mut hb = [0u8; BLOCK_HEADER_LEN];
        body.take(BLOCK_HEADER_LEN as u64, blocks)?;
        read_exact(body.reader, &mut hb, "bsdiff block header")?;
        let field = |i: usize| {
            u32::from_le_bytes([hb[4 * i], hb[4 * i + 1], hb[4 * i + 2], hb[4 * i + 3]]) as usize
        };
        let (out_len, lens) = (field(0), [field(1), field(2), field(3), field(4)]);
        let empty_ok = header.to_size == 0;
        if out_len > BLOCK_OUT
            || (out_len == 0 && !empty_ok)
            || out_len as u64 > header.to_size - done
        {
            return Err(corrupt(format!(
                "block {blocks} makes {out_len} bytes, {} are left of the target",
                header.to_size - done
            )));
        }
        // Controls first: they say how much each other segment must make.
        let n = body.segment(&mut streams[0], lens[0], &mut ctrl, CTRL_MAX, blocks)?;
        let (adds, copies) = parse(&ctrl[..n], base, &mut old_pos, out_len, &mut controls)
            .map_err(|what| corrupt(format!("block {blocks}: {what}")))?;
        // Canonical gaps and the values take at most a byte per add.
        let g = body.segment(&mut streams[1], lens[1], &mut gaps, adds, blocks)?;
        let v = body.segment(&mut streams[2], lens[2], &mut values, adds, blocks)?;
        decode_sparse(&gaps[..g], &values[..v], &mut diff[..adds]).ok_or_else(|| {
            corrupt(format!(
                "block {blocks}: {v} differences and {g} bytes of gaps do not fit the {adds} bytes its controls add"
            ))
        })?;
        let got = body.segment(&mut streams[3], lens[3], &mut extra, copies, blocks)?;
        if got != copies {
            return Err(corrupt(format!(
                "block {blocks}: the extra segment makes {got} bytes, its controls need {copies}"
            )));
        }
        let mut output = hasher.buffer();
        make_block(&controls, base, &diff, &extra, &mut output[..out_len]);
        out.write_all(&output[..out_len])
            .map_err(|source| DeltaError::Write { source })?;
        hasher.submit(output, out_len);
        done += out_len as u64;
        blocks += 1;
    }
    if body.left != 0 {
        return Err(corrupt(format!("{} bytes after the last block", body.left)));
    }
    if let Some(s) = streams.iter().find(|s| !s.ended) {
        return Err(DeltaError::Truncated {
            detail: format!("the bsdiff {} stream does not end", s.name),
        });
    }
    Ok(done)
}

impl<R: Read> Body<'_, R> {
    /// Accounts for `n` bytes about to be read from the body.
    fn take(&mut self, n: u64, block: u64) -> Result<(), DeltaError> {
        if n > self.left {
            return Err(corrupt(format!(
                "block {block} needs {n} bytes, the body has {} left",
                self.left
            )));
        }
        self.left -= n;
        Ok(())
    }

    /// Reads a segment of `len` bytes through `stream`'s decoder into
    /// `out`; returns the bytes decoded, at most `limit`. `out` holds one
    /// byte more than `limit`, so a segment that decodes to more is seen
    /// without asking the decoder for output it has no room for: zstd
    /// counts calls that make no progress, across segments, and fails the
    /// stream after a few.
    fn segment(
        &mut self,
        stream: &mut Stream,
        len: usize,
        out: &mut [u8],
        limit: usize,
        block: u64,
    ) -> Result<usize, DeltaError> {
        self.take(len as u64, block)?;
        let fail = |what: &str| corrupt(format!("block {block}: {} stream: {what}", stream.name));
        let too_much = || fail("decodes to more than its controls allow");
        let out = out.get_mut(..limit + 1).ok_or_else(too_much)?;
        let mut left = len;
        let (mut pos, mut end) = (0usize, 0usize);
        let mut produced = 0usize;
        while left > 0 || pos < end {
            if pos == end {
                let want = self.input.len().min(left);
                let n = read_some(self.reader, &mut self.input[..want])?;
                if n == 0 {
                    return Err(DeltaError::Truncated {
                        detail: format!("block {block}: {} segment ends early", stream.name),
                    });
                }
                left -= n;
                (pos, end) = (0, n);
            }
            let mut inb = InBuffer::around(&self.input[pos..end]);
            let mut outb = OutBuffer::around(&mut out[produced..]);
            let hint = stream
                .dctx
                .decompress_stream(&mut outb, &mut inb)
                .map_err(|code| fail(zstd::zstd_safe::get_error_name(code)))?;
            let (used, made) = (inb.pos(), outb.pos());
            pos += used;
            produced += made;
            // A frame that ended and then saw more input began another.
            if hint == 0 {
                stream.ended = true;
            } else if used > 0 {
                stream.ended = false;
            }
            if produced > limit {
                return Err(too_much());
            }
            if used == 0 && made == 0 {
                return Err(fail("the decoder makes no progress"));
            }
        }
        // All input given and the output never full: zstd has returned
        // everything it decoded (the maker flushed at the block's end).
        Ok(produced)
    }
}

/// Parses a block's controls into `controls`, checking each against the
/// base and the block's size; returns the bytes of differences and of
/// extra they need.
fn parse(
    ctrl: &[u8],
    base: &[u8],
    old_pos: &mut usize,
    out_len: usize,
    controls: &mut Vec<Control>,
) -> Result<(usize, usize), BadControl> {
    controls.clear();
    let (mut at, mut made, mut adds, mut copies) = (0usize, 0usize, 0usize, 0usize);
    while at < ctrl.len() {
        let mut next = || get_varint(ctrl, &mut at).ok_or(BadControl::CutShort);
        let (seek, add, copy) = (unzigzag(next()?), next()?, next()?);
        let old_at = i64::try_from(*old_pos)
            .ok()
            .and_then(|p| p.checked_add(seek))
            .and_then(|p| usize::try_from(p).ok())
            .filter(|&p| p <= base.len())
            .ok_or(BadControl::SeekOut {
                seek,
                base: base.len(),
            })?;
        let fits = |n: u64, made: usize| usize::try_from(n).ok().filter(|&n| n <= out_len - made);
        let add = fits(add, made).ok_or(BadControl::TooLong)?;
        made += add;
        let copy = fits(copy, made).ok_or(BadControl::TooLong)?;
        made += copy;
        if add + copy == 0 {
            return Err(BadControl::Empty);
        }
        if add > base.len() - old_at {
            return Err(BadControl::AddPastBase { old_at });
        }
        *old_pos = old_at + add;
        adds += add;
        copies += copy;
        controls.push(Control { old_at, add, copy });
    }
    if made != out_len {
        return Err(BadControl::WrongLength { made, out_len });
    }
    Ok((adds, copies))
}

/// Why a block's controls are refused (inside [`DeltaError::Corrupt`],
/// after the block's number).
#[derive(Debug, thiserror::Error)]
enum BadControl {
    #[error("a control is cut short or overflows")]
    CutShort,
    #[error("a seek of {seek} leaves the {base}-byte base")]
    SeekOut { seek: i64, base: usize },
    #[error("a control makes more than the block")]
    TooLong,
    #[error("a control makes nothing")]
    Empty,
    #[error("a control adds past the end of the base at {old_at}")]
    AddPastBase { old_at: usize },
    #[error("controls make {made} bytes, the block {out_len}")]
    WrongLength { made: usize, out_len: usize },
}

/// Makes a block's output from checked controls.
fn make_block(controls: &[Control], base: &[u8], diff: &[u8], extra: &[u8], out: &mut [u8]) {
    let (mut o, mut d, mut e) = (0usize, 0usize, 0usize);
    for c in controls {
        // `parse` checked every range; `get` keeps a bug from panicking.
        let (Some(dst), Some(old), Some(dif)) = (
            out.get_mut(o..o + c.add),
            base.get(c.old_at..c.old_at + c.add),
            diff.get(d..d + c.add),
        ) else {
            return;
        };
        for ((x, a), b) in dst.iter_mut().zip(old).zip(dif) {
            *x = a.wrapping_add(*b);
        }
        o += c.add;
        d += c.add;
        let (Some(dst), Some(src)) = (out.get_mut(o..o + c.copy), extra.get(e..e + c.copy)) else {
            return;
        };
        dst.copy_from_slice(src);
        o += c.copy;
        e += c.copy;
    }
}

fn corrupt(detail: String) -> DeltaError {
    DeltaError::Corrupt { detail }
}
