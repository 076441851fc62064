#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every message, drawn at random over its whole domain, decodes back to
//! itself, and its encoding is the only one its decoding accepts.

mod support;

use haifu_protocol::{Limits, Message, limits};
use support::{KINDS, Rng, TAGS, random_message, samples};

#[test]
fn every_kind_round_trips() {
    let mut rng = Rng::new(0x4841_4946_5500_0001);
    let mut tags = std::collections::BTreeSet::new();
    for i in 0..4_000u64 {
        let msg = random_message(&mut rng, i % KINDS);
        tags.insert(msg.tag());
        let bytes = msg.encode().unwrap();
        let back = Message::decode(&bytes).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
        assert_eq!(back, msg);
        assert_eq!(back.encode().unwrap(), bytes, "encoding is deterministic");
    }
    assert_eq!(tags.len() as u64, TAGS, "every tag was drawn");
}

#[test]
fn the_samples_cover_every_tag() {
    let tags: std::collections::BTreeSet<u8> = samples().iter().map(|(_, m)| m.tag()).collect();
    assert_eq!(tags.len() as u64, TAGS);
}

#[test]
fn a_full_chunk_fits_the_default_frame() {
    let msg = Message::DataChunk(haifu_protocol::DataChunk {
        transfer: u64::MAX,
        offset: u64::MAX,
        bytes: vec![0xff; limits::MAX_CHUNK_LEN],
        last: true,
    });
    let bytes = msg.encode().unwrap();
    assert!(bytes.len() <= limits::DEFAULT_MAX_FRAME);
    assert_eq!(Message::decode(&bytes).unwrap(), msg);
}

#[test]
fn split_chunks_fit_a_small_frame() {
    let limits = Limits::new(limits::MIN_MAX_FRAME);
    let payload = vec![7u8; 300_000];
    let chunks = haifu_protocol::chunk::split(5, &payload, limits.max_chunk());
    let mut r = haifu_protocol::Reassembly::new(5, payload.len() as u64, 1 << 20).unwrap();
    let mut out = None;
    for c in chunks {
        let frame = Message::DataChunk(c).encode_with(&limits).unwrap();
        let Message::DataChunk(c) = Message::decode_with(&frame, &limits).unwrap() else {
            panic!("not a chunk");
        };
        out = r.push(&c).unwrap();
    }
    assert_eq!(out.unwrap(), payload);
}

#[test]
fn fields_past_their_limit_are_refused_when_encoding() {
    let msg = Message::Error(haifu_protocol::ErrorMessage {
        code: haifu_protocol::ErrorCode::Busy,
        about: 0,
        reason: "x".repeat(limits::MAX_REASON_LEN + 1),
    });
    assert!(matches!(
        msg.encode(),
        Err(haifu_protocol::EncodeError::TooLong {
            field: "reason",
            ..
        })
    ));
}
