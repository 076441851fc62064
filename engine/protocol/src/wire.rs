//! The primitives every message is built from: big-endian integers and
//! length-prefixed strings and bytes, each read against a bound.
//!
//! Every read checks the bound before it allocates, so a hostile length can
//! cost at most the bound, never the length it claims.

use haifu_core::{ArtifactName, Digest, Version};
use jiff::Timestamp;

use crate::error::{DecodeError, EncodeError};

/// Appends encoded fields to a buffer; checks each length against its bound so
/// that nothing is ever sent that the peer would refuse.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// A string: u16 length, then UTF-8 bytes; at most `max` bytes.
    pub(crate) fn str(
        &mut self,
        field: &'static str,
        v: &str,
        max: usize,
    ) -> Result<(), EncodeError> {
        let len = checked_len(field, v.len(), max.min(usize::from(u16::MAX)))?;
        self.u16(len as u16);
        self.buf.extend_from_slice(v.as_bytes());
        Ok(())
    }

    /// Bytes: u32 length, then the bytes; at most `max` bytes.
    pub(crate) fn bytes(
        &mut self,
        field: &'static str,
        v: &[u8],
        max: usize,
    ) -> Result<(), EncodeError> {
        let len = checked_len(field, v.len(), max)?;
        self.u32(len as u32);
        self.buf.extend_from_slice(v);
        Ok(())
    }

    /// A list count: u16; at most `max` items.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        n: usize,
        max: usize,
    ) -> Result<(), EncodeError> {
        let n = checked_len(field, n, max.min(usize::from(u16::MAX)))?;
        self.u16(n as u16);
        Ok(())
    }

    pub(crate) fn raw32(&mut self, v: &[u8; 32]) {
        self.buf.extend_from_slice(v);
    }

    pub(crate) fn digest(&mut self, d: &Digest) {
        self.raw32(d.as_bytes());
    }

    /// A time: i64 seconds then i32 nanoseconds, both as jiff gives them
    /// (the nanoseconds carry the sign of the seconds).
    pub(crate) fn time(&mut self, t: &Timestamp) {
        self.buf.extend_from_slice(&t.as_second().to_be_bytes());
        self.buf
            .extend_from_slice(&t.subsec_nanosecond().to_be_bytes());
    }

    pub(crate) fn name(
        &mut self,
        field: &'static str,
        n: &ArtifactName,
    ) -> Result<(), EncodeError> {
        self.str(field, n.as_str(), crate::limits::MAX_ID_LEN)
    }

    pub(crate) fn version(&mut self, field: &'static str, v: &Version) -> Result<(), EncodeError> {
        self.str(field, &v.to_string(), crate::limits::MAX_ID_LEN)
    }
}

fn checked_len(field: &'static str, len: usize, max: usize) -> Result<usize, EncodeError> {
    if len > max {
        return Err(EncodeError::TooLong { field, len, max });
    }
    Ok(len)
}

/// Reads fields from a received frame, front to back.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Fails if anything is left: one encoding per value, no trailing data.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.rest.len(),
            })
        }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid {
                field,
                reason: "a boolean must be 0 or 1",
            }),
        }
    }

    /// An option marker: 0 for none, 1 for some.
    pub(crate) fn present(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid {
                field,
                reason: "an option marker must be 0 or 1",
            }),
        }
    }

    fn bounded(
        &mut self,
        field: &'static str,
        len: usize,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        self.take(field, len)
    }

    pub(crate) fn str(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(field)?);
        let raw = self.bounded(field, len, max)?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::Invalid {
            field,
            reason: "not UTF-8",
        })?;
        Ok(s.to_owned())
    }

    pub(crate) fn bytes(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        Ok(self.bounded(field, len, max)?.to_vec())
    }

    pub(crate) fn count(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16(field)?);
        if n > max {
            return Err(DecodeError::TooLong { field, len: n, max });
        }
        Ok(n)
    }

    pub(crate) fn raw32(&mut self, field: &'static str) -> Result<[u8; 32], DecodeError> {
        self.array(field)
    }

    pub(crate) fn digest(&mut self, field: &'static str) -> Result<Digest, DecodeError> {
        Ok(Digest::from_bytes(self.raw32(field)?))
    }

    pub(crate) fn time(&mut self, field: &'static str) -> Result<Timestamp, DecodeError> {
        let secs = i64::from_be_bytes(self.array(field)?);
        let nanos = i32::from_be_bytes(self.array(field)?);
        let invalid = DecodeError::Invalid {
            field,
            reason: "not a time jiff can represent in canonical form",
        };
        let t = Timestamp::new(secs, nanos).map_err(|_| invalid.clone())?;
        // jiff normalises mixed signs; accept only the form we would write, so
        // every accepted frame re-encodes to the same bytes.
        if t.as_second() != secs || t.subsec_nanosecond() != nanos {
            return Err(invalid);
        }
        Ok(t)
    }

    pub(crate) fn name(&mut self, field: &'static str) -> Result<ArtifactName, DecodeError> {
        let s = self.str(field, crate::limits::MAX_ID_LEN)?;
        s.parse().map_err(|_| DecodeError::Invalid {
            field,
            reason: "not a valid artifact name",
        })
    }

    pub(crate) fn version(&mut self, field: &'static str) -> Result<Version, DecodeError> {
        let s = self.str(field, crate::limits::MAX_ID_LEN)?;
        let v: Version = s.parse().map_err(|_| DecodeError::Invalid {
            field,
            reason: "not a semver version",
        })?;
        // Accept only the spelling `Display` gives back, so that every
        // accepted frame re-encodes to the same bytes whatever the parser
        // tolerates.
        if v.to_string() != s {
            return Err(DecodeError::Invalid {
                field,
                reason: "version not in canonical form",
            });
        }
        Ok(v)
    }
}
