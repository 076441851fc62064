//! Deltas between realistic pairs round-trip byte for byte, and are small.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rng, binary_pair, pos_app_pair, text_pair};
use haifu_delta::{
    DeliveryRule, DeltaError, DeltaOffer, MakeOptions, PatchReader, apply, apply_reading_base,
    apply_to_vec, digest_of, make,
};

fn round_trip(old: &[u8], new: &[u8], options: &MakeOptions) -> u64 {
    let delta = make(old, new, options).unwrap();
    assert_eq!(delta.header.from, digest_of(old));
    assert_eq!(delta.header.to, digest_of(new));
    assert_eq!(delta.header.to_size, new.len() as u64);
    let out = apply_to_vec(old, &delta.bytes).unwrap();
    assert!(
        out == new,
        "round trip differs ({} vs {} bytes)",
        out.len(),
        new.len()
    );
    // The streaming form agrees, and reports what it wrote.
    let mut streamed = Vec::new();
    let applied = apply(old, &delta.bytes[..], &mut streamed).unwrap();
    assert_eq!(applied.bytes_written, new.len() as u64);
    assert_eq!(applied.header, delta.header);
    assert!(streamed == new);
    delta.len()
}

fn both_levels(old: &[u8], new: &[u8]) -> (u64, u64) {
    (
        round_trip(old, new, &MakeOptions::background()),
        round_trip(old, new, &MakeOptions::fast()),
    )
}

#[test]
fn pseudo_binary_with_changed_functions() {
    let (old, new) = binary_pair(1, 300_000);
    let (slow, fast) = both_levels(&old, &new);
    let full = zstd::bulk::compress(&new, 19).unwrap().len() as u64;
    eprintln!(
        "binary: new {} B, full zstd-19 {full} B, delta L19 {slow} B, L3 {fast} B",
        new.len()
    );
    assert!(
        slow * 3 < full,
        "delta {slow} not much smaller than full {full}"
    );
}

#[test]
fn text_with_edits() {
    let (old, new) = text_pair(2, 5000);
    let (slow, _) = both_levels(&old, &new);
    assert!(
        slow < new.len() as u64 / 20,
        "delta {slow} for {} B",
        new.len()
    );
}

#[test]
fn empty_old_empty_new_both_empty() {
    let (_, new) = text_pair(3, 200);
    both_levels(&[], &new);
    both_levels(&new, &[]);
    both_levels(&[], &[]);
}

#[test]
fn identical_versions_make_a_tiny_delta() {
    let (old, _) = binary_pair(4, 200_000);
    // The same buffer on both sides (zstd must not see overlapping input).
    let (slow, fast) = both_levels(&old, &old);
    assert!(slow < 300 && fast < 300, "identical: {slow} / {fast} bytes");
    let copy = old.clone();
    let (slow, fast) = both_levels(&old, &copy);
    assert!(slow < 300 && fast < 300, "identical: {slow} / {fast} bytes");
}

#[test]
fn totally_different_versions_still_round_trip_and_fall_back_to_full() {
    let mut rng = Rng::new(5);
    let (old, new) = (rng.bytes(100_000), rng.bytes(120_000));
    let slow = round_trip(&old, &new, &MakeOptions::background());
    let full = zstd::bulk::compress(&new, 3).unwrap().len() as u64;
    // Random data does not compress: the delta carries a header on top.
    let d = DeliveryRule::default().choose(DeltaOffer::Delta { bytes: slow }, full);
    assert!(d.is_full(), "{d}");
    assert!(d.to_string().contains("is not smaller"), "{d}");
}

#[test]
fn pos_app_update_delta_is_much_smaller_than_full() {
    let (old, new) = pos_app_pair();
    let delta = round_trip(&old, &new, &MakeOptions::background());
    let fast = round_trip(&old, &new, &MakeOptions::fast());
    let full = zstd::bulk::compress(&new, 3).unwrap().len() as u64;
    eprintln!(
        "pos-app 2.3.0 → 2.4.0: new {} B, full zstd-3 {full} B, delta L19 {delta} B ({:.2}% of new, {:.2}% of full), L3 {fast} B",
        new.len(),
        100.0 * delta as f64 / new.len() as f64,
        100.0 * delta as f64 / full as f64,
    );
    assert!(delta * 10 < full, "delta {delta} vs full {full}");
    let d = DeliveryRule::default().choose(DeltaOffer::Delta { bytes: delta }, full);
    assert!(!d.is_full(), "{d}");
}

