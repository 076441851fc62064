//! What every daemon exports: which haifu it is, since when, and what its
//! control links refused ([`crate::link::Counters`], read at scrape time;
//! claims only on the master and relays, which are the ones claimed to).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::Daemon;
use super::families::{Labels, counters, label};
use crate::link::Counters;

/// Registers `haifu_build_info`, `haifu_start_time_seconds` and the control
/// links' counters.
pub(super) fn register(registry: &mut Registry, daemon: Daemon, links: Arc<Counters>) {
    registry.register(
        "haifu_build",
        "The haifu that runs: its version and the daemon's role (always 1)",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("role", daemon.as_str().to_owned()),
        ]),
    );
    let start = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    start.set(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    registry.register_with_unit(
        "haifu_start_time",
        "When the daemon started, in seconds since the Unix epoch (a change means a restart)",
        Unit::Seconds,
        start,
    );
    registry.register_collector(Box::new(Links(links, daemon)));
}

/// The control links' refusal counters.
#[derive(Debug)]
struct Links(Arc<Counters>, Daemon);

impl Collector for Links {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let reasons: Vec<(Labels, u64)> = vec![
            (label("reason", "malformed"), get(&c.malformed)),
            (label("reason", "unknown"), get(&c.unknown)),
            (label("reason", "unexpected"), get(&c.unexpected)),
        ];
        counters(
            &mut enc,
            "haifu_control_frames_refused",
            "Control frames refused on the control links (QUIC or TLS), by reason: malformed (did not decode), \
             unknown (an unknown message tag), unexpected (a valid message not allowed from \
             this peer or now); the peer was kept.",
            None,
            &reasons,
        )?;
        counters(
            &mut enc,
            "haifu_control_peers_dropped",
            "Control peers dropped for what they sent (a frame too large, a bad hello).",
            None,
            &[(Vec::new(), get(&c.dropped))],
        )?;
        if self.1 == Daemon::Client {
            // A client hears only its relay and the master: nobody claims
            // anything to it.
            return Ok(());
        }
        counters(
            &mut enc,
            "haifu_claims_refused",
            "Claims refused: a peer speaking for a client it may not, or naming a run, round or \
             artifact it has no part in (SECURITY.md).",
            None,
            &[(Vec::new(), get(&c.refused))],
        )
    }
}
