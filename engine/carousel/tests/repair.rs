//! Feedback repair in virtual time: real symbols, real decoding, listeners
//! with their own loss, reporting a few times a second. Everyone listening
//! decodes in the round it hears, at a wire cost close to the loss's floor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Rng, key};
use haifu_carousel::{
    CarouselConfig, EndReason, Next, ObjectEncoder, Outcome, Receiver, RepairParams, RepairRound,
    Sender,
};

/// One simulated receiver.
struct Listener {
    loss: f64,
    /// When it starts listening, and when (if ever) it dies.
    joins: Duration,
    dies: Option<Duration>,
    rx: Receiver,
    next_report: Duration,
    decoded_at: Option<Duration>,
}

struct Case {
    len: usize,
    config: CarouselConfig,
    /// (loss, joins at ms, dies at ms)
    listeners: Vec<(f64, u64, Option<u64>)>,
    params: RepairParams,
    seed: u64,
}

struct Result {
    outcome: Outcome<usize>,
    decoded_at: Vec<Option<Duration>>,
    ended_at: Duration,
    bytes: u64,
}

/// 100 Mbit/s-like spacing: one 1,448-byte datagram every 116 µs.
const GAP: Duration = Duration::from_micros(116);
const REPORT_EVERY: Duration = Duration::from_millis(100);

fn params() -> RepairParams {
    RepairParams {
        proactive: 0.02,
        budget_bytes: u64::MAX,
        budget_time: Duration::from_secs(3600),
        silence: Duration::from_secs(1),
        holdoff: Duration::from_millis(150),
        linger: Duration::from_millis(300),
        assumed_loss: 0.0,
        feedback: true,
    }
}

fn run(case: Case) -> Result {
    let artifact = Rng(case.seed).bytes(case.len);
    let sender = Sender::new(key(), case.len as u64, case.config).unwrap();
    let plan = sender.plan().unwrap();
    let mut rng = Rng(case.seed ^ 0x5eed);
    let mut listeners: Vec<Listener> = case
        .listeners
        .iter()
        .map(|&(loss, joins, dies)| Listener {
            loss,
            joins: Duration::from_millis(joins),
            dies: dies.map(Duration::from_millis),
            rx: Receiver::new(key(), plan.clone()),
            next_report: Duration::from_millis(joins),
            decoded_at: None,
        })
        .collect();
    let t0 = Instant::now();
    let mut round = RepairRound::new(&plan, 1, case.params, 1448, t0).unwrap();
    let encoders: Vec<ObjectEncoder<'_>> = (0..sender.object_count())
        .map(|i| {
            let r = sender.object_range(i).unwrap();
            sender
                .object_encoder(i, &artifact[r.start as usize..r.end as usize])
                .unwrap()
        })
        .collect();
    let mut now = Duration::ZERO;
    let mut buf = Vec::new();
    let mut bytes = 0u64;
    loop {
        // Reports due by now, in listener order.
        for (id, l) in listeners.iter_mut().enumerate() {
            let alive = now >= l.joins && l.dies.is_none_or(|d| now < d);
            while alive && l.next_report <= now {
                // As a client's `Listening`: nothing to say before it heard.
                let report = l.rx.report(4096);
                if report.heard > 0 {
                    assert!(round.report(id, &report, t0 + l.next_report));
                }
                l.next_report += REPORT_EVERY;
            }
            if !alive && l.next_report <= now {
                l.next_report = now + REPORT_EVERY;
            }
        }
        match round.next(t0 + now) {
            Next::Send(s) => {
                assert!(encoders[s.object as usize].write_symbol(s.sbn, s.esi, &mut buf));
                bytes += buf.len() as u64;
                for l in &mut listeners {
                    let alive = now >= l.joins && l.dies.is_none_or(|d| now < d);
                    if !alive || rng.chance(l.loss) {
                        continue;
                    }
                    l.rx.handle_datagram(&buf).unwrap();
                    while l.rx.poll_block().is_some() {}
                    if l.rx.is_complete() && l.decoded_at.is_none() {
                        l.decoded_at = Some(now);
                    }
                }
                // A listener that just decoded says so at once, not at its
                // next tick.
                for (id, l) in listeners.iter().enumerate() {
                    if l.decoded_at == Some(now) {
                        assert!(round.report(id, &l.rx.report(4096), t0 + now));
                    }
                }
                now += GAP;
            }
            Next::Wait(until) => {
                let next_report = listeners
                    .iter()
                    .map(|l| l.next_report)
                    .min()
                    .unwrap_or(now + REPORT_EVERY);
                let until = until.saturating_duration_since(t0);
                now = until.min(next_report).max(now + Duration::from_micros(1));
            }
            Next::End => break,
        }
        assert!(now < Duration::from_secs(600), "the round never ended");
    }
    Result {
        outcome: round.outcome(),
        decoded_at: listeners.iter().map(|l| l.decoded_at).collect(),
        ended_at: now,
        bytes,
    }
}

