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
/// window is open (`delta.until`) and no operator has paused it. Outside
/// the window nothing is offered: the fleet may have moved on, and an old
/// run's delta would take the client back. While paused nothing is
/// either: a pause means nothing new installs, and after the resume the
/// same question is answered again.
pub fn target_for(ledger: &Ledger, client: &str, now: jiff::Timestamp) -> Option<(i64, Manifest)> {
    let row = ledger.running_straggler_run(client).ok()??;
    if let Some(p) = &row.paused {
        tracing::debug!(
            client,
            run = row.id,
            by = p.by,
            "the run is paused; nothing offered"
        );
        return None;
    }
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

/// Why a pair has no delta to serve.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoDelta {
    /// A version's object could not be read back from the store.
    #[error("reading {digest} from the store: {source}")]
    Store {
        /// The object.
        digest: Digest,
        /// What the store said.
        #[source]
        source: haifu_store::StoreError,
    },
    /// A version's object could not be read back from the store.
    #[error("reading {digest} from the store: {source}")]
    Read {
        /// The object.
        digest: Digest,
        /// What reading said.
        #[source]
        source: std::io::Error,
    },
    /// The delta could not be made.
    #[error("making the delta: {0}")]
    Make(#[from] haifu_delta::DeltaError),
    /// The delta was made but could not be cached (it is not served
    /// uncached: a cut transfer resumes from the cached bytes).
    #[error("caching the delta in {}: {source}", dir.display())]
    Cache {
        /// The cache folder.
        dir: PathBuf,
        /// What writing said.
        #[source]
        source: CacheWrite,
    },
}

/// Creating the cache folder or writing the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheWrite {
    /// The folder could not be made.
    #[error("{0}")]
    Folder(#[from] std::io::Error),
    /// The file could not be written durably.
    #[error("{0}")]
    File(#[from] haifu_store::StoreError),
}

fn read_object(store: &Store, digest: &Digest) -> Result<Vec<u8>, NoDelta> {
    let mut r = store.open_object(digest).map_err(|source| NoDelta::Store {
        digest: *digest,
        source,
    })?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut out).map_err(|source| NoDelta::Read {
        digest: *digest,
        source,
    })?;
    Ok(out)
}

/// The delta `from → to` for a client: the cached smaller of both methods
/// ([`MakeOptions::background`]); for a client from before the bsdiff
/// method when bsdiff made the smaller, a patch-from delta instead, made
/// at the fast level when first needed and cached too, so an old client
/// still gets a delta rather than the full copy.
fn delta_for(
    store: &Store,
    dir: &Path,
    from: &Digest,
    to: &Digest,
    knows_bsdiff: bool,
) -> Result<Vec<u8>, NoDelta> {
    let best = delta_bytes(store, dir, from, to, &MakeOptions::background())?;
    let bsdiff = matches!(
        haifu_delta::PatchReader::new(&best[..]).map(|r| r.header().method),
        Ok(haifu_delta::Method::Bsdiff)
    );
    if knows_bsdiff || !bsdiff {
        return Ok(best);
    }
    tracing::info!(%from, %to, "the client cannot apply bsdiff deltas: a patch-from one instead");
    delta_bytes(store, dir, from, to, &MakeOptions::fast())
}

/// The cached delta `from → to` made with `options`, built (and cached) if
/// needed.
fn delta_bytes(
    store: &Store,
    dir: &Path,
    from: &Digest,
    to: &Digest,
    options: &MakeOptions,
) -> Result<Vec<u8>, NoDelta> {
    let name = cache_key(from, to, options).file_name();
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
    let d = haifu_delta::make(&old, &new, options)?;
    crate::metrics::delta_built(d.bytes.len());
    tracing::info!(
        from = %from, to = %to, bytes = d.len(), artifact_bytes = new.len(),
        method = %d.header.method, ms = started.elapsed().as_millis() as u64, "delta built"
    );
    let cache = |source: CacheWrite| NoDelta::Cache {
        dir: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| cache(e.into()))?;
    // Durable before it is served: a crash must not leave a cached delta
    // that is only partly on disk.
    haifu_store::write_atomic(&path, &d.bytes, false).map_err(|e| cache(e.into()))?;
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
    let mut seen: HashSet<haifu_ledger::StragglerPair> = HashSet::new();
    while !shutdown.is_set() {
        let pairs = ledger.straggler_pairs().unwrap_or_else(|e| {
            tracing::warn!("delta prebuild: {e}");
            Vec::new()
        });
        for pair in pairs {
            if shutdown.is_set() || seen.contains(&pair) {
                continue;
            }
            let haifu_ledger::StragglerPair { artifact, from, to } = &pair;
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
                match delta_bytes(store, dir, &f, &t, &MakeOptions::background()) {
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
    let knows_bsdiff = link.session().has(haifu_protocol::features::DELTA_BSDIFF);
    let delta = if from_known {
        delta_for(store, dir, &req.from, &req.to, knows_bsdiff)
            .map_err(|e| tracing::warn!("no delta {} → {}: {e}", req.from, req.to))
            .ok()
    } else {
        None
    };
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
mod tests;
