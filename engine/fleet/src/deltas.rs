//! The master's unicast path for stragglers (steps 107-109): a client that
//! a live run lists as undelivered asks, on boot, for what turns its
//! installed version into the run's; it gets a delta (zstd patch-from or
//! bsdiff, whichever is smaller; built once per pair and cached under
//! `home/deltas/`), or the compressed full artifact when its version is
//! unknown or the delta is not smaller.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use haifu_core::{Digest, Manifest};
use haifu_delta::{Delivery, DeliveryRule, DeltaOffer, MakeOptions, cache_key};
use haifu_ledger::{Ledger, TrafficKind};
use haifu_protocol::{ArtifactRef, DeltaBody, DeltaRequest, DeltaResponse, ErrorCode, Message};
use haifu_store::Store;

use crate::common::Shutdown;
use crate::link::Link;
use crate::master::TrafficLog;

/// The version a straggler should have at `now`: that of the newest live
/// run still running that lists it as undelivered, while that run's delta
/// window is open (`delta.until`). Outside the window nothing is offered:
/// the fleet may have moved on, and an old run's delta would take the
/// client back.
pub fn target_for(ledger: &Ledger, client: &str, now: jiff::Timestamp) -> Option<(i64, Manifest)> {
    let row = ledger.running_straggler_run(client).ok()??;
    let open = haifu_runtime::machine::RunState::of_run(&row)
        .ok()
        .and_then(|s| s.delta_until())
        .is_some_and(|until| now < until);
    if !open {
        tracing::debug!(
            client,
            run = row.id,
            "the run's delta window is not open; nothing offered"
        );
        return None;
    }
    let (run, artifact, version) = (row.id, row.artifact, row.version);
    // A client that reported this artifact at the run's version or newer
    // (it updated some other way) is offered nothing: versions only move
    // forward.
    let reported = ledger
        .client(client)
        .ok()
        .flatten()
        .filter(|c| c.artifact.as_deref() == Some(artifact.as_str()))
        .and_then(|c| c.version)
        .and_then(|v| v.parse::<haifu_core::Version>().ok());
    let target: haifu_core::Version = version.parse().ok()?;
    if !haifu_core::moves_forward(reported.as_ref(), &target) {
        return None;
    }
    let m = ledger.manifest(&artifact, &version).ok()??;
    Some((run, m))
}

/// The artifact reference of a manifest.
pub fn artifact_ref(m: &Manifest) -> Option<ArtifactRef> {
    Some(ArtifactRef {
        name: m.body.name.parse().ok()?,
        version: m.body.version.parse().ok()?,
        digest: m.body.sha3_256,
    })
}

fn read_object(store: &Store, digest: &Digest) -> Result<Vec<u8>, String> {
    let mut r = store.open_object(digest).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The cached delta `from → to`, built (and cached) if needed.
fn delta_bytes(store: &Store, dir: &Path, from: &Digest, to: &Digest) -> Result<Vec<u8>, String> {
    let options = MakeOptions::background();
    let name = cache_key(from, to, &options).file_name();
    let path: PathBuf = dir.join(&name);
    // One build per pair: stragglers asking at once wait for the first
    // build, then read the cache.
    let lock = {
        static BUILDING: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
        let mut map = BUILDING
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(name).or_default())
    };
    let _one = lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(b) = std::fs::read(&path) {
        // The name carries the format version, so a delta of an older
        // format is not found under it; this catches the rest (a file
        // copied in by hand, one written by a build whose body format
        // differed under the same version): never serve a delta this
        // build would refuse, make it again.
        match cached_header(&b) {
            Ok(()) => return Ok(b),
            Err(e) => {
                tracing::warn!(file = %path.display(), "cached delta not served, made again: {e}")
            }
        }
    }
    let old = read_object(store, from)?;
    let new = read_object(store, to)?;
    let started = std::time::Instant::now();
    let d = haifu_delta::make(&old, &new, &options).map_err(|e| e.to_string())?;
    crate::metrics::delta_built(d.bytes.len());
    tracing::info!(
        from = %from, to = %to, bytes = d.len(), artifact_bytes = new.len(),
        method = %d.header.method, ms = started.elapsed().as_millis() as u64, "delta built"
    );
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    // Durable before it is served: a crash must not leave a cached delta
    // that is only partly on disk.
    haifu_store::write_atomic(&path, &d.bytes, false)
        .map_err(|e| format!("caching the delta: {e}"))?;
    Ok(d.bytes)
}

