//! Clients' failures after install (`InstallFailed`, feature
//! `failure-reports`): taken only from the relay the client is registered
//! behind or from the client itself, only for a run of that digest that
//! targets the client (of a staged run, only from a client its stages
//! admitted: no other was handed the key), recorded in the next group commit and acked once
//! durable. A client an operator readmitted is told so when the run's
//! next round starts (a failure this master recorded), or in answer to
//! its next version report during the run.

use haifu_ledger::ClientState;
use haifu_ledger::FailureReport;
use haifu_protocol::FailureAck;
use haifu_protocol::FailureKind;
use haifu_protocol::InstallFailed;
use haifu_protocol::Message;
use haifu_protocol::RegisterClient;

use super::super::filing::Facts;
use super::ConnId;
use super::MasterCore;
use super::Out;
use crate::trust;

impl MasterCore {
    pub(super) fn install_failed(
        &mut self,
        out: &mut Out,
        conn: ConnId,
        peer: &str,
        is_relay: bool,
        f: InstallFailed,
        facts: &dyn Facts,
    ) {
        let allowed = if is_relay {
            let bound = self.bound.get(&f.client).map(String::as_str);
            trust::relay_completes_for(bound, peer, &f.client)
        } else {
            trust::client_speaks_for(peer, &f.client)
        };
        if let Err(why) = allowed {
            return self.refuse(out, conn, peer, f.run, &why);
        }
        let Some(run) = self.failed_run(&f, facts) else {
            let why = trust::Refusal::NotInRun {
                run: f.run,
                client: f.client.clone(),
                relay: peer.to_owned(),
            };
            return self.refuse(out, conn, peer, f.run, &why);
        };
        if !self.stages.admits(run, &f.client) {
            let why = trust::Refusal::NotAdmitted {
                run,
                client: f.client.clone(),
            };
            return self.refuse(out, conn, peer, run, &why);
        }
        let id = i64::try_from(run).unwrap_or(i64::MAX);
        let ack = Message::FailureAck(FailureAck {
            run,
            client: f.client.clone(),
            digest: f.digest,
            readmitted: false,
        });
        let queued = |b: &haifu_ledger::FleetBatch| {
            b.failures
                .iter()
                .any(|q| q.run == id && q.client == f.client)
        };
        if queued(&self.next) || self.in_flight.as_ref().is_some_and(|(b, _)| queued(b)) {
            // A resend while the first is being written: its ack follows.
            return;
        }
        self.held.insert((run, f.client.clone()), f.digest);
        if facts.run_client_state(id, &f.client) == Some(ClientState::Failed) {
            // Recorded already (the ack was lost, or this master
            // restarted): said again, nothing written.
            return out.send(conn, ack);
        }
        tracing::warn!(
            run,
            client = %f.client,
            kind = %f.kind,
            "client's installed version failed: {}",
            f.reason
        );
        self.next.failures.push(FailureReport {
            run: id,
            client: f.client,
            kind: kind_of(f.kind),
            reason: f.reason,
            at: f.at.to_string(),
        });
        self.next_acks.push((conn, ack));
    }

    /// The run a failure is filed under: the one it names, or for run 0
    /// (installed from the master) the run on air, else the running run
    /// that lists the client as a straggler; only a run of the failed
    /// digest that targets the client.
    fn failed_run(&mut self, f: &InstallFailed, facts: &dyn Facts) -> Option<u64> {
        let run = match f.run {
            0 => self
                .active
                .as_ref()
                .map(|a| a.instruction.run)
                .filter(|r| self.digest_of(*r, facts) == Some(f.digest))
                .or_else(|| {
                    facts
                        .straggler_run(&f.client)
                        .and_then(|r| u64::try_from(r).ok())
                })?,
            r => r,
        };
        if self.digest_of(run, facts) != Some(f.digest) {
            return None;
        }
        let id = i64::try_from(run).ok()?;
        facts.run_client_state(id, &f.client).map(|_| run)
    }

    fn digest_of(&mut self, run: u64, facts: &dyn Facts) -> Option<haifu_core::Digest> {
        if let Some(d) = self.digests.get(&run) {
            return Some(*d);
        }
        let d = facts.run_digest(run)?;
        self.digests.insert(run, d);
        Some(d)
    }

    /// A client's version report through its relay during run `run` (on
    /// air for that relay): if the client does not run the run's version
    /// and the ledger has it pending again (an operator readmitted it), it
    /// is told, so it forgets the failure it holds. A client that holds
    /// none ignores the word; one whose failure is still being written is
    /// not told.
    pub(super) fn readmission(
        &self,
        out: &mut Out,
        conn: ConnId,
        run: u64,
        c: &RegisterClient,
        facts: &dyn Facts,
    ) {
        let Some(a) = self.active.as_ref().filter(|a| a.instruction.run == run) else {
            return;
        };
        let digest = a.artifact().digest;
        if c.installed.as_ref().is_some_and(|i| i.digest == digest) {
            return;
        }
        let id = i64::try_from(run).unwrap_or(i64::MAX);
        let writing = |b: &haifu_ledger::FleetBatch| {
            b.failures
                .iter()
                .any(|q| q.run == id && q.client == c.client)
        };
        if writing(&self.next) || self.in_flight.as_ref().is_some_and(|(b, _)| writing(b)) {
            return;
        }
        if facts.run_client_state(id, &c.client) == Some(ClientState::Pending) {
            let ack = FailureAck {
                run,
                client: c.client.clone(),
                digest,
                readmitted: true,
            };
            out.send(conn, Message::FailureAck(ack));
        }
    }
}

impl MasterCore {
    /// A round of the run on air starts: each client whose failure in it
    /// this master recorded and whom the ledger has pending again (an
    /// operator readmitted it) is told so through its relay now, so it
    /// hears this round. Its own version report asks only every
    /// `ASK_READMISSION`, which may fall outside a short broadcast (a
    /// resumed stage's few rounds). Told once; a client not behind a
    /// connected relay it targets is told at its next report instead.
    pub(super) fn tell_readmitted(&mut self, out: &mut Out, facts: &dyn Facts) {
        let Some(a) = self.active.as_ref() else {
            return;
        };
        let run = a.instruction.run;
        // Only the run on air's: another run's failures are over.
        self.held.retain(|(r, _), _| *r == run);
        let id = i64::try_from(run).unwrap_or(i64::MAX);
        let mut told = Vec::new();
        for ((_, client), digest) in &self.held {
            if facts.run_client_state(id, client) != Some(ClientState::Pending) {
                continue;
            }
            let Some(relay) = self.bound.get(client).filter(|r| a.targets(r)) else {
                continue;
            };
            let Some(&conn) = self.relays.get(relay) else {
                continue;
            };
            tracing::info!(run, client = %client, relay = %relay, "readmitted client told at the round's start");
            out.send(
                conn,
                Message::FailureAck(FailureAck {
                    run,
                    client: client.clone(),
                    digest: *digest,
                    readmitted: true,
                }),
            );
            told.push((run, client.clone()));
        }
        for k in told {
            self.held.remove(&k);
        }
    }
}

/// The protocol's kind as the ledger stores it (the same three words).
fn kind_of(k: FailureKind) -> haifu_ledger::FailureKind {
    match k {
        FailureKind::PostInstall => haifu_ledger::FailureKind::PostInstall,
        FailureKind::Health => haifu_ledger::FailureKind::Health,
        FailureKind::RolledBack => haifu_ledger::FailureKind::RolledBack,
    }
}
