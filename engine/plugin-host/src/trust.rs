//! Whether a plugin folder or file may be loaded: who could have put code
//! there.
//!
//! Loading a library runs its code with the daemon's rights, so a plugin is
//! only as trustworthy as everyone who can write it. A folder or file is
//! refused when group or others may write it, or when it belongs to someone
//! other than root or the user running haifu. A symbolic link is followed:
//! its final target and the folder that holds the target are checked, and
//! the target is what gets loaded (so a link to a file in a loose folder is
//! refused, and a link inside a safe folder cannot be swapped under us).
//!
//! Not checked: the folders above the plugins folder. Another user who can
//! rename one of them could swap the whole tree; install plugins under a
//! path owned by root (such as `/usr/lib/haifu`).

use std::fs::Metadata;
use std::path::Path;

/// Why a plugin folder or file is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// Group or others may write it.
    #[error("mode {mode:04o} lets group or others write it (run: chmod go-w {path})")]
    Writable {
        /// Its permission bits.
        mode: u32,
        /// The path to fix, for the message.
        path: String,
    },
    /// Someone other than root or the current user owns it.
    #[error("owned by uid {owner}, not by root or the current user (uid {me})")]
    Owner {
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        me: u32,
    },
    /// A folder where a file is expected, or the reverse.
    #[error("{0}")]
    Kind(&'static str),
}

/// A check that failed: the path could not be inspected, or it is not
/// trusted.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// `stat` or `canonicalize` failed (a missing file, say).
    Io(std::io::Error),
    /// Inspected and refused.
    Untrusted(Untrusted),
}

impl From<Untrusted> for Refusal {
    fn from(u: Untrusted) -> Self {
        Self::Untrusted(u)
    }
}

#[cfg(unix)]
fn effective_uid() -> u32 {
    // The C library's geteuid: std does not expose it and this crate takes
    // no libc dependency for one call. It cannot fail and has no
    // preconditions; uid_t is a 32-bit unsigned integer on the Unix
    // platforms haifu supports.
    unsafe extern "C" {
        safe fn geteuid() -> u32;
    }
    geteuid()
}

#[cfg(unix)]
fn check_meta(path: &Path, meta: &Metadata) -> Result<(), Untrusted> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Untrusted::Writable {
            mode,
            path: path.display().to_string(),
        });
    }
    let me = effective_uid();
    let owner = meta.uid();
    if owner != 0 && owner != me {
        return Err(Untrusted::Owner { owner, me });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_meta(_path: &Path, _meta: &Metadata) -> Result<(), Untrusted> {
    Ok(())
}

/// Checks a plugins folder (following links to it).
pub(crate) fn check_dir(dir: &Path) -> Result<(), Refusal> {
    let meta = std::fs::metadata(dir).map_err(Refusal::Io)?;
    if !meta.is_dir() {
        return Err(Untrusted::Kind("not a folder").into());
    }
    Ok(check_meta(dir, &meta)?)
}

/// Checks a plugin file and returns the path to load: the file itself, or
/// the final target of a link after that target and its folder passed.
pub(crate) fn check_file(path: &Path) -> Result<std::path::PathBuf, Refusal> {
    let link = std::fs::symlink_metadata(path).map_err(Refusal::Io)?;
    let real = if link.file_type().is_symlink() {
        let real = std::fs::canonicalize(path).map_err(Refusal::Io)?;
        if let Some(parent) = real.parent() {
            check_dir(parent)?;
        }
        real
    } else {
        path.to_path_buf()
    };
    let meta = std::fs::metadata(&real).map_err(Refusal::Io)?;
    if !meta.is_file() {
        return Err(Untrusted::Kind("not a regular file").into());
    }
    check_meta(&real, &meta)?;
    Ok(real)
}
