//! Both delta methods, patch-from and bsdiff: round trips on random and
//! structured pairs (empty, identical, grown, truncated, across block
//! boundaries), the maker keeping the smaller, the method recorded in the
//! container, and hostile bsdiff bodies refused with bounded work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rng, binary_pair, text_pair};
use haifu_delta::container::{CHUNK_RECORD_LEN, ChunkRecord, DeltaHeader, HEADER_LEN};
use haifu_delta::{
    DeltaError, LARGE_PATCH_FROM_LEVEL_MAX, MakeOptions, Method, MethodChoice, PatchReader, apply,
    apply_to_vec, cache_key, digest_of, make,
};

/// A bsdiff block makes at most this much output (the crate's BLOCK_OUT).
const BLOCK: usize = 1 << 20;

fn with(methods: MethodChoice) -> MakeOptions {
    // Level 3 keeps the tests quick; the level changes sizes, not logic.
    MakeOptions::fast().with_methods(methods)
}

/// Makes and applies `old → new` with `methods`; returns the delta's size
/// and the method the container records.
fn round_trip(old: &[u8], new: &[u8], methods: MethodChoice) -> (u64, Method) {
    let delta = make(old, new, &with(methods)).unwrap();
    let h = delta.header;
    assert_eq!((h.from, h.to), (digest_of(old), digest_of(new)));
    assert_eq!(
        (h.from_size, h.to_size),
        (old.len() as u64, new.len() as u64)
    );
    let reread = *PatchReader::new(&delta.bytes[..]).unwrap().header();
    assert_eq!(reread, h, "the container records what made it");
    let out = apply_to_vec(old, &delta.bytes).unwrap();
    assert!(
        out == new,
        "{methods:?}: output differs ({} vs {} bytes)",
        out.len(),
        new.len()
    );
    let mut streamed = Vec::new();
    let applied = apply(old, &delta.bytes[..], &mut streamed).unwrap();
    assert_eq!(applied.bytes_written, new.len() as u64);
    assert!(streamed == new);
    (delta.len(), h.method)
}

fn every_method(old: &[u8], new: &[u8]) -> [(u64, Method); 3] {
    let p = round_trip(old, new, MethodChoice::PatchFrom);
    let b = round_trip(old, new, MethodChoice::Bsdiff);
    let s = round_trip(old, new, MethodChoice::Smaller);
    assert_eq!(p.1, Method::PatchFrom);
    assert_eq!(b.1, Method::Bsdiff);
    // The smaller one is kept, patch-from on a tie.
    assert_eq!(
        s,
        if b.0 < p.0 { b } else { p },
        "patch-from {p:?}, bsdiff {b:?}"
    );
    [p, b, s]
}

#[test]
fn edge_cases_round_trip_with_both_methods() {
    let (old, new) = binary_pair(60, 50_000);
    let mut rng = Rng::new(61);
    let noise = rng.bytes(30_000);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("both empty", vec![], vec![]),
        ("empty base", vec![], new.clone()),
        ("empty target", old.clone(), vec![]),
        ("one byte each", vec![1], vec![2]),
        ("identical", old.clone(), old.clone()),
        ("grown", old.clone(), [&old[..], &noise[..]].concat()),
        ("truncated", old.clone(), old[..old.len() / 3].to_vec()),
        ("prepended", old.clone(), [&noise[..100], &old[..]].concat()),
        ("unrelated noise", old.clone(), noise.clone()),
        ("all zeros", vec![0; 70_000], vec![0; 90_000]),
        ("zeros to noise", vec![0; 10_000], noise[..10_000].to_vec()),
        ("pseudo binary", old.clone(), new.clone()),
    ];
    for (what, a, b) in cases {
        let r = every_method(&a, &b);
        eprintln!("{what}: patch-from {} B, bsdiff {} B", r[0].0, r[1].0);
    }
}

#[test]
fn identical_versions_make_a_tiny_bsdiff_delta() {
    let (old, _) = binary_pair(62, 300_000);
    let (size, _) = round_trip(&old, &old, MethodChoice::Bsdiff);
    assert!(size < 400, "identical: {size} bytes");
}

