//! Random loss across rounds: symbols of different rounds add up, and one
//! round of the default layout is enough at 5% loss.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rng, key, small_config};
use haifu_carousel::loss::{block_failure, one_round_failure, round_ratio, symbols_needed};
use haifu_carousel::{Accepted, CarouselConfig, Receiver, Sender, parse_datagram};

/// Runs rounds `1..=rounds` through a lossy channel; returns the round after
/// which the receiver was complete, and checks the bytes.
fn rounds_until_complete(
    len: usize,
    config: CarouselConfig,
    loss: f64,
    rounds: u32,
    seed: u64,
) -> Option<u32> {
    let artifact = Rng(seed).bytes(len);
    let sender = Sender::new(key(), len as u64, config).unwrap();
    let mut rng = Rng(seed ^ 0xdead_beef);
    let mut rx = Receiver::new(key(), sender.plan().unwrap());
    let mut out = vec![0u8; len];
    let mut done_after = None;
    for round in 1..=rounds {
        for d in sender.encode_round(&artifact, round).unwrap() {
            if rng.chance(loss) {
                continue;
            }
            rx.handle_datagram(&d).unwrap();
            while let Some(b) = rx.poll_block() {
                let s = b.offset as usize;
                out[s..s + b.data.len()].copy_from_slice(&b.data);
            }
        }
        if rx.is_complete() && done_after.is_none() {
            done_after = Some(round);
        }
    }
    if done_after.is_some() {
        assert!(out == artifact, "decoded bytes differ");
    }
    done_after
}

fn k250() -> CarouselConfig {
    CarouselConfig {
        block_symbols: 250,
        ..CarouselConfig::default()
    }
}

#[test]
fn ten_percent_loss_completes_within_two_rounds() {
    for seed in 1..=3 {
        let done = rounds_until_complete(1_000_000, k250(), 0.10, 3, seed);
        assert!(matches!(done, Some(1..=2)), "seed {seed}: {done:?}");
    }
    // Several objects, small blocks.
    let done = rounds_until_complete(900_000, small_config(), 0.10, 3, 9);
    assert!(matches!(done, Some(1..=2)), "{done:?}");
}

#[test]
fn thirty_percent_loss_fails_round_one_and_completes_with_round_two() {
    for seed in 1..=3 {
        let done = rounds_until_complete(1_000_000, k250(), 0.30, 3, seed);
        assert_eq!(done, Some(2), "seed {seed}");
    }
    let done = rounds_until_complete(900_000, small_config(), 0.30, 3, 10);
    assert_eq!(done, Some(2));
}

#[test]
fn joining_mid_round_completes_from_the_next_rounds() {
    let len = 800_000;
    let artifact = Rng(11).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let mut rx = Receiver::new(key(), sender.plan().unwrap());
    let mut out = vec![0u8; len];
    let round1 = sender.encode_round(&artifact, 1).unwrap();
    let later: Vec<Vec<u8>> = (2..=3)
        .flat_map(|r| sender.encode_round(&artifact, r).unwrap())
        .collect();
    // Joins two thirds into round 1, with 20% loss throughout.
    let mut rng = Rng(12);
    for d in round1[round1.len() * 2 / 3..].iter().chain(&later) {
        if rng.chance(0.2) {
            continue;
        }
        rx.handle_datagram(d).unwrap();
        while let Some(b) = rx.poll_block() {
            let s = b.offset as usize;
            out[s..s + b.data.len()].copy_from_slice(&b.data);
        }
    }
    assert!(rx.is_complete(), "{:?}", rx.progress());
    assert!(out == artifact);
}

#[test]
fn round_one_without_loss_stays_within_1_1_of_the_artifact() {
    let config = CarouselConfig::default();
    // From about 7 MB up; below, the padding of the last symbol and the
    // rounding up of repair counts can add up to 0.1%.
    for len in [8 << 20, 10 << 20, 100 << 20, 256 << 20] {
        let sender = Sender::new(key(), len, config).unwrap();
        let ratio = sender.round_bytes().unwrap() as f64 / len as f64;
        assert!(ratio <= 1.1, "{len}: {ratio}");
        assert_eq!(ratio, round_ratio(len, &config).unwrap());
    }
    // And what is actually emitted matches the count, byte for byte (small
    // blocks for speed: rounding up each block's repair count costs them
    // more than 1.1).
    let len = 2 << 20;
    let artifact = Rng(1).bytes(len);
    let sender = Sender::new(key(), len as u64, k250()).unwrap();
    let sent: usize = sender
        .encode_round(&artifact, 1)
        .unwrap()
        .iter()
        .map(Vec::len)
        .sum();
    assert_eq!(sent as u64, sender.round_bytes().unwrap());
    assert_eq!(
        sent as f64 / len as f64,
        round_ratio(len as u64, &k250()).unwrap()
    );
}

