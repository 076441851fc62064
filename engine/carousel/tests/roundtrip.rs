//! Byte-exact round trips through sender, datagrams and receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rng, feed, key, small_config};
use haifu_carousel::{Accepted, ArtifactHasher, CarouselConfig, Receiver, Sender};
use sha3::{Digest, Sha3_256};

fn round_trip(len: usize, config: CarouselConfig) {
    let artifact = Rng(len as u64).bytes(len);
    let sender = Sender::new(key(), len as u64, config).unwrap();
    let datagrams = sender.encode_round(&artifact, 1).unwrap();
    let mut rx = Receiver::new(key(), sender.plan().unwrap());
    let mut out = Vec::new();
    feed(&mut rx, &datagrams, &mut out);
    assert!(rx.is_complete(), "len {len}: {:?}", rx.progress());
    assert_eq!(out.len(), len);
    assert!(out == artifact, "len {len}: bytes differ");
    let p = rx.progress();
    assert_eq!(p.bytes_done, len as u64);
    assert_eq!(p.symbols_needed, 0);
    assert_eq!(p.symbols_held, 0);
}

#[test]
fn edge_sizes_round_trip_byte_exact() {
    // Around one and two default symbols (1,408 bytes), and one block.
    for len in [0, 1, 1407, 1408, 1409, 2816, 65_536] {
        round_trip(len, CarouselConfig::default());
    }
}

#[test]
fn a_few_mib_round_trip_byte_exact() {
    // The default layout: one block of 2,235 symbols.
    round_trip(3 << 20, CarouselConfig::default());
    // And blocks of ~250 symbols.
    round_trip(
        3 << 20,
        CarouselConfig {
            block_symbols: 250,
            ..CarouselConfig::default()
        },
    );
}

#[test]
fn multi_object_artifact_round_trips_byte_exact() {
    // 256 KiB objects: 5 objects, the last one short.
    let len = (4 << 18) + 77_777;
    let config = small_config();
    let sender = Sender::new(key(), len as u64, config).unwrap();
    assert_eq!(sender.object_count(), 5);
    round_trip(len, config);
}

#[test]
fn any_order_and_duplicates_round_trip() {
    let len = 600_000;
    let artifact = Rng(7).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let mut datagrams = sender.encode_round(&artifact, 1).unwrap();
    // Every datagram twice, shuffled.
    datagrams.extend(datagrams.clone());
    Rng(8).shuffle(&mut datagrams);
    let mut rx = Receiver::new(key(), sender.plan().unwrap());
    let mut out = Vec::new();
    let mut duplicates = 0;
    let mut decoded = 0;
    for d in &datagrams {
        match rx.handle_datagram(d).unwrap() {
            Accepted::Duplicate | Accepted::AlreadyDecoded => duplicates += 1,
            Accepted::BlockDecoded => decoded += 1,
            Accepted::Held => {}
            Accepted::Deferred => panic!("no object limit set"),
        }
        while let Some(block) = rx.poll_block() {
            let s = block.offset as usize;
            if out.len() < s + block.data.len() {
                out.resize(s + block.data.len(), 0);
            }
            out[s..s + block.data.len()].copy_from_slice(&block.data);
        }
    }
    assert!(rx.is_complete());
    assert!(duplicates >= datagrams.len() / 2);
    let blocks: u32 = (0..sender.object_count())
        .map(|i| sender.object_layout(i).unwrap().block_count())
        .sum();
    assert_eq!(decoded, blocks as usize, "each block decoded exactly once");
    assert!(out == artifact);
}

#[test]
fn hasher_matches_sha3_of_the_artifact() {
    let len = 700_001;
    let artifact = Rng(3).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let mut datagrams = sender.encode_round(&artifact, 1).unwrap();
    Rng(4).shuffle(&mut datagrams);
    let mut rx = Receiver::new(key(), sender.plan().unwrap());
    let mut hasher = ArtifactHasher::new(len);
    for d in &datagrams {
        rx.handle_datagram(d).unwrap();
        while let Some(block) = rx.poll_block() {
            assert!(hasher.push(block.offset, &block.data));
        }
    }
    let want: [u8; 32] = Sha3_256::digest(&artifact).into();
    assert_eq!(hasher.finish(len as u64), Some(want));
}

#[test]
fn progress_counts_held_and_needed_symbols() {
    let len = (1 << 18) + 30_000;
    let artifact = Rng(5).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let datagrams = sender.encode_round(&artifact, 1).unwrap();
    let mut rx = Receiver::new(key(), sender.plan().unwrap());
    assert!(!rx.is_complete());
    // The plan gives the object count before any symbol arrives.
    assert_eq!(rx.progress().objects, 2);
    assert_eq!(rx.progress().symbols_held, 0);
    rx.handle_datagram(&datagrams[0]).unwrap();
    let p = rx.progress();
    assert_eq!(p.objects, 2);
    assert_eq!(p.symbols_held, 1);
    // Each object rounds its last symbol up: 187 + 22, not
    // ceil(292144 / 1408) = 208.
    assert_eq!(p.symbols_needed, sender.shape().source_symbols());
    assert_eq!(p.symbols_needed, 209);
    let o = rx.object_progress(0).unwrap();
    assert_eq!(o.symbols_held, 1);
    assert_eq!(o.blocks, sender.object_layout(0).unwrap().block_count());
    assert_eq!(
        rx.object_progress(1).unwrap().blocks,
        sender.object_layout(1).unwrap().block_count()
    );
    assert_eq!(rx.object_progress(1).unwrap().blocks_done, 0);
    assert_eq!(rx.object_progress(2), None);
}
