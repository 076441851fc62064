//! How a completion is filed: checked against what the master knows (the
//! run, its digest, who it lists behind which relay, the rounds it started)
//! and turned into rows, never into a number the peer chose.
//!
//! What the master knows comes through [`Facts`], read from the ledger by
//! the daemon and from a model in the core's tests and the simulation.

use std::collections::HashMap;

use haifu_core::Digest;
use haifu_ledger::ClientUpdate;
use haifu_ledger::Ledger;
use haifu_ledger::LedgerError;
use haifu_protocol::ArtifactRef;
use haifu_protocol::Completion;
use haifu_protocol::CompletionAck;
use haifu_protocol::ErrorCode;
use haifu_protocol::Via;
use jiff::Timestamp;

use crate::trust;

/// What the master's decisions read from its ledger.
pub(crate) trait Facts {
    /// The sha3-256 of run `run`'s version (`None`: no such run, or its
    /// version is not registered).
    fn run_digest(&self, run: u64) -> Option<Digest>;
    /// The relay run `run` lists `client` behind (`None`: not in the run).
    fn run_client_relay(&self, run: i64, client: &str) -> Result<Option<String>, LedgerError>;
    /// The newest running run that lists `client` as a straggler.
    fn straggler_run(&self, client: &str) -> Option<i64>;
    /// The rounds run `run`'s snapshot says were started, numbered.
    fn rounds_started(&self, run: i64) -> Vec<(u32, Timestamp)>;
    /// The relay the ledger has `client` behind (the operator's last word,
    /// after `haifu fleet move`).
    fn client_relay(&self, client: &str) -> Option<String>;
    /// What a straggler reporting in at `now` should be moved to (a newer
    /// version of a running run that lists it as undelivered, inside that
    /// run's delta window), if anything.
    fn straggler_target(&self, client: &str, now: Timestamp) -> Option<ArtifactRef>;
    /// Whether rollback order `order` is `client`'s and its outcome is
    /// recorded (a report resent after this master restarted is acked).
    fn rollback_recorded(&self, order: u64, client: &str) -> bool;
    /// What run `run` has `client` as (`None`: not in the run, or the
    /// ledger could not say).
    fn run_client_state(&self, run: i64, client: &str) -> Option<haifu_ledger::ClientState>;
}

impl Facts for Ledger {
    fn rollback_recorded(&self, order: u64, client: &str) -> bool {
        let Ok(id) = i64::try_from(order) else {
            return false;
        };
        matches!(
            self.rollback(id),
            Ok(Some(o)) if o.client == client && o.state != haifu_ledger::RollbackState::Ordered
        )
    }

    fn run_client_state(&self, run: i64, client: &str) -> Option<haifu_ledger::ClientState> {
        Ledger::run_client_state(self, run, client).ok().flatten()
    }

    fn run_digest(&self, run: u64) -> Option<Digest> {
        let id = i64::try_from(run).ok()?;
        let row = self.run(id).ok()??;
        self.manifest(&row.artifact, &row.version)
            .ok()?
            .map(|m| m.body.sha3_256)
    }

    fn run_client_relay(&self, run: i64, client: &str) -> Result<Option<String>, LedgerError> {
        Ledger::run_client_relay(self, run, client)
    }

    fn straggler_run(&self, client: &str) -> Option<i64> {
        Ledger::straggler_run(self, client)
            .ok()
            .flatten()
            .map(|(run, _, _)| run)
    }

    fn rounds_started(&self, run: i64) -> Vec<(u32, Timestamp)> {
        self.run(run)
            .ok()
            .flatten()
            .and_then(|row| haifu_runtime::machine::RunState::of_run(&row).ok())
            .map(|s| trust::numbered(&s.rounds_started()))
            .unwrap_or_default()
    }

    fn client_relay(&self, client: &str) -> Option<String> {
        self.client(client).ok().flatten().and_then(|row| row.relay)
    }

