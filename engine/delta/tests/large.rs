//! Past 128 MiB the decoder must be told to accept the larger window
//! (`DParameter::WindowLogMax`); apply does, and zstd's default refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use haifu_delta::container::{CHUNK_RECORD_LEN, HEADER_LEN};
use haifu_delta::{
    BaseCheck, DeltaError, MakeOptions, MethodChoice, PatchReader, apply_to_vec, digest_of, make,
};

#[test]
fn window_past_128_mib_gets_the_raised_decoder_limit() {
    let mut rng = common::Rng::new(50);
    // 1 MiB of noise repeated, each 64 KiB stamped with its index: cheap to
    // make in a debug build, and no two regions alike.
    let noise = rng.bytes(1 << 20);
    let mut old = Vec::with_capacity((129 << 20) + 12_345);
    while old.len() < (129 << 20) + 12_345 {
        old.extend_from_slice(&noise);
    }
    old.truncate((129 << 20) + 12_345);
    for (i, block) in old.chunks_mut(64 << 10).enumerate() {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
    }
    let mut new = old.clone();
    for _ in 0..20 {
        let at = rng.below(new.len() as u64 - 4096) as usize;
        let len = 1 + rng.below(4000) as usize;
        rng.fill(&mut new[at..at + len]);
    }
    new.extend_from_slice(b"version 2");
    let options = MakeOptions::fast().with_level(1);
    assert_eq!(
        options.methods,
        MethodChoice::PatchFrom,
        "this test is about zstd"
    );
    let delta = make(&old, &new, &options).unwrap();
    assert_eq!(delta.header.window_log, 28);
    assert!(delta.len() < 200_000, "delta {} B", delta.len());
    // zstd's default decoder limit (2^27) refuses this frame...
    let frame = &delta.bytes[HEADER_LEN + CHUNK_RECORD_LEN..];
    let mut d = zstd::stream::read::Decoder::with_ref_prefix(frame, &old).unwrap();
    let e = std::io::copy(&mut d, &mut std::io::sink()).unwrap_err();
    assert!(e.to_string().contains("too much memory"), "{e}");
    // ...apply raises it to the frame's window log and succeeds.
    let out = apply_to_vec(&old, &delta.bytes).unwrap();
    assert!(out == new);
}

#[test]
fn a_known_base_digest_is_compared_not_recomputed() {
    let (old, new) = common::text_pair(51, 2000);
    let delta = make(&old, &new, &MakeOptions::fast()).unwrap();
    let mut out = Vec::new();
    PatchReader::new(&delta.bytes[..])
        .unwrap()
        .apply_checked(&old, BaseCheck::Known(digest_of(&old)), &mut out)
        .unwrap();
    assert!(out == new);
    // Another known digest: refused before decoding anything.
    let mut out = Vec::new();
    let e = PatchReader::new(&delta.bytes[..])
        .unwrap()
        .apply_checked(&old, BaseCheck::Known(digest_of(b"other")), &mut out)
        .unwrap_err();
    assert!(matches!(e, DeltaError::WrongBase { .. }), "{e}");
    assert!(out.is_empty());
    // A caller that vouches for the wrong bytes still gets no trusted output.
    let mut other = old.clone();
    other[10] ^= 0x20;
    let e = PatchReader::new(&delta.bytes[..])
        .unwrap()
        .apply_checked(&other, BaseCheck::Known(digest_of(&old)), Vec::new())
        .unwrap_err();
    assert!(
        matches!(
            e,
            DeltaError::ResultMismatch { .. } | DeltaError::Corrupt { .. }
        ),
        "{e}"
    );
}
