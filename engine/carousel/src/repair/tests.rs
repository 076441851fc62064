//! The rules of a round on air, one at a time, with a hand-made clock.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::*;
use crate::layout::SessionShape;

/// 3 blocks of 10 symbols of 16 bytes.
fn plan() -> ReceivePlan {
    ReceivePlan::new(SessionShape::new(480, 12, 16).unwrap(), 10).unwrap()
}

fn params() -> RepairParams {
    RepairParams {
        proactive: 0.2,
        budget_bytes: u64::MAX,
        budget_time: Duration::from_secs(60),
        silence: Duration::from_secs(1),
        holdoff: Duration::from_millis(100),
        linger: Duration::from_millis(50),
        assumed_loss: 0.0,
        feedback: true,
    }
}

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// Sends everything due at `now`; returns the symbols.
fn drain(r: &mut RepairRound<u8>, now: Instant) -> Vec<SymbolRef> {
    let mut out = Vec::new();
    while let Next::Send(s) = r.next(now) {
        out.push(s);
    }
    out
}

#[test]
fn the_first_pass_goes_block_by_block_with_its_proactive_share() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    assert_eq!(r.block_count(), 3);
    let sent = drain(&mut r, t0);
    // K = 10, 20% proactive: 12 per block, source ids first.
    assert_eq!(sent.len(), 36);
    assert!(sent[..12].iter().all(|s| s.sbn == 0 && !s.repair));
    assert_eq!(
        sent[..12].iter().map(|s| s.esi).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
    assert!(sent[12..24].iter().all(|s| s.sbn == 1));
    // Nobody reported: the round lingers, then ends.
    assert_eq!(r.next(t0), Next::Wait(ms(t0, 50)));
    assert_eq!(r.next(ms(t0, 50)), Next::End);
    assert_eq!(r.outcome().reason, EndReason::AllDecoded);
    assert_eq!(r.sent(), (36, 36 * 40));
}

#[test]
fn later_rounds_use_their_own_fresh_ids() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 3, params(), 40, t0).unwrap();
    let first = crate::layout::round_first_esi(10, 3);
    assert!(first > 10);
    let sent = drain(&mut r, t0);
    assert_eq!(sent[0].esi, first);
}

#[test]
fn a_report_orders_the_need_of_the_neediest_listener_after_the_holdoff() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    let report = |held: Vec<(u32, u32)>| Report {
        heard: 0,
        done: false,
        done_below: 0,
        horizon: 3,
        held,
        newest: Vec::new(),
    };
    assert!(r.report(1, &report(vec![(0, 0), (1, 0), (2, 0)]), t0));
    drain(&mut r, t0);
    // Too early: the symbols of the first pass cannot be in the report yet.
    assert!(r.report(1, &report(vec![(0, 5)]), ms(t0, 50)));
    assert!(matches!(r.next(ms(t0, 50)), Next::Wait(_)));
    // After the holdoff: block 0 needs 10 + 2 - 5 = 7; listener 2 needs 3.
    assert!(r.report(1, &report(vec![(0, 5)]), ms(t0, 100)));
    assert!(r.report(2, &report(vec![(0, 9)]), ms(t0, 100)));
    let repairs = drain(&mut r, ms(t0, 100));
    assert_eq!(repairs.len(), 7);
    assert!(repairs.iter().all(|s| s.sbn == 0 && s.repair));
    // Fresh ids after the first pass's.
    assert_eq!(repairs[0].esi, 12);
    // A report written before those repairs could arrive is not acted on.
    assert!(r.report(1, &report(vec![(0, 5)]), ms(t0, 150)));
    assert!(matches!(r.next(ms(t0, 150)), Next::Wait(_)));
    let done = Report {
        heard: 0,
        done: true,
        done_below: 3,
        horizon: 3,
        held: Vec::new(),
        newest: Vec::new(),
    };
    assert!(r.report(1, &done, ms(t0, 220)));
    assert!(r.report(2, &done, ms(t0, 220)));
    assert_eq!(r.next(ms(t0, 220)), Next::End);
    let o = r.outcome();
    assert_eq!(o.decoded, vec![1, 2]);
    assert_eq!(o.repairs, (7, 280));
    assert_eq!(o.first_pass, (36, 36 * 40));
}

