//! Throughput of the carousel against raw raptorq with the crate defaults, in
//! the same run, printed as a table.
//!
//! `CARGO_TARGET_DIR=/work/target-carousel cargo bench -p haifu-carousel`
//! (`CAROUSEL_BENCH_MIB=16` for a quicker run; the default is 64 MiB, one
//! default-sized object).
//!
//! A second table compares block layouts on the same artifact: the layout
//! before the 5%-loss change (T = 1400, K ≈ 1000, 6.5% repair) against the
//! default symbol size and repair overhead with block targets from
//! `CAROUSEL_BENCH_BLOCKS` (comma-separated, default `1000,2000,` and the
//! default target).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use haifu_carousel::loss::{one_round_failure, round_ratio, symbols_needed};
use haifu_carousel::{
    Accepted, CarouselConfig, CarouselKey, DEFAULT_REPAIR_OVERHEAD, KEY_LEN, Next, Receiver,
    RepairParams, RepairRound, SYMBOL_SIZE, Sender, parse_datagram,
};
use raptorq::{Decoder, Encoder, EncodingPacket};

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

const REPS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    let runs: Vec<Duration> = (0..REPS)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    median(runs)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let mib: usize = std::env::var("CAROUSEL_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let len = mib << 20;
    let mut rng = Rng(1);
    let artifact: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    let key = CarouselKey::new(1, [7; KEY_LEN]);
    let config = CarouselConfig::default();
    let sender = Sender::new(key.clone(), len as u64, config).unwrap();
    let per_round = sender.round_datagrams().unwrap() as usize;
    let source = sender.shape().source_symbols() as usize;
    let repair_r1 = per_round - source;
    println!(
        "artifact {mib} MiB, {} object(s), {source} source symbols, {per_round} datagrams/round, \
         round bytes / artifact = {:.4}",
        sender.object_count(),
        round_ratio(len as u64, &config).unwrap()
    );

    // haifu: round 1 (encode objects + all datagrams, tagged).
    let enc1 = time(|| sender.encode_round(&artifact, 1).unwrap().len());
    // haifu: repair-only round 2 from encoders already built.
    let encoders: Vec<_> = (0..sender.object_count())
        .map(|i| {
            let r = sender.object_range(i).unwrap();
            sender
                .object_encoder(i, &artifact[r.start as usize..r.end as usize])
                .unwrap()
        })
        .collect();
    let rep2 = time(|| {
        encoders
            .iter()
            .map(|e| e.round(2).unwrap().map(|d| d.len()).sum::<usize>())
            .sum::<usize>()
    });

    // raw raptorq, crate defaults: the same source + repair counts.
    let raw_repair_per_block = repair_r1 as u32;
    let raw_enc1 = time(|| {
        let enc = Encoder::with_defaults(&artifact, SYMBOL_SIZE);
        enc.get_encoded_packets(raw_repair_per_block)
            .into_iter()
            .map(|p| p.serialize().len())
            .sum::<usize>()
    });
    let raw_enc = Encoder::with_defaults(&artifact, SYMBOL_SIZE);
    let raw_rep2 = time(|| {
        raw_enc
            .get_block_encoders()
            .iter()
            .map(|b| {
                b.repair_packets(raw_repair_per_block, per_round as u32)
                    .into_iter()
                    .map(|p| p.serialize().len())
                    .sum::<usize>()
            })
            .sum::<usize>()
    });

    // Decoding at 10% random loss, rounds 1 and 2 as needed.
    let mut datagrams = sender.encode_round(&artifact, 1).unwrap();
    datagrams.extend(sender.encode_round(&artifact, 2).unwrap());
    let mut lossy = Rng(2);
    let kept: Vec<&Vec<u8>> = datagrams.iter().filter(|_| !lossy.chance(0.10)).collect();
    let dec = time(|| {
        let mut rx = Receiver::new(key.clone(), hashed_plan(&sender, &artifact));
        let mut bytes = 0;
        for d in &kept {
            rx.handle_datagram(d).unwrap();
            while let Some(b) = rx.poll_block() {
                bytes += b.data.len();
            }
            if rx.is_complete() {
                break;
            }
        }
        assert_eq!(bytes, len);
    });
    let raw_packets: Vec<EncodingPacket> = {
        let mut lossy = Rng(3);
        raw_enc
            .get_encoded_packets(2 * raw_repair_per_block + per_round as u32)
            .into_iter()
            .filter(|_| !lossy.chance(0.10))
            .collect()
    };
    let raw_dec = time(|| {
        let mut dec = Decoder::new(raw_enc.get_config());
        for p in raw_packets.iter().cloned() {
            if let Some(out) = dec.decode(p) {
                return out.len();
            }
        }
        panic!("raw decoder did not finish");
    });

    // A round on air as the relay runs it, without the socket: the
    // RepairRound's first pass (2% proactive) with every datagram written
    // into one reused buffer, encoders built as the round reaches them.
    let air = time(|| {
        let plan = sender.plan().unwrap();
        let datagram_len = haifu_carousel::OVERHEAD_LEN + usize::from(SYMBOL_SIZE);
        let t0 = Instant::now();
        let mut round = RepairRound::<u32>::new(
            &plan,
            1,
            RepairParams {
                feedback: false,
                ..RepairParams::blind(0.02)
            },
            datagram_len,
            t0,
        )
        .unwrap();
        let mut encoder = None;
        let mut buf = Vec::with_capacity(datagram_len);
        let mut bytes = 0usize;
        while let Next::Send(sym) = round.next(t0) {
            let e = match &mut encoder {
                Some((i, e)) if *i == sym.object => e,
                slot => {
                    let r = sender.object_range(sym.object).unwrap();
                    let object = artifact[r.start as usize..r.end as usize].to_vec();
                    &mut slot
                        .insert((
                            sym.object,
                            sender.object_encoder_owned(sym.object, object).unwrap(),
                        ))
                        .1
                }
            };
            e.write_symbol(sym.sbn, sym.esi, &mut buf);
            bytes += buf.len();
        }
        bytes
    });

    // Authentication alone: parse (SHA3 tag check) of every round-1 datagram.
    let auth = time(|| {
        datagrams[..per_round]
            .iter()
            .filter(|d| parse_datagram(d, &key).is_ok())
            .count()
    });

    println!();
    println!("| measure | haifu MB/s | raw raptorq defaults MB/s | haifu / raw |");
    println!("|---|---|---|---|");
    for (name, ours, raw) in [
        ("encode round 1 (source + repair)", enc1, raw_enc1),
        ("repair-only round 2", rep2, raw_rep2),
        ("decode at 10% loss", dec, raw_dec),
    ] {
        let (a, b) = (mbps(len, ours), mbps(len, raw));
        println!("| {name} | {a:.0} | {b:.0} | {:.2}× |", a / b);
    }
    println!(
        "| tag check alone (parse_datagram, one round) | {:.0} | – | – |",
        mbps(len, auth)
    );
    println!(
        "| a round on air, first pass at 2% (RepairRound + write_symbol) | {:.0} ({:.2} Gbit/s of datagrams) | – | {:.2}× encode round 1 |",
        mbps(len, air),
        len as f64 * 1.02 * 1448.0 / 1408.0 * 8.0 / 1e9 / air.as_secs_f64(),
        enc1.as_secs_f64() / air.as_secs_f64()
    );
    println!(
        "(MB of artifact per second; median of {REPS}; haifu includes the 24-byte header and HMAC-SHA256 tag per datagram, raw does not)"
    );

    // Symbols over K each block needed, symbols in random order, K ≈ 4000.
    let mut overhead: BTreeMap<i64, usize> = BTreeMap::new();
    let mut shuffled: Vec<&Vec<u8>> = datagrams.iter().collect();
    let mut srng = Rng(4);
    for i in (1..shuffled.len()).rev() {
        let j = (srng.next_u64() % (i as u64 + 1)) as usize;
        shuffled.swap(i, j);
    }
    let mut rx = Receiver::new(key.clone(), hashed_plan(&sender, &artifact));
    let mut held: BTreeMap<(u32, u8), u32> = BTreeMap::new();
    let mut worst_ok = true;
    for d in shuffled {
        let sym = parse_datagram(d, &key).unwrap();
        let id = (sym.header.object, sym.header.sbn);
        let k = sender.object_layout(id.0).unwrap().blocks[usize::from(id.1)].symbols;
        match rx.handle_symbol(sym).unwrap() {
            Accepted::Held => *held.entry(id).or_default() += 1,
            Accepted::BlockDecoded => {
                let n = held.get(&id).copied().unwrap_or(0) + 1;
                worst_ok &= n <= symbols_needed(k);
                *overhead.entry(i64::from(n) - i64::from(k)).or_default() += 1;
            }
            _ => {}
        }
    }
    println!();
    println!("symbols over K at decode (blocks): {overhead:?}; within symbols_needed: {worst_ok}");
    drop(datagrams);
    drop(encoders);

    compare_layouts(&artifact, &key);
}

