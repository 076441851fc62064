//! Content-addressed objects: streaming, atomic writes and verified reads.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use haifu_core::Digest;
use sha3::{Digest as _, Sha3_256};

use crate::atomic::{TempFile, temp_name};
use crate::{StoreError, VerifiedReader};

/// Bytes read from the source per step. With [`PIPELINE_DEPTH`] chunks in
/// flight to the hashing thread, the write path holds at most a few MiB
/// whatever the artifact's size.
const CHUNK: usize = 1 << 20;
/// Chunks queued for the hashing thread before the reader waits.
const PIPELINE_DEPTH: usize = 4;
/// zstd level for objects at rest: fast enough to keep pace with hashing.
pub(crate) const LEVEL: i32 = 3;

/// Sees every chunk of an artifact being stored, in order, on its own
/// thread.
pub(crate) type Observer<'a> = dyn FnMut(&[u8]) + Send + 'a;

/// The outcome of storing an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    /// sha3-256 of the uncompressed bytes: the object's name.
    pub digest: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// Compressed size on disk.
    pub stored_size: u64,
}

/// The artifact store rooted at one folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, and removes temporary
    /// files left by writers that no longer run.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let store = Self { root: root.into() };
        for dir in [store.objects_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(StoreError::io("create folder", &dir))?;
        }
        for stale in store.abandoned_temp_files()? {
            tracing::info!(path = %stale.display(), "removing abandoned temporary file");
            let _ = fs::remove_file(&stale);
        }
        Ok(store)
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where the object for `digest` lives (whether or not it exists).
    pub fn object_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.objects_dir()
            .join(&hex[..2])
            .join(format!("{hex}.zst"))
    }

    /// Whether an object file exists for `digest` (not whether it is intact:
    /// see [`Store::verify`]).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.object_path(digest).is_file()
    }

    /// Stores the file at `path`. `progress` is called with the number of
    /// bytes read so far.
    pub fn put_file(&self, path: &Path, progress: &mut dyn FnMut(u64)) -> Result<Put, StoreError> {
        let file = File::open(path).map_err(StoreError::io("open", path))?;
        self.put_reader(file, path, progress)
    }

    /// [`Store::put_file`], also handing every chunk of the bytes, in
    /// order, to `observe` on a thread of its own (registration computes
    /// the per-block hashes this way, in the same pass as the digest).
    pub fn put_file_observed(
        &self,
        path: &Path,
        progress: &mut dyn FnMut(u64),
        observe: &mut Observer<'_>,
    ) -> Result<Put, StoreError> {
        let file = File::open(path).map_err(StoreError::io("open", path))?;
        self.put_reader_observed(file, path, progress, Some(observe))
    }

    /// Stores everything `src` yields. `src_name` names the source in errors.
    ///
    /// Reads on this thread, compresses on this thread, hashes on a second
    /// one: the two costs overlap, so the write runs at the pace of the
    /// slower of the two rather than their sum. The object is complete and
    /// synced on disk before it appears under its name; if anything fails the
    /// temporary file is removed and the store is unchanged.
    pub fn put_reader(
        &self,
        src: impl Read,
        src_name: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Put, StoreError> {
        self.put_reader_observed(src, src_name, progress, None)
    }

    fn put_reader_observed(
        &self,
        mut src: impl Read,
        src_name: &Path,
        progress: &mut dyn FnMut(u64),
        observe: Option<&mut Observer<'_>>,
    ) -> Result<Put, StoreError> {
        let tmp_path = self.tmp_dir().join(temp_name("put"));
        let (tmp, file) = TempFile::create(tmp_path)?;
        let out = BufWriter::with_capacity(256 * 1024, file);
        let mut encoder = zstd::stream::write::Encoder::new(out, LEVEL)
            .map_err(StoreError::io("start compressing into", tmp.path()))?;
        let (tx, rx) = sync_channel::<Arc<Vec<u8>>>(PIPELINE_DEPTH);
        let (obs_tx, obs_rx) = sync_channel::<Arc<Vec<u8>>>(PIPELINE_DEPTH);
        let observing = observe.is_some();

        let (digest, size, file) = std::thread::scope(|scope| {
            // The observer hashes as much as the digest does, so it gets a
            // thread of its own rather than slowing the hasher down.
            let observer = observe.map(|observe| {
                scope.spawn(move || {
                    for chunk in obs_rx {
                        observe(chunk.as_slice());
                    }
                })
            });
            let hasher = scope.spawn(move || {
                let mut h = Sha3_256::new();
                for chunk in rx {
                    h.update(chunk.as_slice());
                }
                Digest::from_bytes(h.finalize().into())
            });
            let mut size = 0u64;
            let result = (|| {
                loop {
                    let mut buf = vec![0u8; CHUNK];
                    let n =
                        read_full(&mut src, &mut buf).map_err(StoreError::io("read", src_name))?;
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    let chunk = Arc::new(buf);
                    // The hasher only stops early if it panicked; the join
                    // below reports that.
                    let _ = tx.send(Arc::clone(&chunk));
                    if observing {
                        let _ = obs_tx.send(Arc::clone(&chunk));
                    }
                    encoder
                        .write_all(&chunk)
                        .map_err(StoreError::io("write", tmp.path()))?;
                    size += n as u64;
                    progress(size);
                }
                let out = encoder
                    .finish()
                    .map_err(StoreError::io("write", tmp.path()))?;
                out.into_inner().map_err(|e| StoreError::Io {
                    op: "write",
                    path: tmp.path().to_owned(),
                    source: e.into_error(),
                })
            })();
            drop(tx);
            drop(obs_tx);
            let observed = observer
                .map_or(Ok(()), |o| o.join())
                .map_err(|_| StoreError::Io {
                    op: "hash",
                    path: src_name.to_owned(),
                    source: io::Error::other("observing thread panicked"),
                });
            let digest = hasher.join().map_err(|_| StoreError::Io {
                op: "hash",
                path: src_name.to_owned(),
                source: io::Error::other("hashing thread panicked"),
            });
            observed?;
            result.and_then(|file| Ok((digest?, size, file)))
        })?;

        file.sync_all()
            .map_err(StoreError::io("sync", tmp.path()))?;
        let stored_size = file
            .metadata()
            .map_err(StoreError::io("stat", tmp.path()))?
            .len();
        drop(file);

        let dest = self.object_path(&digest);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(StoreError::io("create folder", dir))?;
        }
        // Renaming over an existing object is deliberate: the new one was
        // hashed while it was written, so it also repairs a damaged copy.
        tmp.persist(&dest)?;
        tracing::debug!(%digest, size, stored_size, "stored object");
        Ok(Put {
            digest,
            size,
            stored_size,
        })
    }

    /// Hashes a file without storing it (used to compare a file with what is
    /// already registered, leaving the store untouched).
    pub fn hash_file(
        path: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(Digest, u64), StoreError> {
        let mut f = File::open(path).map_err(StoreError::io("open", path))?;
        let mut h = Sha3_256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut size = 0u64;
        loop {
            let n = read_full(&mut f, &mut buf).map_err(StoreError::io("read", path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
            progress(size);
        }
        Ok((Digest::from_bytes(h.finalize().into()), size))
    }

    /// Opens the object for streaming. The reader fails at its end if the
    /// bytes do not hash to `digest`: consume it to the end before trusting
    /// what it gave.
    pub fn open_object(&self, digest: &Digest) -> Result<VerifiedReader, StoreError> {
        let path = self.object_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    digest: *digest,
                    path,
                });
            }
            Err(e) => return Err(StoreError::io("open", &path)(e)),
        };
        VerifiedReader::new(file, path, *digest)
    }

    /// Reads the whole object and checks it; returns its uncompressed size.
    pub fn verify(&self, digest: &Digest) -> Result<u64, StoreError> {
        let mut r = self.open_object(digest)?;
        io::copy(&mut r, &mut io::sink()).map_err(|e| r.error(e))
    }

    /// Writes the artifact to `dest` atomically, only once it has verified:
    /// a temporary file in `dest`'s folder, fsync, then published. Without
    /// `overwrite`, publishing is a hard link, which fails if `dest` exists
    /// (even if it appeared during the copy); with it, a rename replaces
    /// `dest`. A failure leaves `dest` as it was and no temporary file.
    pub fn export(&self, digest: &Digest, dest: &Path, overwrite: bool) -> Result<u64, StoreError> {
        let mut r = self.open_object(digest)?;
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let (tmp, file) = TempFile::create(dir.join(format!(".{}", temp_name("export"))))?;
        let mut out = BufWriter::new(file);
        let n = io::copy(&mut r, &mut out).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => r.error(e),
            _ => StoreError::Io {
                op: "write",
                path: tmp.path().to_owned(),
                source: e,
            },
        })?;
        let file = out.into_inner().map_err(|e| StoreError::Io {
            op: "write",
            path: tmp.path().to_owned(),
            source: e.into_error(),
        })?;
        file.sync_all()
            .map_err(StoreError::io("sync", tmp.path()))?;
        drop(file);
        if overwrite {
            tmp.persist(dest)?;
        } else {
            tmp.publish_new(dest)?;
        }
        Ok(n)
    }

    /// Removes the object for `digest` if it was last written more than
    /// `min_age` ago; returns whether it did. The age guard keeps a
    /// registration that has stored its object but not yet recorded it in
    /// the ledger from losing it.
    pub fn remove_object_older_than(
        &self,
        digest: &Digest,
        min_age: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let path = self.object_path(digest);
        let modified = match fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io("stat", &path)(e)),
        };
        let age = modified.elapsed().unwrap_or_default();
        if age < min_age {
            return Ok(false);
        }
        fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
        tracing::info!(%digest, "removed unreferenced object");
        Ok(true)
    }

    /// Every object in the store, by digest (files that are not objects are
    /// skipped).
    pub fn list_objects(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        let objects = self.objects_dir();
        for fan in fs::read_dir(&objects).map_err(StoreError::io("list", &objects))? {
            let fan = fan.map_err(StoreError::io("list", &objects))?.path();
            if !fan.is_dir() {
                continue;
            }
            for obj in fs::read_dir(&fan).map_err(StoreError::io("list", &fan))? {
                let obj = obj.map_err(StoreError::io("list", &fan))?.path();
                let digest = obj
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".zst"))
                    .and_then(|n| n.parse::<Digest>().ok());
                if let Some(d) = digest {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Temporary files in the store, with whether their writer is gone.
    pub fn temp_files(&self) -> Result<Vec<(PathBuf, bool)>, StoreError> {
        let tmp = self.tmp_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&tmp).map_err(StoreError::io("list", &tmp))? {
            let p = e.map_err(StoreError::io("list", &tmp))?.path();
            let abandoned = writer_pid(&p).is_some_and(|pid| !process_alive(pid));
            out.push((p, abandoned));
        }
        Ok(out)
    }

    fn abandoned_temp_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        Ok(self
            .temp_files()?
            .into_iter()
            .filter_map(|(p, abandoned)| abandoned.then_some(p))
            .collect())
    }
}

