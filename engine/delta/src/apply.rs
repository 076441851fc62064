//! Applying a delta on the client: header first, then each chunk's frame
//! streamed through zstd into the output, hashed on the way; the result is
//! trusted only once its sha3-256 equals the header's target.
//!
//! The base is hashed on a second thread while the first decodes, so the
//! check of the base costs no time when it holds (clients are the slow side).

use std::io::{self, Read, Write};
use std::thread;

use haifu_core::Digest;
use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, ResetDirective};

use crate::container::{CHUNK_RECORD_LEN, ChunkRecord, DeltaHeader, HEADER_LEN, digest_of};
use crate::hashing::PipelinedHasher;
use crate::{DeltaError, Method};

/// Bytes of output handed to the writer (and the hasher) at a time.
const OUT_BUF: usize = 1 << 20;
// A bsdiff block is made in one output buffer.
const _: () = assert!(crate::bsdiff::BLOCK_OUT <= OUT_BUF);

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The delta's header: the base and the target it verified.
    pub header: DeltaHeader,
    /// Bytes written to the output (the target's size).
    pub bytes_written: u64,
}

/// A delta whose header has been read and checked; apply it with
/// [`PatchReader::apply_to`].
///
/// Call order: [`PatchReader::new`] (reads the header), optionally
/// [`PatchReader::header`] / [`PatchReader::check_target`] to compare with the
/// signed manifest, then [`PatchReader::apply_to`].
#[derive(Debug)]
pub struct PatchReader<R> {
    reader: R,
    header: DeltaHeader,
}

impl<R: Read> PatchReader<R> {
    /// Reads and checks the header (magic, version, header check, fields).
    pub fn new(mut reader: R) -> Result<Self, DeltaError> {
        let mut b = [0u8; HEADER_LEN];
        read_exact(&mut reader, &mut b, "header")?;
        let header = DeltaHeader::decode(&b)?;
        Ok(Self { reader, header })
    }

    /// What the delta applies to and makes.
    pub fn header(&self) -> &DeltaHeader {
        &self.header
    }

    /// Refuses a delta that does not make the version the client was told
    /// to install (`to` and `to_size` from the signed manifest).
    pub fn check_target(&self, to: &Digest, to_size: u64) -> Result<(), DeltaError> {
        if self.header.to != *to || self.header.to_size != to_size {
            return Err(DeltaError::WrongTarget {
                expected: *to,
                expected_size: to_size,
                found: self.header.to,
                found_size: self.header.to_size,
            });
        }
        Ok(())
    }

    /// Applies the delta to `base`, streaming the result into `out`; the
    /// base is hashed (on its own thread, while decoding) and refused unless
    /// it is the delta's `from`.
    ///
    /// `out` receives bytes before they are verified: treat them as
    /// untrusted until this returns `Ok` (write to a temporary file and
    /// rename it on success, as the installer does). On `Err` discard them.
    ///
    /// The reader must end where the delta ends: trailing bytes are refused.
    pub fn apply_to<W: Write>(self, base: &[u8], out: W) -> Result<Applied, DeltaError> {
        self.apply_checked(base, BaseCheck::Hash, out)
    }

    /// [`PatchReader::apply_to`], choosing how the base is checked.
    pub fn apply_checked<W: Write>(
        self,
        base: &[u8],
        check: BaseCheck,
        out: W,
    ) -> Result<Applied, DeltaError> {
        let header = self.header;
        if base.len() as u64 != header.from_size {
            return Err(wrong_base(&header, digest_of(base), base.len()));
        }
        if let BaseCheck::Known(digest) = check
            && digest != header.from
        {
            return Err(wrong_base(&header, digest, base.len()));
        }
        // This thread decodes and writes, one hashes the output as it is
        // written, and (unless its digest is known) one hashes the base.
        let (base_digest, decoded) = thread::scope(|s| {
            let hashing = match check {
                BaseCheck::Hash => Some(s.spawn(|| digest_of(base))),
                BaseCheck::Known(_) => None,
            };
            let hasher = PipelinedHasher::start(s, OUT_BUF);
            let decoded = decode(self.reader, &header, base, out, hasher);
            let digest = hashing.map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
            (digest, decoded)
        });
        // A different base explains any decoding failure: say so first.
        if let Some(found) = base_digest.filter(|d| *d != header.from) {
            return Err(wrong_base(&header, found, base.len()));
        }
        let bytes_written = decoded?;
        tracing::debug!(from = %header.from, to = %header.to, bytes = bytes_written, "delta applied");
        Ok(Applied {
            header,
            bytes_written,
        })
    }
}

