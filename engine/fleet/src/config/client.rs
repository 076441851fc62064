//! A client's config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Invalid, PeerAddr, Resolve, TlsFiles, TransportsConfig, check_metrics, check_name, fix,
};

/// The multicast side of a client.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientMulticast {
    /// Interface to join on (name or address), e.g. `127.0.0.1`.
    #[serde(default)]
    pub interface: Option<String>,
}

/// A post-install command: run after the new version is in place and
/// before the completion is sent; a failure rolls back.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostInstallConfig {
    /// The program.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Seconds it may take.
    #[serde(default = "default_post_install_secs")]
    pub timeout_secs: u64,
}

/// A health command: run `delay_secs` after a new version became current
/// (from a round or from the master); a failure (non-zero exit, past
/// `timeout_secs`, cannot start) switches back to the previous version
/// and is reported to the master as `health` with its reason.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// The program, run in the new version's folder with the
    /// post-install command's environment.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Seconds after the switch before it runs (the version coming up).
    #[serde(default)]
    #[schemars(range(max = MAX_HEALTH_SECS))]
    pub delay_secs: u64,
    /// Seconds it may take.
    #[serde(default = "default_health_secs")]
    #[schemars(range(min = 1, max = MAX_HEALTH_SECS))]
    pub timeout_secs: u64,
}

/// A day: longer delays and timeouts are mistakes.
const MAX_HEALTH_SECS: u64 = 86_400;

fn default_health_secs() -> u64 {
    60
}

impl HealthConfig {
    fn check(&self) -> Result<(), Invalid> {
        if self.program.trim().is_empty() {
            return Err(Invalid("health.program is empty".into()));
        }
        if self.delay_secs > MAX_HEALTH_SECS {
            return Err(Invalid(format!(
                "health.delay_secs {} is more than a day ({MAX_HEALTH_SECS})",
                self.delay_secs
            )));
        }
        if !(1..=MAX_HEALTH_SECS).contains(&self.timeout_secs) {
            return Err(Invalid(format!(
                "health.timeout_secs {} is not between 1 and {MAX_HEALTH_SECS}",
                self.timeout_secs
            )));
        }
        Ok(())
    }
}

fn default_receive_stall_secs() -> u64 {
    60
}

fn default_post_install_secs() -> u64 {
    300
}

/// Fault injection for tests and drills; never set in production.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Testing {
    /// Fraction of received datagrams dropped on purpose (0 to 1).
    #[serde(default)]
    #[schemars(range(min = *DROP_FRACTION.start(), max = *DROP_FRACTION.end()))]
    pub drop_datagrams: f64,
    /// Seed of the drop pattern.
    #[serde(default)]
    pub seed: u64,
    /// Cut the first transfer of a delta or full copy from the master once
    /// this many bytes have arrived, as a killed master or a lost link
    /// would (0: never); the next check resumes it.
    #[serde(default)]
    pub cut_catch_up_at: u64,
}

/// `testing.drop_datagrams` is a fraction.
const DROP_FRACTION: std::ops::RangeInclusive<f64> = 0.0..=1.0;

