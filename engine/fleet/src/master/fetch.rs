//! A relay's fetch of its run's artifact, streamed from the store.

use std::io::Read as _;
use std::time::Instant;

use haifu_ledger::Ledger;
use haifu_ledger::TrafficKind;
use haifu_protocol::ArtifactFetch;
use haifu_protocol::ArtifactHeader;
use haifu_protocol::ErrorCode;
use haifu_protocol::Message;
use haifu_store::Store;

use super::hub::TrafficLog;
use crate::link::Link;

/// Streams a run's artifact to a relay: header, then 1 MiB chunks read
/// (and verified) from the store.
pub(super) fn serve_fetch(
    link: &Link,
    store: &Store,
    ledger_path: &std::path::Path,
    f: &ArtifactFetch,
    traffic: &TrafficLog,
) {
    let fail = |reason: String| {
        tracing::warn!(
            relay = link.peer(),
            transfer = f.transfer,
            "fetch failed: {reason}"
        );
        link.error(ErrorCode::TransferFailed, f.transfer, reason);
    };
    let manifest = match Ledger::open(ledger_path)
        .and_then(|l| l.manifest(f.artifact.name.as_str(), &f.artifact.version.to_string()))
    {
        Ok(Some(m)) if m.body.sha3_256 == f.artifact.digest => m,
        Ok(_) => {
            link.error(
                ErrorCode::UnknownArtifact,
                f.transfer,
                format!(
                    "{} {} is not registered with that digest",
                    f.artifact.name, f.artifact.version
                ),
            );
            return;
        }
        Err(e) => return fail(format!("ledger: {e}")),
    };
    let mut reader = match store.open_object(&manifest.body.sha3_256) {
        Ok(r) => r,
        Err(e) => return fail(format!("store: {e}")),
    };
    let header = Message::ArtifactHeader(ArtifactHeader {
        transfer: f.transfer,
        size: manifest.body.size,
        manifest: manifest.to_json().into_bytes(),
    });
    if link.send(&header).is_err() {
        return;
    }
    let started = Instant::now();
    let mut offset = 0u64;
    let mut buf = vec![0u8; haifu_protocol::limits::MAX_CHUNK_LEN];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return fail(format!("reading {}: {e}", manifest.body.sha3_256)),
            }
        }
        let last = offset + filled as u64 >= manifest.body.size || filled < buf.len();
        let chunk = Message::DataChunk(haifu_protocol::DataChunk {
            transfer: f.transfer,
            offset,
            bytes: buf[..filled].to_vec(),
            last,
        });
        if link.send(&chunk).is_err() {
            return;
        }
        offset += filled as u64;
        if last {
            break;
        }
    }
    tracing::info!(
        relay = link.peer(),
        bytes = offset,
        ms = started.elapsed().as_millis() as u64,
        "artifact sent to relay"
    );
    traffic.record(
        i64::try_from(f.run).unwrap_or(i64::MAX),
        link.peer(),
        TrafficKind::Fetch,
        None,
        offset,
    );
}