/// The product target: for a 256 MiB artifact a round sends at most 1.1 ×
/// its size, and at 5% random loss one round is enough for all but a few
/// clients in ten thousand.
#[test]
fn default_layout_meets_the_5_percent_one_round_target_for_256_mib() {
    let len = 256 << 20;
    let config = CarouselConfig::default();
    let ratio = round_ratio(len, &config).unwrap();
    assert!(ratio <= 1.1, "{ratio}");
    let fail = one_round_failure(len, &config, 0.05).unwrap();
    assert!(fail < 1e-3, "{fail}");
    assert!(fail > 1e-4, "the model changed: {fail}");
    // What the defaults were chosen against: 1,000-symbol blocks with 6.5%
    // repair almost never finished in one round, 2,000-symbol blocks with
    // the same budget missed about one time in eleven.
    let before = CarouselConfig {
        symbol_size: 1400,
        block_symbols: 1000,
        repair_overhead: 0.065,
        ..config
    };
    assert!(one_round_failure(len, &before, 0.05).unwrap() > 0.99);
    let k2000 = CarouselConfig {
        block_symbols: 2000,
        ..config
    };
    let fail = one_round_failure(len, &k2000, 0.05).unwrap();
    assert!((0.05..0.15).contains(&fail), "{fail}");
}

/// `block_failure` is the model behind the target above; check it against
/// real decoding where failures are common enough to count: blocks of about
/// 62 symbols at 5% loss, which miss round 1 about one time in eight.
#[test]
fn block_failure_predicts_real_decoding() {
    let config = small_config();
    let len = 4 << 20;
    let artifact = Rng(31).bytes(len);
    let sender = Sender::new(key(), len as u64, config).unwrap();
    let datagrams = sender.encode_round(&artifact, 1).unwrap();
    let mut predicted = 0.0;
    let mut blocks = 0;
    for i in 0..sender.object_count() {
        for b in &sender.object_layout(i).unwrap().blocks {
            predicted += block_failure(b.symbols, &config, 0.05);
            blocks += 1;
        }
    }
    let mut missed = 0;
    let seeds = 10;
    for seed in 0..seeds {
        let mut rng = Rng(100 + seed);
        let mut rx = Receiver::new(key(), sender.plan().unwrap());
        for d in datagrams.iter().filter(|_| !rng.chance(0.05)) {
            rx.handle_datagram(d).unwrap();
            while rx.poll_block().is_some() {}
        }
        for i in 0..sender.object_count() {
            let p = rx.object_progress(i).unwrap();
            missed += p.blocks - p.blocks_done;
        }
    }
    let expected = predicted * seeds as f64;
    // Four binomial standard deviations.
    let slack = 4.0 * (expected * (1.0 - predicted / f64::from(blocks))).sqrt();
    assert!(
        (f64::from(missed) - expected).abs() <= slack,
        "{missed} of {} blocks missed, model says {expected:.1} ± {slack:.1}",
        blocks * seeds as u32
    );
}