/// Checks a cached delta's header as a client will: magic, format version
/// (retired ones refused), header check and fields.
fn cached_header(bytes: &[u8]) -> Result<(), haifu_delta::DeltaError> {
    haifu_delta::PatchReader::new(bytes).map(|_| ())
}

/// Builds, in the background, the deltas the stragglers of running live
/// runs will ask for (each pair once, cached as [`serve`] reads them), so a
/// straggler that boots after the audit gets its delta at once.
pub(crate) fn prebuild(store: &Store, ledger_path: &Path, dir: &Path, shutdown: &Shutdown) {
    let ledger = match Ledger::open(ledger_path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("delta prebuild cannot open the ledger: {e}");
            return;
        }
    };
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    while !shutdown.is_set() {
        let pairs = ledger.straggler_pairs().unwrap_or_else(|e| {
            tracing::warn!("delta prebuild: {e}");
            Vec::new()
        });
        for pair in pairs {
            if shutdown.is_set() || seen.contains(&pair) {
                continue;
            }
            let (artifact, from, to) = &pair;
            let digest = |v: &str| {
                ledger
                    .manifest(artifact, v)
                    .ok()
                    .flatten()
                    .map(|m| m.body.sha3_256)
            };
            if let (Some(f), Some(t)) = (digest(from), digest(to))
                && store.contains(&f)
            {
                match delta_bytes(store, dir, &f, &t) {
                    Ok(d) => tracing::debug!(%artifact, %from, %to, bytes = d.len(), "delta ready"),
                    Err(e) => tracing::warn!(%artifact, %from, %to, "no delta: {e}"),
                }
            }
            seen.insert(pair);
        }
        shutdown.sleep(Duration::from_secs(1));
    }
}

