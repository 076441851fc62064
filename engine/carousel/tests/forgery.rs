//! Forged, foreign, truncated and mutated datagrams: all rejected, none
//! decoded, no panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rng, key, small_config};
use haifu_carousel::datagram::write_datagram;
use haifu_carousel::{
    DatagramError, KEY_LEN, ReceiveError, Receiver, Sender, SessionKey, SessionShape, SymbolHeader,
    parse_datagram,
};

fn valid(len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let artifact = Rng(len as u64).bytes(len);
    let sender = Sender::new(key(), len as u64, small_config()).unwrap();
    let datagrams = sender.encode_round(&artifact, 1).unwrap();
    (artifact, datagrams)
}

#[test]
fn right_format_wrong_key_is_rejected_and_never_decoded() {
    let len = 300_000;
    let artifact = Rng(1).bytes(len);
    let forger = Sender::new(
        SessionKey::new(key().id(), [0xa5; KEY_LEN]),
        len as u64,
        small_config(),
    )
    .unwrap();
    let mut rx = Receiver::new(key());
    for d in forger.encode_round(&artifact, 1).unwrap() {
        assert_eq!(
            rx.handle_datagram(&d),
            Err(ReceiveError::Datagram(DatagramError::BadTag))
        );
    }
    assert_eq!(rx.progress().objects, 0);
    assert!(rx.poll_block().is_none());
    // Another session on the same group is foreign, whatever its key.
    let other = Sender::new(
        SessionKey::new(77, [0x5a; KEY_LEN]),
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
        SessionKey::new(key().id(), [1; KEY_LEN]),
        len as u64,
        small_config(),
    )
    .unwrap();
    let mut rx = Receiver::new(key());
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
    let mut rx = Receiver::new(key());
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
    assert_eq!(rx.progress().objects, 0);
}

#[test]
fn mutations_of_valid_datagrams_are_all_rejected() {
    let (_, datagrams) = valid(200_000);
    let mut rng = Rng(41);
    let mut rx = Receiver::new(key());
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
    assert_eq!(rx.progress().objects, 0);
    assert!(
        kinds.get("bad_tag").copied().unwrap_or(0) > 2000,
        "{kinds:?}"
    );
}

#[test]
fn authenticated_but_inconsistent_headers_never_panic() {
    // A buggy sender with the right key: random header values, signed.
    let mut rng = Rng(51);
    let mut rx = Receiver::new(key());
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
