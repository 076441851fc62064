//! The bsdiff method: approximate matches against a suffix array of the
//! base, as Colin Percival's bsdiff finds them, written as four zstd
//! streams (controls, where the non-zero byte differences are, what they
//! are, new bytes) cut into blocks so that
//! the client applies it streaming, with memory bounded by the block size.
//!
//! Why it wins on native code: a small change to a program moves code and
//! data, so addresses and offsets change everywhere after it. An LZ matcher
//! (zstd patch-from) sees a mismatch every few bytes and pays for a new
//! match each time; bsdiff extends a match across such mismatches and
//! stores `new - old` for the whole run, which is mostly zeros with a few
//! small, repetitive values that compress to almost nothing.
//!
//! What it does not do: chunking (above [`crate::MakeOptions::bsdiff_max_base`]
//! the maker uses patch-from only), executable-aware preprocessing, or any
//! I/O. The body format is in [`body`].

mod body;
mod patch;
mod scan;

pub(crate) use body::body_bound;
pub(crate) use patch::apply_body;

use crate::DeltaError;

/// Bytes of output one block makes at most: one output buffer of the apply
/// path (`apply::OUT_BUF`), so a block is produced, written and hashed as
/// one piece.
pub(crate) const BLOCK_OUT: usize = 1 << 20;
/// Bytes of decoded controls one block may hold: the maker closes a block
/// early rather than pass it, the client refuses more. Bounds the client's
/// control buffer whatever the delta says.
pub(crate) const CTRL_MAX: usize = 256 << 10;
/// Largest zstd window of a stream (128 MiB): bounds the client's decoder
/// memory at four such windows, whatever the artifact's size.
pub(crate) const STREAM_WINDOW_LOG_MAX: u8 = 27;

/// A bsdiff body for `old → new` at zstd `level`, and the largest window
/// log its streams use (the header's `window_log`).
pub(crate) fn make_body(old: &[u8], new: &[u8], level: i32) -> Result<(Vec<u8>, u8), DeltaError> {
    let streams = scan::diff(old, new)?;
    body::encode(&streams, level)
}
