//! Naming cached deltas: one name per (base, target, how it was made), so
//! the master builds each pair once and every client on that base shares it.

use std::fmt;

use haifu_core::Digest;

use crate::container::{FORMAT_VERSION, FORMAT_VERSION_PATCH_FROM};
use crate::make::{DEFAULT_BSDIFF_MAX_SIZE, DEFAULT_MAX_FRAME, MakeOptions, MethodChoice};

/// The identity of a cached delta. Two deltas with equal keys are
/// interchangeable; anything that changes the bytes (format, level,
/// chunking, methods) is part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    /// The base's digest.
    pub from: Digest,
    /// The target's digest.
    pub to: Digest,
    /// The newest container format version the delta may be written in (1
    /// when only patch-from is tried).
    pub format: u16,
    /// The zstd level.
    pub level: i32,
    /// The single-frame limit (chunking), see [`MakeOptions::max_frame`].
    pub max_frame: u64,
    /// The methods tried, see [`MakeOptions::methods`].
    pub methods: MethodChoice,
    /// The bsdiff size limit, see [`MakeOptions::bsdiff_max_size`].
    pub bsdiff_max_size: u64,
}

/// The cache key of the delta `options` would make from `from` to `to`.
pub fn cache_key(from: &Digest, to: &Digest, options: &MakeOptions) -> CacheKey {
    CacheKey {
        from: *from,
        to: *to,
        format: match options.methods {
            MethodChoice::PatchFrom => FORMAT_VERSION_PATCH_FROM,
            MethodChoice::Bsdiff | MethodChoice::Smaller => FORMAT_VERSION,
        },
        level: options.level,
        max_frame: options.max_frame,
        methods: options.methods,
        bsdiff_max_size: options.bsdiff_max_size,
    }
}

impl CacheKey {
    /// A file name for the delta: `FROM-TO.f1-l19.hdelta` for patch-from
    /// (as before methods existed), `FROM-TO.f3-l19-best.hdelta` when both
    /// methods are tried (`-bsdiff` for bsdiff alone), plus `-mN` when the
    /// chunking limit and `-bN` when the bsdiff limit is not the default.
    /// Only hex digits, dashes, dots and letters: safe in any file system
    /// and URL.
    pub fn file_name(&self) -> String {
        let mut name = format!("{}-{}.f{}-l{}", self.from, self.to, self.format, self.level);
        if self.max_frame != DEFAULT_MAX_FRAME {
            name.push_str(&format!("-m{}", self.max_frame));
        }
        match self.methods {
            MethodChoice::PatchFrom => {}
            MethodChoice::Bsdiff => name.push_str("-bsdiff"),
            MethodChoice::Smaller => name.push_str("-best"),
        }
        if self.methods != MethodChoice::PatchFrom
            && self.bsdiff_max_size != DEFAULT_BSDIFF_MAX_SIZE
        {
            name.push_str(&format!("-b{}", self.bsdiff_max_size));
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
            format!("{}-{}.f3-l19-best.hdelta", "aa".repeat(32), "bb".repeat(32))
        );
        assert_eq!(k, cache_key(&a, &b, &MakeOptions::background()), "pure");
        assert_ne!(
            k,
            cache_key(&b, &a, &MakeOptions::background()),
            "direction matters"
        );
        let fast = cache_key(&a, &b, &MakeOptions::fast());
        assert_ne!(k.file_name(), fast.file_name());
        // Patch-from alone keeps the name it had before methods existed.
        assert!(fast.file_name().ends_with(".f1-l3.hdelta"), "{fast}");
        let bsdiff = MakeOptions::background().with_methods(MethodChoice::Bsdiff);
        assert!(
            cache_key(&a, &b, &bsdiff)
                .file_name()
                .ends_with(".f3-l19-bsdiff.hdelta")
        );
        let small = MakeOptions {
            bsdiff_max_size: 1 << 20,
            ..MakeOptions::background()
        };
        assert!(
            cache_key(&a, &b, &small)
                .file_name()
                .ends_with(".f3-l19-best-b1048576.hdelta")
        );
        let chunked = MakeOptions {
            max_frame: 1 << 20,
            ..MakeOptions::fast().with_level(19)
        };
        assert!(
            cache_key(&a, &b, &chunked)
                .file_name()
                .ends_with(".f1-l19-m1048576.hdelta")
        );
    }
}