/// How [`PatchReader::apply_checked`] makes sure the base is the delta's
/// `from`. Either way the result is verified against `to` before `Ok`, so a
/// wrong base can never produce a trusted output; this only decides how
/// early and how clearly a wrong base is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseCheck {
    /// Hash the base now (in parallel with decoding). The default.
    Hash,
    /// The caller computed the base's digest while reading it (haifu-store's
    /// verified reader does, and the installer records it at install), so
    /// it is compared without hashing the base a second time: sha3-256 at
    /// ~300 MB/s is the client's largest cost.
    Known(Digest),
}

/// Applies `patch` to `base`, streaming the result into `out`; see
/// [`PatchReader::apply_to`] for when the written bytes may be trusted.
pub fn apply<R: Read, W: Write>(base: &[u8], patch: R, out: W) -> Result<Applied, DeltaError> {
    PatchReader::new(patch)?.apply_to(base, out)
}

/// Applies `patch` to `base` in memory; returns the result only once it is
/// verified.
pub fn apply_to_vec(base: &[u8], patch: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let reader = PatchReader::new(patch)?;
    // The declared size is only a hint for the allocation: cap it, so a
    // hostile header cannot reserve memory the output never fills.
    let hint = usize::try_from(reader.header.to_size).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(hint.min(patch.len().saturating_mul(64)).max(4096));
    reader.apply_to(base, &mut out)?;
    Ok(out)
}

/// [`apply_to_vec`], refusing (before allocating) a delta whose declared
/// target is larger than `cap`: pass the signed manifest's size.
pub fn apply_to_vec_capped(base: &[u8], patch: &[u8], cap: u64) -> Result<Vec<u8>, DeltaError> {
    let reader = PatchReader::new(patch)?;
    if reader.header.to_size > cap {
        return Err(DeltaError::TargetTooLarge {
            size: reader.header.to_size,
            cap,
        });
    }
    let hint = usize::try_from(reader.header.to_size).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(hint.min(patch.len().saturating_mul(64)).max(4096));
    reader.apply_to(base, &mut out)?;
    Ok(out)
}

/// Decompresses a full copy (the store's zstd object) from `compressed`
/// into `out`, a buffer at a time, and fails with
/// [`DeltaError::FullTooLarge`] as soon as the output would pass `cap` (the
/// signed manifest's size): unlike `zstd::decode_all`, a hostile stream
/// cannot make the client hold or write more than the artifact it expects.
/// Returns the bytes written; the caller still checks them against the
/// manifest's digest.
pub fn decode_full<R: Read, W: Write>(
    compressed: R,
    mut out: W,
    cap: u64,
) -> Result<u64, DeltaError> {
    let mut decoder =
        zstd::stream::read::Decoder::new(compressed).map_err(|source| DeltaError::Read {
            what: "full artifact",
            source,
        })?;
    let mut buf = vec![0u8; OUT_BUF];
    let mut written = 0u64;
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => return Ok(written),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(DeltaError::Read {
                    what: "full artifact",
                    source,
                });
            }
        };
        if written + n as u64 > cap {
            return Err(DeltaError::FullTooLarge { cap });
        }
        out.write_all(&buf[..n])
            .map_err(|source| DeltaError::Write { source })?;
        written += n as u64;
    }
}