#[test]
fn bsdiff_wins_on_shifted_code_and_smaller_keeps_it() {
    // Calls encode absolute targets: inserting functions moves every call
    // after them, the case bsdiff exists for.
    let (old, new) = binary_pair(63, 400_000);
    let [p, b, s] = every_method(&old, &new);
    eprintln!("pseudo binary: patch-from {} B, bsdiff {} B", p.0, b.0);
    assert!(b.0 < p.0, "bsdiff {} B not below patch-from {} B", b.0, p.0);
    assert_eq!(s.1, Method::Bsdiff);
}

#[test]
fn patch_from_is_kept_when_it_is_smaller() {
    // Text moved around in big pieces: LZ matches anywhere in the base
    // beat bsdiff's one pass in base order.
    let (old, _) = text_pair(64, 4000);
    let lines: Vec<&[u8]> = old.split(|&b| b == b'\n').collect();
    let mut new = Vec::new();
    for part in lines.chunks(37).rev() {
        for l in part {
            new.extend_from_slice(l);
            new.push(b'\n');
        }
    }
    let [p, b, s] = every_method(&old, &new);
    eprintln!("shuffled text: patch-from {} B, bsdiff {} B", p.0, b.0);
    assert_eq!(s, if b.0 < p.0 { b } else { p });
}

#[test]
fn bsdiff_crosses_block_boundaries() {
    let mut rng = Rng::new(65);
    let old = rng.bytes(2 * BLOCK + 12_345);
    let mut new = old.clone();
    // Edits on both sides of each block boundary, an insertion, a tail.
    for at in [BLOCK - 3, BLOCK + 2, 2 * BLOCK - 1, 5, 2 * BLOCK + 100] {
        new[at] ^= 0x5a;
    }
    new.splice(BLOCK / 2..BLOCK / 2, rng.bytes(777));
    new.extend_from_slice(&rng.bytes(BLOCK / 2));
    let (size, method) = round_trip(&old, &new, MethodChoice::Bsdiff);
    assert_eq!(method, Method::Bsdiff);
    // The new bytes (777 + half a block of noise) dominate.
    assert!(size < (BLOCK / 2 + 10_000) as u64, "{size} bytes");
    // Exactly one block, and exactly two.
    for len in [BLOCK, 2 * BLOCK, BLOCK + 1, BLOCK - 1] {
        round_trip(&old[..len], &new[..len], MethodChoice::Bsdiff);
    }
}

#[test]
fn a_long_run_of_blocks_with_empty_segments_applies() {
    // Regression: zstd fails a stream after 16 calls in a row that make no
    // progress; asking an ended segment for more output once per block
    // made every delta of more than 8 blocks without new bytes (here: 20
    // blocks, a few byte changes, no extra bytes at all) fail to apply.
    let mut rng = Rng::new(72);
    let old = rng.bytes(20 * BLOCK + 99);
    let mut new = old.clone();
    for at in (0..new.len()).step_by(700_001) {
        new[at] = new[at].wrapping_add(3);
    }
    for (a, b) in [(&old, &old), (&old, &new)] {
        let (size, method) = round_trip(a, b, MethodChoice::Bsdiff);
        assert_eq!(method, Method::Bsdiff);
        assert!(size < 2000, "{size} bytes");
    }
}

#[test]
fn many_small_matches_close_blocks_on_the_control_limit() {
    // 16-byte pieces from random places of the base: one control each,
    // about 65 000 in a block's worth of target, more control bytes than a
    // block may hold; the maker must close blocks early.
    let mut rng = Rng::new(66);
    let old = rng.bytes(200_000);
    let mut new = Vec::with_capacity(BLOCK + BLOCK / 4);
    while new.len() < BLOCK + BLOCK / 4 {
        let at = rng.below(old.len() as u64 - 16) as usize;
        new.extend_from_slice(&old[at..at + 16]);
        new.push(rng.next_u64() as u8);
    }
    round_trip(&old, &new, MethodChoice::Bsdiff);
}