#[test]
fn chunked_deltas_round_trip_and_stay_small() {
    let (old, new) = binary_pair(6, 200_000);
    let options = MakeOptions {
        max_frame: 16 << 10,
        ..MakeOptions::fast()
    };
    let delta = make(&old, &new, &options).unwrap();
    assert!(delta.header.chunks > 10, "{} chunks", delta.header.chunks);
    assert_eq!(apply_to_vec(&old, &delta.bytes).unwrap(), new);
    let single = make(&old, &new, &MakeOptions::fast()).unwrap();
    eprintln!(
        "chunked {} B in {} chunks vs single {} B",
        delta.len(),
        delta.header.chunks,
        single.len()
    );
    assert!(
        delta.len() < new.len() as u64 / 5,
        "chunked delta {} too large",
        delta.len()
    );
    // Growth and shrinkage and empty sides chunk too.
    let mut rng = Rng::new(7);
    for (o, n) in [
        (old.len() / 3, old.len()),
        (old.len(), old.len() / 3),
        (0, 50_000),
        (50_000, 0),
    ] {
        let (a, b) = (&old[..o], &new[..n.min(new.len())]);
        let d = make(a, b, &options).unwrap();
        assert_eq!(apply_to_vec(a, &d.bytes).unwrap(), b);
    }
    let big_old = rng.bytes(40_000);
    let d = make(&big_old, &big_old, &options).unwrap();
    assert_eq!(apply_to_vec(&big_old, &d.bytes).unwrap(), big_old);
}

#[test]
fn wrong_base_is_refused_before_trusting_anything() {
    let (old, new) = text_pair(8, 2000);
    let delta = make(&old, &new, &MakeOptions::fast()).unwrap();
    // Same size, other bytes.
    let mut other = old.clone();
    other[100] ^= 1;
    let e = apply_to_vec(&other, &delta.bytes).unwrap_err();
    assert!(matches!(e, DeltaError::WrongBase { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("wrong base: the delta applies to "),
        "{e}"
    );
    // Other size.
    let e = apply_to_vec(&old[1..], &delta.bytes).unwrap_err();
    assert!(
        matches!(e, DeltaError::WrongBase { found_size, .. } if found_size == old.len() as u64 - 1),
        "{e}"
    );
    // The target itself as base.
    let e = apply_to_vec(&new, &delta.bytes).unwrap_err();
    assert!(matches!(e, DeltaError::WrongBase { .. }), "{e}");
    assert!(!e.is_damaged_delta(), "a wrong base is not a damaged delta");
}

#[test]
fn header_can_be_checked_against_the_manifest_before_applying() {
    let (old, new) = text_pair(9, 500);
    let delta = make(&old, &new, &MakeOptions::fast()).unwrap();
    let reader = PatchReader::new(&delta.bytes[..]).unwrap();
    reader
        .check_target(&digest_of(&new), new.len() as u64)
        .unwrap();
    let e = reader
        .check_target(&digest_of(&old), old.len() as u64)
        .unwrap_err();
    assert!(e.to_string().starts_with("wrong target: expected "), "{e}");
    let mut out = Vec::new();
    reader.apply_to(&old, &mut out).unwrap();
    assert_eq!(out, new);
}

#[test]
fn base_can_come_from_a_reader() {
    let (old, new) = text_pair(10, 1000);
    let delta = make(&old, &new, &MakeOptions::fast()).unwrap();
    let mut out = Vec::new();
    apply_reading_base(&old[..], &delta.bytes[..], &mut out).unwrap();
    assert_eq!(out, new);
    // A longer base is not read past its declared size + 1, and refused.
    let mut longer = old.clone();
    longer.extend_from_slice(&[0; 1000]);
    let e = apply_reading_base(&longer[..], &delta.bytes[..], Vec::new()).unwrap_err();
    assert!(
        matches!(e, DeltaError::WrongBase { found_size, .. } if found_size == old.len() as u64 + 1),
        "{e}"
    );
}

#[test]
fn a_level_out_of_range_is_refused() {
    let e = make(b"a", b"b", &MakeOptions::background().with_level(0)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot make a delta: zstd level 0 is outside 1..=22"
    );
    let e = make(b"a", b"b", &MakeOptions::background().with_level(23)).unwrap_err();
    assert!(matches!(e, DeltaError::Unsupported { .. }), "{e}");
}
