//! A relay's config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Invalid, PeerAddr, Resolve, TlsFiles, TransportsConfig, check_metrics, check_name, fix,
};

/// The multicast side of a relay.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayMulticast {
    /// Group and port, e.g. `239.255.91.7:7500`.
    pub group: SocketAddr,
    /// Interface to send from (name or address), e.g. `127.0.0.1`.
    #[serde(default)]
    pub interface: Option<String>,
    /// Time to live of the datagrams.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// The sending link's MTU in bytes, for the pacer's count of link
    /// bytes (a datagram larger than the MTU takes two frames). Default:
    /// read from the interface (`/sys/class/net/NAME/mtu`; an address or
    /// no interface is mapped through the kernel's routes), else 1,500.
    #[serde(default)]
    #[schemars(range(min = 68, max = 65535))]
    pub mtu: Option<u32>,
}

fn default_ttl() -> u32 {
    1
}

/// A relay's config, `haifu relay --config FILE`. Relative paths are taken
/// from the file's folder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The relay's name, also its certificate's CN.
    pub name: String,
    /// The master.
    pub master: PeerAddr,
    /// Where this relay's clients connect.
    pub listen: SocketAddr,
    /// Certificate files.
    pub tls: TlsFiles,
    /// The broadcast group.
    pub multicast: RelayMulticast,
    /// Where fetched artifacts are kept.
    pub data: PathBuf,
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
}

impl Resolve for RelayConfig {
    fn resolve(&mut self, base: &Path) {
        self.tls.resolve(base);
        fix(&mut self.data, base);
        if let Some(p) = &mut self.plugins {
            fix(p, base);
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        check_name("name", &self.name)?;
        check_name("master.name", &self.master.name)?;
        self.transports.check()?;
        check_metrics(self.metrics, self.metrics_public, "")?;
        // Another broadcast plugin (unicast to a peer list, say) reads only
        // what it needs of the group, such as its port.
        if let Some(mtu) = self.multicast.mtu
            && !(68..=65_535).contains(&mtu)
        {
            return Err(Invalid(format!(
                "multicast.mtu {mtu} is not an MTU (68 to 65535 bytes)"
            )));
        }
        if self.transports.broadcast == "multicast" && !self.multicast.group.ip().is_multicast() {
            return Err(Invalid(format!(
                "multicast.group {} is not a multicast address",
                self.multicast.group
            )));
        }
        Ok(())
    }
}
