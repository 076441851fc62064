//! The fleet simulation: the master's, the relays' and the clients' cores
//! wired together in one process over a seeded network model, with the
//! real ledger (SQLite, in a RAM folder where there is one), a clock the
//! simulation drives, and faults at any step: links cut, messages held
//! back on one link while others flow, ledger writes that fail, and any
//! core killed and started again from what it keeps on disk. After every
//! step the invariants are checked; at the end the faults stop, everyone
//! comes back, and the audit must equal the truth. (FoundationDB's and
//! TigerBeetle's simulation testing are the models.)
//!
//! A failing seed is printed; `HAIFU_SIM_SEED=N cargo test -p haifu-fleet
//! --lib sim` replays it alone (`HAIFU_SIM_TRACE=1` prints every message
//! delivered), `HAIFU_SIM_SEEDS=N` runs N seeds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod world;

use world::World;

/// Seeds run by `cargo test` unless `HAIFU_SIM_SEEDS` says otherwise.
const SEEDS: u64 = 5000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// An invariant a seed broke: the failed check's message (the world's
/// checks are assertions, so that a seed replayed alone stops where it
/// broke).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Broken(String);

/// Runs one seed; a broken invariant comes back with its message.
fn run_seed(seed: u64) -> Result<world::Totals, Broken> {
    std::panic::catch_unwind(|| World::new(seed).run()).map_err(|e| {
        let message = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()));
        Broken(message.unwrap_or_default())
    })
}

#[test]
fn the_fleet_keeps_its_invariants_under_faults_for_every_seed() {
    let seeds: Vec<u64> = match env_u64("HAIFU_SIM_SEED") {
        Some(one) => vec![one],
        None => (0..env_u64("HAIFU_SIM_SEEDS").unwrap_or(SEEDS)).collect(),
    };
    let started = std::time::Instant::now();
    // Seeds are independent: one thread per CPU, each taking every n-th.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results: Vec<(u64, Result<world::Totals, Broken>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<u64> = seeds.iter().copied().skip(t).step_by(threads).collect();
                s.spawn(move || {
                    mine.into_iter()
                        .map(|seed| (seed, run_seed(seed)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut totals = world::Totals::default();
    for (seed, result) in results {
        match result {
            Ok(t) => totals.add(&t),
            Err(why) => panic!(
                "seed {seed} broke the fleet: {why}\nreplay: HAIFU_SIM_SEED={seed} HAIFU_SIM_TRACE=1 cargo test -p haifu-fleet --lib sim -- --nocapture"
            ),
        }
    }
    eprintln!(
        "fleet simulation: {} seeds in {:.1} s on {threads} threads; {totals}",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "fleet simulation rounds: {} seeds; {}",
        seeds.len(),
        totals.rounds
    );
    // The faults really happened, and clients really completed.
    if seeds.len() >= 100 {
        assert!(totals.master_kills > 0 && totals.relay_kills > 0 && totals.client_kills > 0);
        assert!(totals.failed_writes > 0 && totals.cuts > 0);
        assert!(totals.installed > 0 && totals.delivered > 0);
        let r = &totals.rounds;
        assert!(r.delivered > 0 && r.whole > 0);
        // About one seed in seventy drops a listener for silence.
        if seeds.len() >= 1000 {
            assert!(r.silent > 0 && r.by_budget > 0);
            assert!(totals.put_back > 0, "no version was put back outside haifu");
        }
    }
}