/// Encode, repair and decode throughput of several block layouts, against
/// the layout used before the 5%-loss change.
fn compare_layouts(artifact: &[u8], key: &CarouselKey) {
    let len = artifact.len();
    let default = CarouselConfig::default();
    let mut layouts = vec![(
        "T=1400 K≈1000 r=0.065 (before)".to_owned(),
        CarouselConfig {
            symbol_size: 1400,
            block_symbols: 1000,
            repair_overhead: 0.065,
            ..default
        },
    )];
    let targets = std::env::var("CAROUSEL_BENCH_BLOCKS")
        .unwrap_or_else(|_| format!("1000,2000,{}", default.block_symbols));
    for b in targets
        .split(',')
        .filter_map(|s| s.trim().parse::<u32>().ok())
    {
        let label = format!("T={SYMBOL_SIZE} K≈{b} r={DEFAULT_REPAIR_OVERHEAD}");
        let config = CarouselConfig {
            block_symbols: b,
            ..default
        };
        layouts.push((label, config));
    }
    println!();
    println!(
        "| layout | blocks/object | round bytes / artifact | encode round 1 MB/s | repair round 2 MB/s | decode at 5% loss MB/s | P(round 1 short), 256 MiB at 5% loss | encode / before | decode / before |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut base: Option<(f64, f64)> = None;
    for (label, config) in layouts {
        let sender = Sender::new(key.clone(), len as u64, config).unwrap();
        let z = sender.object_layout(0).unwrap().block_count();
        let enc = time(|| sender.encode_round(artifact, 1).unwrap().len());
        let encoders: Vec<_> = (0..sender.object_count())
            .map(|i| {
                let r = sender.object_range(i).unwrap();
                sender
                    .object_encoder(i, &artifact[r.start as usize..r.end as usize])
                    .unwrap()
            })
            .collect();
        let rep = time(|| {
            encoders
                .iter()
                .map(|e| e.round(2).unwrap().map(|d| d.len()).sum::<usize>())
                .sum::<usize>()
        });
        drop(encoders);
        let mut lossy = Rng(5);
        let round1: Vec<Vec<u8>> = sender
            .encode_round(artifact, 1)
            .unwrap()
            .into_iter()
            .filter(|_| !lossy.chance(0.05))
            .collect();
        let round2: Vec<Vec<u8>> = sender
            .encode_round(artifact, 2)
            .unwrap()
            .into_iter()
            .filter(|_| !lossy.chance(0.05))
            .collect();
        let dec = time(|| {
            let mut rx = Receiver::new(key.clone(), hashed_plan(&sender, artifact));
            let mut bytes = 0;
            for d in round1.iter().chain(&round2) {
                rx.handle_datagram(d).unwrap();
                while let Some(b) = rx.poll_block() {
                    bytes += b.data.len();
                }
                if rx.is_complete() {
                    break;
                }
            }
            assert_eq!(bytes, len);
        });
        let short = one_round_failure(256 << 20, &config, 0.05).unwrap();
        let (e, d) = (mbps(len, enc), mbps(len, dec));
        let (be, bd) = *base.get_or_insert((e, d));
        println!(
            "| {label} | {z} | {:.4} | {e:.0} | {:.0} | {d:.0} | {short:.1e} | {:.2}× | {:.2}× |",
            round_ratio(len as u64, &config).unwrap(),
            mbps(len, rep),
            e / be,
            d / bd,
        );
    }
}

/// The plan a client builds from a format-2 manifest: layout and block
/// hashes, so the decode figures include checking every block.
fn hashed_plan(sender: &Sender, artifact: &[u8]) -> haifu_carousel::ReceivePlan {
    let plan = sender.plan().unwrap();
    let mut hasher = haifu_carousel::BlockHasher::new(&plan).unwrap();
    hasher.update(artifact);
    plan.with_block_hashes(hasher.finish().unwrap()).unwrap()
}
