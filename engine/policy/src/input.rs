//! Reading an operator's input file (a workflow, a policy script, a daemon
//! config) with a size cap, and only from a regular file.
//!
//! Why it is here: this is the lowest crate that the workflow reader
//! (`haifu-spec`), the policy loader (this crate) and the daemon configs
//! (`haifu-fleet`) all depend on, and the rule must be the same in all
//! three. `/dev/zero` named as a workflow would otherwise be read until
//! memory runs out, and a FIFO would block `haifu check` forever.
//!
//! How: the path's metadata is checked before opening (so a FIFO, a device
//! or a folder is refused without `open`, which blocks on a FIFO with no
//! writer), then again on the open file, which must be the same file; the
//! read stops one byte past the cap. Errors are [`std::io::Error`]s that
//! carry an [`InputError`], so every caller keeps its existing `Read`
//! error with the path and prints one line.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;

/// Why an input file was refused before or while reading it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// A FIFO, a device, a socket or a folder.
    #[error("not a regular file ({kind})")]
    NotRegular {
        /// What it is instead, e.g. "a FIFO".
        kind: &'static str,
    },
    /// More bytes than the cap for this kind of file.
    #[error("larger than the {cap}-byte limit for {what}")]
    TooLarge {
        /// The cap, in bytes.
        cap: u64,
        /// The kind of file, e.g. "workflow files".
        what: &'static str,
    },
    /// The path named another file by the time it was opened.
    #[error("was replaced while being opened")]
    Replaced,
}

fn kind_of(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a folder");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a file")
}

fn refuse(e: InputError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

fn check_regular(meta: &Metadata) -> io::Result<()> {
    match kind_of(meta) {
        None => Ok(()),
        Some(kind) => Err(refuse(InputError::NotRegular { kind })),
    }
}

#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_a: &Metadata, _b: &Metadata) -> bool {
    true
}

/// Reads the UTF-8 text of the regular file at `path`, refusing it when it
/// holds more than `cap` bytes. `what` names the kind of file in the error
/// ("workflow files").
///
/// # Errors
/// The OS error, or an [`io::Error`] of kind `InvalidInput` wrapping an
/// [`InputError`], or `InvalidData` for text that is not UTF-8.
pub fn read_text(path: &Path, cap: u64, what: &'static str) -> io::Result<String> {
    let before = std::fs::metadata(path)?;
    check_regular(&before)?;
    let file = File::open(path)?;
    let after = file.metadata()?;
    check_regular(&after)?;
    if !same_file(&before, &after) {
        return Err(refuse(InputError::Replaced));
    }
    let too_large = || refuse(InputError::TooLarge { cap, what });
    if after.len() > cap {
        return Err(too_large());
    }
    // The length is only a hint (the file may grow); the read itself stops
    // one byte past the cap.
    let mut bytes = Vec::with_capacity(usize::try_from(after.len()).unwrap_or(0));
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not valid UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(e: &io::Error) -> Option<&InputError> {
        e.get_ref().and_then(|i| i.downcast_ref::<InputError>())
    }

    #[test]
    fn reads_a_file_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.yaml");
        std::fs::write(&p, "x".repeat(100)).unwrap();
        assert_eq!(read_text(&p, 100, "test files").unwrap().len(), 100);
        let e = read_text(&p, 99, "test files").unwrap_err();
        assert_eq!(
            inner(&e),
            Some(&InputError::TooLarge {
                cap: 99,
                what: "test files"
            })
        );
        assert_eq!(
            e.to_string(),
            "larger than the 99-byte limit for test files"
        );
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_folders_are_refused_without_reading() {
        let e = read_text(Path::new("/dev/zero"), 1 << 20, "test files").unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (a character device)");
        let dir = tempfile::tempdir().unwrap();
        let e = read_text(dir.path(), 1 << 20, "test files").unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (a folder)");
    }

    #[test]
    fn not_utf8_is_invalid_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b");
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        let e = read_text(&p, 10, "test files").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
