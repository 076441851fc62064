//! The recorder: what arrives from the fleet, filed by the master's own
//! knowledge and written in group commits; acknowledged only once durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::mpsc::Sender;
use std::time::Duration;

use haifu_core::Digest;
use haifu_ledger::ClientTouch;
use haifu_ledger::ClientUpdate;
use haifu_ledger::FleetBatch;
use haifu_ledger::Ledger;
use haifu_ledger::Traffic;
use haifu_ledger::TrafficKind;
use haifu_protocol::Completion;
use haifu_protocol::CompletionAck;
use haifu_protocol::ErrorCode;
use haifu_protocol::Message;
use haifu_protocol::Via;
use jiff::Timestamp;

use crate::common::Shutdown;
use crate::link::Link;
use crate::trust;

/// What the recorder writes.
#[derive(Debug)]
pub(super) enum Record {
    Completion {
        link: Arc<Link>,
        completion: Completion,
        /// The round it counts in, from the rounds this master started
        /// (`None`: the run is not on air here; the recorder asks the run's
        /// snapshot).
        round: Option<u32>,
        /// The relay the completion came through (a client's own word:
        /// `None`).
        relay: Option<String>,
        /// Whether the run is on air for that relay, so a client it does
        /// not list yet may join it.
        joinable: bool,
    },
    Report {
        touch: ClientTouch,
        join: Option<(i64, String, String)>,
        current: Option<i64>,
    },
    /// Bytes sent: a relay's round or fetch, a straggler's delta or copy.
    Traffic(Traffic),
}

/// Where the threads that send bytes record them.
#[derive(Clone)]
pub(crate) struct TrafficLog(pub(super) Sender<Record>);

impl TrafficLog {
    /// Records `bytes` sent to `peer` for `run` (a run that does not exist
    /// is skipped by the ledger).
    pub(crate) fn record(
        &self,
        run: i64,
        peer: &str,
        kind: TrafficKind,
        round: Option<u32>,
        bytes: u64,
    ) {
        let _ = self.0.send(Record::Traffic(Traffic {
            run,
            peer: peer.to_owned(),
            kind,
            round,
            bytes,
        }));
    }
}

/// The recorder: batches what arrives into one transaction, then acks.
pub(super) fn recorder(path: &std::path::Path, rx: &Receiver<Record>, shutdown: &Shutdown) {
    let mut ledger = match Ledger::open(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("recorder cannot open the ledger: {e}");
            shutdown.trigger();
            return;
        }
    };
    let mut runs: HashMap<u64, Digest> = HashMap::new();
    let mut total = 0u64;
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut items = vec![first];
        while items.len() < 8192 {
            match rx.try_recv() {
                Ok(r) => items.push(r),
                Err(_) => break,
            }
        }
        let mut batch = FleetBatch::default();
        let mut acks: Vec<(Arc<Link>, CompletionAck)> = Vec::new();
        for item in items {
            match item {
                Record::Report {
                    touch,
                    join,
                    current,
                } => {
                    if let Some(j) = join {
                        batch.joins.push(j);
                    }
                    if let Some(run) = current {
                        batch.updates.push((
                            run,
                            ClientUpdate::Current {
                                client: touch.client.clone(),
                                at: touch.at.clone(),
                            },
                        ));
                    }
                    batch.touches.push(touch);
                }
                Record::Traffic(t) => batch.traffic.push(t),
                Record::Completion {
                    link,
                    completion: c,
                    round,
                    relay,
                    joinable,
                } => {
                    match file_completion(&ledger, &mut runs, c, round, relay.as_deref(), joinable)
                    {
                        Filed::Record {
                            run,
                            join,
                            update,
                            ack,
                        } => {
                            batch.joins.extend(join);
                            batch.updates.push((run, update));
                            acks.push((link, ack));
                        }
                        Filed::AckOnly(ack) => acks.push((link, ack)),
                        Filed::Refused {
                            code,
                            about,
                            reason,
                        } => {
                            tracing::warn!(peer = link.peer(), "completion refused: {reason}");
                            link.error(code, about, reason);
                        }
                    }
                }
            }
        }
        if batch.is_empty() {
            // Only acks for completions with nothing left to record.
            for (link, ack) in acks {
                let _ = link.send(&Message::CompletionAck(ack));
            }
            continue;
        }
        match ledger.apply_fleet(&batch) {
            Ok(n) => {
                total += n;
                tracing::debug!(
                    completions = acks.len(),
                    new = n,
                    reports = batch.touches.len(),
                    total,
                    "recorded"
                );
                // Durable: now, and only now, the acks.
                for (link, ack) in acks {
                    let _ = link.send(&Message::CompletionAck(ack));
                }
            }
            // Nothing is acked: the clients resend.
            Err(e) => tracing::error!("recording {} items failed: {e}", acks.len()),
        }
        if shutdown.is_set() && rx.try_recv().is_err() {
            // Senders may still hold the channel; what they send after
            // shutdown is resent by the clients to the next master.
            break;
        }
    }
}

