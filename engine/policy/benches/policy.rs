//! Time per policy call with the shipped scripts (target: under 5 µs).
//!
//! Run: `cargo bench -p haifu-policy --bench policy`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use haifu_policy::{ClientFacts, PolicyPaths, PolicySet, RoundFacts, ServiceFacts};
use jiff::Timestamp;

fn policy(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../policies")
        .join(name)
}

fn bench(c: &mut Criterion) {
    let set = PolicySet::load(&PolicyPaths {
        retry: Some(policy("retry.rhai")),
        restrict: Some(policy("restrict.rhai")),
        disconnect: Some(policy("disconnect.rhai")),
        ..PolicyPaths::default()
    })
    .unwrap();
    let facts = RoundFacts {
        round: 1,
        rounds: 3,
        delivered: 50,
        total: 100,
        now: "2026-12-01T02:30:00+09:00[Asia/Tokyo]".parse().unwrap(),
        start: "2026-12-01T02:00:00+09:00".parse().unwrap(),
        deadline: "2026-12-04T02:00:00+09:00".parse().unwrap(),
        window: Some((120, 300)),
    };
    let client = ClientFacts {
        id: "pos-0042".into(),
        version: Some("2.3.0".parse().unwrap()),
        newest: "2.4.0".parse().unwrap(),
        behind: 1,
        last_contact: Some("2026-11-30T00:00:00Z".parse().unwrap()),
        state: "undelivered".into(),
    };
    let service = ServiceFacts {
        name: "loyalty-v2".into(),
        since: "2.4.0".parse().unwrap(),
    };
    let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    // Sanity: the benchmark measures the scripts, not the fallbacks.
    assert!(set.next_round(&facts).fallback.is_none());
    assert!(set.allow(&client, &service, now).fallback.is_none());

    c.bench_function("next_round (policies/retry.rhai)", |b| {
        b.iter(|| set.next_round(black_box(&facts)));
    });
    c.bench_function("allow (policies/restrict.rhai)", |b| {
        b.iter(|| set.allow(black_box(&client), black_box(&service), now));
    });
    c.bench_function("disconnect (policies/disconnect.rhai)", |b| {
        b.iter(|| set.disconnect(black_box(&client), now));
    });
    // The floor: building the facts map and one Rhai call of a one-line
    // script, to tell the host's overhead from the scripts' own cost.
    let dir = std::env::temp_dir().join(format!("haifu-policy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trivial = dir.join("trivial.rhai");
    std::fs::write(
        &trivial,
        "fn next_round(ctx) { 60 }\nfn allow(client, service) { true }\n",
    )
    .unwrap();
    let floor = PolicySet::load(&PolicyPaths {
        retry: Some(trivial.clone()),
        restrict: Some(trivial),
        ..PolicyPaths::default()
    })
    .unwrap();
    c.bench_function("next_round (one-line script)", |b| {
        b.iter(|| floor.next_round(black_box(&facts)));
    });
    c.bench_function("allow (one-line script)", |b| {
        b.iter(|| floor.allow(black_box(&client), black_box(&service), now));
    });
    let _ = std::fs::remove_dir_all(&dir);
    let defaults = PolicySet::defaults();
    c.bench_function("allow (safe default, no script)", |b| {
        b.iter(|| defaults.allow(black_box(&client), black_box(&service), now));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
