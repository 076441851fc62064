//! The straggler's catch-up: on boot and while idle, ask the master whether
//! a finished broadcast left this client behind, and fetch the delta or full
//! copy into staging with a cap at the signed size.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use haifu_core::Manifest;
use haifu_install::PostInstall;
use haifu_plugin_host::Endpoint;
use haifu_protocol::ChunkCursor;
use haifu_protocol::Completion;
use haifu_protocol::Message;
use haifu_protocol::Role;
use haifu_protocol::TransferError;
use haifu_protocol::Via;
use jiff::Timestamp;

use super::Client;
use super::machine::Event;
use super::outbox::Pending;
use super::partial::Partial;
use crate::config::ClientConfig;
use crate::link;

/// What a boot check found.
pub(super) enum Check {
    /// Nothing to fetch.
    UpToDate,
    /// Installed from the master; completion sent.
    Installed,
}

/// On start and every 30 s while idle: asks the master whether a finished
/// broadcast left this client behind, and if so fetches and installs the
/// difference. A failure (a truncated or corrupted delta, say) leaves the
/// installed version as it was and is retried 10 s later.
pub(super) fn boot_checks(client: &Arc<Client>, ep: &Endpoint) {
    while !client.shutdown.is_set() {
        // A receiver holds the check back only while it makes progress.
        let stalled = client.stalled.load(Ordering::SeqCst);
        let busy = {
            let core = client.core();
            (core.receiving().is_some() && !stalled) || core.has_pending()
        };
        let wait = if busy {
            Duration::from_secs(5)
        } else {
            match boot_check(client, ep) {
                // A stalled session is a sign this client is behind: ask
                // again soon, the master lists stragglers at the audit.
                Ok(Check::UpToDate) if stalled => Duration::from_secs(5),
                Ok(Check::UpToDate) => Duration::from_secs(30),
                Ok(Check::Installed) => Duration::from_secs(30),
                Err(e) => {
                    if e.is_install_failure() {
                        client.metrics.installed(crate::metrics::Via::Master, false);
                    }
                    tracing::warn!(
                        "boot check: {}; the installed version is unchanged, retrying",
                        haifu_plugin_host::error_chain(&e)
                    );
                    // A cut transfer goes on soon (a restarted master is
                    // back within a second); anything else waits longer.
                    if e.is_cut() {
                        Duration::from_secs(1)
                    } else {
                        Duration::from_secs(10)
                    }
                }
            }
        };
        client.shutdown.sleep(wait);
    }
}