/// Like [`apply`], with the base read from `base` (at most the size the
/// header declares, so a wrong base cannot exhaust memory).
pub fn apply_reading_base<B: Read, R: Read, W: Write>(
    base: B,
    patch: R,
    out: W,
) -> Result<Applied, DeltaError> {
    let reader = PatchReader::new(patch)?;
    let limit = reader.header.from_size;
    // The header is not trusted yet: reserve at most 256 MiB up front and
    // let the read grow the rest, so a declared size cannot abort us.
    let reserve = usize::try_from(limit.min(256 << 20)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(reserve);
    base.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| DeltaError::Read {
            what: "base",
            source,
        })?;
    reader.apply_to(&bytes, out)
}

/// Decodes every chunk into `out`; returns the bytes written once their
/// digest matches the header.
fn decode<R: Read, W: Write>(
    mut reader: R,
    header: &DeltaHeader,
    base: &[u8],
    mut out: W,
    mut hasher: PipelinedHasher<'_>,
) -> Result<u64, DeltaError> {
    if header.method == Method::Bsdiff {
        let mut rb = [0u8; CHUNK_RECORD_LEN];
        read_exact(&mut reader, &mut rb, "chunk record")?;
        let record = ChunkRecord::decode(&rb, header, 0)?;
        let done =
            crate::bsdiff::apply_body(&mut reader, &record, header, base, &mut out, &mut hasher)?;
        return finish(reader, header, out, hasher, done);
    }
    let mut dctx = DCtx::try_create().ok_or_else(|| DeltaError::Zstd {
        op: "create context",
        detail: "out of memory".into(),
    })?;
    let mut input = vec![0u8; DCtx::in_size()];
    let mut output = hasher.buffer();
    let mut done = 0u64;
    for index in 0..header.chunks {
        let mut rb = [0u8; CHUNK_RECORD_LEN];
        read_exact(&mut reader, &mut rb, "chunk record")?;
        let record = ChunkRecord::decode(&rb, header, done)?;
        // Offsets were checked against from_size == base.len().
        let reference = base
            .get(record.ref_offset as usize..(record.ref_offset + record.ref_len) as usize)
            .unwrap_or_default();
        dctx.reset(ResetDirective::SessionAndParameters)
            .map_err(DeltaError::zstd("reset"))?;
        // Required past 128 MiB; and a frame asking for more than its chunk
        // needs is refused by zstd instead of allocating it.
        dctx.set_parameter(DParameter::WindowLogMax(u32::from(record.window_log())))
            .map_err(DeltaError::zstd("set window log"))?;
        dctx.ref_prefix(reference)
            .map_err(DeltaError::zstd("reference prefix"))?;
        let mut produced = 0u64;
        let mut left = record.frame_len;
        let (mut pos, mut len) = (0usize, 0usize);
        loop {
            if pos == len && left > 0 {
                let want = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = read_some(&mut reader, &mut input[..want])?;
                if n == 0 {
                    return Err(truncated(format!("chunk {index}: frame ends early")));
                }
                left -= n as u64;
                (pos, len) = (0, n);
            }
            let mut inb = InBuffer::around(&input[pos..len]);
            let mut outb = OutBuffer::around(&mut output[..]);
            let hint = dctx
                .decompress_stream(&mut outb, &mut inb)
                .map_err(|code| corrupt(index, zstd::zstd_safe::get_error_name(code)))?;
            let consumed = inb.pos();
            pos += consumed;
            let n = outb.pos();
            if consumed == 0 && n == 0 && hint != 0 && pos < len {
                // zstd always progresses on valid input; never spin.
                return Err(corrupt(index, "decoder made no progress"));
            }
            if n > 0 {
                produced += n as u64;
                if produced > record.out_len {
                    return Err(DeltaError::OutputTooLarge {
                        limit: header.to_size,
                    });
                }
                out.write_all(&output[..n])
                    .map_err(|source| DeltaError::Write { source })?;
                hasher.submit(output, n);
                output = hasher.buffer();
            }
            if hint == 0 {
                if pos != len || left != 0 {
                    return Err(corrupt(index, "bytes after the end of its frame"));
                }
                if produced != record.out_len {
                    return Err(corrupt(
                        index,
                        &format!(
                            "frame made {produced} bytes, its record says {}",
                            record.out_len
                        ),
                    ));
                }
                break;
            }
            if pos == len && left == 0 && n < output.len() {
                return Err(truncated(format!("chunk {index}: frame is incomplete")));
            }
        }
        done += produced;
    }
    finish(reader, header, out, hasher, done)
}