#[test]
fn reports_during_a_repair_cycle_add_only_what_it_was_not_ordered_for() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    let report = |held: Vec<(u32, u32)>| Report {
        heard: 0,
        done: false,
        done_below: 0,
        horizon: 3,
        held,
        newest: Vec::new(),
    };
    drain(&mut r, t0);
    // Block 0 needs 10 + 2 - 6 = 6: a cycle of 6 is ordered; 2 go out.
    assert!(r.report(1, &report(vec![(0, 6)]), ms(t0, 100)));
    let mut sent = 0;
    for _ in 0..2 {
        assert!(matches!(r.next(ms(t0, 100)), Next::Send(s) if s.repair));
        sent += 1;
    }
    // Reports written before the cycle reached them: the same need (from
    // another listener) adds nothing; a bigger one (needs 8) adds 2.
    assert!(r.report(2, &report(vec![(0, 6)]), ms(t0, 110)));
    assert!(r.report(3, &report(vec![(0, 4)]), ms(t0, 110)));
    sent += drain(&mut r, ms(t0, 110)).len();
    assert_eq!(sent, 8);
    // The cycle is out; after the holdoff a report starts the next cycle
    // for what is still missing.
    assert!(r.report(3, &report(vec![(0, 10)]), ms(t0, 220)));
    assert_eq!(drain(&mut r, ms(t0, 220)).len(), 2);
    assert_eq!(r.outcome().repairs.0, 10);
    assert_eq!(r.outcome().cycles, (2, 1));
}

#[test]
fn repairs_alternate_with_the_first_pass() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    // Block 0's first pass, then a report for it after the holdoff.
    for _ in 0..12 {
        assert!(matches!(r.next(t0), Next::Send(_)));
    }
    let report = Report {
        heard: 0,
        done: false,
        done_below: 0,
        horizon: 1,
        held: vec![(0, 8)],
        newest: Vec::new(),
    };
    assert!(r.report(1, &report, ms(t0, 100)));
    let next: Vec<_> = (0..4)
        .map(|_| match r.next(ms(t0, 100)) {
            Next::Send(s) => (s.sbn, s.repair),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(next, vec![(0, true), (1, false), (0, true), (1, false)]);
}

#[test]
fn loss_measured_from_a_listeners_counts_inflates_its_repairs() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    let report = |heard, held: Vec<(u32, u32)>| Report {
        heard,
        done: false,
        done_below: 0,
        horizon: 3,
        held,
        newest: Vec::new(),
    };
    assert!(r.report(1, &report(0, vec![]), t0));
    drain(&mut r, t0);
    // Heard 0 of the first 36... so loss is 50% at most once clamped;
    // use a listener that heard 27 of 36 (25% loss).
    let mut r2 = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    assert!(r2.report(1, &report(0, vec![]), t0));
    let mut p = params();
    p.proactive = 20.0; // a long first pass so the sample is large enough
    let mut r3 = RepairRound::<u8>::new(&plan(), 1, p, 40, t0).unwrap();
    assert!(r3.report(1, &report(0, vec![]), t0));
    let sent = drain(&mut r3, t0).len() as u64;
    assert!(sent >= MIN_LOSS_SAMPLE);
    assert!(r3.report(1, &report(sent * 3 / 4, vec![(2, 10)]), ms(t0, 100)));
    let repairs = drain(&mut r3, ms(t0, 100)).len() as u32;
    // Need 2, at 25% loss: 2 / 0.75 + 1.5 sd = 2.67 + 1.63 → 5.
    assert_eq!(repairs, inflate(2, 0.25, SPREAD));
    assert_eq!(repairs, 5);
    drop((r, r2));
}

#[test]
fn a_silent_listener_stops_holding_the_round() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    let waiting = Report {
        heard: 0,
        done: false,
        done_below: 0,
        horizon: 0,
        held: vec![],
        newest: Vec::new(),
    };
    assert!(r.report(1, &waiting, t0));
    drain(&mut r, t0);
    assert_eq!(r.next(ms(t0, 10)), Next::Wait(ms(t0, 1000)));
    assert_eq!(r.next(ms(t0, 1000)), Next::End);
    let o = r.outcome();
    assert_eq!(o.silent, vec![1]);
    assert_eq!(o.undecoded, vec![1]);
}

#[test]
fn budgets_end_the_round() {
    let t0 = Instant::now();
    let mut p = params();
    p.budget_bytes = 40 * 20;
    let mut r = RepairRound::<u8>::new(&plan(), 1, p, 40, t0).unwrap();
    assert_eq!(drain(&mut r, t0).len(), 20);
    assert_eq!(r.outcome().reason, EndReason::ByteBudget);

    let mut p = params();
    p.budget_time = Duration::from_millis(500);
    let mut r = RepairRound::<u8>::new(&plan(), 1, p, 40, t0).unwrap();
    let waiting = Report {
        heard: 0,
        done: false,
        done_below: 0,
        horizon: 0,
        held: vec![],
        newest: Vec::new(),
    };
    assert!(r.report(1, &waiting, t0));
    drain(&mut r, t0);
    assert!(r.report(1, &waiting, ms(t0, 450)));
    assert_eq!(r.next(ms(t0, 460)), Next::Wait(ms(t0, 500)));
    assert_eq!(r.next(ms(t0, 500)), Next::End);
    assert_eq!(r.outcome().reason, EndReason::TimeBudget);
}

