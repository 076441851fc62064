//! Delta errors: every refusal is a variant, so the client can log why it
//! kept its installed version and the master can say why it sent the full
//! artifact instead.

use std::io;

use haifu_core::Digest;

/// Something went wrong making, reading or applying a delta.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The bytes do not start with the delta magic: not a haifu delta at all.
    #[error("not a haifu delta (bad magic {found:02x?})")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 8],
    },
    /// A delta written by a newer (or unknown) format.
    #[error(
        "unsupported delta format version {found} (this build reads versions 1 to {supported})"
    )]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
        /// The newest version this build reads and writes.
        supported: u16,
    },
    /// A delta written in a format version this build no longer reads (see
    /// `container::RETIRED_VERSIONS`): make it again.
    #[error(
        "delta format version {found} is retired (the bsdiff method's body before it settled); make the delta again"
    )]
    RetiredVersion {
        /// The version in the header.
        found: u16,
    },
    /// The header's own check failed or its fields contradict each other.
    #[error("delta header is corrupt: {detail}")]
    CorruptHeader {
        /// What is wrong.
        detail: String,
    },
    /// The delta ended before its declared end.
    #[error("delta is truncated: {detail}")]
    Truncated {
        /// Where it ended.
        detail: String,
    },
    /// The delta's body cannot be decoded or disagrees with its header.
    #[error("delta is corrupt: {detail}")]
    Corrupt {
        /// What is wrong.
        detail: String,
    },
    /// The client's installed version is not the one the delta was made from.
    #[error(
        "wrong base: the delta applies to {expected} ({expected_size} bytes), \
         the installed version is {found} ({found_size} bytes)"
    )]
    WrongBase {
        /// The base the delta needs.
        expected: Digest,
        /// Its size.
        expected_size: u64,
        /// The base that was offered.
        found: Digest,
        /// Its size.
        found_size: u64,
    },
    /// The delta makes another version than the one the client was told to
    /// install.
    #[error(
        "wrong target: expected {expected} ({expected_size} bytes), \
         the delta makes {found} ({found_size} bytes)"
    )]
    WrongTarget {
        /// The version the signed manifest names.
        expected: Digest,
        /// Its size.
        expected_size: u64,
        /// What the delta makes.
        found: Digest,
        /// Its size.
        found_size: u64,
    },
    /// The decoded output would exceed the size the header declares.
    #[error("delta output exceeds its declared size of {limit} bytes")]
    OutputTooLarge {
        /// The declared size.
        limit: u64,
    },
    /// A delta declares a target larger than the caller's cap (the signed
    /// manifest's size): refused before anything is allocated.
    #[error("delta declares a target of {size} bytes, more than the {cap} allowed")]
    TargetTooLarge {
        /// The declared size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// A full copy decompresses to more than the cap (the signed size).
    #[error("full artifact decodes to more than the {cap} bytes allowed")]
    FullTooLarge {
        /// The cap.
        cap: u64,
    },
    /// The decoded output hashes to something other than the declared target.
    #[error("delta result is {found}, expected {expected}")]
    ResultMismatch {
        /// The declared target digest.
        expected: Digest,
        /// What the output hashed to.
        found: Digest,
    },
    /// An input the delta format cannot describe (see the variant's detail).
    #[error("cannot make a delta: {detail}")]
    Unsupported {
        /// Why.
        detail: String,
    },
    /// zstd refused a parameter or failed to compress.
    #[error("zstd {op} failed: {detail}")]
    Zstd {
        /// What was being done.
        op: &'static str,
        /// zstd's message.
        detail: String,
    },
    /// Reading the delta or the base failed.
    #[error("cannot read {what}: {source}")]
    Read {
        /// "delta" or "base".
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write delta output: {source}")]
    Write {
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl DeltaError {
    /// Maps a zstd error code to [`DeltaError::Zstd`].
    pub(crate) fn zstd(op: &'static str) -> impl FnOnce(usize) -> Self {
        move |code| Self::Zstd {
            op,
            detail: zstd::zstd_safe::get_error_name(code).to_owned(),
        }
    }

    /// True when the delta's bytes themselves are at fault (bad magic,
    /// version, header, truncation, corruption, oversize or wrong result),
    /// as opposed to the base, the inputs or I/O.
    pub fn is_damaged_delta(&self) -> bool {
        matches!(
            self,
            Self::BadMagic { .. }
                | Self::UnsupportedVersion { .. }
                | Self::RetiredVersion { .. }
                | Self::CorruptHeader { .. }
                | Self::Truncated { .. }
                | Self::Corrupt { .. }
                | Self::OutputTooLarge { .. }
                | Self::TargetTooLarge { .. }
                | Self::FullTooLarge { .. }
                | Self::ResultMismatch { .. }
        )
    }
}
