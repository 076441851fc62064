//! The round queue: one paced carousel round at a time through the
//! multicast plugin, with the repairs its listeners ask for.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;
use std::time::Instant;

use haifu_carousel::CarouselKey;
use haifu_carousel::LinkOverhead;
use haifu_carousel::Pacer;
use haifu_carousel::PacerConfig;
use haifu_plugin_host::DatagramGroup;
use haifu_plugin_host::Plugin;
use haifu_protocol::Instruction;
use haifu_protocol::RoundBudget;
use haifu_protocol::RoundDone;

use super::Relay;
use super::ToAir;
use super::fetch::artifact_path;
use super::machine::Event;
use crate::FleetError;
use crate::broadcast::BroadcastError;
use crate::broadcast::Heard;

/// A round the core ordered.
struct Order {
    round: u32,
    session: Box<Instruction>,
    budget: Option<RoundBudget>,
}

/// Sends the rounds the core orders, one at a time.
pub(super) fn broadcaster(relay: &Arc<Relay>, multicast: &Plugin, orders: &Receiver<ToAir>) {
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
    let mut queue = VecDeque::new();
    while !relay.shutdown.is_set() {
        let order = match queue.pop_front() {
            Some(o) => o,
            None => match orders.recv_timeout(Duration::from_millis(300)) {
                Ok(ToAir::Round {
                    round,
                    session,
                    budget,
                }) => Order {
                    round,
                    session,
                    budget,
                },
                // A report with no round on air: nothing to do with it.
                Ok(ToAir::Feedback { .. }) | Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            },
        };
        let run = order.session.run;
        let round = order.round;
        let path = artifact_path(&relay.cfg.data, &order.session.artifact);
        let mut reports = |wait: Duration| loop {
            let got = if wait.is_zero() {
                orders.try_recv().ok()
            } else {
                orders.recv_timeout(wait).ok()
            };
            match got? {
                ToAir::Feedback {
                    client,
                    feedback,
                    at,
                } if feedback.run == run => {
                    return Some(Heard {
                        listener: client,
                        report: super::repair::report(feedback),
                        at,
                    });
                }
                ToAir::Feedback { .. } => {}
                // The core orders one round at a time; keep any other.
                ToAir::Round {
                    round,
                    session,
                    budget,
                } => queue.push_back(Order {
                    round,
                    session,
                    budget,
                }),
            }
        };
        // Every line about this round, here and in what it leads to,
        // names its run and round.
        let _round = tracing::info_span!("round", run, round).entered();
        match send_one(relay, &group, &order, &path, &mut reports) {
            Ok(d) => {
                tracing::info!(
                    run,
                    round,
                    datagrams = d.datagrams,
                    bytes = d.bytes,
                    ratio = format_args!("{:.4}", d.bytes as f64 / order.session.size.max(1) as f64),
                    elapsed_ms = d.elapsed_ms,
                    listeners = ?d.listeners,
                    clients_done = relay.lock().core.acked(run),
                    "round sent"
                );
                relay.handle(Event::RoundSent(d));
            }
            Err(FleetError::Broadcast(BroadcastError::Stopped { datagrams }))
                if !relay.shutdown.is_set() =>
            {
                tracing::info!(run, round, datagrams, "round stopped: its run left the air");
                relay.handle(Event::RoundStopped { run, round });
            }
            Err(e) => {
                tracing::error!(run, round, "round failed: {e}");
                relay.handle(Event::RoundFailed { run, round });
            }
        }
    }
}

fn send_one(
    relay: &Relay,
    group: &DatagramGroup,
    order: &Order,
    path: &Path,
    reports: &mut crate::broadcast::Reports<'_>,
) -> Result<RoundDone, FleetError> {
    let session = &order.session;
    let (run, round) = (session.run, order.round);
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
    let params = super::repair::repair_params(
        order.budget.as_ref(),
        session.size,
        sender.config().repair_overhead,
    );
    // The rate counts what the link carries: UDP, IP and Ethernet headers
    // of the group's family, with fragments at the link's MTU, not just the
    // datagram.
    let multicast = &relay.cfg.multicast;
    let link = super::mtu::link_mtu(
        multicast.mtu,
        multicast.interface.as_deref(),
        multicast.group.ip(),
    );
    let overhead = LinkOverhead::ethernet_for(multicast.group.ip()).with_mtu(link.mtu);
    let mut pacer =
        Pacer::with_config(PacerConfig::new(session.rate_bps.max(1)).overhead(overhead))?;
    tracing::info!(
        run,
        round,
        feedback = params.feedback,
        mtu = link.mtu,
        mtu_from = %link.source,
        "round starting"
    );
    let started = Instant::now();
    // On shutdown, or when the master takes the run off the air.
    let stop = || relay.shutdown.is_set() || relay.stop_air.load(Ordering::SeqCst) == run;
    let stats = crate::broadcast::air_round(
        group,
        &sender,
        round,
        params,
        &mut read,
        Some(&mut pacer),
        reports,
        &stop,
    )?;
    relay.metrics.repairs_sent(stats.outcome.repairs.0);
    let listeners = order
        .budget
        .map(|_| super::repair::listeners(&stats.outcome));
    Ok(RoundDone {
        run,
        round,
        datagrams: stats.datagrams,
        bytes: stats.bytes,
        elapsed_ms: started.elapsed().as_millis() as u64,
        listeners,
    })
}
