//! Applying a bsdiff body on the client, block by block: the controls are
//! decoded and checked against the base and the block's size before the
//! difference and extra segments are decoded into buffers of at most the
//! size the controls imply; then the block's output is made (the base's
//! bytes and the extra bytes copied in, the non-zero differences added in
//! place), written and handed to the hasher. Memory: the base, four zstd windows of at most
//! 2^[`STREAM_WINDOW_LOG_MAX`] bytes, and a few block-sized buffers,
//! whatever the delta declares.

use std::io::{Read, Write};

use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

use super::body::{BLOCK_HEADER_LEN, STREAM_NAMES, get_varint, sparse_differences, unzigzag};
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
        let got = body.segment(&mut streams[3], lens[3], &mut extra, copies, blocks)?;
        if got != copies {
            return Err(corrupt(format!(
                "block {blocks}: the extra segment makes {got} bytes, its controls need {copies}"
            )));
        }
        let mut output = hasher.buffer();
        let block = &mut output[..out_len];
        copy_block(&controls, base, &extra[..got], block);
        add_differences(&controls, &gaps[..g], &values[..v], block).ok_or_else(|| {
            corrupt(format!(
                "block {blocks}: {v} differences and {g} bytes of gaps do not fit the {adds} bytes its controls add"
            ))
        })?;
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

/// Lays out a block from checked controls: each add's bytes of the base,
/// then each copy's extra bytes. The differences are added after, in
/// place ([`add_differences`]): on native code most are zero, so a plain
/// copy and a few hundred additions beat adding a difference buffer byte
/// by byte (and need no such buffer).
fn copy_block(controls: &[Control], base: &[u8], extra: &[u8], out: &mut [u8]) {
    let (mut o, mut e) = (0usize, 0usize);
    for c in controls {
        // `parse` checked every range; `get` keeps a bug from panicking.
        let (Some(dst), Some(old)) = (
            out.get_mut(o..o + c.add),
            base.get(c.old_at..c.old_at + c.add),
        ) else {
            return;
        };
        dst.copy_from_slice(old);
        o += c.add;
        let (Some(dst), Some(src)) = (out.get_mut(o..o + c.copy), extra.get(e..e + c.copy)) else {
            return;
        };
        dst.copy_from_slice(src);
        o += c.copy;
        e += c.copy;
    }
}

/// Adds a block's non-zero differences (its gap and value segments) to
/// the bytes [`copy_block`] laid out: difference `i` belongs to the
/// `i`-th byte of the block's adds, taken in order across its controls.
/// `None` if the segments do not decode or a difference falls past the
/// adds.
fn add_differences(controls: &[Control], gaps: &[u8], values: &[u8], out: &mut [u8]) -> Option<()> {
    // Where each add lies in the block's output, skipping empty ones.
    let mut adds = controls
        .iter()
        .scan(0usize, |o, c| {
            let at = *o;
            *o += c.add + c.copy;
            Some((at, c.add))
        })
        .filter(|&(_, add)| add > 0);
    // The add being filled: its output offset and length, and the
    // difference index of its first byte.
    let (mut add_out, mut add_len, mut add_first) = (0usize, 0usize, 0usize);
    sparse_differences(gaps, values, |pos, value| {
        while pos >= add_first + add_len {
            add_first += add_len;
            (add_out, add_len) = adds.next()?;
        }
        let byte = out.get_mut(add_out + (pos - add_first))?;
        *byte = byte.wrapping_add(value);
        Some(())
    })
}

fn corrupt(detail: String) -> DeltaError {
    DeltaError::Corrupt { detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block as the format defines it: base plus the dense differences
    /// over the adds, then the copies.
    fn reference(controls: &[Control], base: &[u8], diff: &[u8], extra: &[u8]) -> Vec<u8> {
        let (mut out, mut d, mut e) = (Vec::new(), 0, 0);
        for c in controls {
            for i in 0..c.add {
                out.push(base[c.old_at + i].wrapping_add(diff[d + i]));
            }
            d += c.add;
            out.extend_from_slice(&extra[e..e + c.copy]);
            e += c.copy;
        }
        out
    }

    /// Gaps and values of dense differences, as the maker writes them.
    fn sparse(diff: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut gaps, mut values, mut from) = (Vec::new(), Vec::new(), 0);
        for (i, &d) in diff.iter().enumerate() {
            if d != 0 {
                let mut g = (i - from) as u64;
                while g >= 0x80 {
                    gaps.push(g as u8 | 0x80);
                    g >>= 7;
                }
                gaps.push(g as u8);
                values.push(d);
                from = i + 1;
            }
        }
        (gaps, values)
    }

    #[test]
    fn differences_added_in_place_make_the_dense_block() {
        let base: Vec<u8> = (0..500u32).map(|i| (i * 31 % 251) as u8).collect();
        let extra: Vec<u8> = (0..60u8).collect();
        // Adds crossed by differences, an empty add between copies, a
        // control that only copies, one that goes back in the base.
        let controls = [
            Control {
                old_at: 10,
                add: 7,
                copy: 3,
            },
            Control {
                old_at: 17,
                add: 0,
                copy: 5,
            },
            Control {
                old_at: 17,
                add: 100,
                copy: 0,
            },
            Control {
                old_at: 3,
                add: 1,
                copy: 0,
            },
            Control {
                old_at: 200,
                add: 250,
                copy: 52,
            },
        ];
        let adds: usize = controls.iter().map(|c| c.add).sum();
        let out_len: usize = controls.iter().map(|c| c.add + c.copy).sum();
        for pattern in [0usize, 1, 2, 3] {
            let diff: Vec<u8> = (0..adds)
                .map(|i| match pattern {
                    0 => 0,
                    1 => 1,
                    2 => u8::from(i % 7 == 6 || i == adds - 1) * (i as u8 | 1),
                    _ => u8::from(i == 6 || i == 7 || i == 107) * 200,
                })
                .collect();
            let (gaps, values) = sparse(&diff);
            let mut out = vec![0xEE; out_len];
            copy_block(&controls, &base, &extra, &mut out);
            assert_eq!(
                add_differences(&controls, &gaps, &values, &mut out),
                Some(())
            );
            assert_eq!(out, reference(&controls, &base, &diff, &extra), "{pattern}");
        }
        // A difference one past the adds is refused, as are unpaired ones.
        let mut past = vec![0u8; adds + 1];
        past[adds] = 1;
        let (gaps, values) = sparse(&past);
        let mut out = vec![0; out_len];
        assert_eq!(add_differences(&controls, &gaps, &values, &mut out), None);
        let (gaps, values) = sparse(&[0, 0, 5, 0, 9]);
        assert_eq!(
            add_differences(&controls, &gaps, &values[..1], &mut out),
            None
        );
        assert_eq!(
            add_differences(&controls, &gaps[..1], &values, &mut out),
            None
        );
        assert_eq!(add_differences(&[], &gaps, &values, &mut []), None);
        assert_eq!(add_differences(&[], &[], &[], &mut []), Some(()));
    }
}
