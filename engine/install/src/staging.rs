//! A file being received: written at offsets or streamed, then verified
//! against the signed manifest before it may be installed.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use haifu_core::{Digest, Manifest, PublicKey};
use sha3::{Digest as _, Sha3_256};
use tempfile::NamedTempFile;

use crate::error::{InstallError, IoContext, Result};

/// A file under `<root>/staging/` that the client fills with an artifact.
///
/// Write decoded blocks with [`Staging::write_at`] (any order) or stream with
/// [`std::io::Write`] (a delta being applied), then call [`Staging::verify`].
/// Dropping a `Staging` deletes its file; a process killed while staging
/// leaves a file that the next [`crate::InstallRoot::open`] removes.
#[derive(Debug)]
pub struct Staging {
    file: NamedTempFile,
    expected_len: u64,
    /// Where the next [`Write::write`] goes.
    cursor: u64,
}

/// A staged file whose content matches a manifest signed by the pinned key;
/// the only thing [`crate::InstallRoot::install`] accepts.
#[derive(Debug)]
pub struct Verified {
    pub(crate) file: NamedTempFile,
    pub(crate) manifest: Manifest,
}

impl Verified {
    /// The manifest the content was checked against.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The staged file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl Staging {
    pub(crate) fn create(staging_dir: &Path, expected_len: u64) -> Result<Self> {
        let file = tempfile::Builder::new()
            .prefix("stage-")
            .suffix(".part")
            .tempfile_in(staging_dir)
            .at(staging_dir, "create staged file")?;
        // Reserve the length up front so block writes at any offset land in
        // a file of the final size (sparse where not yet written).
        file.as_file()
            .set_len(expected_len)
            .at(file.path(), "set length of staged file")?;
        Ok(Self {
            file,
            expected_len,
            cursor: 0,
        })
    }

    /// The staged file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The length declared when staging began.
    pub fn expected_len(&self) -> u64 {
        self.expected_len
    }

    /// Writes `bytes` at `offset`; refuses anything past the expected length.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.expected_len)
        {
            return Err(InstallError::OutOfRange {
                path: self.path().to_owned(),
                offset,
                len,
                expected: self.expected_len,
            });
        }
        self.file
            .as_file()
            .write_all_at(bytes, offset)
            .at(self.file.path(), "write staged file")
    }

    /// Reads `buf.len()` bytes at `offset` of what was written (a receiver
    /// checks a block it wrote against its signed hash).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .as_file()
            .read_exact_at(buf, offset)
            .at(self.file.path(), "read staged file")
    }

    /// Size and sha3-256 of the staged file as it is now.
    pub fn digest(&self) -> Result<(u64, Digest)> {
        hash_file(self.file.as_file(), self.file.path())
    }

    /// Starts making what was written so far durable (`fdatasync`), so
    /// that [`Staging::verify`] at the end has little left to flush. A
    /// receiver calls it after each block, off its critical path.
    pub fn sync_written(&self) -> Result<()> {
        self.file
            .as_file()
            .sync_data()
            .at(self.file.path(), "sync staged file")
    }

    /// [`Staging::verify`] with the content's sha3-256 already computed by
    /// the caller over exactly the bytes it wrote, in order, from offset 0
    /// to the expected length (a receiver hashes blocks as they land): the
    /// file is not read again.
    pub fn verify_hashed(
        self,
        manifest: &Manifest,
        pinned: &PublicKey,
        digest: Digest,
    ) -> Result<Verified> {
        let size = self.expected_len;
        self.verify_content(manifest, pinned, Some((size, digest)))
    }

    /// Checks the manifest's signature against the pinned master key, then
    /// the staged bytes' size and sha3-256 against the manifest, and makes
    /// the file durable. On any mismatch the staged file is deleted and a
    /// typed error ([`InstallError::UntrustedManifest`] or
    /// [`InstallError::ContentMismatch`]) returned.
    pub fn verify(self, manifest: &Manifest, pinned: &PublicKey) -> Result<Verified> {
        self.verify_content(manifest, pinned, None)
    }

    fn verify_content(
        self,
        manifest: &Manifest,
        pinned: &PublicKey,
        hashed: Option<(u64, Digest)>,
    ) -> Result<Verified> {
        let path = self.path().to_owned();
        manifest
            .verify(pinned)
            .map_err(|source| InstallError::UntrustedManifest {
                path: path.clone(),
                source,
            })?;
        let (size, digest) = match hashed {
            Some(hashed) => hashed,
            None => hash_file(self.file.as_file(), &path)?,
        };
        manifest
            .verify_content(size, &digest)
            .map_err(|source| InstallError::ContentMismatch {
                path: path.clone(),
                source,
            })?;
        self.file
            .as_file()
            .sync_all()
            .at(&path, "sync staged file")?;
        Ok(Verified {
            file: self.file,
            manifest: manifest.clone(),
        })
    }
}

impl Write for Staging {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_at(self.cursor, buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.cursor += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Size and sha3-256 of a file, read from its start with positional reads
/// (so no shared cursor matters).
pub(crate) fn hash_file(file: &File, path: &Path) -> Result<(u64, Digest)> {
    let mut hasher = Sha3_256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match file.read_at(&mut buf, size) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).at(path, "read"),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, Digest::from_bytes(hasher.finalize().into())))
}

/// Size and sha3-256 of the file at `path`, e.g. to re-check an installed
/// version against its manifest.
pub fn digest_of(path: &Path) -> Result<(u64, Digest)> {
    let file = File::open(path).at(path, "open")?;
    hash_file(&file, path)
}
