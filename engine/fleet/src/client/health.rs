//! What happens after a version is in place: a post-install command that
//! failed is reported (`post-install`; `current` never switched), and the
//! config's health command runs `delay_secs` after a switch, switching
//! back to the previous version and reporting `health` when it fails.
//! The core keeps each failure on disk before it is sent.

use std::sync::Arc;
use std::time::Duration;

use haifu_core::Digest;
use haifu_install::InstallError;
use haifu_install::PostInstall;
use haifu_protocol::FailureKind;
use jiff::Timestamp;

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

/// `digest` just became current for `run`: its health command, if the
/// config has one, runs after the delay on a thread of its own.
pub(super) fn watch(client: &Arc<Client>, run: u64, digest: Digest) {
    let Some(health) = client.cfg.health.clone() else {
        return;
    };
    let client = Arc::clone(client);
    let spawned = std::thread::Builder::new()
        .name("health".into())
        .spawn(move || check(&client, run, digest, &health));
    if let Err(e) = spawned {
        tracing::error!("cannot start the health check: {e}");
    }
}

fn check(client: &Arc<Client>, run: u64, digest: Digest, health: &HealthConfig) {
    if client
        .shutdown
        .sleep(Duration::from_secs(health.delay_secs))
    {
        return;
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
            tracing::info!(run, "another version is current now; its own check follows");
            return;
        }
        let reason = match client.root.check_current(&cmd) {
            Ok(_) => {
                tracing::info!(run, program = %health.program, "health check passed");
                return;
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
}
