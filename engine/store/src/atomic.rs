//! Atomic file replacement: temporary file, fsync, rename, fsync the folder.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::StoreError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file name unique within this process and tagged with its pid,
/// so a later process can tell an abandoned one from a live one.
pub(crate) fn temp_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}.tmp", std::process::id())
}

/// Flushes a folder's entry table, so a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync folder", dir))
}

/// Removes its file when dropped, unless [`TempFile::keep`] was called.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    pub(crate) fn create(path: PathBuf) -> Result<(Self, File), StoreError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::io("create", &path))?;
        Ok((Self { path, armed: true }, file))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to `dest` (replacing it) and flushes the folder.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<(), StoreError> {
        fs::rename(&self.path, dest).map_err(StoreError::io("rename into place", dest))?;
        self.armed = false;
        // `Path::new("f").parent()` is `Some("")`: the current folder.
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl TempFile {
    /// Publishes the file as `dest` only if `dest` does not exist (a hard
    /// link: atomic, and refused with `AlreadyExists` otherwise), removes
    /// the temporary name and flushes the folder.
    pub(crate) fn publish_new(self, dest: &Path) -> Result<(), StoreError> {
        fs::hard_link(&self.path, dest).map_err(StoreError::io("create", dest))?;
        drop(self);
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `dest` atomically: readers see the old file or the new
/// one, never a part. With `private`, the file is created mode 0600 on Unix.
pub fn write_atomic(dest: &Path, bytes: &[u8], private: bool) -> Result<(), StoreError> {
    synced_temp(dest, bytes, private)?.persist(dest)
}

/// Writes `bytes` to `dest`, which must not exist yet: the file appears
/// whole or not at all, and an existing one is never replaced (the error's
/// kind is then `AlreadyExists`). With `private`, the file is mode 0600 on
/// Unix before a byte is written, so a key is never readable by others.
pub fn write_new(dest: &Path, bytes: &[u8], private: bool) -> Result<(), StoreError> {
    synced_temp(dest, bytes, private)?.publish_new(dest)
}

/// `bytes` in a temporary file beside `dest`, synced, ready to publish.
fn synced_temp(dest: &Path, bytes: &[u8], private: bool) -> Result<TempFile, StoreError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let (tmp, mut file) = TempFile::create(dir.join(format!(".{}", temp_name("write"))))?;
    if private {
        restrict_permissions(&file, tmp.path())?;
    }
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(StoreError::io("write", tmp.path()))?;
    Ok(tmp)
}

#[cfg(unix)]
fn restrict_permissions(file: &File, path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(StoreError::io("set permissions of", path))
}

#[cfg(not(unix))]
fn restrict_permissions(_file: &File, _path: &Path) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", false).unwrap();
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn dropped_temp_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.tmp");
        let (tmp, _f) = TempFile::create(p.clone()).unwrap();
        assert!(p.exists());
        drop(tmp);
        assert!(!p.exists());
    }
}
