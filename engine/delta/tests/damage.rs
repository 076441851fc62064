//! Truncated, bit-flipped and garbage deltas are refused with typed errors,
//! never a panic, never an unverified `Ok`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rng, binary_pair, text_pair};
use haifu_delta::container::{CHUNK_RECORD_LEN, HEADER_LEN};
use haifu_delta::{DeltaError, MakeOptions, Method, MethodChoice, apply, apply_to_vec, make};

/// Applies a damaged delta: it must fail with a "damaged delta" error, or
/// (for a mutation that changed nothing that matters) produce exactly `new`.
fn must_refuse(old: &[u8], new: &[u8], patch: &[u8], what: &str) -> Option<&'static str> {
    match apply_to_vec(old, patch) {
        Ok(out) => {
            assert!(out == new, "{what}: Ok with wrong output");
            None
        }
        Err(e) => {
            assert!(e.is_damaged_delta(), "{what}: unexpected error kind: {e}");
            // Messages are lowercase, without a final period.
            let msg = e.to_string();
            assert!(!msg.ends_with('.'), "{msg}");
            assert!(msg.chars().next().unwrap().is_lowercase(), "{msg}");
            Some(kind(&e))
        }
    }
}

fn kind(e: &DeltaError) -> &'static str {
    match e {
        DeltaError::BadMagic { .. } => "bad magic",
        DeltaError::UnsupportedVersion { .. } => "version",
        DeltaError::CorruptHeader { .. } => "corrupt header",
        DeltaError::Truncated { .. } => "truncated",
        DeltaError::Corrupt { .. } => "corrupt",
        DeltaError::OutputTooLarge { .. } => "too large",
        DeltaError::ResultMismatch { .. } => "result mismatch",
        _ => "other",
    }
}

fn pairs() -> Vec<(Vec<u8>, Vec<u8>, MakeOptions)> {
    let (a, b) = text_pair(20, 3000);
    let (c, d) = binary_pair(21, 60_000);
    vec![
        (a, b, MakeOptions::fast()),
        (c.clone(), d.clone(), MakeOptions::background()),
        // Chunked: damage can land in any record.
        (
            c.clone(),
            d.clone(),
            MakeOptions {
                max_frame: 8 << 10,
                ..MakeOptions::fast()
            },
        ),
        // The bsdiff method: block headers, controls, differences, extra.
        (c, d, MakeOptions::fast().with_methods(MethodChoice::Bsdiff)),
    ]
}

#[test]
fn every_truncation_is_refused() {
    for (old, new, options) in pairs() {
        let delta = make(&old, &new, &options).unwrap();
        match options.methods {
            MethodChoice::PatchFrom => assert_eq!(delta.header.method, Method::PatchFrom),
            MethodChoice::Bsdiff => assert_eq!(delta.header.method, Method::Bsdiff),
            MethodChoice::Smaller => {}
        }
        let delta = delta.bytes;
        let mut rng = Rng::new(30);
        // Every cut inside the header and the first record, then sampled.
        let mut cuts: Vec<usize> = (0..HEADER_LEN + CHUNK_RECORD_LEN + 8).collect();
        cuts.extend((0..300).map(|_| rng.below(delta.len() as u64) as usize));
        cuts.push(delta.len() - 1);
        for cut in cuts {
            let k = must_refuse(&old, &new, &delta[..cut], &format!("cut at {cut}"));
            assert!(k.is_some(), "cut at {cut} of {} accepted", delta.len());
        }
    }
}

#[test]
fn thousands_of_mutations_are_refused_or_harmless() {
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    let mut rng = Rng::new(31);
    for (old, new, options) in pairs() {
        let delta = make(&old, &new, &options).unwrap().bytes;
        for i in 0..1500 {
            let mut m = delta.clone();
            let what = match rng.below(6) {
                0 | 1 => {
                    // 1–3 bit flips anywhere.
                    for _ in 0..=rng.below(3) {
                        let at = rng.below(m.len() as u64) as usize;
                        m[at] ^= 1 << rng.below(8);
                    }
                    "bit flips"
                }
                2 => {
                    // A run of random bytes overwritten, biased to the body.
                    let at = rng.below(m.len() as u64) as usize;
                    let n = (1 + rng.below(16) as usize).min(m.len() - at);
                    rng.fill(&mut m[at..at + n]);
                    "overwrite"
                }
                3 => {
                    let at = rng.below(m.len() as u64) as usize;
                    m.insert(at, rng.next_u64() as u8);
                    "insert"
                }
                4 => {
                    let at = rng.below(m.len() as u64) as usize;
                    m.remove(at);
                    "remove"
                }
                _ => {
                    let n = 1 + rng.below(64) as usize;
                    m.extend(rng.bytes(n));
                    "append"
                }
            };
            let k = must_refuse(&old, &new, &m, &format!("mutation {i} ({what})"));
            *seen.entry(k.unwrap_or("harmless")).or_default() += 1;
        }
    }
    eprintln!("mutation outcomes: {seen:?}");
    // The body's damage is caught by zstd or by the final digest; the
    // header's by its own check.
    assert!(seen.get("corrupt header").copied().unwrap_or(0) > 0);
    assert!(seen.get("corrupt").copied().unwrap_or(0) > 0);
}