/// What the recorder does with one completion.
#[derive(Debug)]
pub(super) enum Filed {
    /// Write `update` (after joining the client to the run where `join`
    /// says), then send `ack`.
    Record {
        run: i64,
        join: Option<(i64, String, String)>,
        update: ClientUpdate,
        ack: CompletionAck,
    },
    /// Nothing to write; acknowledged so the client stops resending.
    AckOnly(CompletionAck),
    /// Refused: an error to the peer; nothing written or acknowledged.
    Refused {
        code: ErrorCode,
        about: u64,
        reason: String,
    },
}

/// Decides how a completion is filed, from the ledger and the master's own
/// knowledge only: the run must exist and be of that digest, must list the
/// client behind the relay it came through (or be on air for that relay, so
/// the client joins), and a broadcast completion counts in a round this
/// master started, never in a number the client sent.
pub(super) fn file_completion(
    ledger: &Ledger,
    digests: &mut HashMap<u64, Digest>,
    mut c: Completion,
    round: Option<u32>,
    relay: Option<&str>,
    joinable: bool,
) -> Filed {
    let ack = CompletionAck {
        run: c.run,
        client: c.client.clone(),
        digest: c.digest,
    };
    let refused = |code, about, reason: String| Filed::Refused {
        code,
        about,
        reason,
    };
    // Run 0 by delta: the run that lists the client as a straggler (a
    // client on boot does not know it).
    if c.run == 0 && c.via == Via::Delta {
        match ledger.straggler_run(&c.client) {
            Ok(Some((run, _, _))) => c.run = u64::try_from(run).unwrap_or(0),
            // Nothing left to record: ack so it stops.
            _ => return Filed::AckOnly(ack),
        }
    }
    // Only found digests are cached: a run whose version is registered
    // later is found then.
    let digest = match digests.get(&c.run) {
        Some(d) => Some(*d),
        None => {
            let d = run_digest(ledger, c.run);
            if let Some(d) = d {
                digests.insert(c.run, d);
            }
            d
        }
    };
    let (Some(digest), Ok(run)) = (digest, i64::try_from(c.run)) else {
        return refused(
            ErrorCode::UnknownRun,
            c.run,
            format!("run {} is unknown", c.run),
        );
    };
    if digest != c.digest {
        return refused(
            ErrorCode::Unexpected,
            c.run,
            format!(
                "client {} completed with a digest that is not run {}'s",
                c.client, c.run
            ),
        );
    }
    let listed = match ledger.run_client_relay(run, &c.client) {
        Ok(l) => l,
        Err(e) => return refused(ErrorCode::Internal, c.run, format!("ledger: {e}")),
    };
    let not_in_run = || {
        let why = trust::Refusal::NotInRun {
            run: c.run,
            client: c.client.clone(),
            relay: relay.unwrap_or("-").to_owned(),
        };
        refused(ErrorCode::Unexpected, c.run, why.to_string())
    };
    let join = match (listed, relay) {
        (Some(behind), Some(relay)) if behind != relay => return not_in_run(),
        (Some(_), _) => None,
        // A client that reported in while another run was on air joins
        // this one now, so its completion is recorded, not just acked.
        (None, _) if joinable => {
            Some((run, c.client.clone(), relay.unwrap_or(&c.client).to_owned()))
        }
        (None, _) => return not_in_run(),
    };
    let round = match c.via {
        Via::Delta => None,
        Via::Round(_) => {
            let round = round.map(Ok).unwrap_or_else(|| {
                let starts = ledger
                    .run(run)
                    .ok()
                    .flatten()
                    .and_then(|row| haifu_runtime::machine::RunState::of_run(&row).ok())
                    .map(|s| trust::numbered(&s.rounds_started()))
                    .unwrap_or_default();
                trust::completion_round(c.run, &starts, c.at)
            });
            match round {
                Ok(r) => Some(r),
                Err(why) => return refused(ErrorCode::Unexpected, c.run, why.to_string()),
            }
        }
    };
    Filed::Record {
        run,
        join,
        update: ClientUpdate::Completed {
            client: c.client,
            round,
            at: Timestamp::now().to_string(),
        },
        ack,
    }
}

