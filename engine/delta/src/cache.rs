//! Naming cached deltas: one name per (base, target, how it was made), so
//! the master builds each pair once and every client on that base shares it.

use std::fmt;

use haifu_core::Digest;

use crate::container::FORMAT_VERSION;
use crate::make::{DEFAULT_MAX_FRAME, MakeOptions};

/// The identity of a cached delta. Two deltas with equal keys are
/// interchangeable; anything that changes the bytes (format, level,
/// chunking) is part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    /// The base's digest.
    pub from: Digest,
    /// The target's digest.
    pub to: Digest,
    /// The container format version.
    pub format: u16,
    /// The zstd level.
    pub level: i32,
    /// The single-frame limit (chunking), see [`MakeOptions::max_frame`].
    pub max_frame: u64,
}

/// The cache key of the delta `options` would make from `from` to `to`.
pub fn cache_key(from: &Digest, to: &Digest, options: &MakeOptions) -> CacheKey {
    CacheKey {
        from: *from,
        to: *to,
        format: FORMAT_VERSION,
        level: options.level,
        max_frame: options.max_frame,
    }
}

impl CacheKey {
    /// A file name for the delta: `FROM-TO.f1-l19.hdelta` (plus `-mN` when
    /// the chunking limit is not the default). Only hex digits, dashes,
    /// dots and letters: safe in any file system and URL.
    pub fn file_name(&self) -> String {
        let mut name = format!("{}-{}.f{}-l{}", self.from, self.to, self.format, self.level);
        if self.max_frame != DEFAULT_MAX_FRAME {
            name.push_str(&format!("-m{}", self.max_frame));
        }
        name.push_str(".hdelta");
        name
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_the_pair_and_the_options() {
        let (a, b) = (
            Digest::from_bytes([0xaa; 32]),
            Digest::from_bytes([0xbb; 32]),
        );
        let k = cache_key(&a, &b, &MakeOptions::background());
        assert_eq!(
            k.file_name(),
            format!("{}-{}.f1-l19.hdelta", "aa".repeat(32), "bb".repeat(32))
        );
        assert_eq!(k, cache_key(&a, &b, &MakeOptions::background()), "pure");
        assert_ne!(
            k,
            cache_key(&b, &a, &MakeOptions::background()),
            "direction matters"
        );
        let fast = cache_key(&a, &b, &MakeOptions::fast());
        assert_ne!(k.file_name(), fast.file_name());
        let chunked = MakeOptions {
            max_frame: 1 << 20,
            ..MakeOptions::background()
        };
        assert!(
            cache_key(&a, &b, &chunked)
                .file_name()
                .ends_with(".f1-l19-m1048576.hdelta")
        );
    }
}