/// Answers one delta request on `link`.
pub(crate) fn serve(
    link: &Link,
    store: &Store,
    ledger_path: &Path,
    dir: &Path,
    req: &DeltaRequest,
    traffic: &TrafficLog,
) {
    let refuse = |reason: String| {
        tracing::warn!(client = link.peer(), "delta refused: {reason}");
        crate::metrics::delta_refused();
        let _ = link.send(&Message::DeltaResponse(DeltaResponse {
            transfer: req.transfer,
            to: req.to,
            body: DeltaBody::Refused { reason },
        }));
    };
    if req.client != link.peer() {
        link.error(
            ErrorCode::Unexpected,
            req.transfer,
            "delta for another client",
        );
        return;
    }
    let ledger = match Ledger::open(ledger_path) {
        Ok(l) => l,
        Err(e) => return refuse(format!("ledger: {e}")),
    };
    let Some((run, target)) = target_for(&ledger, &req.client, jiff::Timestamp::now()) else {
        return refuse(
            "no running live run with an open delta window lists this client as a straggler".into(),
        );
    };
    if target.body.sha3_256 != req.to {
        return refuse(format!("the version to have is {}", target.body.version));
    }
    let full = match std::fs::read(store.object_path(&req.to)) {
        Ok(b) => b,
        Err(e) => return refuse(format!("store: {e}")),
    };
    // A delta is built only from the version the ledger records for this
    // client (its own version report), so a straggler cannot make the
    // master build deltas from any digest it stores.
    let recorded = ledger
        .client(&req.client)
        .ok()
        .flatten()
        .and_then(|c| Some((c.artifact?, c.version?)))
        .and_then(|(a, v)| ledger.manifest(&a, &v).ok().flatten())
        .map(|m| m.body.sha3_256);
    if store.contains(&req.from) && recorded != Some(req.from) {
        return refuse(format!(
            "{} is not the version recorded for {} (report it first)",
            req.from, req.client
        ));
    }
    let from_known = store.contains(&req.from);
    let delta = if from_known {
        delta_bytes(store, dir, &req.from, &req.to)
            .map_err(|e| tracing::warn!("no delta {} → {}: {e}", req.from, req.to))
            .ok()
    } else {
        None
    };
    // A client from before the bsdiff method cannot apply its deltas: it
    // gets the full copy rather than a delta it refuses every time.
    let knows_bsdiff = link.session().has(haifu_protocol::features::DELTA_BSDIFF);
    let delta = delta.filter(|d| {
        knows_bsdiff
            || !matches!(
                haifu_delta::PatchReader::new(&d[..]).map(|r| r.header().method),
                Ok(haifu_delta::Method::Bsdiff)
            )
    });
    let offer = match (&delta, from_known) {
        (Some(d), _) => DeltaOffer::Delta {
            bytes: d.len() as u64,
        },
        (None, false) => DeltaOffer::UnknownBase,
        (None, true) => DeltaOffer::Unavailable,
    };
    let manifest = target.to_json().into_bytes();
    let (body, payload, kind) = match DeliveryRule::default().choose(offer, full.len() as u64) {
        Delivery::Delta {
            delta_bytes,
            full_bytes,
        } => {
            let d = delta.unwrap_or_default();
            // The method is in the delta's own header: the audit counts it.
            let method = haifu_delta::PatchReader::new(&d[..]).map(|r| r.header().method);
            tracing::info!(
                client = link.peer(),
                delta_bytes,
                full_bytes,
                method = %method.as_ref().map_or("unreadable", |m| m.as_str()),
                "sending a delta"
            );
            let kind = match method {
                Ok(haifu_delta::Method::Bsdiff) => TrafficKind::DeltaBsdiff,
                _ => TrafficKind::Delta,
            };
            (
                DeltaBody::Delta {
                    size: d.len() as u64,
                    manifest,
                },
                d,
                kind,
            )
        }
        Delivery::Full { full_bytes, reason } => {
            tracing::info!(
                client = link.peer(),
                full_bytes,
                ?reason,
                "sending the full artifact"
            );
            (
                DeltaBody::Full {
                    size: full.len() as u64,
                    manifest,
                },
                full,
                TrafficKind::Full,
            )
        }
    };
    if link
        .send(&Message::DeltaResponse(DeltaResponse {
            transfer: req.transfer,
            to: req.to,
            body,
        }))
        .is_err()
    {
        return;
    }
    // A transfer that was cut goes on where the client's bytes end (the
    // same pair gives the same cached delta, or the same stored object),
    // when that is inside this payload; otherwise from the start, which
    // the client sees in the first chunk's offset.
    let start = Some(req.resume_at).filter(|at| *at > 0 && *at < payload.len() as u64);
    if let Some(at) = start {
        tracing::info!(
            client = link.peer(),
            resume_at = at,
            bytes = payload.len() as u64 - at,
            "resuming a cut transfer"
        );
    }
    let start = start.unwrap_or(0);
    for chunk in haifu_protocol::chunk::split_from(
        req.transfer,
        &payload,
        start,
        haifu_protocol::limits::MAX_CHUNK_LEN,
    ) {
        if link.send(&Message::DataChunk(chunk)).is_err() {
            return;
        }
    }
    traffic.record(run, link.peer(), kind, None, payload.len() as u64 - start);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use haifu_core::{ManifestBody, SigningKey};
    use haifu_ledger::{ClientUpdate, NewRun, RunFleet, RunStatus, Transition};

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
        let clients = vec![("c1".to_owned(), "relay-a".to_owned())];
        let run = l
            .create_run(&NewRun {
                workflow: "w.yaml",
                name: "w",
                artifact: "app",
                version: "1.0.0",
                fleet: &RunFleet::Live,
                state: "{}",
                next_wake: None,
                clients: &clients,
            })
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

    /// Issue 16: a cached delta this build's clients would refuse (here a
    /// version-2 bsdiff delta, whose body format changed under that
    /// version) is never served from the cache: it is made again and the
    /// cache file replaced. A current one is served as cached.
    #[test]
    fn a_cached_delta_clients_would_refuse_is_made_again() {
        use sha3::{Digest as _, Sha3_256};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let old: Vec<u8> = (0..40_000u32).map(|i| (i * 7 / 3) as u8).collect();
        let mut new = old.clone();
        new[1000..1010].copy_from_slice(b"changed!!!");
        let put = |b: &[u8]| {
            store
                .put_reader(b, Path::new("v"), &mut |_| {})
                .unwrap()
                .digest
        };
        let (from, to) = (put(&old), put(&new));
        let cache = dir.path().join("deltas");
        let made = delta_bytes(&store, &cache, &from, &to).unwrap();
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
        let served = delta_bytes(&store, &cache, &from, &to).unwrap();
        assert_eq!(served, made, "made again, not the stale bytes");
        assert_eq!(std::fs::read(&path).unwrap(), made, "cache file replaced");
        assert_eq!(delta_bytes(&store, &cache, &from, &to).unwrap(), made);
    }
}
