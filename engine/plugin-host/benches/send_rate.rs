//! The relay's send path on one core: 1,448-byte datagrams (the carousel's
//! size) to a loopback multicast group that nobody joined, through the
//! multicast plugin and the loader, unpaced, one thread. One `send` per
//! datagram against `send_batch` of 32 and 64, in the same run. Prints a
//! table of datagrams/s and Gbit/s, by wall time and by the sending
//! thread's CPU time (the figure that holds on a busy machine), and the
//! ratio to single sends.
//!
//! `flock /work/bench.lock cargo bench -p haifu-plugin-host --bench send_rate`
//!
//! Each case runs 5 times in rotating order; medians are shown.
//! `HAIFU_BENCH_SCALE=0.1` shrinks every case for a quick look. Issue 13's
//! target is the relay sending 1 Gbit/s of carousel on one core: the send
//! path must be far above it, leaving the core to the encoding.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use haifu_plugin_host::DatagramGroup;
use nix::sys::resource::{UsageWho, getrusage};

/// The carousel's datagram: header, symbol and tag.
const DATAGRAM: usize = 1448;
/// What it occupies on an Ethernet link: + UDP 8, IPv4 20, Ethernet 14.
const LINK: usize = DATAGRAM + 42;
const RUNS: usize = 5;
const BATCHES: [usize; 3] = [1, 32, 64];

fn scale() -> f64 {
    std::env::var("HAIFU_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU time of the calling thread, user and system.
fn thread_cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_THREAD).unwrap();
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
    };
    t(u.user_time()) + t(u.system_time())
}

/// One run: `n` datagrams in batches of `batch` (1: `send`). Returns
/// (wall, thread CPU).
fn run(
    group: &DatagramGroup,
    datagrams: &[Vec<u8>],
    n: usize,
    batch: usize,
) -> (Duration, Duration) {
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    let cpu = thread_cpu();
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        if batch == 1 {
            group.send(refs[sent % refs.len()]).unwrap();
            sent += 1;
        } else {
            // A batch never wraps the ring, so each call sees `batch`
            // datagrams (or the last few).
            let start = sent % refs.len();
            let len = batch.min(n - sent).min(refs.len() - start);
            sent += group.send_batch(&refs[start..start + len]).unwrap();
        }
    }
    (t.elapsed(), thread_cpu() - cpu)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` only builds it.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "send-rate benchmark: run with `cargo bench -p haifu-plugin-host --bench send_rate`"
        );
        return;
    }
    let plugin = common::load("haifu-transport-multicast");
    let port = common::unique_port();
    // The relay's keys (engine/fleet/src/relay/broadcaster.rs).
    let group = plugin
        .open_group(&format!(
            "group=239.255.93.1:{port}\ninterface=127.0.0.1\nloopback=true\njoin=false\nttl=1"
        ))
        .unwrap();
    assert!(group.sends_batches());
    // 256 distinct datagrams, cycled, as a carousel's would be.
    let datagrams: Vec<Vec<u8>> = (0..256u32)
        .map(|i| {
            let mut d = vec![0xA5u8; DATAGRAM];
            d[..4].copy_from_slice(&i.to_be_bytes());
            d
        })
        .collect();
    let n = ((300_000.0 * scale()) as usize).max(1000);
    run(&group, &datagrams, n / 10, 64); // warm up
    println!(
        "running: {RUNS} runs per case of {n} datagrams of {DATAGRAM} bytes, medians; scale {}",
        scale()
    );
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); BATCHES.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); BATCHES.len()];
    for r in 0..RUNS {
        // Rotate which case goes first, so none always meets a warmer or
        // quieter machine.
        for k in 0..BATCHES.len() {
            let i = (k + r) % BATCHES.len();
            let (w, c) = run(&group, &datagrams, n, BATCHES[i]);
            wall[i].push(n as f64 / w.as_secs_f64());
            cpu[i].push(n as f64 / c.as_secs_f64().max(1e-9));
        }
    }
    let wall: Vec<f64> = wall.into_iter().map(median).collect();
    let cpu: Vec<f64> = cpu.into_iter().map(median).collect();
    let gbit = |dps: f64, bytes: usize| dps * bytes as f64 * 8.0 / 1e9;
    println!();
    println!(
        "| send path | datagrams/s (wall) | Gbit/s payload (wall) | Gbit/s on an Ethernet link (wall) | datagrams per CPU-second | Gbit/s payload per core | vs single send (CPU) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, batch) in BATCHES.iter().enumerate() {
        let case = if *batch == 1 {
            "send, one per call".to_owned()
        } else {
            format!("send_batch of {batch}")
        };
        println!(
            "| {case} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2}x |",
            wall[i],
            gbit(wall[i], DATAGRAM),
            gbit(wall[i], LINK),
            cpu[i],
            gbit(cpu[i], DATAGRAM),
            cpu[i] / cpu[0]
        );
    }
}
