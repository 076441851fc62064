//! Whether a plugin folder or file may be loaded: who could have put code
//! there.
//!
//! Loading a library runs its code with the daemon's rights, so a plugin is
//! only as trustworthy as everyone who can write it. A folder or file is
//! refused when others may write it, when its group may write it and that
//! group is anything but its owner's private group (the user-private-group
//! scheme behind umask 002: a group named after the user, the user's
//! primary group, with no other members), or when it belongs to someone
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
    let group_ok = mode & 0o020 == 0 || private_group_of(meta.uid(), meta.gid());
    if mode & 0o002 != 0 || !group_ok {
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

/// Whether `gid` is the private group of user `uid`, as `/etc/passwd` and
/// `/etc/group` say (read with a size cap; unreadable means no).
#[cfg(unix)]
fn private_group_of(uid: u32, gid: u32) -> bool {
    let read = |p: &str| -> Option<String> {
        use std::io::Read as _;
        let mut text = String::new();
        std::fs::File::open(p)
            .ok()?
            .take(4 << 20)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    };
    match (read("/etc/passwd"), read("/etc/group")) {
        (Some(passwd), Some(group)) => is_private_group(&passwd, &group, uid, gid),
        _ => false,
    }
}

/// [`private_group_of`] on the files' text: the user's primary group is
/// `gid`, that group is named after the user, and nobody else is listed in
/// it.
fn is_private_group(passwd: &str, group: &str, uid: u32, gid: u32) -> bool {
    let fields = |l: &str| -> Vec<String> { l.split(':').map(str::to_owned).collect() };
    let user = passwd.lines().map(fields).find(|f| {
        f.len() >= 4
            && f[2].parse::<u32>().ok() == Some(uid)
            && f[3].parse::<u32>().ok() == Some(gid)
    });
    let Some(user) = user else {
        return false;
    };
    let name = &user[0];
    group.lines().map(fields).any(|f| {
        f.len() >= 4
            && f[2].parse::<u32>().ok() == Some(gid)
            && f[0] == *name
            && f[3].split(',').all(|m| m.is_empty() || m == name)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_users_own_private_group_may_write() {
        let passwd = "root:x:0:0::/root:/bin/sh\nana:x:1000:1000::/home/ana:/bin/sh\nbo:x:1001:100::/home/bo:/bin/sh\n";
        let group = "root:x:0:\nana:x:1000:\nusers:x:100:bo\nshared:x:1002:ana,bo\n";
        assert!(is_private_group(passwd, group, 1000, 1000));
        assert!(is_private_group(passwd, group, 0, 0));
        // A shared group, a group not the user's primary one, a user whose
        // primary group is a shared one.
        assert!(!is_private_group(passwd, group, 1000, 1002));
        assert!(!is_private_group(passwd, group, 1001, 100));
        assert!(!is_private_group(passwd, group, 1000, 0));
        // A private group that lists someone else.
        let group = "ana:x:1000:bo\n";
        assert!(!is_private_group(passwd, group, 1000, 1000));
        assert!(!is_private_group("", "", 1000, 1000));
    }
}
