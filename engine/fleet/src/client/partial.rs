//! A straggler's transfer from the master that was cut (a killed master, a
//! lost link): its bytes are kept under the install root, with what they
//! are the beginning of, so the next check asks only for the rest
//! (`delta-resume`) instead of starting over.
//!
//! What is on disk is not trusted: the note must read and name the same
//! `from → to` as the transfer asked for, and the bytes must not be longer
//! than the size it announced; anything else starts from nothing. Whatever
//! it holds, the payload is checked whole later (the delta applied and the
//! result checked against its signed hash).

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use haifu_core::Digest;
use serde::{Deserialize, Serialize};

/// The most a note may be: it holds two digests, a word and a number.
const MAX_NOTE: u64 = 1024;

/// What the kept bytes are the beginning of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Note {
    from: String,
    to: String,
    delta: bool,
    size: u64,
}

/// A transfer's bytes on disk, possibly the beginning of a cut one.
#[derive(Debug)]
pub(super) struct Partial {
    payload: PathBuf,
    note: PathBuf,
    from: Digest,
    to: Digest,
    file: Option<std::fs::File>,
}

impl Partial {
    /// The partial transfer `from → to` under the install root `root`.
    pub(super) fn at(root: &Path, from: Digest, to: Digest) -> Self {
        Self {
            payload: root.join("catch-up.partial"),
            note: root.join("catch-up.json"),
            from,
            to,
            file: None,
        }
    }

    fn note(&self) -> Option<Note> {
        let meta = std::fs::metadata(&self.note).ok()?;
        if meta.len() > MAX_NOTE {
            return None;
        }
        let note: Note = serde_json::from_slice(&std::fs::read(&self.note).ok()?).ok()?;
        (note.from == self.from.to_hex() && note.to == self.to.to_hex()).then_some(note)
    }

    /// How many bytes of this transfer are kept (0: none, or not this
    /// transfer's).
    pub(super) fn held(&self) -> u64 {
        let Some(note) = self.note() else { return 0 };
        match std::fs::metadata(&self.payload) {
            Ok(m) if m.len() <= note.size => m.len(),
            _ => 0,
        }
    }

    /// Opens the payload for a transfer of `size` bytes (a delta or the
    /// full copy), keeping the first `keep` bytes only when they are the
    /// beginning of exactly this payload; returns how many were kept.
    pub(super) fn open(&mut self, delta: bool, size: u64, keep: u64) -> std::io::Result<u64> {
        let same = self
            .note()
            .is_some_and(|n| n.delta == delta && n.size == size);
        let keep = if same { keep.min(self.held()) } else { 0 };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.payload)?;
        file.set_len(keep)?;
        let note = Note {
            from: self.from.to_hex(),
            to: self.to.to_hex(),
            delta,
            size,
        };
        let mut out = std::fs::File::create(&self.note)?;
        out.write_all(&serde_json::to_vec(&note).map_err(std::io::Error::other)?)?;
        self.file = Some(file);
        Ok(keep)
    }

    /// Starts over: nothing kept.
    pub(super) fn restart(&mut self) -> std::io::Result<()> {
        match &self.file {
            Some(f) => f.set_len(0),
            None => Ok(()),
        }
    }

    /// Writes `bytes` at `offset` (checked in order by the caller).
    pub(super) fn write_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        match &self.file {
            Some(f) => f.write_all_at(bytes, offset),
            None => Err(std::io::Error::other("the partial transfer is not open")),
        }
    }

    /// Where the payload is.
    pub(super) fn path(&self) -> &Path {
        &self.payload
    }

    /// Forgets it: the transfer was used (installed, or refused whole).
    pub(super) fn remove(&self) {
        let _ = std::fs::remove_file(&self.payload);
        let _ = std::fs::remove_file(&self.note);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// What a cut transfer left is kept only for the same pair, kind and
    /// size, and never longer than the size announced.
    #[test]
    fn a_cut_transfer_is_resumed_only_as_the_same_payload() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            Digest::from_bytes([1; 32]),
            Digest::from_bytes([2; 32]),
            Digest::from_bytes([3; 32]),
        );
        let mut p = Partial::at(dir.path(), a, b);
        assert_eq!(p.held(), 0);
        assert_eq!(p.open(true, 100, 0).unwrap(), 0);
        p.write_at(0, &[7; 40]).unwrap();
        drop(p);
        let mut p = Partial::at(dir.path(), a, b);
        assert_eq!(p.held(), 40);
        // Another pair: nothing.
        assert_eq!(Partial::at(dir.path(), a, c).held(), 0);
        // The master now sends another payload (a full copy): from zero.
        assert_eq!(p.open(false, 100, 40).unwrap(), 0);
        p.write_at(0, &[7; 60]).unwrap();
        assert_eq!(p.open(false, 100, 60).unwrap(), 60);
        // More bytes on disk than the announced size: not trusted.
        std::fs::write(p.path(), [0u8; 200]).unwrap();
        assert_eq!(Partial::at(dir.path(), a, b).held(), 0);
        // A damaged note: nothing.
        std::fs::write(dir.path().join("catch-up.json"), b"{").unwrap();
        assert_eq!(Partial::at(dir.path(), a, b).held(), 0);
        p.remove();
        assert!(!p.path().exists());
    }
}
