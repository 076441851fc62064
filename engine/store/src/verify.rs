//! A reader that decompresses an object and checks its digest at the end.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use haifu_core::Digest;
use sha3::{Digest as _, Sha3_256};

use crate::StoreError;

/// Streams an object's uncompressed bytes. When the stream ends it compares
/// their sha3-256 with the object's name and returns an
/// [`io::ErrorKind::InvalidData`] error on a mismatch, so a caller that reads
/// to the end never mistakes damaged bytes for the artifact. Turn that error
/// back into a [`StoreError`] that names the file with [`VerifiedReader::error`].
pub struct VerifiedReader {
    inner: zstd::stream::read::Decoder<'static, BufReader<File>>,
    hasher: Sha3_256,
    expected: Digest,
    path: PathBuf,
    size: u64,
    done: bool,
}

impl std::fmt::Debug for VerifiedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedReader")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl VerifiedReader {
    pub(crate) fn new(file: File, path: PathBuf, expected: Digest) -> Result<Self, StoreError> {
        let inner = zstd::stream::read::Decoder::new(file)
            .map_err(StoreError::io("start decompressing", &path))?;
        Ok(Self {
            inner,
            hasher: Sha3_256::new(),
            expected,
            path,
            size: 0,
            done: false,
        })
    }

    /// The object file being read.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Maps an error this reader returned to a [`StoreError`]: invalid data
    /// becomes [`StoreError::Corrupt`], the rest an I/O error on the object.
    pub fn error(&self, e: io::Error) -> StoreError {
        match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => StoreError::Corrupt {
                path: self.path.clone(),
                detail: e.to_string(),
            },
            _ => StoreError::Io {
                op: "read",
                path: self.path.clone(),
                source: e,
            },
        }
    }
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf).map_err(|e| {
            // zstd reports a damaged frame as a plain "other" error.
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cannot decompress: {e}"),
            )
        })?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
            return Ok(n);
        }
        self.done = true;
        let found = Digest::from_bytes(std::mem::take(&mut self.hasher).finalize().into());
        if found != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "its {} bytes hash to {found}, not to its name {}",
                    self.size, self.expected
                ),
            ));
        }
        Ok(0)
    }
}
