#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Hostile input: random, truncated and mutated frames decode to errors,
//! never panic, and whatever decodes re-encodes to the same bytes.

mod support;

use haifu_protocol::{DecodeError, Limits, Message, limits};
use support::{KINDS, Rng, random_message, samples};

/// Decodes, and if it succeeds insists on canonical re-encoding.
fn check(frame: &[u8]) -> Result<Message, DecodeError> {
    let out = Message::decode(frame);
    if let Ok(m) = &out {
        assert_eq!(m.encode().unwrap(), frame, "accepted a non-canonical frame");
    }
    out
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(1);
    for _ in 0..5_000 {
        let mut frame = rng.bytes(200);
        // Give most frames a real tag so the body decoders get exercised.
        if !frame.is_empty() && rng.below(4) != 0 {
            frame[0] = samples()[rng.below(KINDS) as usize].1.tag();
        }
        let _ = check(&frame);
    }
}

#[test]
fn every_truncation_of_every_sample_is_an_error() {
    for (name, msg) in samples() {
        let bytes = msg.encode().unwrap();
        for cut in 0..bytes.len() {
            let err = check(&bytes[..cut]).expect_err(name);
            assert!(
                err.keeps_peer() || matches!(err, DecodeError::BadMagic),
                "{name}: {err}"
            );
        }
    }
}

#[test]
fn mutated_frames_never_panic() {
    let mut rng = Rng::new(2);
    for i in 0..6_000u64 {
        let msg = random_message(&mut rng, i % KINDS);
        let mut bytes = msg.encode().unwrap();
        match rng.below(4) {
            0 => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = 0xff;
            }
            2 => bytes.push(rng.next() as u8),
            _ => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes.truncate(at);
            }
        }
        let _ = check(&bytes);
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = Message::Ping { nonce: 1 }.encode().unwrap();
    bytes.push(0);
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
}

#[test]
fn unknown_tags_are_typed_and_keep_the_peer() {
    let known: Vec<u8> = samples().iter().map(|(_, m)| m.tag()).collect();
    for tag in 0..=255u8 {
        if known.contains(&tag) {
            continue;
        }
        let err = Message::decode(&[tag, 1, 2, 3]).unwrap_err();
        assert_eq!(err, DecodeError::UnknownMessage { tag });
        assert!(err.keeps_peer());
        assert_eq!(err.code(), haifu_protocol::ErrorCode::UnknownMessage);
    }
}

#[test]
fn an_empty_frame_is_an_error() {
    assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
}

#[test]
fn an_oversized_frame_drops_the_peer_before_anything_is_read() {
    let limits = Limits::new(limits::MIN_MAX_FRAME);
    let frame = vec![0x44u8; limits.max_frame() + 1];
    let err = Message::decode_with(&frame, &limits).unwrap_err();
    assert!(matches!(err, DecodeError::FrameTooLarge { .. }));
    assert!(!err.keeps_peer());
}

#[test]
fn a_hostile_length_is_refused_without_allocating_it() {
    // A chunk claiming 4 GiB of bytes in a 22-byte frame.
    let mut frame = vec![0x44];
    frame.extend_from_slice(&[0; 16]);
    frame.extend_from_slice(&u32::MAX.to_be_bytes());
    let err = Message::decode(&frame).unwrap_err();
    assert!(
        matches!(err, DecodeError::TooLong { field: "bytes", .. }),
        "{err}"
    );
    // Within the bound but past the end of the frame: truncated, and the
    // decoder never reserved the claimed length (it slices before copying).
    let mut frame = vec![0x44];
    frame.extend_from_slice(&[0; 16]);
    frame.extend_from_slice(&(limits::MAX_CHUNK_LEN as u32).to_be_bytes());
    let err = Message::decode(&frame).unwrap_err();
    assert!(
        matches!(err, DecodeError::Truncated { field: "bytes" }),
        "{err}"
    );
}

#[test]
fn a_foreign_hello_drops_the_peer() {
    let err = Message::decode(b"\x01GET / HTTP/1.1").unwrap_err();
    assert_eq!(err, DecodeError::BadMagic);
    assert!(!err.keeps_peer());
}

#[test]
fn non_canonical_values_are_refused() {
    // A boolean of 2 in `last`.
    let mut bytes = Message::DataChunk(haifu_protocol::DataChunk {
        transfer: 0,
        offset: 0,
        bytes: vec![],
        last: true,
    })
    .encode()
    .unwrap();
    *bytes.last_mut().unwrap() = 2;
    assert!(matches!(
        Message::decode(&bytes),
        Err(DecodeError::Invalid { field: "last", .. })
    ));
    // A time with nanoseconds of the wrong sign.
    let mut frame = vec![0x21];
    frame.extend_from_slice(&7u64.to_be_bytes());
    frame.extend_from_slice(&1u32.to_be_bytes());
    frame.extend_from_slice(&5i64.to_be_bytes());
    frame.extend_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        Message::decode(&frame),
        Err(DecodeError::Invalid { field: "at", .. })
    ));
    // Invalid UTF-8 in a string.
    let mut frame = vec![haifu_protocol::tag::ERROR];
    frame.extend_from_slice(&1u16.to_be_bytes());
    frame.extend_from_slice(&0u64.to_be_bytes());
    frame.extend_from_slice(&[0, 1, 0xff]);
    assert!(matches!(
        Message::decode(&frame),
        Err(DecodeError::Invalid {
            field: "reason",
            ..
        })
    ));
}