#[test]
fn random_pairs_round_trip_with_both_methods() {
    let mut rng = Rng::new(67);
    for i in 0..40 {
        let len = rng.below(20_000) as usize;
        let old = rng.bytes(len);
        let mut new = old.clone();
        for _ in 0..rng.below(12) {
            let at = rng.below(new.len() as u64 + 1) as usize;
            match rng.below(4) {
                0 if at < new.len() => new[at] = new[at].wrapping_add(1 + rng.below(200) as u8),
                1 => {
                    let n = rng.below(300) as usize;
                    new.splice(at..at, rng.bytes(n));
                }
                2 => {
                    let end = (at + rng.below(300) as usize).min(new.len());
                    new.drain(at..end);
                }
                _ => {
                    // A copy of another region of the old version.
                    let from = rng.below(old.len() as u64 + 1) as usize;
                    let end = (from + rng.below(500) as usize).min(old.len());
                    new.splice(at..at, old[from..end].iter().copied());
                }
            }
        }
        let r = every_method(&old, &new);
        assert!(r[2].0 <= r[0].0, "pair {i}: best larger than patch-from");
    }
}

#[test]
fn versions_are_written_so_older_clients_refuse_bsdiff_cleanly() {
    let (old, new) = binary_pair(68, 20_000);
    let p = make(&old, &new, &with(MethodChoice::PatchFrom))
        .unwrap()
        .bytes;
    let b = make(&old, &new, &with(MethodChoice::Bsdiff)).unwrap().bytes;
    // Patch-from deltas are byte for byte what version 1 wrote; bsdiff
    // deltas are version 3 (2 is retired: see the test below).
    assert_eq!((&p[8..10], p[11]), (&1u16.to_le_bytes()[..], 0));
    assert_eq!((&b[8..10], b[11]), (&3u16.to_le_bytes()[..], 1));
}

/// The header of `delta` rewritten as format `version`, its check made
/// again, as a build that wrote that version would have.
fn as_version(delta: &[u8], version: u16) -> Vec<u8> {
    use sha3::{Digest as _, Sha3_256};
    let mut d = delta.to_vec();
    d[8..10].copy_from_slice(&version.to_le_bytes());
    let check = Sha3_256::digest(&d[..104]);
    d[104..112].copy_from_slice(&check[..8]);
    d
}

/// Issue 16: the bsdiff body changed three times under format version 2
/// (plain differences, zero runs, sparse differences), so a cached
/// version-2 delta may hold a body this build cannot read. Version 2 is
/// refused as retired, before anything is decoded or written, with a
/// message that says to make it again; and the cache key moved with the
/// version, so a master never finds an old delta under the name it looks
/// up.
#[test]
fn a_version_2_bsdiff_delta_is_refused_as_retired_and_its_cache_name_is_gone() {
    let (old, new) = binary_pair(69, 30_000);
    let b = make(&old, &new, &with(MethodChoice::Bsdiff)).unwrap().bytes;
    assert_eq!(apply_to_vec(&old, &b).unwrap(), new, "version 3 applies");
    let v2 = as_version(&b, 2);
    let e = PatchReader::new(&v2[..]).map(|_| ()).unwrap_err();
    assert!(matches!(e, DeltaError::RetiredVersion { found: 2 }), "{e}");
    assert!(e.is_damaged_delta());
    assert_eq!(
        e.to_string(),
        "delta format version 2 is retired (the bsdiff method's body before it settled); make the delta again"
    );
    let e = refused(&old, &v2, "a version-2 delta");
    assert!(matches!(e, DeltaError::RetiredVersion { .. }), "{e}");
    // A patch-from delta relabelled 2 is refused the same way: the version
    // says nothing reliable about its body.
    let p = make(&old, &new, &with(MethodChoice::PatchFrom))
        .unwrap()
        .bytes;
    let e = refused(&old, &as_version(&p, 2), "a patch-from delta as version 2");
    assert!(matches!(e, DeltaError::RetiredVersion { .. }), "{e}");
    // Versions above this build's are unsupported, not retired.
    let e = refused(&old, &as_version(&b, 4), "version 4");
    assert!(
        matches!(e, DeltaError::UnsupportedVersion { found: 4, .. }),
        "{e}"
    );
    // The names a master caches under: none is a version-2 name.
    let (from, to) = (digest_of(&old), digest_of(&new));
    for methods in [MethodChoice::Smaller, MethodChoice::Bsdiff] {
        let name = cache_key(&from, &to, &with(methods)).file_name();
        assert!(name.contains(".f3-l"), "{name}");
        assert!(!name.contains(".f2-"), "{name}");
    }
}