pub(super) fn run_digest(ledger: &Ledger, run: u64) -> Option<Digest> {
    let id = i64::try_from(run).ok()?;
    let row = ledger.run(id).ok()??;
    ledger
        .manifest(&row.artifact, &row.version)
        .ok()?
        .map(|m| m.body.sha3_256)
}

/// The completion and round-report paths from a peer's message through the
/// master's checks into the ledger and the audit, with arbitrary values
/// where a peer chooses them: nothing panics, nothing sizes
/// memory, and only what the rules allow is recorded.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fuzz {
    use super::*;
    use haifu_ledger::NewRun;
    use haifu_ledger::RunFleet;
    use haifu_runtime::machine::RunState;
    use haifu_spec::steps::broadcast::{Phase, State as Broadcast};
    use haifu_spec::steps::machine::StepState;
    use proptest::prelude::*;

    const CLIENTS: [&str; 4] = ["c0", "c1", "c2", "c3"];
    const RELAYS: [&str; 3] = ["relay-0", "relay-1", "relay-x"];

    /// A claim as a peer may make it.
    #[derive(Debug, Clone)]
    struct Claim {
        client: String,
        relay: Option<&'static str>,
        run: u64,
        round: Option<u32>,
        via_round: Option<u32>,
        right_digest: bool,
        at_secs: i64,
        joinable: bool,
    }

    fn claim() -> impl Strategy<Value = Claim> {
        (
            prop_oneof![
                (0..CLIENTS.len()).prop_map(|i| CLIENTS[i].to_owned()),
                "[a-z]{1,8}",
            ],
            prop_oneof![Just(None), (0..RELAYS.len()).prop_map(|i| Some(RELAYS[i]))],
            prop_oneof![4 => Just(1u64), 1 => Just(0u64), 1 => any::<u64>()],
            // What the hub computed: only rounds the master started.
            prop_oneof![Just(None), (1u32..=2).prop_map(Some)],
            prop_oneof![Just(None), any::<u32>().prop_map(Some)],
            any::<bool>(),
            -10_000_000_000i64..10_000_000_000,
            any::<bool>(),
        )
            .prop_map(
                |(client, relay, run, round, via_round, right_digest, at_secs, joinable)| Claim {
                    client,
                    relay,
                    run,
                    round,
                    via_round,
                    right_digest,
                    at_secs,
                    joinable,
                },
            )
    }

    fn digest(b: u8) -> Digest {
        Digest::from_bytes([b; 32])
    }

    /// A ledger with run 1: c0, c1 behind relay-0, c2 behind relay-1 (c3
    /// is in no run), two rounds started.
    fn ledger() -> (tempfile::TempDir, Ledger, i64) {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        let t0: Timestamp = "2026-11-28T10:00:00Z".parse().unwrap();
        let state = RunState {
            step: 1,
            current: Some(StepState::Broadcast(Broadcast {
                phase: Phase::RoundOpen { round: 2 },
                started: vec![t0, t0 + jiff::SignedDuration::from_secs(60)],
                stopped_early: None,
            })),
            finished: Vec::new(),
            finished_at: None,
        };
        let clients: Vec<(String, String)> =
            [("c0", "relay-0"), ("c1", "relay-0"), ("c2", "relay-1")]
                .iter()
                .map(|(c, r)| ((*c).to_owned(), (*r).to_owned()))
                .collect();
        let run = l
            .create_run(&NewRun {
                workflow: "w.yaml",
                name: "w",
                artifact: "app",
                version: "1.0.0",
                fleet: &RunFleet::Live,
                state: &serde_json::to_string(&state).unwrap(),
                next_wake: None,
                clients: &clients,
            })
            .unwrap();
        (dir, l, run)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn peer_claims_through_the_recorder_keep_the_ledger_sound(
            claims in proptest::collection::vec(claim(), 1..40),
            reports in proptest::collection::vec((any::<u32>(), any::<u64>()), 0..8),
        ) {
            let (_dir, mut l, run) = ledger();
            let mut digests = HashMap::from([(1u64, digest(7))]);
            let started = trust::numbered(
                &RunState::of_run(&l.run(run).unwrap().unwrap())
                    .unwrap()
                    .rounds_started(),
            );
            let listed = |c: &str| match c {
                "c0" | "c1" => Some("relay-0"),
                "c2" => Some("relay-1"),
                _ => None,
            };
            let mut batch = FleetBatch::default();
            for c in &claims {
                let completion = Completion {
                    run: c.run,
                    client: c.client.clone(),
                    via: c.via_round.map_or(Via::Delta, Via::Round),
                    digest: if c.right_digest { digest(7) } else { digest(8) },
                    at: Timestamp::from_second(c.at_secs).unwrap(),
                };
                match file_completion(&l, &mut digests, completion, c.round, c.relay, c.joinable) {
                    Filed::Record { run: r, join, update, .. } => {
                        prop_assert_eq!(r, run);
                        prop_assert!(c.right_digest);
                        // Through a relay: only behind it, or joining a run
                        // on air for it.
                        if let Some(relay) = c.relay {
                            prop_assert!(listed(&c.client) == Some(relay) || (listed(&c.client).is_none() && c.joinable));
                        }
                        if let ClientUpdate::Completed { round: Some(n), .. } = &update {
                            prop_assert!(started.iter().any(|(s, _)| s == n), "round {} never started", n);
                        }
                        batch.joins.extend(join);
                        batch.updates.push((r, update));
                    }
                    Filed::AckOnly(_) | Filed::Refused { .. } => {}
                }
            }
            for (round, bytes) in reports {
                if trust::round_report(1, round, bytes, &started, 1 << 20).is_ok() {
                    batch.traffic.push(Traffic {
                        run,
                        peer: "relay-0".into(),
                        kind: TrafficKind::Multicast,
                        round: Some(round),
                        bytes,
                    });
                }
            }
            l.apply_fleet(&batch).unwrap();
            let audit = l.audit(run).unwrap().unwrap();
            for r in &audit.relays {
                prop_assert!(r.delivered_by_round.len() <= 2);
                prop_assert!(r.delivered_unknown_round.is_empty());
            }
            let traffic = l.traffic(run).unwrap();
            prop_assert!(traffic.multicast_by_round.len() <= 2);
            haifu_runtime::report::Report::from_ledger(&l, run).unwrap();
        }
    }
}