/// A client's config, `haifu client --config FILE`. Relative paths are
/// taken from the file's folder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client's id, also its certificate's CN.
    pub id: String,
    /// The artifact this client runs.
    pub artifact: String,
    /// Its relay.
    pub relay: PeerAddr,
    /// The master, asked directly on boot for a delta when a finished
    /// broadcast left this client behind. Without it the client only
    /// receives broadcasts.
    #[serde(default)]
    pub master: Option<PeerAddr>,
    /// Certificate files.
    pub tls: TlsFiles,
    /// The master's public key file (`master.pub`), pinned: manifests
    /// signed by any other key are refused.
    pub master_key: PathBuf,
    /// Where versions are installed (`current` points at the live one).
    pub install_root: PathBuf,
    /// Receiving side of the broadcast.
    #[serde(default)]
    pub multicast: ClientMulticast,
    /// The progress watchdog: a session whose bytes in hand (blocks decoded
    /// and checked, symbols held) reach no new high for this many seconds
    /// (nothing arrives, only refused datagrams, or blocks that keep being
    /// poisoned) stops holding back the boot check, so a client whose
    /// broadcast was poisoned or lost still asks the master for a delta. Longer than the
    /// pause between two rounds, so a client waiting for the next round
    /// does not give up on it.
    #[serde(default = "default_receive_stall_secs")]
    #[schemars(range(min = 1))]
    pub receive_stall_secs: u64,
    /// Run after installing, before reporting completion.
    #[serde(default)]
    pub post_install: Option<PostInstallConfig>,
    /// Run a while after a new version became current; a failure switches
    /// back and is reported. A failed post-install command is reported
    /// too (`post-install`).
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// Where `GET /metrics` is served (Prometheus text; OpenMetrics when
    /// asked), e.g. `127.0.0.1:9464`; absent: no metrics listener. An
    /// address that is not loopback is refused unless `metrics_public:
    /// true`.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Serve `metrics:` on an address that is not loopback. The listener
    /// has no authentication and the metrics name relays, clients and
    /// versions: say so only for a trusted segment or behind a proxy.
    #[serde(default)]
    pub metrics_public: bool,
    /// Folder of transport plugins (default as for the master).
    #[serde(default)]
    pub plugins: Option<PathBuf>,
    /// The transport plugins by name, and their sections.
    #[serde(default)]
    pub transports: TransportsConfig,
    /// What this client is, for the operator: `key: value` pairs (`site:
    /// store-12`, `ring: canary`) told to the master through the relay, so
    /// that a workflow's stages (`labels:`) and `haifu rollback --label`
    /// can name groups of clients. Keys: lowercase letters, digits, '_',
    /// '-', starting with a letter; values: letters, digits, '.', '_',
    /// '-'; each 1 to 63 characters; at most 16 pairs.
    #[serde(default)]
    #[schemars(extend(
        "maxProperties" = haifu_core::MAX_LABELS,
        "propertyNames" = {"pattern": "^[a-z][a-z0-9_-]{0,62}$"},
        "additionalProperties" = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"}
    ))]
    pub labels: haifu_core::Labels,
    /// Fault injection.
    #[serde(default)]
    pub testing: Testing,
}

impl Resolve for ClientConfig {
    fn resolve(&mut self, base: &Path) {
        self.tls.resolve(base);
        fix(&mut self.master_key, base);
        fix(&mut self.install_root, base);
        if let Some(p) = &mut self.plugins {
            fix(p, base);
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        check_name("id", &self.id)?;
        check_name("relay.name", &self.relay.name)?;
        self.transports.check()?;
        if let Some(m) = &self.master {
            check_name("master.name", &m.name)?;
        }
        self.artifact
            .parse::<haifu_core::ArtifactName>()
            .map_err(|e| Invalid(format!("artifact {:?}: {e}", self.artifact)))?;
        if !DROP_FRACTION.contains(&self.testing.drop_datagrams) {
            return Err(Invalid(format!(
                "testing.drop_datagrams {} is not between 0 and 1",
                self.testing.drop_datagrams
            )));
        }
        check_labels(&self.labels)?;
        if let Some(h) = &self.health {
            h.check()?;
        }
        if self.receive_stall_secs == 0 {
            return Err(Invalid("receive_stall_secs must be at least 1".into()));
        }
        check_metrics(self.metrics, self.metrics_public, "")
    }
}

/// `labels:` by `haifu_core`'s check, the message starting with the key
/// whose value is wrong (`labels.ring …`) so the error names its line.
fn check_labels(labels: &haifu_core::Labels) -> Result<(), Invalid> {
    if let Err(e) = haifu_core::check_labels(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        let at = match &e {
            haifu_core::LabelError::BadValue(_) => labels
                .iter()
                .find(|(_, v)| haifu_core::check_label_value(v).is_err())
                .map_or_else(|| "labels".to_owned(), |(k, _)| format!("labels.{k}")),
            _ => "labels".to_owned(),
        };
        return Err(Invalid(format!("{at}: {e}")));
    }
    Ok(())
}