#[test]
fn garbage_is_refused() {
    let (old, new) = text_pair(22, 500);
    let delta = make(&old, &new, &MakeOptions::fast()).unwrap().bytes;
    let mut rng = Rng::new(32);
    for i in 0..1000 {
        let n = rng.below(400) as usize;
        let mut g = rng.bytes(n);
        if i % 2 == 0 && n >= HEADER_LEN {
            // Valid magic, garbage after it.
            g[..8].copy_from_slice(b"HAIFUDLT");
        }
        if i % 4 == 0 && n >= HEADER_LEN + CHUNK_RECORD_LEN {
            // A valid header, garbage records and frames after it.
            g[..HEADER_LEN].copy_from_slice(&delta[..HEADER_LEN]);
        }
        let k = must_refuse(&old, &new, &g, &format!("garbage {i}"));
        assert!(k.is_some(), "garbage {i} accepted");
    }
    let e = apply_to_vec(&old, b"").unwrap_err();
    assert_eq!(e.to_string(), "delta is truncated: header ends early");
    let e = apply_to_vec(&old, &[0u8; 200]).unwrap_err();
    assert!(matches!(e, DeltaError::BadMagic { .. }), "{e}");
}

#[test]
fn a_frame_that_decodes_to_more_than_declared_is_stopped() {
    // A valid frame for a longer target, grafted under a header that
    // declares the shorter one: the output limit must stop it.
    let (old, new) = text_pair(23, 2000);
    let short = &new[..new.len() / 2];
    let long = make(&old, &new, &MakeOptions::fast()).unwrap().bytes;
    let small = make(&old, short, &MakeOptions::fast()).unwrap().bytes;
    let mut grafted = small[..HEADER_LEN].to_vec();
    // A record claiming the short length, with the long frame.
    let frame = &long[HEADER_LEN + CHUNK_RECORD_LEN..];
    grafted.extend_from_slice(&small[HEADER_LEN..HEADER_LEN + 16]);
    grafted.extend_from_slice(&(short.len() as u64).to_le_bytes());
    grafted.extend_from_slice(&(frame.len() as u64).to_le_bytes());
    grafted.extend_from_slice(frame);
    let mut out = Vec::new();
    let e = apply(&old, &grafted[..], &mut out).unwrap_err();
    assert!(matches!(e, DeltaError::OutputTooLarge { .. }), "{e}");
    assert!(
        out.len() <= short.len() + (1 << 20),
        "wrote {} bytes",
        out.len()
    );
}

#[test]
fn a_failing_writer_is_an_error_not_a_panic() {
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (old, new) = text_pair(24, 500);
    let delta = make(&old, &new, &MakeOptions::fast()).unwrap().bytes;
    let e = apply(&old, &delta[..], Full).unwrap_err();
    assert_eq!(e.to_string(), "cannot write delta output: disk full");
}

#[test]
fn a_hostile_declared_base_size_does_not_reserve_memory() {
    use haifu_delta::{DeltaHeader, apply_reading_base, digest_of};
    let header = DeltaHeader {
        from: digest_of(b"a"),
        to: digest_of(b"b"),
        from_size: u64::MAX / 2,
        to_size: u64::MAX / 2,
        window_log: 31,
        level: 19,
        chunks: 1,
        method: haifu_delta::Method::PatchFrom,
    };
    let e = apply_reading_base(&b"small base"[..], &header.encode()[..], Vec::new()).unwrap_err();
    assert!(
        matches!(e, DeltaError::WrongBase { found_size: 10, .. }),
        "{e}"
    );
}
