//! The round queue: one paced carousel round at a time through the
//! multicast plugin.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;
use std::time::Instant;

use haifu_carousel::CarouselKey;
use haifu_carousel::Pacer;
use haifu_plugin_host::DatagramGroup;
use haifu_plugin_host::Plugin;
use haifu_protocol::Instruction;
use haifu_protocol::RoundDone;

use super::Relay;
use super::RoundOrder;
use super::fetch::artifact_path;
use super::machine::Event;
use crate::FleetError;

/// Sends the rounds the core orders, one at a time.
pub(super) fn broadcaster(relay: &Arc<Relay>, multicast: &Plugin, orders: &Receiver<RoundOrder>) {
    let cfg = &relay.cfg.multicast;
    let mut gcfg = format!(
        "group={}\nloopback=true\njoin=false\nttl={}\n",
        cfg.group, cfg.ttl
    );
    if let Some(i) = &cfg.interface {
        gcfg.push_str(&format!("interface={i}\n"));
    }
    let group = match multicast.open_group(&gcfg) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("cannot open the multicast group {}: {e}", cfg.group);
            relay.shutdown.trigger();
            return;
        }
    };
    while !relay.shutdown.is_set() {
        let (round, session) = match orders.recv_timeout(Duration::from_millis(300)) {
            Ok(o) => o,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let run = session.run;
        let path = artifact_path(&relay.cfg.data, &session.artifact);
        match send_one(relay, &group, run, round, &session, &path) {
            Ok(d) => {
                tracing::info!(
                    run,
                    round,
                    datagrams = d.datagrams,
                    bytes = d.bytes,
                    ratio = format_args!("{:.4}", d.bytes as f64 / session.size.max(1) as f64),
                    elapsed_ms = d.elapsed_ms,
                    clients_done = relay.lock().core.acked(run),
                    "round sent"
                );
                relay.handle(Event::RoundSent(d));
            }
            Err(e) => {
                tracing::error!(run, round, "round failed: {e}");
                relay.handle(Event::RoundFailed { run, round });
            }
        }
    }
}

pub(super) fn send_one(
    relay: &Relay,
    group: &DatagramGroup,
    run: u64,
    round: u32,
    session: &Instruction,
    path: &Path,
) -> Result<RoundDone, FleetError> {
    let key = CarouselKey::new(session.session_id, session.session_key.0);
    // The layout is the signed manifest's, the one its clients decode with.
    let manifest = haifu_core::Manifest::from_json(&session.manifest)?;
    let sender = haifu_runtime::session::sender_for(key, &manifest)?;
    let file = File::open(path).map_err(|source| FleetError::File {
        what: "the fetched artifact",
        path: path.to_path_buf(),
        source,
    })?;
    let mut read = |r: std::ops::Range<u64>| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; usize::try_from(r.end - r.start).unwrap_or(0)];
        file.read_exact_at(&mut buf, r.start)?;
        Ok(buf)
    };
    let mut pacer = Pacer::new(session.rate_bps.max(1), 64 * 1024)?;
    tracing::info!(run, round, "round starting");
    let started = Instant::now();
    let stop = || relay.shutdown.is_set();
    let stats = crate::broadcast::send_round_until(
        group,
        &sender,
        round,
        &mut read,
        Some(&mut pacer),
        &stop,
    )?;
    Ok(RoundDone {
        run,
        round,
        datagrams: stats.datagrams,
        bytes: stats.bytes,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}