/// The pid embedded in a temporary file's name (`put-<pid>-<n>.tmp`).
fn writer_pid(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    name.split('-').nth(1)?.parse().ok()
}

/// Whether a process with this pid runs. Where `/proc` is not available the
/// answer is "yes", so nothing is removed that might still be written.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Fills `buf` as far as the source allows; returns fewer bytes only at EOF.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: a repeating text with a counter.
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(format!("line {i} of the sample artifact\n").as_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    fn sha3(bytes: &[u8]) -> Digest {
        Digest::from_bytes(Sha3_256::digest(bytes).into())
    }

    #[test]
    fn put_then_read_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = sample(3 * CHUNK + 17);
        let mut seen = 0;
        let put = store
            .put_reader(&data[..], Path::new("mem"), &mut |n| seen = n)
            .unwrap();
        assert_eq!(seen, data.len() as u64);
        assert_eq!(put.digest, sha3(&data));
        assert_eq!(put.size, data.len() as u64);
        assert!(put.stored_size < put.size / 4, "{put:?}");
        assert!(store.contains(&put.digest));
        assert_eq!(store.verify(&put.digest).unwrap(), data.len() as u64);
        let out = dir.path().join("out.bin");
        store.export(&put.digest, &out, false).unwrap();
        assert_eq!(fs::read(&out).unwrap(), data);
        // Without overwrite an existing file stays as it is; with it, it is
        // replaced. Neither leaves a temporary file beside it.
        fs::write(&out, b"keep me").unwrap();
        let e = store.export(&put.digest, &out, false).unwrap_err();
        assert!(e.to_string().starts_with("cannot create "), "{e}");
        assert_eq!(fs::read(&out).unwrap(), b"keep me");
        store.export(&put.digest, &out, true).unwrap();
        assert_eq!(fs::read(&out).unwrap(), data);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            3,
            "objects, tmp, out.bin"
        );
        assert_eq!(store.list_objects().unwrap(), vec![put.digest]);
        assert!(store.temp_files().unwrap().is_empty());
    }

    #[test]
    fn empty_artifact_is_a_valid_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let put = store
            .put_reader(&b""[..], Path::new("mem"), &mut |_| {})
            .unwrap();
        assert_eq!(put.digest, sha3(b""));
        assert_eq!(store.verify(&put.digest).unwrap(), 0);
    }

    #[test]
    fn corrupted_object_fails_verification_and_export_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = sample(200_000);
        let put = store
            .put_reader(&data[..], Path::new("mem"), &mut |_| {})
            .unwrap();
        // Replace the object with a valid zstd frame of other bytes.
        let mut other = data.clone();
        other[1000] ^= 1;
        let bad = zstd::encode_all(&other[..], 3).unwrap();
        fs::write(store.object_path(&put.digest), bad).unwrap();
        let e = store.verify(&put.digest).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("store object "), "{msg}");
        assert!(msg.contains("is corrupted"), "{msg}");
        assert!(msg.contains(&put.digest.to_hex()), "{msg}");
        let out = dir.path().join("out.bin");
        assert!(store.export(&put.digest, &out, false).is_err());
        assert!(!out.exists());

        // Garbage that is not zstd at all is corruption too, not a panic.
        fs::write(store.object_path(&put.digest), b"not zstd").unwrap();
        let e = store.verify(&put.digest).unwrap_err();
        assert!(e.to_string().contains("is corrupted"), "{e}");

        // Storing the same bytes again repairs it.
        store
            .put_reader(&data[..], Path::new("mem"), &mut |_| {})
            .unwrap();
        store.verify(&put.digest).unwrap();
    }

    #[test]
    fn missing_object_names_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = sha3(b"nothing");
        let e = store.verify(&d).unwrap_err();
        assert!(matches!(e, StoreError::Missing { .. }));
        assert!(e.to_string().contains(&d.to_hex()));
    }

    #[test]
    fn failing_source_leaves_no_object_and_no_temp() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("device went away"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(b'x');
                self.0 -= n;
                Ok(n)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let e = store
            .put_reader(Failing(3 * CHUNK), Path::new("/dev/flaky"), &mut |_| {})
            .unwrap_err();
        assert_eq!(e.to_string(), "cannot read /dev/flaky: device went away");
        assert!(store.list_objects().unwrap().is_empty());
        assert!(store.temp_files().unwrap().is_empty());
    }

    #[test]
    fn abandoned_temp_files_are_removed_on_open_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tmp = dir.path().join("tmp");
        // pid 0 is never a user process; our own pid is alive.
        let dead = tmp.join("put-0-1.tmp");
        let live = tmp.join(format!("put-{}-999.tmp", std::process::id()));
        fs::write(&dead, b"half").unwrap();
        fs::write(&live, b"half").unwrap();
        drop(store);
        let _store = Store::open(dir.path()).unwrap();
        assert!(!dead.exists());
        assert!(live.exists());
    }

    #[test]
    fn only_old_objects_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let put = store
            .put_reader(&b"orphan"[..], Path::new("mem"), &mut |_| {})
            .unwrap();
        let hour = std::time::Duration::from_secs(3600);
        assert!(!store.remove_object_older_than(&put.digest, hour).unwrap());
        assert!(store.contains(&put.digest));
        assert!(
            store
                .remove_object_older_than(&put.digest, std::time::Duration::ZERO)
                .unwrap()
        );
        assert!(!store.contains(&put.digest));
        assert!(
            !store
                .remove_object_older_than(&put.digest, std::time::Duration::ZERO)
                .unwrap()
        );
    }

    #[test]
    fn hash_file_matches_put() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let data = sample(CHUNK + 5);
        let f = dir.path().join("a.bin");
        fs::write(&f, &data).unwrap();
        let (d, n) = Store::hash_file(&f, &mut |_| {}).unwrap();
        let put = store.put_file(&f, &mut |_| {}).unwrap();
        assert_eq!((d, n), (put.digest, put.size));
    }
}
