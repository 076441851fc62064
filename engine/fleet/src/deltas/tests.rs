#![allow(clippy::unwrap_used)]

use super::*;
use haifu_core::{ManifestBody, SigningKey};
use haifu_ledger::{ClientUpdate, RunStatus, Transition};

/// A run of 1.0.0 listing `c1` as a straggler, running, in its delta
/// window until `until`.
fn straggler_ledger(dir: &Path, until: &str) -> (Ledger, i64) {
    let mut l = Ledger::open(&dir.join("l.sqlite")).unwrap();
    let body: ManifestBody = serde_json::from_value(serde_json::json!({
        "format": 1, "name": "app", "version": "1.0.0", "size": 3,
        "sha3_256": Digest::from_bytes([1; 32]).to_hex(),
        "created_at": "2026-12-01T00:00:00Z", "compression": "zstd", "stored_size": 3,
    }))
    .unwrap();
    l.record_version(&Manifest::sign(body, &SigningKey::from_seed([7; 32])))
        .unwrap();
    let run = haifu_ledger::testing::TestRun::new()
        .clients([("c1", "relay-a")])
        .create(&mut l)
        .unwrap();
    let state = serde_json::json!({
        "step": 3, "finished": [],
        "current": {"step": "delta", "until": until},
    })
    .to_string();
    l.transition(
        run,
        &Transition {
            state,
            status: RunStatus::Running,
            next_wake: None,
            updates: vec![ClientUpdate::AuditPending],
            events: Vec::new(),
        },
    )
    .unwrap();
    (l, run)
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn report(l: &mut Ledger, v: &str) {
    l.touch_client(
        "c1",
        Some("relay-a"),
        Some("app"),
        Some(v),
        "2026-12-02T00:00:00Z",
    )
    .unwrap();
}

/// A straggler of a run of 1.0.0 that has since reported 2.0.0 (it was
/// updated another way) is offered nothing: an old delta would take it
/// back.
#[test]
fn a_straggler_is_never_offered_an_older_version() {
    let dir = tempfile::tempdir().unwrap();
    let (mut l, _) = straggler_ledger(dir.path(), "2026-12-03T00:00:00Z");
    let now = at("2026-12-02T12:00:00Z");
    report(&mut l, "0.9.0");
    assert_eq!(
        target_for(&l, "c1", now).map(|(_, m)| m.body.version),
        Some("1.0.0".to_owned())
    );
    report(&mut l, "2.0.0");
    assert!(target_for(&l, "c1", now).is_none());
    report(&mut l, "1.0.0");
    assert!(target_for(&l, "c1", now).is_none());
}

/// Issue 17's downgrade: a run's stragglers are served only while the
/// run is running and its delta window is open; after `delta.until`,
/// or once the run is over, its old version is offered to nobody.
#[test]
fn a_straggler_is_served_only_inside_an_open_delta_window_of_a_running_run() {
    let dir = tempfile::tempdir().unwrap();
    let (mut l, run) = straggler_ledger(dir.path(), "2026-12-03T00:00:00Z");
    report(&mut l, "0.9.0");
    let offered = |l: &Ledger, now: &str| target_for(l, "c1", at(now)).map(|(r, _)| r);
    assert_eq!(offered(&l, "2026-12-02T23:59:59Z"), Some(run));
    assert_eq!(offered(&l, "2026-12-03T00:00:00Z"), None, "window closed");
    assert_eq!(offered(&l, "2026-12-04T00:00:00Z"), None, "window closed");
    // Before the delta step has begun (no window in the snapshot): no.
    let (snapshot, done) = (r#"{"step": 2, "finished": []}"#, RunStatus::Done);
    l.transition(
        run,
        &Transition {
            state: snapshot.into(),
            status: RunStatus::Running,
            next_wake: None,
            updates: Vec::new(),
            events: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(offered(&l, "2026-12-02T12:00:00Z"), None, "no window yet");
    // Finished, even with a window that reads as open: no.
    let open = serde_json::json!({
        "step": 3, "finished": [],
        "current": {"step": "delta", "until": "2026-12-03T00:00:00Z"},
    })
    .to_string();
    l.transition(
        run,
        &Transition {
            state: open,
            status: done,
            next_wake: None,
            updates: Vec::new(),
            events: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(offered(&l, "2026-12-02T12:00:00Z"), None, "run is over");
}

/// A pause means nothing new installs: a paused run's straggler is
/// offered nothing inside its open window, and offered again once the run
/// is resumed; aborted, never again.
#[test]
fn a_paused_run_offers_its_stragglers_nothing_until_resumed() {
    use haifu_ledger::RunOrder;
    let dir = tempfile::tempdir().unwrap();
    let (mut l, run) = straggler_ledger(dir.path(), "2026-12-03T00:00:00Z");
    report(&mut l, "0.9.0");
    let now = "2026-12-02T12:00:00Z";
    let offered = |l: &Ledger| target_for(l, "c1", at(now)).map(|(r, _)| r);
    assert_eq!(offered(&l), Some(run));
    l.order_run(run, RunOrder::Pause, "ops", Some("shop hours"))
        .unwrap();
    assert_eq!(offered(&l), None, "paused");
    l.order_run(run, RunOrder::Resume, "ops", None).unwrap();
    assert_eq!(offered(&l), Some(run), "resumed");
    l.order_run(run, RunOrder::Abort, "ops", None).unwrap();
    assert_eq!(offered(&l), None, "aborted");
}

/// A store in a fresh folder holding `old` and `new`: the folder, the
/// store and their digests.
fn stored_pair(old: &[u8], new: &[u8]) -> (tempfile::TempDir, Store, Digest, Digest) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let put = |b: &[u8]| {
        store
            .put_reader(b, Path::new("v"), &mut |_| {})
            .unwrap()
            .digest
    };
    let (from, to) = (put(old), put(new));
    (dir, store, from, to)
}

/// Issue 16: a cached delta this build's clients would refuse (here a
/// version-2 bsdiff delta, whose body format changed under that
/// version) is never served from the cache: it is made again and the
/// cache file replaced. A current one is served as cached.
#[test]
fn a_cached_delta_clients_would_refuse_is_made_again() {
    use sha3::{Digest as _, Sha3_256};
    let old: Vec<u8> = (0..40_000u32).map(|i| (i * 7 / 3) as u8).collect();
    let mut new = old.clone();
    new[1000..1010].copy_from_slice(b"changed!!!");
    let (dir, store, from, to) = stored_pair(&old, &new);
    let cache = dir.path().join("deltas");
    let made = delta_bytes(&store, &cache, &from, &to, &MakeOptions::background()).unwrap();
    assert_eq!(haifu_delta::apply_to_vec(&old, &made).unwrap(), new);
    let name = cache_key(&from, &to, &MakeOptions::background()).file_name();
    let path = cache.join(name);
    assert_eq!(std::fs::read(&path).unwrap(), made, "cached");
    // What a build of the retired format left under this name.
    let mut stale = made.clone();
    stale[8..10].copy_from_slice(&2u16.to_le_bytes());
    let check = Sha3_256::digest(&stale[..104]);
    stale[104..112].copy_from_slice(&check[..8]);
    std::fs::write(&path, &stale).unwrap();
    let served = delta_bytes(&store, &cache, &from, &to, &MakeOptions::background()).unwrap();
    assert_eq!(served, made, "made again, not the stale bytes");
    assert_eq!(std::fs::read(&path).unwrap(), made, "cache file replaced");
    assert_eq!(
        delta_bytes(&store, &cache, &from, &to, &MakeOptions::background()).unwrap(),
        made
    );
}

/// Code-like bytes: 16-byte records, each a call to an absolute
/// address among filler; the new version has 64 bytes more in front,
/// so every target moves by 64, the case bsdiff is made for.
fn shifted_code(records: u32) -> (Vec<u8>, Vec<u8>) {
    let mut x = 0x9e37_79b9u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let (mut old, mut new) = (Vec::new(), vec![0x90; 64]);
    for _ in 0..records {
        let target = next() % 1_000_000;
        let filler: Vec<u8> = (0..11).map(|_| (next() % 7) as u8).collect();
        old.push(0xe8);
        old.extend(target.to_le_bytes());
        old.extend(&filler);
        new.push(0xe8);
        new.extend((target + 64).to_le_bytes());
        new.extend(&filler);
    }
    (old, new)
}

/// Issue 16: where bsdiff makes the smaller delta, a client from before
/// the bsdiff method gets a patch-from delta in the format it reads
/// (made once and cached), not the full copy; a current client gets
/// the bsdiff one.
#[test]
fn a_client_without_bsdiff_gets_a_patch_from_delta() {
    use haifu_delta::Method;
    let (old, new) = shifted_code(4000);
    let (dir, store, from, to) = stored_pair(&old, &new);
    let cache = dir.path().join("deltas");
    let method = |d: &[u8]| haifu_delta::PatchReader::new(d).unwrap().header().method;

    let current = delta_for(&store, &cache, &from, &to, true).unwrap();
    assert_eq!(
        method(&current),
        Method::Bsdiff,
        "the pair is bsdiff's case"
    );
    let for_old = delta_for(&store, &cache, &from, &to, false).unwrap();
    assert_eq!(method(&for_old), Method::PatchFrom);
    assert_eq!(
        for_old[8..10],
        1u16.to_le_bytes(),
        "format 1: patch-from only"
    );
    assert!(
        for_old.len() * 2 < new.len(),
        "still a delta: {} of {} bytes",
        for_old.len(),
        new.len()
    );
    assert_eq!(haifu_delta::apply_to_vec(&old, &for_old).unwrap(), new);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2, "both cached");
    assert_eq!(
        delta_for(&store, &cache, &from, &to, false).unwrap(),
        for_old
    );
}