/// The default layout end to end: real symbols, real decoding, 5% of the
/// datagrams dropped. Objects of 16 MiB have 3 blocks of 3,972 symbols,
/// exactly the blocks of a default 64 MiB object, so the per-block odds are
/// those of a 256 MiB artifact; 2 objects × 8 loss patterns are 48 blocks,
/// as many as one 256 MiB round.
#[test]
fn default_blocks_complete_after_round_one_at_5_percent_loss() {
    let config = CarouselConfig {
        object_shift: 24,
        ..CarouselConfig::default()
    };
    let len = 2 << 24;
    let artifact = Rng(41).bytes(len);
    let sender = Sender::new(key(), len as u64, config).unwrap();
    assert_eq!(sender.object_count(), 2);
    let default = Sender::new(key(), 64 << 20, CarouselConfig::default()).unwrap();
    let layout = sender.object_layout(0).unwrap();
    assert_eq!(layout.block_count(), 3);
    assert!(
        layout
            .blocks
            .iter()
            .all(|b| b.symbols == default.object_layout(0).unwrap().blocks[0].symbols)
    );
    let datagrams = sender.encode_round(&artifact, 1).unwrap();
    for seed in 1..=8 {
        let mut rng = Rng(seed);
        let mut rx = Receiver::new(key(), sender.plan().unwrap());
        let mut out = vec![0u8; len];
        let mut dropped = 0;
        for d in &datagrams {
            if rng.chance(0.05) {
                dropped += 1;
                continue;
            }
            rx.handle_datagram(d).unwrap();
            while let Some(b) = rx.poll_block() {
                let s = b.offset as usize;
                out[s..s + b.data.len()].copy_from_slice(&b.data);
            }
        }
        let share = f64::from(dropped) / datagrams.len() as f64;
        assert!((0.045..0.055).contains(&share), "seed {seed}: {share}");
        assert!(rx.is_complete(), "seed {seed}: {:?}", rx.progress());
        assert!(out == artifact, "seed {seed}: bytes differ");
    }
}

#[test]
fn decode_overhead_is_small() {
    // Feed each block a random mix of source and repair symbols (as loss
    // leaves them) and count the symbols held when it decodes.
    let len = 1_500_000;
    let artifact = Rng(21).bytes(len);
    let sender = Sender::new(key(), len as u64, k250()).unwrap();
    let mut datagrams: Vec<Vec<u8>> = (1..=2)
        .flat_map(|r| sender.encode_round(&artifact, r).unwrap())
        .collect();
    Rng(22).shuffle(&mut datagrams);
    let mut rx = Receiver::new(key(), sender.plan().unwrap());
    let mut held = std::collections::HashMap::new();
    let mut worst = 0i64;
    for d in &datagrams {
        let sym = parse_datagram(d, &key()).unwrap();
        let id = (sym.header.object, sym.header.sbn);
        let layout = sender.object_layout(id.0).unwrap();
        let k = layout.blocks[usize::from(id.1)].symbols;
        match rx.handle_symbol(sym).unwrap() {
            Accepted::Held => *held.entry(id).or_insert(0u32) += 1,
            Accepted::BlockDecoded => {
                let n = held.get(&id).copied().unwrap_or(0) + 1;
                assert!(
                    n <= symbols_needed(k),
                    "block {id:?}: {n} symbols for K = {k}"
                );
                worst = worst.max(i64::from(n) - i64::from(k));
            }
            _ => {}
        }
    }
    assert!(rx.is_complete());
    assert!(worst <= 2, "worst block needed K + {worst}");
}

#[test]
fn object_limit_bounds_objects_in_flight_and_still_completes() {
    let len = 1_200_000; // 5 objects of 256 KiB
    let artifact = Rng(61).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let mut rx = Receiver::with_object_limit(key(), sender.plan().unwrap(), 2);
    let mut rng = Rng(62);
    let mut out = vec![0u8; len];
    let mut deferred = 0;
    let mut rounds = 0;
    for round in 1..=6 {
        rounds = round;
        for d in sender.encode_round(&artifact, round).unwrap() {
            if rng.chance(0.3) {
                continue;
            }
            if rx.handle_datagram(&d).unwrap() == Accepted::Deferred {
                deferred += 1;
            }
            let started = (0..sender.object_count())
                .filter(|&i| rx.object_progress(i).unwrap().in_flight)
                .count();
            assert!(started <= 2, "{started} objects in flight");
            while let Some(b) = rx.poll_block() {
                let s = b.offset as usize;
                out[s..s + b.data.len()].copy_from_slice(&b.data);
            }
        }
        if rx.is_complete() {
            break;
        }
    }
    assert!(rx.is_complete(), "{:?}", rx.progress());
    assert!(deferred > 0);
    assert!(rounds > 2, "the limit costs rounds at 30% loss: {rounds}");
    assert!(out == artifact);
}