#[test]
fn bsdiff_above_the_size_limit_is_refused_or_skipped() {
    let (old, new) = binary_pair(69, 20_000);
    let small = MakeOptions {
        bsdiff_max_size: 10_000,
        ..with(MethodChoice::Bsdiff)
    };
    let e = make(&old, &new, &small).unwrap_err();
    assert!(matches!(e, DeltaError::Unsupported { .. }), "{e}");
    let best = MakeOptions {
        methods: MethodChoice::Smaller,
        ..small
    };
    let d = make(&old, &new, &best).unwrap();
    assert_eq!(
        d.header.method,
        Method::PatchFrom,
        "falls back to patch-from"
    );
    assert_eq!(apply_to_vec(&old, &d.bytes).unwrap(), new);
    // ... at a level zstd's long-distance matches survive, recorded in the
    // header; below the limit, or asked for patch-from alone, the level
    // asked for.
    let high = best.with_level(MakeOptions::BACKGROUND_LEVEL);
    let d = make(&old, &new, &high).unwrap();
    assert_eq!(
        (d.header.method, d.header.level),
        (Method::PatchFrom, LARGE_PATCH_FROM_LEVEL_MAX)
    );
    assert_eq!(apply_to_vec(&old, &d.bytes).unwrap(), new);
    let d = make(&old, &new, &high.with_methods(MethodChoice::PatchFrom)).unwrap();
    assert_eq!(d.header.level, MakeOptions::BACKGROUND_LEVEL);
    let below = MakeOptions {
        bsdiff_max_size: 1 << 20,
        ..high
    };
    assert_eq!(make(&old, &new, &below).unwrap().header.level, 19);
}

// ---- hostile bodies: each built by hand under a valid header and record.

/// A bsdiff block: (out_len, ctrl, gaps, values, extra) segments already
/// compressed.
struct Block {
    out: u32,
    segs: [Vec<u8>; 4],
}

fn z(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 3).unwrap()
}

/// The gap and value segments' content for `diff`: where its non-zero
/// bytes are (the zeros before each since the last) and what they are.
fn sparse(diff: &[u8]) -> [Vec<u8>; 2] {
    let (mut gaps, mut values, mut from) = (Vec::new(), Vec::new(), 0);
    for (i, &d) in diff.iter().enumerate() {
        if d != 0 {
            gaps.push((i - from) as u64);
            values.push(d);
            from = i + 1;
        }
    }
    [varints(&gaps), values]
}

/// A block's four segments, compressed.
fn segs(ctrl: &[u64], diff: &[u8], extra: &[u8]) -> [Vec<u8>; 4] {
    let [gaps, values] = sparse(diff);
    [z(&varints(ctrl)), z(&gaps), z(&values), z(extra)]
}