#[test]
fn a_blind_round_is_one_pass() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, RepairParams::blind(0.1), 40, t0).unwrap();
    assert_eq!(drain(&mut r, t0).len(), 33);
    assert_eq!(r.outcome().reason, EndReason::Blind);
}

#[test]
fn reports_that_cannot_be_are_refused_whole() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    drain(&mut r, t0);
    let bad = [
        // A block the session does not have.
        Report {
            horizon: u32::MAX,
            held: vec![(3, 0)],
            ..Report::default()
        },
        // Out of order, or repeated.
        Report {
            horizon: 3,
            held: vec![(1, 0), (0, 0)],
            ..Report::default()
        },
        Report {
            horizon: 3,
            held: vec![(1, 0), (1, 0)],
            ..Report::default()
        },
        // Below the blocks it says are done, or beyond its horizon.
        Report {
            done_below: 2,
            horizon: 3,
            held: vec![(1, 0)],
            ..Report::default()
        },
        Report {
            horizon: 1,
            held: vec![(2, 0)],
            ..Report::default()
        },
        Report {
            done_below: 4,
            horizon: 4,
            ..Report::default()
        },
    ];
    for b in &bad {
        assert!(!r.report(9, b, ms(t0, 200)), "{b:?}");
    }
    assert_eq!(r.waiting_for(), 0);
    assert_eq!(r.next(ms(t0, 200)), Next::End);
}

#[test]
fn repairs_never_leave_the_rounds_ids() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 2, params(), 40, t0).unwrap();
    drain(&mut r, t0);
    let span = crate::layout::round_id_span(10);
    let first = crate::layout::round_first_esi(10, 2);
    let report = Report {
        heard: 0,
        done: false,
        done_below: 0,
        horizon: 3,
        held: vec![(0, 0)],
        newest: Vec::new(),
    };
    let mut top = 0;
    for i in 0..100 {
        assert!(r.report(1, &report, ms(t0, 200 + i * 200)));
        for s in drain(&mut r, ms(t0, 200 + i * 200)) {
            top = top.max(s.esi);
        }
    }
    assert!(top < first + span);
}

#[test]
fn a_short_round_waits_for_listeners_that_have_not_spoken_before_it_ends() {
    // A first pass shorter than a report interval: one listener decoded
    // from it and says so at once; another, which lost some, has not
    // reported yet. The round must give it the linger to ask.
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    drain(&mut r, t0);
    let done = Report {
        heard: 36,
        done: true,
        done_below: 3,
        horizon: 3,
        held: vec![],
        newest: Vec::new(),
    };
    assert!(r.report(1, &done, ms(t0, 1)));
    assert_eq!(r.next(ms(t0, 1)), Next::Wait(ms(t0, 50)));
    // The slow one speaks within the linger: its need is served.
    let short = Report {
        heard: 30,
        done: false,
        done_below: 0,
        horizon: 3,
        held: vec![(0, 8), (1, 12), (2, 10)],
        newest: Vec::new(),
    };
    assert!(r.report(2, &short, ms(t0, 110)));
    assert!(
        matches!(r.next(ms(t0, 110)), Next::Send(s) if s.repair && s.sbn == 0),
        "block 0 repaired"
    );
    assert_eq!(r.waiting_for(), 1);
}

#[test]
fn a_listener_that_starts_counting_again_is_not_taken_for_one_that_lost_everything() {
    // 4 blocks of 50 symbols: enough datagrams to measure a loss.
    let plan = ReceivePlan::new(SessionShape::new(16 * 200, 12, 16).unwrap(), 50).unwrap();
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan, 1, params(), 40, t0).unwrap();
    let heard = |heard: u64| Report {
        heard,
        done: false,
        done_below: 0,
        horizon: 0,
        held: vec![],
        newest: Vec::new(),
    };
    let send = |r: &mut RepairRound<u8>, n: usize| {
        for _ in 0..n {
            assert!(matches!(r.next(t0), Next::Send(_)));
        }
    };
    assert!(r.report(1, &heard(0), t0));
    send(&mut r, 70);
    assert!(r.report(1, &heard(63), t0));
    // The client restarts: its new receiver has heard 7 of the next 70.
    send(&mut r, 70);
    assert!(r.report(1, &heard(7), t0));
    send(&mut r, 70);
    assert!(r.report(1, &heard(70), t0));
    let loss = r.outcome().max_loss;
    assert!((0.05..0.15).contains(&loss), "loss {loss}");
}

