//! The round queue: one paced carousel round at a time through the
//! multicast plugin.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use haifu_carousel::CarouselKey;
use haifu_carousel::Pacer;
use haifu_plugin_host::DatagramGroup;
use haifu_plugin_host::Plugin;
use haifu_protocol::Instruction;
use haifu_protocol::Message;
use haifu_protocol::RoundDone;

use super::Relay;
use crate::FleetError;

/// Sends queued rounds, one at a time.
pub(super) fn broadcaster(relay: &Arc<Relay>, multicast: &Plugin) {
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
    loop {
        let (run, round, session, path) = {
            let mut st = relay.lock();
            loop {
                if relay.shutdown.is_set() {
                    return;
                }
                let ready = st.queue.first().copied().and_then(|(run, round)| {
                    let s = st.session.clone().filter(|s| s.run == run)?;
                    let p = st.artifact.clone()?;
                    Some((run, round, s, p))
                });
                if let Some(r) = ready {
                    st.queue.remove(0);
                    st.sending = Some((r.0, r.1));
                    break r;
                }
                // Rounds of a run that is no longer the session are dropped.
                let session_run = st.session.as_ref().map(|s| s.run);
                st.queue.retain(|(run, _)| Some(*run) == session_run);
                st = relay
                    .changed
                    .wait_timeout(st, Duration::from_millis(300))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        };
        let done = send_one(relay, &group, run, round, &session, &path);
        let mut st = relay.lock();
        st.sending = None;
        match done {
            Ok(d) => {
                st.sent.insert((run, round), d.clone());
                let acked = st.acked.get(&run).map_or(0, BTreeSet::len);
                let master = st.master.clone();
                drop(st);
                tracing::info!(
                    run,
                    round,
                    datagrams = d.datagrams,
                    bytes = d.bytes,
                    ratio = format_args!("{:.4}", d.bytes as f64 / session.size.max(1) as f64),
                    elapsed_ms = d.elapsed_ms,
                    clients_done = acked,
                    "round sent"
                );
                if let Some(m) = master {
                    let _ = m.send(&Message::RoundDone(d));
                }
            }
            Err(e) => tracing::error!(run, round, "round failed: {e}"),
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