/// Why a catch-up failed; the installed version is unchanged whatever it
/// says.
#[derive(Debug, thiserror::Error)]
pub(super) enum CatchUpError {
    /// The link to the master failed.
    #[error("master")]
    Link(#[from] link::LinkError),
    /// The master did not answer in time.
    #[error("no {0} from the master")]
    Silent(&'static str),
    /// The master sent a message that has no place here.
    #[error("unexpected message {0:#04x} from the master")]
    Unexpected(u8),
    /// The master refused the request (busy, not a straggler, ...).
    #[error("master refused: {0}")]
    Refused(String),
    /// The manifest does not read or does not verify.
    #[error("manifest refused")]
    Manifest(#[from] haifu_core::ManifestError),
    /// A signed manifest of another version than the one asked for.
    #[error("the manifest is not the target's")]
    NotTarget,
    /// The transfer broke its announced size or order.
    #[error("transfer refused")]
    Transfer(#[from] TransferError),
    /// A delta that does not apply, or a full copy that does not decode.
    #[error("{what} refused")]
    Delta {
        /// `delta` or `full artifact`.
        what: &'static str,
        /// Why.
        #[source]
        source: haifu_delta::DeltaError,
    },
    /// A delta came for a client with nothing installed.
    #[error("a delta came but nothing is installed")]
    NoBase,
    /// The install root failed (staging, verify, install).
    #[error("{what}")]
    Install {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: haifu_install::InstallError,
    },
    /// Reading a file failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The completion could not be kept.
    #[error("completion")]
    Outbox(#[from] crate::FleetError),
    /// The transfer was cut on purpose (`testing.cut_catch_up_at`) after
    /// this many bytes.
    #[error("transfer cut after {0} bytes (testing.cut_catch_up_at)")]
    Cut(u64),
}

/// Removes a partial transfer once its payload is used.
struct Used<'a>(&'a Partial);

impl Drop for Used<'_> {
    fn drop(&mut self) {
        self.0.remove();
    }
}

impl CatchUpError {
    /// Whether the transfer was cut (the link, a silent master, fault
    /// injection): its bytes are kept and the next check resumes it.
    fn is_cut(&self) -> bool {
        matches!(self, Self::Link(_) | Self::Silent(_) | Self::Cut(_))
    }

    /// Whether what the master sent did not apply, verify or install (the
    /// others are the link's, the master's or this machine's).
    fn is_install_failure(&self) -> bool {
        matches!(
            self,
            Self::Delta { .. } | Self::Install { .. } | Self::NotTarget | Self::Manifest(_)
        )
    }
}

fn install(what: &'static str) -> impl FnOnce(haifu_install::InstallError) -> CatchUpError {
    move |source| CatchUpError::Install { what, source }
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CatchUpError + '_ {
    move |source| CatchUpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn boot_check(client: &Arc<Client>, ep: &Endpoint) -> Result<Check, CatchUpError> {
    use haifu_protocol::{DeltaBody, DeltaRequest};
    let cfg = &client.cfg;
    let Some(master) = &cfg.master else {
        return Ok(Check::UpToDate);
    };
    let link = link::connect(
        ep,
        &master.address.to_string(),
        &master.name,
        Role::Client,
        &cfg.id,
        Arc::clone(&client.counters),
    )?;
    let report = client.core().report();
    link.send(&report)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = |what: &'static str| -> Result<Message, CatchUpError> {
        loop {
            if Instant::now() > deadline {
                return Err(CatchUpError::Silent(what));
            }
            match link.recv(Duration::from_millis(500)) {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(e.into()),
            }
        }
    };
    let target = match next("answer")? {
        Message::Registered(r) => r.target,
        other => return Err(CatchUpError::Unexpected(other.tag())),
    };
    // Not even asked for when it would not move this machine forward (the
    // signed manifest is checked again below).
    let Some(target) = target else {
        return Ok(Check::UpToDate);
    };
    if !client.core().wants(&target) {
        if client.core().is_older(&target) {
            client.metrics.refused_older(crate::metrics::Via::Master);
            tracing::warn!(
                version = %target.version,
                "the master offers a version older than the installed one; refused (versions only move forward)"
            );
        }
        return Ok(Check::UpToDate);
    }
    let base = client
        .root
        .base_for_delta()
        .map_err(install("the installed version"))?;
    let from = base
        .as_ref()
        .map_or(haifu_core::Digest::from_bytes([0; 32]), |(d, _)| *d);
    // Any id unique to this client's requests will do.
    let transfer = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    // What an earlier transfer of the same pair left, if it was cut.
    let mut partial = Partial::at(client.root.path(), from, target.digest);
    let held = partial.held();
    link.send(&Message::DeltaRequest(DeltaRequest {
        transfer,
        client: cfg.id.clone(),
        name: target.name.clone(),
        from,
        to: target.digest,
        resume_at: held,
    }))?;
    let (size, manifest, is_delta) = match next("delta response")? {
        Message::DeltaResponse(r) if r.transfer == transfer => match r.body {
            DeltaBody::Delta { size, manifest } => (size, manifest, true),
            DeltaBody::Full { size, manifest } => (size, manifest, false),
            DeltaBody::Refused { reason } => return Err(CatchUpError::Refused(reason)),
        },
        other => return Err(CatchUpError::Unexpected(other.tag())),
    };
    let manifest = Manifest::from_json(&manifest)?;
    manifest.verify(&client.pinned)?;
    if manifest.body.sha3_256 != target.digest {
        return Err(CatchUpError::NotTarget);
    }
    if !client.core().moves_forward(&manifest) {
        client.metrics.refused_older(crate::metrics::Via::Master);
        tracing::warn!(
            version = %manifest.body.version,
            "the master offers a version not newer than the installed one; kept (versions only move forward)"
        );
        return Ok(Check::UpToDate);
    }
    // Bounded before anything is sized by it: a delta is sent only when
    // smaller than the full copy, and the full copy is the artifact
    // compressed, so neither can be larger than the signed size allows.
    let cap = transfer_cap(manifest.body.size);
    if size > cap {
        return Err(TransferError::TooLarge {
            transfer,
            size,
            max: cap,
        }
        .into());
    }
    // Streamed to a file under the install root, never held in memory; kept
    // if the transfer is cut, so the next check asks only for the rest.
    let kept = partial
        .open(is_delta, size, held)
        .map_err(io(partial.path()))?;
    let mut incoming: Option<ChunkCursor> = None;
    let cut_at = cfg.testing.cut_catch_up_at;
    loop {
        match next("data")? {
            Message::DataChunk(c) => {
                let cursor = match &mut incoming {
                    Some(cursor) => cursor,
                    None => {
                        // The first chunk says where the master starts: where
                        // the kept bytes end, or (another payload, an older
                        // master) at 0.
                        let at = if kept > 0 && c.offset == kept {
                            tracing::info!(
                                resume_at = kept,
                                size,
                                "resuming the cut transfer from the master"
                            );
                            kept
                        } else {
                            partial.restart().map_err(io(partial.path()))?;
                            0
                        };
                        incoming.insert(ChunkCursor::resumed(transfer, size, cap, at)?)
                    }
                };
                let last = cursor.check(&c)?;
                partial
                    .write_at(c.offset, &c.bytes)
                    .map_err(io(partial.path()))?;
                // Fault injection: a fresh transfer is cut once this much
                // has arrived.
                if cut_at > 0 && kept == 0 && !last && cursor.received() >= cut_at {
                    return Err(CatchUpError::Cut(cursor.received()));
                }
                if last {
                    break;
                }
            }
            other => return Err(CatchUpError::Unexpected(other.tag())),
        }
    }
    // Whole: used now, whatever comes of it (a refused payload is not
    // resumed, it is asked for again).
    let used = Used(&partial);
    let payload_file = std::fs::File::open(partial.path()).map_err(io(partial.path()))?;
    let payload_reader = std::io::BufReader::with_capacity(1 << 20, payload_file);
    // The output goes straight to the artifact's staging file, which
    // refuses any byte past the signed size.
    let mut staging = client
        .root
        .stage(manifest.body.size)
        .map_err(install("staging"))?;
    if is_delta {
        let Some((installed, base_path)) = &base else {
            return Err(CatchUpError::NoBase);
        };
        let old = haifu_delta::read_base(base_path).map_err(io(base_path))?;
        // The installed version's digest was checked when it was installed:
        // the base is not hashed again (a damaged base still cannot pass,
        // the result is checked against the delta's target and then against
        // the signed manifest).
        let reader = haifu_delta::PatchReader::new(payload_reader).map_err(|source| {
            CatchUpError::Delta {
                what: "delta",
                source,
            }
        })?;
        reader
            .check_target(&manifest.body.sha3_256, manifest.body.size)
            .map_err(|source| CatchUpError::Delta {
                what: "delta",
                source,
            })?;
        reader
            .apply_checked(
                &old,
                haifu_delta::BaseCheck::Known(*installed),
                &mut staging,
            )
            .map_err(|source| CatchUpError::Delta {
                what: "delta",
                source,
            })?;
    } else {
        haifu_delta::decode_full(payload_reader, &mut staging, manifest.body.size).map_err(
            |source| CatchUpError::Delta {
                what: "full artifact",
                source,
            },
        )?;
    }
    drop(used);
    let _installing = client.installing.lock().unwrap_or_else(|p| p.into_inner());
    let verified = staging
        .verify(&manifest, &client.pinned)
        .map_err(install("verifying the artifact"))?;
    let post = post_install(cfg);
    let done = match client.root.install(verified, post.as_ref()) {
        Ok(d) => d,
        Err(e) => {
            super::health::install_error(client, 0, manifest.body.sha3_256, &e);
            return Err(install("installing")(e));
        }
    };
    let pending = Pending {
        run: 0,
        digest: done.digest.to_hex(),
        round: 0,
        at: Timestamp::now().to_string(),
        delta: true,
    };
    if let Some(installed) = super::installed_ref(&client.root) {
        client.handle(Event::Installed { installed, pending });
    }
    // A receiver still on this version (stalled) has nothing left to do.
    client
        .cancel
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .store(true, Ordering::SeqCst);
    tracing::info!(
        version = %done.version,
        bytes = size,
        artifact_bytes = manifest.body.size,
        kind = if is_delta { "delta" } else { "full" },
        "installed from the master; completion sent"
    );
    // Completion straight to the master too; the relay path resends if
    // needed.
    let _ = link.send(&Message::Completion(Completion {
        run: 0,
        client: cfg.id.clone(),
        via: Via::Delta,
        digest: done.digest,
        at: Timestamp::now(),
    }));
    if let Ok(Message::CompletionAck(a)) = next("ack") {
        client.handle(Event::MasterAck(a));
    }
    super::health::watch(client, 0, done.digest);
    let _ = client.root.gc();
    Ok(Check::Installed)
}

/// The most bytes a straggler accepts for an artifact of `size` bytes: the
/// size plus zstd's worst-case expansion (a block header per 128 KiB, the
/// frame header and checksum) and the delta container's header and chunk
/// records, rounded up generously. A delta is only sent when smaller than
/// the full copy, so one bound serves both.
pub(super) fn transfer_cap(size: u64) -> u64 {
    size.saturating_add(size / 128).saturating_add(1 << 20)
}

pub(super) fn post_install(cfg: &ClientConfig) -> Option<PostInstall> {
    cfg.post_install.as_ref().map(|p| {
        let mut pi = PostInstall::new(p.program.clone());
        pi.args = p.args.clone();
        pi.timeout = jiff::SignedDuration::from_secs(i64::try_from(p.timeout_secs).unwrap_or(300));
        pi
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_transfer_announcing_more_than_the_manifest_allows_is_refused_before_allocating() {
        // An 8 GiB announcement for a 1 MiB artifact: boot_check refuses it
        // by this bound before staging anything.
        let size = 1 << 20;
        assert!(8 << 30 > transfer_cap(size));
        // A full copy of incompressible bytes, or of nothing, still fits.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let z = zstd::encode_all(&random[..], 3).unwrap();
        assert!(z.len() as u64 > size);
        assert!(z.len() as u64 <= transfer_cap(size));
        assert!(zstd::encode_all(&[][..], 3).unwrap().len() as u64 <= transfer_cap(0));
    }
}
