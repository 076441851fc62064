//! haifu deltas: the difference between two versions of an artifact, made
//! by the master and applied by a straggler when it boots.
//!
//! What it does:
//! - [`make`] a delta by one of two [`Method`]s, or both keeping the
//!   smaller ([`MethodChoice::Smaller`], the background default): zstd
//!   "patch-from" (the client's installed version as reference prefix, a
//!   window sized to the files, long-distance matching; artifacts past one
//!   zstd window, ~2 GiB, become chunked deltas), or bsdiff-style
//!   approximate matching (a suffix array over the base; controls, the
//!   non-zero differences as gaps and values, and extra bytes as zstd
//!   streams, in 1 MiB blocks), which wins on
//!   native code. Either sits in a small container ([`container`]) that
//!   names the base and the target by sha3-256 and records the method;
//!   [`MakeOptions`] states the memory each method needs;
//! - [`apply`] one on the client: streamed, with the base checked, the
//!   output bounded by the declared size and verified against the target
//!   digest before `Ok`, whichever the method; every refusal is a typed
//!   [`DeltaError`];
//! - decide what to send ([`DeliveryRule::choose`]: the "not smaller → full"
//!   rule, with the reason recorded) and whether it fits a client's
//!   [`DataBudget`];
//! - name cached deltas ([`cache_key`]) so each pair is built once.
//!
//! What it does not: no networking, no files, no store or ledger access, no
//! background scheduling and no signature checks. Callers hand in bytes and
//! readers/writers; the master's runtime decides when to build and where to
//! cache, the client's installer writes to a temporary file and renames it.
//!
//! Call order, master: `cache_key` → (cache miss) `make` → store the bytes →
//! `DeliveryRule::choose` with the delta's and the full artifact's sizes →
//! `DataBudget::check`. Client: `PatchReader::new` → `check_target` against
//! the signed manifest → `apply_to` into a temporary file → rename on `Ok`.
//!
//! ```
//! use haifu_delta::{DeltaOffer, DeliveryRule, MakeOptions, apply_to_vec, cache_key, digest_of, make};
//!
//! let table = |v: u64| -> Vec<u8> {
//!     (0..5000u64).flat_map(|i| format!("item {i} price {}\n", (i * 7919 + v * (i % 97 / 96)) % 10007).into_bytes()).collect()
//! };
//! let (old, new) = (table(1), table(2));
//! // Master: name, make (once per pair, cached), decide.
//! let options = MakeOptions::background();
//! let key = cache_key(&digest_of(&old), &digest_of(&new), &options);
//! assert!(key.file_name().ends_with(".f3-l19-best.hdelta"));
//! let delta = make(&old, &new, &options)?;
//! let full = zstd::bulk::compress(&new, 3)?.len() as u64;
//! let decision = DeliveryRule::default().choose(DeltaOffer::Delta { bytes: delta.len() }, full);
//! assert!(!decision.is_full(), "{decision}");
//! // Client: apply and verify.
//! assert_eq!(apply_to_vec(&old, &delta.bytes)?, new);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod apply;
mod bsdiff;
mod cache;
pub mod container;
mod delivery;
mod error;
mod hashing;
mod make;
mod method;
mod read;

pub use apply::{
    Applied, BaseCheck, PatchReader, apply, apply_reading_base, apply_to_vec, apply_to_vec_capped,
    decode_full,
};
pub use cache::{CacheKey, cache_key};
pub use container::{DeltaHeader, digest_of, window_log_for};
pub use delivery::{BudgetCheck, DataBudget, Delivery, DeliveryRule, DeltaOffer, FullReason};
pub use error::DeltaError;
pub use make::{
    DEFAULT_BSDIFF_MAX_SIZE, DEFAULT_MAX_FRAME, Delta, LARGE_PATCH_FROM_LEVEL_MAX, MakeOptions,
    MethodChoice, make,
};
pub use method::{Method, UnknownMethod};
pub use read::read_base;
