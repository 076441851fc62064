//! The parts every daemon config shares: certificate files, a peer's
//! address and name, and the transport plugins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Invalid, fix};

/// The certificate files a daemon presents and trusts.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The fleet CA certificate (PEM), trusted for every peer.
    pub ca: PathBuf,
    /// This daemon's certificate (PEM), issued by the fleet CA.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// Where a peer listens and the name its certificate must carry.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerAddr {
    /// `host:port` of the peer's QUIC endpoint.
    pub address: SocketAddr,
    /// The identity (certificate CN) the peer must prove.
    pub name: String,
}

/// Which transport plugins a daemon uses, by name, and the operator's
/// section for each (`transports:` in every daemon config):
///
/// ```yaml
/// transports:
///   control: quic          # peer streams: the links to the master, relay, clients
///   broadcast: udp-peers   # datagram groups: the rounds (relays and clients)
///   config:                # per plugin, passed through after the engine's keys
///     udp-peers: { peers: "10.0.1.21:7500,10.0.1.22:7500" }
/// ```
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransportsConfig {
    /// The stream plugin of the control links (default `quic`).
    #[serde(default = "default_control")]
    pub control: String,
    /// The datagram plugin of the broadcast rounds (default `multicast`).
    #[serde(default = "default_broadcast")]
    pub broadcast: String,
    /// Each plugin's section: scalar values, written as `key=value` lines
    /// after the keys the engine adds (SPEC.md §3.7).
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Scalar>>,
}

impl Default for TransportsConfig {
    fn default() -> Self {
        Self {
            control: default_control(),
            broadcast: default_broadcast(),
            config: std::collections::BTreeMap::new(),
        }
    }
}

fn default_control() -> String {
    "quic".into()
}

fn default_broadcast() -> String {
    "multicast".into()
}

/// A YAML scalar of a plugin section, kept as the text the plugin reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
    /// `true` or `false`.
    Bool(bool),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(t) => f.write_str(t),
            Self::Int(i) => write!(f, "{i}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl TransportsConfig {
    /// The operator's pairs for plugin `name`.
    pub fn section(&self, name: &str) -> Vec<(String, String)> {
        self.config
            .get(name)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
            .unwrap_or_default()
    }

    /// Names are plugin names; sections belong to a plugin in use and hold
    /// one-line keys and values.
    pub(super) fn check(&self) -> Result<(), Invalid> {
        for (what, name) in [
            ("transports.control", &self.control),
            ("transports.broadcast", &self.broadcast),
        ] {
            if haifu_plugin_host::plugin_name_of_file(&haifu_plugin_host::plugin_file_name(name))
                .is_none()
            {
                return Err(Invalid(format!(
                    "{what} {name:?} is not a plugin name (a-z, 0-9, '-', '_'; at most 64)"
                )));
            }
        }
        for (plugin, section) in &self.config {
            if plugin != &self.control && plugin != &self.broadcast {
                return Err(Invalid(format!(
                    "transports.config.{plugin}: no transport of this daemon uses plugin {plugin:?} (control: {}, broadcast: {})",
                    self.control, self.broadcast
                )));
            }
            for (k, v) in section {
                let v = v.to_string();
                if k.is_empty() || k.contains(['=', '\n', '\r', '#']) || v.contains(['\n', '\r']) {
                    return Err(Invalid(format!(
                        "transports.config.{plugin}.{k}: keys are one word without '=' or '#', values one line"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl TlsFiles {
    pub(super) fn resolve(&mut self, base: &Path) {
        fix(&mut self.ca, base);
        fix(&mut self.cert, base);
        fix(&mut self.key, base);
    }
}