/// The checks after the last chunk: the total size, nothing trailing, the
/// output flushed, and its digest equal to the header's target.
fn finish<R: Read, W: Write>(
    mut reader: R,
    header: &DeltaHeader,
    mut out: W,
    hasher: PipelinedHasher<'_>,
    done: u64,
) -> Result<u64, DeltaError> {
    if done != header.to_size {
        return Err(DeltaError::Corrupt {
            detail: format!(
                "chunks made {done} bytes, the header says {}",
                header.to_size
            ),
        });
    }
    let mut extra = [0u8; 1];
    if read_some(&mut reader, &mut extra)? != 0 {
        return Err(DeltaError::Corrupt {
            detail: "bytes after the last chunk".into(),
        });
    }
    out.flush().map_err(|source| DeltaError::Write { source })?;
    let found = hasher.finish();
    if found != header.to {
        return Err(DeltaError::ResultMismatch {
            expected: header.to,
            found,
        });
    }
    Ok(done)
}

pub(crate) fn read_exact<R: Read>(
    reader: &mut R,
    buf: &mut [u8],
    what: &str,
) -> Result<(), DeltaError> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            truncated(format!("{what} ends early"))
        } else {
            DeltaError::Read {
                what: "delta",
                source: e,
            }
        }
    })
}

pub(crate) fn read_some<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<usize, DeltaError> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => {
                return r.map_err(|source| DeltaError::Read {
                    what: "delta",
                    source,
                });
            }
        }
    }
}

fn wrong_base(header: &DeltaHeader, found: Digest, found_size: usize) -> DeltaError {
    DeltaError::WrongBase {
        expected: header.from,
        expected_size: header.from_size,
        found,
        found_size: found_size as u64,
    }
}

fn truncated(detail: String) -> DeltaError {
    DeltaError::Truncated { detail }
}

