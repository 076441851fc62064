//! Forged, foreign, truncated and mutated datagrams: all rejected, none
//! decoded, no panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rng, key, small_config};
use haifu_carousel::datagram::write_datagram;
use haifu_carousel::{
    Accepted, BlockHasher, CarouselKey, DatagramError, KEY_LEN, ReceiveError, ReceivePlan,
    Receiver, Sender, SessionShape, SymbolHeader, parse_datagram,
};

fn valid(len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let artifact = Rng(len as u64).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let datagrams = sender.encode_round(&artifact, 1).unwrap();
    (artifact, datagrams)
}

/// The plan of a `len`-byte artifact sent with the small config, without
/// block hashes.
fn plan(len: usize) -> ReceivePlan {
    Sender::new(key(), len as u64, small_config())
        .unwrap()
        .plan()
        .unwrap()
}

/// The plan a format-2 manifest gives: layout and signed block hashes.
fn hashed_plan(artifact: &[u8]) -> ReceivePlan {
    let plan = plan(artifact.len());
    let mut h = BlockHasher::new(&plan).unwrap();
    h.update(artifact);
    plan.with_block_hashes(h.finish().unwrap()).unwrap()
}

#[test]
fn right_format_wrong_key_is_rejected_and_never_decoded() {
    let len = 300_000;
    let artifact = Rng(1).bytes(len);
    let forger = Sender::new(
        CarouselKey::new(key().id(), [0xa5; KEY_LEN]),
        len as u64,
        small_config(),
    )
    .unwrap();
    let mut rx = Receiver::new(key(), plan(len));
    for d in forger.encode_round(&artifact, 1).unwrap() {
        assert_eq!(
            rx.handle_datagram(&d),
            Err(ReceiveError::Datagram(DatagramError::BadTag))
        );
    }
    assert_eq!(rx.progress().symbols_accepted, 0);
    assert!(rx.poll_block().is_none());
    // Another session on the same group is foreign, whatever its key.
    let other = Sender::new(
        CarouselKey::new(77, [0x5a; KEY_LEN]),
        len as u64,
        small_config(),
    )
    .unwrap();
    for d in other.encode_round(&artifact, 1).unwrap().iter().take(50) {
        assert_eq!(
            rx.handle_datagram(d),
            Err(ReceiveError::Datagram(DatagramError::ForeignSession(77)))
        );
    }
}

#[test]
fn forged_symbols_first_do_not_poison_the_real_ones() {
    let len = 400_000;
    let (artifact, real) = valid(len);
    // The forger sends different bytes under the same symbol ids, first.
    let forged_art = Rng(99).bytes(len);
    let forger = Sender::new(
        CarouselKey::new(key().id(), [1; KEY_LEN]),
        len as u64,
        small_config(),
    )
    .unwrap();
    let mut rx = Receiver::new(key(), plan(len));
    let mut rejected = 0;
    for d in forger.encode_round(&forged_art, 1).unwrap() {
        rejected += usize::from(rx.handle_datagram(&d).is_err());
    }
    let mut out = vec![0u8; len];
    for d in &real {
        rx.handle_datagram(d).unwrap();
        while let Some(b) = rx.poll_block() {
            let s = b.offset as usize;
            out[s..s + b.data.len()].copy_from_slice(&b.data);
        }
    }
    assert!(rejected > 0);
    assert!(rx.is_complete());
    assert!(out == artifact);
}

#[test]
fn every_truncation_is_rejected() {
    let (_, datagrams) = valid(10_000);
    let d = &datagrams[0];
    for cut in 0..d.len() {
        assert!(parse_datagram(&d[..cut], &key()).is_err(), "cut at {cut}");
    }
    let mut longer = d.clone();
    longer.push(0);
    assert!(parse_datagram(&longer, &key()).is_err());
}