fn varints(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in values {
        let mut v = v;
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out
}

/// A whole delta of the bsdiff method with these blocks, claiming to turn
/// `old` into `new`.
fn hostile(old: &[u8], new: &[u8], blocks: &[Block], window_log: u8) -> Vec<u8> {
    let mut body = Vec::new();
    for b in blocks {
        body.extend_from_slice(&b.out.to_le_bytes());
        for s in &b.segs {
            body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        for s in &b.segs {
            body.extend_from_slice(s);
        }
    }
    let header = DeltaHeader {
        from: digest_of(old),
        to: digest_of(new),
        from_size: old.len() as u64,
        to_size: new.len() as u64,
        window_log,
        level: 3,
        chunks: 1,
        method: Method::Bsdiff,
    };
    let record = ChunkRecord {
        ref_offset: 0,
        ref_len: old.len() as u64,
        out_len: new.len() as u64,
        frame_len: body.len() as u64,
    };
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(&record.encode());
    bytes.extend_from_slice(&body);
    bytes
}

fn refused(old: &[u8], delta: &[u8], what: &str) -> DeltaError {
    let mut out = Vec::new();
    let e = PatchReader::new(delta)
        .and_then(|r| r.apply_to(old, &mut out))
        .expect_err(what);
    assert!(e.is_damaged_delta(), "{what}: {e}");
    assert!(out.len() <= BLOCK, "{what}: wrote {} bytes", out.len());
    e
}

#[test]
fn a_hand_made_body_applies_so_the_hostile_ones_below_are_meaningful() {
    let old = b"0123456789".to_vec();
    let new = b"0133456789xyz".to_vec();
    // seek 0, add 10 (one difference of 1 at index 2), copy 3.
    let mut diff = vec![0u8; 10];
    diff[2] = 1;
    let good = Block {
        out: 13,
        segs: segs(&[0, 10, 3], &diff, b"xyz"),
    };
    let delta = hostile(&old, &new, &[good], 10);
    assert_eq!(apply_to_vec(&old, &delta).unwrap(), new);
}

#[test]
fn hostile_bsdiff_bodies_are_refused() {
    let old = b"0123456789".to_vec();
    let new = b"0133456789xyz".to_vec();
    let mut diff = vec![0u8; 10];
    diff[2] = 1;
    let block = |ctrl: &[u64], diff: &[u8], extra: &[u8], out: u32| Block {
        out,
        segs: segs(ctrl, diff, extra),
    };
    // A block with the given gap and value segments (uncompressed).
    let gapped = |gaps: &[u8], values: &[u8]| {
        vec![Block {
            out: 13,
            segs: [z(&varints(&[0, 10, 3])), z(gaps), z(values), z(b"xyz")],
        }]
    };
    let cases: Vec<(&str, Vec<Block>, u8)> = vec![
        (
            "seek before the base",
            vec![block(&[1, 10, 3], &diff, b"xyz", 13)],
            10,
        ),
        (
            "seek past the base",
            vec![block(&[22, 0, 13], &[], b"xyz", 13)],
            10,
        ),
        (
            "add past the base",
            vec![block(&[2, 10, 3], &diff, b"xyz", 13)],
            10,
        ),
        (
            "controls make too little",
            vec![block(&[0, 10, 2], &diff, b"xy", 13)],
            10,
        ),
        (
            "controls make too much",
            vec![block(&[0, 10, 4], &diff, b"xyzw", 13)],
            10,
        ),
        (
            "a control that makes nothing",
            vec![block(&[0, 0, 0, 0, 10, 3], &diff, b"xyz", 13)],
            10,
        ),
        (
            "a control cut short",
            vec![block(&[0, 10], &diff, b"", 13)],
            10,
        ),
        (
            "a huge add",
            vec![block(&[0, u64::MAX, 3], &diff, b"xyz", 13)],
            10,
        ),
        (
            "a difference one past the adds",
            vec![block(
                &[0, 10, 3],
                &[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
                b"xyz",
                13,
            )],
            10,
        ),
        (
            "fewer extra bytes than controls need",
            vec![block(&[0, 10, 3], &diff, b"xy", 13)],
            10,
        ),
        (
            "a block larger than the target",
            vec![block(&[0, 10, 3], &diff, b"xyz", 14)],
            10,
        ),
        (
            "a block larger than a block",
            vec![block(&[0, 10, 3], &diff, b"xyz", (BLOCK + 1) as u32)],
            10,
        ),
        ("an empty block", vec![block(&[], &[], b"", 0)], 10),
        (
            "a window above the method's limit",
            vec![block(&[0, 10, 3], &diff, b"xyz", 13)],
            28,
        ),
        (
            "more differences than controls add",
            vec![block(&[0, 10, 3], &[1; 11], b"xyz", 13)],
            10,
        ),
        (
            "a gap that overflows",
            gapped(&varints(&[u64::MAX]), &[1]),
            10,
        ),
        ("a gap past the adds", gapped(&varints(&[10]), &[1]), 10),
        ("a gap cut short", gapped(&[0x80], &[1]), 10),
        ("a value without a gap", gapped(&varints(&[2]), &[1, 1]), 10),
        ("a gap without a value", gapped(&varints(&[2, 0]), &[1]), 10),
        (
            "not zstd",
            vec![Block {
                out: 13,
                segs: {
                    let mut s = segs(&[0, 10, 3], &diff, b"xyz");
                    s[0] = b"garbage!".to_vec();
                    s
                },
            }],
            10,
        ),
        (
            "a stream that never ends",
            vec![Block {
                out: 13,
                segs: {
                    let mut s = segs(&[0, 10, 3], &diff, b"xyz");
                    s[3].truncate(4);
                    s
                },
            }],
            10,
        ),
    ];
    for (what, blocks, wlog) in cases {
        let delta = hostile(&old, &new, &blocks, wlog);
        let e = refused(&old, &delta, what);
        eprintln!("{what}: {e}");
    }
    // Segment lengths past the body, and bytes after the last block.
    let good = hostile(&old, &new, &[block(&[0, 10, 3], &diff, b"xyz", 13)], 10);
    assert_eq!(apply_to_vec(&old, &good).unwrap(), new);
    let body = HEADER_LEN + CHUNK_RECORD_LEN;
    for field in 0..5 {
        let mut m = good.clone();
        m[body + 4 * field..body + 4 * field + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        refused(&old, &m, &format!("field {field} = u32::MAX"));
    }
    let mut longer = good.clone();
    longer.push(0);
    refused(&old, &longer, "a byte past the declared body");
}

#[test]
fn bombs_in_bsdiff_segments_are_stopped_at_their_bound() {
    // A target large enough that the body-length bound lets the bomb
    // through to the decoder, which must stop at the block's limits.
    let old = b"0123456789".to_vec();
    let new = vec![7u8; 200_000];
    let bomb = z(&vec![0u8; 64 << 20]);
    let mut diff = vec![0u8; 10];
    diff[2] = 1;
    let good = segs(&[0, 10, 3], &diff, b"xyz");
    for (stream, what) in ["control", "gap", "value", "extra"].iter().enumerate() {
        let mut segs = good.clone();
        segs[stream] = bomb.clone();
        let delta = hostile(&old, &new, &[Block { out: 13, segs }], 27);
        let e = refused(&old, &delta, what);
        assert!(
            e.to_string().contains("decodes to more than"),
            "{what}: {e}"
        );
    }
}

#[test]
fn a_damaged_bsdiff_delta_is_refused_before_anything_is_installed() {
    // What the client's installer relies on: Err, never Ok with wrong bytes,
    // for a bsdiff delta damaged anywhere after its header.
    let (old, new) = binary_pair(70, 100_000);
    let delta = make(&old, &new, &with(MethodChoice::Bsdiff)).unwrap();
    assert_eq!(delta.header.method, Method::Bsdiff);
    let mut rng = Rng::new(71);
    let mut errors = 0;
    for i in 0..400 {
        let mut m = delta.bytes.clone();
        let at = HEADER_LEN + rng.below((m.len() - HEADER_LEN) as u64) as usize;
        m[at] ^= 1 << rng.below(8);
        match apply_to_vec(&old, &m) {
            Ok(out) => assert!(out == new, "flip {i} at {at}: Ok with other bytes"),
            Err(e) => {
                assert!(e.is_damaged_delta(), "flip {i} at {at}: {e}");
                errors += 1;
            }
        }
    }
    assert!(errors > 300, "only {errors} of 400 flips refused");
}