fn corrupt(index: u32, what: &str) -> DeltaError {
    DeltaError::Corrupt {
        detail: format!("chunk {index}: {what}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{MakeOptions, make};

    /// A base of several output buffers (so the hashing thread recycles
    /// every buffer more than once) and a target with scattered edits.
    fn pair() -> (Vec<u8>, Vec<u8>) {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let old: Vec<u8> = (0..(6 * OUT_BUF + 12_345))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let mut new = old.clone();
        for i in (0..new.len()).step_by(40_000) {
            new[i] = new[i].wrapping_add(1);
        }
        new.extend_from_slice(b"a tail that only the new version has");
        (old, new)
    }

    fn apply_known(old: &[u8], patch: &[u8]) -> Result<Vec<u8>, DeltaError> {
        let mut out = Vec::new();
        PatchReader::new(patch)?.apply_checked(old, BaseCheck::Known(digest_of(old)), &mut out)?;
        Ok(out)
    }

    #[test]
    fn hashed_and_known_base_checks_make_the_same_verified_output() {
        let (old, new) = pair();
        let delta = make(&old, &new, &MakeOptions::fast()).unwrap();
        let mut out = Vec::new();
        let applied = PatchReader::new(&delta.bytes[..])
            .unwrap()
            .apply_to(&old, &mut out)
            .unwrap();
        assert!(out == new);
        assert_eq!(applied.bytes_written, new.len() as u64);
        assert_eq!(applied.header.to, digest_of(&new));
        assert!(apply_known(&old, &delta.bytes).unwrap() == new);
    }

    #[test]
    fn a_truncated_delta_is_refused_with_a_known_base() {
        let (old, new) = pair();
        let delta = make(&old, &new, &MakeOptions::fast()).unwrap().bytes;
        let body = HEADER_LEN + CHUNK_RECORD_LEN;
        for cut in [
            0,
            HEADER_LEN,
            body,
            body + 1,
            delta.len() / 2,
            delta.len() - 1,
        ] {
            let e = apply_known(&old, &delta[..cut]).unwrap_err();
            assert!(e.is_damaged_delta(), "cut at {cut}: {e}");
        }
    }

    #[test]
    fn a_corrupted_delta_is_refused_with_a_known_base() {
        let (old, new) = pair();
        let delta = make(&old, &new, &MakeOptions::fast()).unwrap().bytes;
        let body = HEADER_LEN + CHUNK_RECORD_LEN;
        let mut refused = 0;
        for at in (body..delta.len()).step_by((delta.len() - body) / 40 + 1) {
            let mut m = delta.clone();
            m[at] ^= 0x10;
            match apply_known(&old, &m) {
                // A flip zstd and the digest cannot notice changed nothing.
                Ok(out) => assert!(out == new, "flip at {at}: Ok with wrong output"),
                Err(e) => {
                    assert!(e.is_damaged_delta(), "flip at {at}: {e}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 0);
    }

    #[test]
    fn output_that_decodes_but_differs_is_a_result_mismatch() {
        // A frame made for another target, under this target's header: it
        // decodes cleanly, to the right size, and only the digest can tell.
        let (old, new) = pair();
        let mut other = new.clone();
        other[OUT_BUF * 3 + 7] ^= 0xFF;
        let good = make(&old, &new, &MakeOptions::fast()).unwrap().bytes;
        let bad = make(&old, &other, &MakeOptions::fast()).unwrap().bytes;
        let mut spliced = good[..HEADER_LEN].to_vec();
        spliced.extend_from_slice(&bad[HEADER_LEN..]);
        let e = apply_known(&old, &spliced).unwrap_err();
        assert!(matches!(e, DeltaError::ResultMismatch { .. }), "{e}");
    }

    #[test]
    fn a_full_copy_past_the_cap_is_refused_without_writing_past_it() {
        let artifact = vec![7u8; 300_000];
        let z = zstd::encode_all(&artifact[..], 3).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            super::decode_full(&z[..], &mut out, 300_000).unwrap(),
            300_000
        );
        assert_eq!(out, artifact);
        let mut out = Vec::new();
        let e = super::decode_full(&z[..], &mut out, 299_999).unwrap_err();
        assert!(
            matches!(e, DeltaError::FullTooLarge { cap: 299_999 }),
            "{e}"
        );
        assert!(out.len() as u64 <= 299_999);
        assert!(e.is_damaged_delta());
        // Not zstd at all: a clean error, no panic.
        assert!(super::decode_full(&b"garbage"[..], Vec::new(), 10).is_err());
    }

    #[test]
    fn a_delta_declaring_a_target_past_the_cap_is_refused_before_allocating() {
        let old = vec![1u8; 50_000];
        let mut new = old.clone();
        new.extend_from_slice(&[2u8; 1000]);
        let d = crate::make(&old, &new, &crate::MakeOptions::default()).unwrap();
        assert_eq!(
            super::apply_to_vec_capped(&old, &d.bytes, 51_000).unwrap(),
            new
        );
        let e = super::apply_to_vec_capped(&old, &d.bytes, 50_999).unwrap_err();
        assert!(
            matches!(
                e,
                DeltaError::TargetTooLarge {
                    size: 51_000,
                    cap: 50_999
                }
            ),
            "{e}"
        );
    }
}