/// 4 MiB in blocks of about 1,000 symbols (3 blocks), so debug builds stay
/// quick; the ratios hold better with the default 4,000.
fn config() -> CarouselConfig {
    CarouselConfig {
        block_symbols: 1000,
        ..CarouselConfig::default()
    }
}

fn eight(loss: f64) -> Vec<(f64, u64, Option<u64>)> {
    (0..8).map(|_| (loss, 0, None)).collect()
}

#[test]
fn eight_listeners_decode_in_one_round_near_the_loss_floor() {
    let len = 4 << 20;
    // (loss, the wire ceiling ÷ file)
    for (loss, ceiling) in [(0.0, 1.06), (0.05, 1.12), (0.20, 1.35)] {
        for seed in 1..=2 {
            let r = run(Case {
                len,
                config: config(),
                listeners: eight(loss),
                params: params(),
                seed,
            });
            assert_eq!(r.outcome.reason, EndReason::AllDecoded, "loss {loss}");
            assert_eq!(r.outcome.decoded.len(), 8, "loss {loss} seed {seed}");
            assert!(r.decoded_at.iter().all(Option::is_some));
            let ratio = r.bytes as f64 / len as f64;
            println!(
                "loss {loss}: wire/file {ratio:.4}, ended {:?}, max loss seen {:.3}",
                r.ended_at, r.outcome.max_loss
            );
            assert!(
                ratio <= ceiling,
                "loss {loss} seed {seed}: {ratio:.4} > {ceiling}"
            );
        }
    }
}

#[test]
fn a_late_listener_is_repaired_within_the_round() {
    // Joins when a third of the first pass (about 350 ms) is out.
    let mut listeners = eight(0.05);
    listeners[3].1 = 120;
    let r = run(Case {
        len: 4 << 20,
        config: config(),
        listeners,
        params: params(),
        seed: 7,
    });
    assert_eq!(r.outcome.decoded.len(), 8);
    assert!(r.decoded_at[3].is_some());
}

#[test]
fn a_dead_listener_holds_the_round_only_for_its_silence() {
    let mut with_dead = eight(0.05);
    with_dead[5].2 = Some(200);
    let alive = run(Case {
        len: 4 << 20,
        config: config(),
        listeners: eight(0.05),
        params: params(),
        seed: 11,
    });
    let dead = run(Case {
        len: 4 << 20,
        config: config(),
        listeners: with_dead,
        params: params(),
        seed: 11,
    });
    assert_eq!(dead.outcome.decoded.len(), 7);
    assert_eq!(dead.outcome.silent, vec![5]);
    // The others decode no later than without it (the same symbols reach
    // them; the dead one's repairs only add).
    let last = |r: &Result| {
        r.decoded_at
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 5)
            .map(|(_, d)| d.unwrap())
            .max()
            .unwrap()
    };
    assert!(
        last(&dead).as_secs_f64() <= last(&alive).as_secs_f64() * 1.05 + 0.2,
        "{:?} vs {:?}",
        last(&dead),
        last(&alive)
    );
    // The round ended about a silence after the others were done.
    assert!(dead.ended_at <= last(&dead) + Duration::from_millis(1300));
}

#[test]
fn the_byte_budget_ends_the_round() {
    let mut p = params();
    p.budget_bytes = (4 << 20) * 11 / 10;
    let r = run(Case {
        len: 4 << 20,
        config: config(),
        listeners: eight(0.20),
        params: p,
        seed: 3,
    });
    assert_eq!(r.outcome.reason, EndReason::ByteBudget);
    assert!(r.bytes <= p.budget_bytes);
    assert_eq!(r.outcome.decoded.len() + r.outcome.undecoded.len(), 8);
    assert!(!r.outcome.undecoded.is_empty());
}

#[test]
fn nobody_listening_is_one_pass_and_a_short_linger() {
    let r = run(Case {
        len: 1 << 20,
        config: config(),
        listeners: Vec::new(),
        params: params(),
        seed: 1,
    });
    assert_eq!(r.outcome.reason, EndReason::AllDecoded);
    assert_eq!(r.outcome.repairs.0, 0);
    let pass = r.outcome.first_pass.0 as u32;
    assert!(r.ended_at >= GAP * (pass - 1) + Duration::from_millis(300));
}