/// A report from a listener that says the newest id it heard of each block.
fn with_newest(held: Vec<(u32, u32)>, newest: Vec<Option<u32>>) -> Report {
    Report {
        heard: 0,
        done: false,
        done_below: 0,
        horizon: 3,
        held,
        newest,
    }
}

#[test]
fn a_report_with_newest_ids_orders_at_once_counting_what_is_on_its_way() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    drain(&mut r, t0);
    // Within the holdoff: block 0 went out as ids 0..12; the listener heard
    // up to id 9 and holds 5, so ids 10 and 11 are still on their way. It
    // loses nothing (no margin): 10 - 5 = 5 needed, 2 coming, 3 ordered.
    assert!(r.report(1, &with_newest(vec![(0, 5)], vec![Some(9)]), ms(t0, 10)));
    let repairs = drain(&mut r, ms(t0, 10));
    assert_eq!(repairs.len(), 3);
    assert!(
        repairs
            .iter()
            .all(|s| s.sbn == 0 && s.repair && s.esi >= 12)
    );
    // Another listener holding 9 of them, having heard id 11: the 3 repairs
    // on their way cover its 1.
    assert!(r.report(2, &with_newest(vec![(0, 9)], vec![Some(11)]), ms(t0, 20)));
    assert!(matches!(r.next(ms(t0, 20)), Next::Wait(_)));
    // Once the block's latest symbol went out a holdoff ago, what was not
    // heard is lost, not on its way: still holding 9, newest id 13, so
    // repair 14 was lost and 1 more goes.
    assert!(r.report(2, &with_newest(vec![(0, 9)], vec![Some(13)]), ms(t0, 120)));
    assert_eq!(drain(&mut r, ms(t0, 120)).len(), 1);
    assert_eq!(r.outcome().cycles, (2, 0));
}

#[test]
fn a_report_with_newest_ids_orders_a_blocks_repair_before_its_first_pass_ends() {
    let t0 = Instant::now();
    let mut p = params();
    p.holdoff = Duration::from_millis(5);
    p.assumed_loss = 0.2;
    let mut r = RepairRound::<u8>::new(&plan(), 1, p, 40, t0).unwrap();
    // One datagram a millisecond: block 0's first pass is ids 0..12.
    let mut t = 0;
    let mut send = |r: &mut RepairRound<u8>, n: usize| {
        (0..n)
            .map(|_| {
                let s = match r.next(ms(t0, t)) {
                    Next::Send(s) => s,
                    other => panic!("{other:?}"),
                };
                t += 1;
                (s.sbn, s.esi, s.repair)
            })
            .collect::<Vec<_>>()
    };
    send(&mut r, 3);
    // 9 of the pass to go, 9 ms away: too early to judge.
    assert!(r.report(1, &with_newest(vec![(0, 1)], vec![Some(2)]), ms(t0, 3)));
    assert_eq!(r.outcome().cycles, (0, 0));
    send(&mut r, 5);
    // 4 to go, 4 ms away: 12 - 4 = 8 needed at 20% loss is 10 symbols on
    // average (the spread waits for reports after the pass), 4 of them the
    // rest of the pass: 6 ordered, sent after the pass.
    assert!(r.report(1, &with_newest(vec![(0, 4)], vec![Some(7)]), ms(t0, 8)));
    assert_eq!(r.outcome().cycles, (1, 0));
    let next = send(&mut r, 6);
    assert_eq!(
        next,
        vec![
            (0, 8, false),
            (0, 9, false),
            (0, 10, false),
            (0, 11, false),
            (0, 12, true),
            (1, 0, false)
        ]
    );
    let rest = send(&mut r, 28);
    assert_eq!(rest.iter().filter(|s| s.0 == 0).count(), 5);
}

#[test]
fn a_newest_id_not_sent_yet_is_not_believed() {
    let t0 = Instant::now();
    let mut r = RepairRound::<u8>::new(&plan(), 1, params(), 40, t0).unwrap();
    drain(&mut r, t0);
    // Within the holdoff a listener claims to have heard id 10,000 of block
    // 0 (only 0..12 went out): the claim sizes nothing, and the report is
    // taken as one without newest ids (too early to act on).
    assert!(r.report(
        1,
        &with_newest(vec![(0, 0)], vec![Some(10_000)]),
        ms(t0, 10)
    ));
    assert!(matches!(r.next(ms(t0, 10)), Next::Wait(_)));
    assert_eq!(r.outcome().cycles, (0, 0));
    // A newest list that does not match the held blocks is ignored too.
    assert!(r.report(
        1,
        &with_newest(vec![(0, 0)], vec![Some(3), Some(4)]),
        ms(t0, 20)
    ));
    assert!(matches!(r.next(ms(t0, 20)), Next::Wait(_)));
}