#[test]
fn random_bytes_are_rejected_without_panic() {
    let mut rng = Rng(31);
    let mut rx = Receiver::new(key(), plan(300_000));
    for i in 0..3000 {
        let n = rng.below(1600) as usize;
        let mut bytes = rng.bytes(n);
        // Half of them look like ours up to the session id.
        if i % 2 == 0 && n >= 8 {
            bytes[..3].copy_from_slice(b"HC\x01");
            bytes[4..8].copy_from_slice(&key().id().to_be_bytes());
        }
        assert!(rx.handle_datagram(&bytes).is_err());
    }
    assert_eq!(rx.progress().symbols_accepted, 0);
}

#[test]
fn mutations_of_valid_datagrams_are_all_rejected() {
    let (_, datagrams) = valid(200_000);
    let mut rng = Rng(41);
    let mut rx = Receiver::new(key(), plan(200_000));
    let mut kinds = std::collections::BTreeMap::new();
    for _ in 0..5000 {
        let mut d = datagrams[rng.below(datagrams.len() as u64) as usize].clone();
        match rng.below(4) {
            0 => {
                // One to three bit flips anywhere.
                for _ in 0..=rng.below(3) {
                    let bit = rng.below(d.len() as u64 * 8);
                    d[(bit / 8) as usize] ^= 1 << (bit % 8);
                }
            }
            1 => {
                // A byte overwritten with a different value.
                let i = rng.below(d.len() as u64) as usize;
                d[i] = d[i].wrapping_add(1 + rng.below(255) as u8);
            }
            2 => {
                // Truncated or extended.
                let n = rng.below(1600) as usize;
                d.resize(n, rng.below(256) as u8);
                if n == datagrams[0].len() {
                    let last = n - 1;
                    d[last] ^= 0x80;
                }
            }
            _ => {
                // Header fields rewritten at random.
                let i = rng.below(24) as usize;
                d[i] ^= 1 + rng.below(255) as u8;
            }
        }
        let err = rx
            .handle_datagram(&d)
            .expect_err("mutated datagram accepted");
        *kinds.entry(err.kind()).or_insert(0) += 1;
    }
    assert!(rx.poll_block().is_none());
    assert_eq!(rx.progress().symbols_accepted, 0);
    assert!(
        kinds.get("bad_tag").copied().unwrap_or(0) > 2000,
        "{kinds:?}"
    );
}

