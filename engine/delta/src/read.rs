//! Reading a base into memory on two threads.
//!
//! The client cannot start applying until its base is in memory, and it
//! hashes the result on a second thread that idles until then: on a 30 MB
//! base the read (page faults and the kernel's copy, one core) was a tenth
//! of the whole apply. Two threads reading the two halves share that work.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Below this a second thread costs more than it saves.
const PARALLEL_MIN: u64 = 4 << 20;

/// The whole file at `path`, as [`std::fs::read`] gives it, read by two
/// threads when it is large. A file that changes size while it is read is
/// an error, not a torn read.
pub fn read_base(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < PARALLEL_MIN {
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        (&file).read_to_end(&mut bytes)?;
        return Ok(bytes);
    }
    let size = usize::try_from(len).map_err(|_| io::Error::other("file too large for memory"))?;
    let mut bytes = vec![0u8; size];
    let (first, second) = bytes.split_at_mut(size / 2);
    let offset = first.len() as u64;
    std::thread::scope(|s| {
        let other = s.spawn(|| file.read_exact_at(second, offset));
        let mine = file.read_exact_at(first, 0);
        other
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        mine
    })?;
    // Grown since its size was taken: not the file we measured.
    if file.read_at(&mut [0u8; 1], len)? != 0 {
        return Err(io::Error::other(format!(
            "{} grew while it was read",
            path.display()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_small_and_large_files_whole() {
        let dir = tempfile::tempdir().unwrap();
        for len in [
            0usize,
            1,
            4095,
            PARALLEL_MIN as usize - 1,
            PARALLEL_MIN as usize + 3,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 1000) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &data).unwrap();
            assert!(read_base(&path).is_ok_and(|b| b == data), "{len}");
        }
        assert!(read_base(&dir.path().join("missing")).is_err());
    }
}