    fn straggler_target(&self, client: &str, now: Timestamp) -> Option<ArtifactRef> {
        crate::deltas::target_for(self, client, now)
            .and_then(|(_, m)| crate::deltas::artifact_ref(&m))
    }
}

/// A completion as the master received it, with what the master itself
/// knows about it.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    /// The message.
    pub(crate) completion: Completion,
    /// The round it counts in, from the rounds this master started
    /// (`None`: the run is not on air here; the run's snapshot is asked).
    pub(crate) round: Option<u32>,
    /// The relay it came through (`None`: the client's own word).
    pub(crate) relay: Option<String>,
    /// Whether the run is on air for that relay, so a client it does not
    /// list yet may join it.
    pub(crate) joinable: bool,
}

/// What the recorder does with one completion.
#[derive(Debug)]
pub(crate) enum Filed {
    /// Write `update` (after joining the client to the run where `join`
    /// says), then send `ack`.
    Record {
        /// The run.
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
pub(crate) fn file_completion(
    facts: &dyn Facts,
    digests: &mut HashMap<u64, Digest>,
    claim: Claim,
    now: Timestamp,
) -> Filed {
    let Claim {
        completion: mut c,
        round,
        relay,
        joinable,
    } = claim;
    let relay = relay.as_deref();
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
        match facts.straggler_run(&c.client) {
            Some(run) => c.run = u64::try_from(run).unwrap_or(0),
            // Nothing left to record: ack so it stops.
            _ => return Filed::AckOnly(ack),
        }
    }
    // Only found digests are cached: a run whose version is registered
    // later is found then.
    let digest = match digests.get(&c.run) {
        Some(d) => Some(*d),
        None => {
            let d = facts.run_digest(c.run);
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
    let listed = match facts.run_client_relay(run, &c.client) {
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
                trust::completion_round(c.run, &facts.rounds_started(run), c.at)
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
            at: now.to_string(),
        },
        ack,
    }
}

/// The completion and round-report paths from a peer's message through the
/// master's checks into the ledger and the audit, with arbitrary values
/// where a peer chooses them: nothing panics, nothing sizes
/// memory, and only what the rules allow is recorded.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fuzz {
    use super::*;
    use haifu_ledger::FleetBatch;
    use haifu_ledger::Traffic;
    use haifu_ledger::TrafficKind;
    use haifu_ledger::testing::TestRun;
    use haifu_runtime::machine::RunState;
    use haifu_spec::steps::broadcast::{Phase, State as Broadcast};
    use haifu_spec::steps::machine::StepState;
    use proptest::prelude::*;

    const CLIENTS: [&str; 4] = ["c0", "c1", "c2", "c3"];
    const RELAYS: [&str; 3] = ["relay-0", "relay-1", "relay-x"];

    /// A claim as a peer may make it.
    #[derive(Debug, Clone)]
    struct PeerClaim {
        client: String,
        relay: Option<&'static str>,
        run: u64,
        round: Option<u32>,
        via_round: Option<u32>,
        right_digest: bool,
        at_secs: i64,
        joinable: bool,
    }

    fn claim() -> impl Strategy<Value = PeerClaim> {
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
                |(client, relay, run, round, via_round, right_digest, at_secs, joinable)| {
                    PeerClaim {
                        client,
                        relay,
                        run,
                        round,
                        via_round,
                        right_digest,
                        at_secs,
                        joinable,
                    }
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
                stage: None,
            })),
            finished: Vec::new(),
            finished_at: None,
        };
        let run = TestRun::new()
            .clients([("c0", "relay-0"), ("c1", "relay-0"), ("c2", "relay-1")])
            .state(serde_json::to_string(&state).unwrap())
            .create(&mut l)
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
                let claim = super::Claim {
                    completion,
                    round: c.round,
                    relay: c.relay.map(str::to_owned),
                    joinable: c.joinable,
                };
                match file_completion(&l, &mut digests, claim, Timestamp::now()) {
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