#[test]
fn authenticated_but_inconsistent_headers_never_panic() {
    // A buggy sender with the right key: random header values, signed.
    let mut rng = Rng(51);
    let mut rx = Receiver::new(key(), plan(20_000));
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..3000 {
        let t = 8 * (1 + rng.below(20) as u16);
        let shape = SessionShape {
            artifact_len: rng.below(40_000),
            object_shift: 8 + rng.below(8) as u8,
            symbol_size: t,
        };
        let header = SymbolHeader {
            session_id: key().id(),
            shape,
            object: rng.below(4) as u32,
            blocks: 1 + rng.below(8) as u32,
            sbn: rng.below(8) as u8,
            esi: rng.below(1 << 24) as u32,
        };
        let mut d = Vec::new();
        write_datagram(&key(), &header, &rng.bytes(usize::from(t)), &mut d);
        let outcome = match rx.handle_datagram(&d) {
            Ok(a) => format!("{a:?}"),
            Err(e) => e.kind().to_string(),
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
        while rx.poll_block().is_some() {}
    }
    assert!(outcomes.contains_key("shape_mismatch"), "{outcomes:?}");
    assert!(outcomes.contains_key("malformed"), "{outcomes:?}");
}

/// A datagram signed with the session key (any client holds it) carrying
/// `data` in place of the symbol `real` carries.
fn forge_like(real: &[u8], data: &[u8]) -> Vec<u8> {
    let header = parse_datagram(real, &key()).unwrap().header;
    let mut d = Vec::new();
    write_datagram(&key(), &header, data, &mut d);
    d
}

fn write_blocks(rx: &mut Receiver, out: &mut [u8]) {
    while let Some(b) = rx.poll_block() {
        let s = b.offset as usize;
        out[s..s + b.data.len()].copy_from_slice(&b.data);
    }
}

/// Feeds one datagram, counting errors by kind and writing blocks out.
fn take(
    rx: &mut Receiver,
    d: &[u8],
    out: &mut [u8],
    kinds: &mut std::collections::BTreeMap<&'static str, u64>,
) {
    if let Err(e) = rx.handle_datagram(d) {
        *kinds.entry(e.kind()).or_insert(0) += 1;
    }
    write_blocks(rx, out);
}

#[test]
fn valid_tag_garbage_costs_its_blocks_not_the_round() {
    let len = 600_000;
    let artifact = Rng(7).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let round1 = sender.encode_round(&artifact, 1).unwrap();
    let round2 = sender.encode_round(&artifact, 2).unwrap();
    // A key holder poisons two blocks all through round 1: before each
    // real symbol of block (0, 1) it sends garbage under the same symbol
    // id; before each real symbol of block (2, 0) garbage under an id the
    // relay has not used.
    let (same_ids, fresh_ids) = ((0u32, 1u8), (2u32, 0u8));
    let mut rng = Rng(8);
    let mut rx = Receiver::new(key(), hashed_plan(&artifact));
    let mut out = vec![0u8; len];
    let mut kinds = std::collections::BTreeMap::new();
    for d in &round1 {
        let h = parse_datagram(d, &key()).unwrap().header;
        let garbage = rng.bytes(usize::from(h.shape.symbol_size));
        if (h.object, h.sbn) == same_ids {
            take(&mut rx, &forge_like(d, &garbage), &mut out, &mut kinds);
        } else if (h.object, h.sbn) == fresh_ids {
            let header = SymbolHeader {
                esi: 1_000_000 + h.esi,
                ..h
            };
            let mut f = Vec::new();
            write_datagram(&key(), &header, &garbage, &mut f);
            take(&mut rx, &f, &mut out, &mut kinds);
        }
        take(&mut rx, d, &mut out, &mut kinds);
    }
    // Every other block decoded in round 1; the two poisoned ones are all
    // that is missing, and were counted.
    let missing: Vec<(u32, u32)> = (0..sender.object_count())
        .map(|i| {
            let p = rx.object_progress(i).unwrap();
            (i, p.blocks - p.blocks_done)
        })
        .filter(|(_, m)| *m > 0)
        .collect();
    assert_eq!(missing, vec![(0, 1), (2, 1)]);
    let p = rx.progress();
    assert!(p.blocks_discarded >= 1, "{p:?}");
    assert!(p.symbol_conflicts >= 1, "{p:?}");
    assert_eq!(
        kinds.keys().copied().collect::<Vec<_>>(),
        ["block_hash_mismatch", "symbol_conflict"]
    );
    assert_eq!(kinds["block_hash_mismatch"], p.blocks_discarded);
    // The forger stopped. Garbage under the relay's own ids was caught as
    // conflicts; garbage under unused ids still held at the end of round 1
    // is dropped when round 2's first symbol of a poisoned block arrives:
    // round 2 finishes both, with nothing more thrown away.
    kinds.clear();
    for d in &round2 {
        take(&mut rx, d, &mut out, &mut kinds);
    }
    assert!(kinds.is_empty(), "{kinds:?}");
    assert!(rx.is_complete(), "{:?}", rx.progress());
    assert!(out == artifact);
}

#[test]
fn a_round_of_garbage_sent_first_costs_at_most_one_more_round() {
    let len = 300_000;
    let artifact = Rng(9).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let round1 = sender.encode_round(&artifact, 1).unwrap();
    let mut rng = Rng(10);
    let mut rx = Receiver::new(key(), hashed_plan(&artifact));
    // A whole round of garbage under the real symbol ids, first.
    let mut discarded = 0;
    for d in &round1 {
        let garbage = rng.bytes(d.len() - haifu_carousel::OVERHEAD_LEN);
        if let Err(e) = rx.handle_datagram(&forge_like(d, &garbage)) {
            assert_eq!(e.kind(), "block_hash_mismatch");
            discarded += 1;
        }
    }
    assert!(discarded > 0);
    assert!(rx.poll_block().is_none());
    let mut out = vec![0u8; len];
    let round2 = sender.encode_round(&artifact, 2).unwrap();
    for d in round1.iter().chain(&round2) {
        if let Err(e) = rx.handle_datagram(d) {
            assert!(
                matches!(e.kind(), "block_hash_mismatch" | "symbol_conflict"),
                "{e}"
            );
        }
        write_blocks(&mut rx, &mut out);
    }
    assert!(rx.is_complete(), "{:?}", rx.progress());
    assert!(out == artifact);
}

#[test]
fn wrong_shape_datagrams_first_do_not_lock_the_receiver() {
    let len = 300_000;
    let artifact = Rng(11).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let round1 = sender.encode_round(&artifact, 1).unwrap();
    let mut rx = Receiver::new(key(), hashed_plan(&artifact));
    // Three authentic datagrams of other shapes: another length, another
    // symbol size, another block count for a real object.
    let real = parse_datagram(&round1[0], &key()).unwrap().header;
    let shapes = [
        SymbolHeader {
            shape: SessionShape::new(len as u64 + 1, 18, 1408).unwrap(),
            ..real
        },
        SymbolHeader {
            shape: SessionShape::new(len as u64, 18, 1024).unwrap(),
            ..real
        },
        SymbolHeader {
            blocks: real.blocks - 1,
            sbn: 0,
            ..real
        },
    ];
    for h in shapes {
        let mut d = Vec::new();
        let t = usize::from(h.shape.symbol_size);
        write_datagram(&key(), &h, &vec![0xee; t], &mut d);
        let err = rx.handle_datagram(&d).unwrap_err();
        assert_eq!(err, ReceiveError::ShapeMismatch);
        assert_eq!(err.kind(), "shape_mismatch");
    }
    // Nothing of them was kept.
    let p = rx.progress();
    assert_eq!(
        (p.symbols_accepted, p.symbols_held, p.objects_done),
        (0, 0, 0)
    );
    let mut out = vec![0u8; len];
    for d in &round1 {
        assert!(matches!(
            rx.handle_datagram(d),
            Ok(Accepted::Held | Accepted::BlockDecoded | Accepted::AlreadyDecoded)
        ));
        write_blocks(&mut rx, &mut out);
    }
    assert!(rx.is_complete(), "{:?}", rx.progress());
    assert!(out == artifact);
}

#[test]
fn deferred_checks_hold_the_object_until_confirmed_and_restart_a_refused_block() {
    let len = 300_000;
    let artifact = Rng(12).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let round1 = sender.encode_round(&artifact, 1).unwrap();
    let round2 = sender.encode_round(&artifact, 2).unwrap();
    let mut rx = Receiver::new(key(), hashed_plan(&artifact));
    rx.defer_block_checks();
    let mut out = vec![0u8; len];
    let mut refused_once = false;
    let mut mismatches = 0;
    for d in round1.iter().chain(&round2) {
        rx.handle_datagram(d).unwrap();
        while let Some(b) = rx.poll_block() {
            let want = b.check.expect("every block comes with its signed hash");
            // The checker refuses the first block once, as if its bytes
            // were forged: it must come back decoded from later symbols.
            let matches = refused_once && haifu_carousel::block_hash(&b.data) == want;
            if !matches {
                refused_once = true;
                assert_eq!(
                    rx.block_checked(b.object, b.sbn, false).unwrap_err().kind(),
                    "block_hash_mismatch"
                );
                mismatches += 1;
                continue;
            }
            assert!(
                !rx.is_complete(),
                "complete only once the check is reported"
            );
            rx.block_checked(b.object, b.sbn, true).unwrap();
            // Reports for settled blocks change nothing.
            rx.block_checked(b.object, b.sbn, false).unwrap();
            let s = b.offset as usize;
            out[s..s + b.data.len()].copy_from_slice(&b.data);
        }
    }
    assert_eq!(mismatches, 1);
    assert_eq!(rx.progress().blocks_discarded, 1);
    assert!(rx.is_complete(), "{:?}", rx.progress());
    assert!(out == artifact);
}

/// Checked by the artifact's digest (each byte hashed once): a block a key
/// holder poisoned with fresh ids decodes wrong and counts as decoded; the
/// caller's digest fails, the block is found by its signed hash and
/// reopened, gathered again from the next round and, from then on, checked
/// as it decodes, so the poisoner's later garbage is thrown away at once.
#[test]
fn a_block_poisoned_under_digest_checks_is_reopened_and_gathered_again() {
    let len = 600_000;
    let artifact = Rng(17).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let round1 = sender.encode_round(&artifact, 1).unwrap();
    let round2 = sender.encode_round(&artifact, 2).unwrap();
    let plan = hashed_plan(&artifact);
    let poisoned = (1u32, 0u8);
    let mut rng = Rng(18);
    let garbage_for = |d: &[u8], rng: &mut Rng| {
        let h = parse_datagram(d, &key()).unwrap().header;
        ((h.object, h.sbn) == poisoned).then(|| {
            // An id the relay does not use: it does not clash with a real one.
            let header = SymbolHeader {
                esi: 1_000_000 + h.esi,
                ..h
            };
            let mut g = Vec::new();
            write_datagram(
                &key(),
                &header,
                &rng.bytes(usize::from(h.shape.symbol_size)),
                &mut g,
            );
            g
        })
    };
    let mut rx = Receiver::new(key(), plan.clone());
    rx.check_blocks_by_digest();
    let mut out = vec![0u8; len];
    let mut kinds = std::collections::BTreeMap::new();
    for d in &round1 {
        if let Some(g) = garbage_for(d, &mut rng) {
            take(&mut rx, &g, &mut out, &mut kinds);
        }
        take(&mut rx, d, &mut out, &mut kinds);
    }
    // Every block counted decoded, none checked: the poisoned one is wrong.
    assert!(rx.is_complete(), "{kinds:?}");
    assert!(kinds.is_empty(), "{kinds:?}");
    assert!(out != artifact);
    let bad: Vec<(u32, u8)> = (0..plan.shape().object_count())
        .flat_map(|o| {
            plan.object_layout(o)
                .unwrap()
                .blocks
                .into_iter()
                .map(move |b| (o, b))
        })
        .filter(|(o, b)| {
            let start = (plan.object_layout(*o).unwrap().offset + b.offset) as usize;
            let want = plan.block_hash(*o, b.sbn).unwrap();
            haifu_carousel::block_hash(&out[start..start + b.len as usize]) != *want
        })
        .map(|(o, b)| (o, b.sbn))
        .collect();
    assert_eq!(bad, vec![poisoned]);
    assert!(rx.reopen_block(poisoned.0, poisoned.1));
    assert!(
        !rx.reopen_block(poisoned.0, poisoned.1),
        "not decoded: nothing to reopen"
    );
    assert!(
        !rx.reopen_block(0, 200),
        "a block the session does not have"
    );
    assert!(!rx.is_complete());
    let report = rx.report(64);
    assert_eq!(report.held.len(), 1);
    // Round 2, poisoned again: the garbage now fails the block's hash as
    // the block decodes (inline here), and round 3 brings it in.
    for d in &round2 {
        if let Some(g) = garbage_for(d, &mut rng) {
            take(&mut rx, &g, &mut out, &mut kinds);
        }
        take(&mut rx, d, &mut out, &mut kinds);
    }
    let caught = kinds.get("block_hash_mismatch").copied().unwrap_or(0);
    assert!(caught >= 1, "{kinds:?}");
    for d in &sender.encode_round(&artifact, 3).unwrap() {
        take(&mut rx, d, &mut out, &mut kinds);
    }
    assert!(rx.is_complete(), "{kinds:?}");
    assert!(out == artifact);
    assert_eq!(rx.progress().blocks_discarded, 1 + caught);
}
