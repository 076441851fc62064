//! Folders and files only their owner may read: the home, `keys/`, the
//! ledger.
//!
//! Modes are set explicitly after creation, not left to the umask: a umask
//! of 002 or 000 must not make the ledger or the keys readable by others.
//! Only what this process creates is changed; an existing folder or file
//! keeps its mode (the operator may have reasons), but the master key is
//! checked where it is read ([`crate::load_or_create_master_key`]).

use std::fs;
use std::io;
use std::path::Path;

use crate::StoreError;

/// The mode of a private folder.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// The mode of a private file.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `dir` mode 0700 if it does not exist (its missing parents get
/// the usual modes). Returns whether it was created.
pub fn create_private_dir(dir: &Path) -> Result<bool, StoreError> {
    if dir.is_dir() {
        return Ok(false);
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(StoreError::io("create folder", parent))?;
    }
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(PRIVATE_DIR_MODE);
    }
    match b.create(dir) {
        Ok(()) => {}
        // Made by another process meanwhile: theirs stands.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(false),
        Err(e) => return Err(StoreError::io("create folder", dir)(e)),
    }
    set_mode(dir, PRIVATE_DIR_MODE)?;
    Ok(true)
}

/// Creates an empty file mode 0600 at `path` if nothing is there. Returns
/// whether it was created. Used for the ledger before SQLite opens it:
/// SQLite gives its `-wal` and `-shm` files the database file's mode.
pub fn create_private_file(path: &Path) -> Result<bool, StoreError> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(PRIVATE_FILE_MODE);
    }
    match o.open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(StoreError::io("create", path)(e)),
    }
    set_mode(path, PRIVATE_FILE_MODE)?;
    Ok(true)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(StoreError::io("set permissions of", path))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_dir_and_file_are_0700_and_0600_and_existing_ones_are_kept() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("a/home");
        assert!(create_private_dir(&home).unwrap());
        assert_eq!(mode(&home), 0o700);
        assert!(!create_private_dir(&home).unwrap());
        let f = home.join("ledger.sqlite");
        assert!(create_private_file(&f).unwrap());
        assert_eq!(mode(&f), 0o600);
        fs::write(&f, b"data").unwrap();
        assert!(!create_private_file(&f).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"data");
    }
}
