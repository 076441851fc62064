//! `haifu master`, `haifu relay`, `haifu client`: the fleet daemons.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use haifu_fleet::{Shutdown, config};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The master owns the home's ledger, store and keys. It accepts relays \
over QUIC (the quic plugin), drives every run created with `haifu run --live`, sends the \
instruction and each round to its relays, and records each completion in the ledger before it \
acknowledges it. Stop it with SIGTERM or Ctrl-C; a master killed in any way resumes its runs \
when started again.

A peer is accepted only in the role its certificate grants (haifu ca issue --role); a relay \
speaks only for the clients registered behind it (haifu fleet move to change that), a client \
only for itself. Every refused claim is answered, logged and counted, never recorded.

Under systemd (Type=notify; the haifu-master unit) it sends READY=1 once it listens and its API \
is up, and STOPPING=1 as it stops.

Config (YAML; relative paths are taken from the file's folder):
  home: ./.haifu              # ledger, store, keys; certificates under home/ca and home/certs
  listen: 0.0.0.0:7400        # where relays connect
  api: 127.0.0.1:7480         # optional: the HTTP JSON API (tokens: haifu api token create)
  metrics: 127.0.0.1:9464     # optional: GET /metrics for Prometheus (haifu metrics list);
                              # not loopback only with metrics_public: true
  name: master                # certificate name (haifu ca issue master --role master)
  plugins: /usr/lib/haifu/plugins  # optional: folder of transport plugins
  settle_ms: 5000             # optional: wait for completions in flight after a round
  round_grace_secs: 60        # optional: how long past its expected time a round may run
  relays: [store-east]        # optional: the only relay certificates accepted (default: any
                              # certificate issued with --role relay)
  transports: { control: quic }   # optional: the control plugin by name (default quic)

Example: haifu master --config examples/fleet/master.yaml"
)]
pub(crate) struct MasterArgs {
    /// The master's YAML config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "A relay keeps a QUIC connection to the master, fetches each run's \
artifact once, hands its clients the session key, and broadcasts each round over multicast at \
the workflow's rate. Stop it with SIGTERM or Ctrl-C. Under systemd (Type=notify; the \
haifu-relay unit) it sends READY=1 once it listens.

Config (YAML):
  name: store-east                       # also the certificate's CN
  master: { address: 10.0.0.1:7400, name: master }
  listen: 0.0.0.0:7401                   # where its clients connect
  tls: { ca: ca.pem, cert: store-east.pem, key: store-east.key }
  multicast: { group: 239.255.91.7:7500, interface: eth0, ttl: 1 }
  data: /var/lib/haifu-relay             # fetched artifacts
  metrics: 127.0.0.1:9464                # optional: GET /metrics for Prometheus; an address
  metrics_public: false                  # other than loopback needs metrics_public: true
  transports:                            # optional: plugins by name, each with its section
    control: quic                        # (default) peer streams to the master and clients
    broadcast: udp-peers                 # default multicast; any datagram plugin
    config: { udp-peers: { peers: '10.0.1.21:7500,10.0.1.22:7500' } }

Example: haifu relay --config examples/fleet/relay-east.yaml"
)]
pub(crate) struct RelayArgs {
    /// The relay's YAML config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "A client reports its installed version to its relay, receives a \
broadcast it does not have yet, checks it against the pinned master key, installs it atomically \
(keeping the previous version), runs its post-install command, and reports completion until the \
master acknowledges it. Stop it with SIGTERM or Ctrl-C. Under systemd (Type=notify; the \
haifu-client unit) it sends READY=1 once it is set up and reaches for its relay.

Config (YAML):
  id: pos-0001                           # also the certificate's CN
  artifact: pos-app
  relay: { address: 10.0.1.1:7401, name: store-east }
  tls: { ca: ca.pem, cert: pos-0001.pem, key: pos-0001.key }
  master_key: master.pub                 # pinned signing key
  install_root: /opt/pos-app
  multicast: { interface: eth0 }
  post_install: { program: /usr/bin/systemctl, args: [restart, pos-app], timeout_secs: 120 }
  health: { program: /usr/bin/curl, args: [-fsS, 'http://127.0.0.1:8080/health'], delay_secs: 30 }
                                         # optional: a failure switches back; both report failures
  metrics: 127.0.0.1:9464                # optional: GET /metrics for Prometheus (haifu metrics
                                         # list); not loopback only with metrics_public: true
  transports: { control: quic, broadcast: multicast }   # optional; plus config: {NAME: {..}}

Example: haifu client --config examples/fleet/client-1.yaml"
)]
pub(crate) struct ClientArgs {
    /// The client's YAML config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

fn load<T: for<'de> serde::Deserialize<'de> + config::Resolve>(path: &Path) -> Result<T> {
    config::load(path).map_err(|e| anyhow!("{e}"))
}

fn finish(r: Result<(), haifu_fleet::FleetError>) -> Result<ExitCode> {
    crate::systemd::stopping();
    // As an error with its sources: the one-line message is the chain.
    r?;
    Ok(ExitCode::SUCCESS)
}

/// The signal handlers, and `READY=1` to systemd once the daemon is up.
fn lifecycle() -> Result<Shutdown> {
    let stop = Shutdown::on_signals()?;
    crate::systemd::notify_when_ready(&stop);
    Ok(stop)
}

pub(crate) fn master(a: MasterArgs) -> Result<ExitCode> {
    let cfg: config::MasterConfig = load(&a.config)?;
    finish(haifu_fleet::master::run(cfg, lifecycle()?))
}

pub(crate) fn relay(a: RelayArgs) -> Result<ExitCode> {
    let cfg: config::RelayConfig = load(&a.config)?;
    finish(haifu_fleet::relay::run(cfg, lifecycle()?))
}

pub(crate) fn client(a: ClientArgs) -> Result<ExitCode> {
    let cfg: config::ClientConfig = load(&a.config)?;
    finish(haifu_fleet::client::run(cfg, lifecycle()?))
}
