//! What happens after a version is in place: a post-install command that
//! failed is reported (`post-install`; `current` never switched), and the
//! config's health command runs `delay_secs` after a switch, switching
//! back to the previous version and reporting `health` when it fails.
//! The core keeps each failure on disk before it is sent. A check still to
//! run is kept on disk too (`health.json`), so a client restarted during
//! the delay (the new version may well restart the machine) runs it when
//! it starts. A check that finds another version current than the one
//! it was for asks the core whether it was put back outside haifu
//! (`machine::fallback`).

use std::sync::Arc;
use std::time::Duration;

use haifu_core::Digest;
use haifu_install::InstallError;
use haifu_install::PostInstall;
use haifu_protocol::FailureKind;
use jiff::Timestamp;
use serde::Deserialize;
use serde::Serialize;

use super::Client;
use super::installed_ref;
use super::machine::Event;
use super::machine::KeptFailure;
use crate::config::HealthConfig;

/// An install of `digest` for `run` (0: from the master) failed with
/// `e`: a failed post-install command is told to the core; other errors
/// (a bad artifact, a full disk) are the client's, not the version's.
pub(super) fn install_error(client: &Arc<Client>, run: u64, digest: Digest, e: &InstallError) {
    if let InstallError::PostInstall { reason, .. } = e {
        let failure = KeptFailure::new(
            run,
            digest,
            FailureKind::PostInstall,
            reason,
            Timestamp::now(),
        );
        client.handle(Event::InstallFailed {
            failure,
            installed: installed_ref(&client.root),
        });
    }
}

/// The file, in the install root, holding the health check still to run.
const PENDING_CHECK: &str = "health.json";

/// A health check still to run, on disk.
#[derive(Debug, Serialize, Deserialize)]
struct PendingCheck {
    run: u64,
    /// The version to check, hex.
    digest: String,
    /// When it is due.
    due: Timestamp,
}

/// `digest` just became current for `run`: its health command, if the
/// config has one, runs after the delay on a thread of its own.
pub(super) fn watch(client: &Arc<Client>, run: u64, digest: Digest) {
    let Some(health) = &client.cfg.health else {
        return;
    };
    let delay = jiff::SignedDuration::from_secs(i64::try_from(health.delay_secs).unwrap_or(0));
    let due = Timestamp::now()
        .checked_add(delay)
        .unwrap_or(Timestamp::MAX);
    let pending = PendingCheck {
        run,
        digest: digest.to_hex(),
        due,
    };
    let kept = serde_json::to_vec(&pending)
        .map_err(crate::FleetError::from)
        .and_then(|text| {
            haifu_store::write_atomic(&pending_path(client), &text, true)
                .map_err(crate::FleetError::store("the health check to run"))
        });
    if let Err(e) = kept {
        // It runs anyway; only a restart during the delay would skip it.
        tracing::error!("keeping the health check to run: {e}");
    }
    spawn(client, run, digest, due);
}

/// At start: the health check an earlier run of the client did not get
/// to, if its version is still current.
pub(super) fn resume(client: &Arc<Client>) {
    let path = pending_path(client);
    let Ok(text) = std::fs::read(&path) else {
        return;
    };
    let pending: Option<PendingCheck> = serde_json::from_slice(&text).ok();
    let current = installed_ref(&client.root).map(|c| c.digest.to_hex());
    let due = pending
        .filter(|p| client.cfg.health.is_some() && current.as_deref() == Some(p.digest.as_str()));
    match due.and_then(|p| Some((p.run, p.digest.parse().ok()?, p.due))) {
        Some((run, digest, due)) => {
            tracing::info!(run, due = %due, "a health check was still to run; it runs");
            spawn(client, run, digest, due);
        }
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn pending_path(client: &Client) -> std::path::PathBuf {
    client.cfg.install_root.join(PENDING_CHECK)
}

fn spawn(client: &Arc<Client>, run: u64, digest: Digest, due: Timestamp) {
    let Some(health) = client.cfg.health.clone() else {
        return;
    };
    let client = Arc::clone(client);
    let spawned = std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            if check(&client, run, digest, due, &health) {
                let _ = std::fs::remove_file(pending_path(&client));
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the health check: {e}");
    }
}

/// Runs the check once due; whether it is settled (run, or moot because
/// another version is current) rather than cut short by a shutdown.
fn check(
    client: &Arc<Client>,
    run: u64,
    digest: Digest,
    due: Timestamp,
    health: &HealthConfig,
) -> bool {
    let wait = Duration::try_from(due.duration_since(Timestamp::now())).unwrap_or_default();
    if client.shutdown.sleep(wait) {
        return false;
    }
    let mut cmd = PostInstall::new(health.program.clone());
    cmd.args = health.args.clone();
    cmd.timeout = jiff::SignedDuration::from_secs(i64::try_from(health.timeout_secs).unwrap_or(60));
    let failure = {
        // Not beside an install or a rollback order: what is current is
        // what is checked, and switched back from.
        let _one = client.installing.lock().unwrap_or_else(|p| p.into_inner());
        let current = installed_ref(&client.root);
        if current.as_ref().map(|c| c.digest) != Some(digest) {
            // Put back outside haifu, or switched since by this client:
            // the core tells which (not beside the install lock, which an
            // order takes inside the core's).
            drop(_one);
            client.handle(Event::Looked {
                current,
                about: Some(digest),
            });
            return true;
        }
        let reason = match client.root.check_current(&cmd) {
            Ok(_) => {
                tracing::info!(run, program = %health.program, "health check passed");
                return true;
            }
            Err(InstallError::PostInstall { reason, .. }) => reason,
            Err(e) => e.to_string(),
        };
        tracing::error!(run, program = %health.program, "health check failed: {reason}; switching back");
        let reason = match client.root.rollback(&client.cfg.artifact, None) {
            Ok(prev) => format!("{reason} (switched back to {})", prev.version),
            Err(e) => format!("{reason} (not switched back: {e})"),
        };
        KeptFailure::new(run, digest, FailureKind::Health, &reason, Timestamp::now())
    };
    client.handle(Event::InstallFailed {
        failure,
        installed: installed_ref(&client.root),
    });
    true
}
