//! Every bound the decoder enforces, in one place.

/// The longest identity, client id, relay name, artifact name or version
/// accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Most identities in one deny list (4,096 × 130 bytes fits a default frame).
pub const MAX_DENIED: usize = 4096;
/// Most clients one staged [`Instruction`](crate::Instruction) admits
/// behind its relay (4,096 × 130 bytes and a manifest at its largest fit a
/// default frame); a longer list is refused whole.
pub const MAX_ADMITTED: usize = 4096;
/// The longest free-text reason (errors, refusals), in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// The longest feature name, in bytes.
pub const MAX_FEATURE_LEN: usize = 64;
/// Longest transport plugin name in a registration.
pub const MAX_PLUGIN_NAME_LEN: usize = 64;
/// The most features one hello may list.
pub const MAX_FEATURES: usize = 64;
/// Most blocks one [`Feedback`](crate::Feedback) lists (8 or 12 bytes each: the
/// largest fits a minimal frame with room to spare).
pub const MAX_FEEDBACK_BLOCKS: usize = 4096;
/// The largest signed manifest carried inline, in bytes.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;
/// The largest payload of one [`DataChunk`](crate::DataChunk), in bytes.
pub const MAX_CHUNK_LEN: usize = 1024 * 1024;
/// The most bytes a frame adds around a chunk's payload (tag, transfer id,
/// offset, length, `last`), rounded up.
pub const CHUNK_OVERHEAD: usize = 32;
/// The default largest frame: one full chunk and its header. The QUIC
/// plugin's default `max_frame` is this same number (it cannot depend on
/// this crate, so it repeats it; `engine/fleet/tests/frame_limit.rs` checks
/// they agree), so a larger frame is refused by its length before it is read.
pub const DEFAULT_MAX_FRAME: usize = MAX_CHUNK_LEN + CHUNK_OVERHEAD;
/// The smallest `max_frame` allowed: every message except a chunk fits in
/// it, with a manifest at its largest.
pub const MIN_MAX_FRAME: usize = 80 * 1024;

/// The bounds one connection decodes and encodes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_frame: usize,
}

impl Limits {
    /// Limits with a largest frame of `max_frame` bytes, clamped to at least
    /// [`MIN_MAX_FRAME`] so that every non-chunk message still fits.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.max(MIN_MAX_FRAME),
        }
    }

    /// The largest frame, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The largest chunk payload that fits a frame under these limits.
    pub fn max_chunk(&self) -> usize {
        MAX_CHUNK_LEN.min(self.max_frame - CHUNK_OVERHEAD)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}
