//! The master's rules for what each peer says: a relay's registration and
//! its clients' reports, completions, round reports and fetches, a
//! client's straggler report and delta request; each checked against who
//! may say it (`crate::trust`) before anything is written or sent.

use haifu_ledger::ClientTouch;
use haifu_ledger::ClientUpdate;
use haifu_ledger::Traffic;
use haifu_ledger::TrafficKind;
use haifu_protocol::Completion;
use haifu_protocol::DeltaBody;
use haifu_protocol::DeltaResponse;
use haifu_protocol::DenyList;
use haifu_protocol::ErrorCode;
use haifu_protocol::Message;
use haifu_protocol::RegisterClient;
use haifu_protocol::RegisterRelay;
use haifu_protocol::Registered;
use haifu_protocol::Role;
use haifu_protocol::RoundDone;
use haifu_protocol::StartRound;
use haifu_protocol::Via;
use jiff::Timestamp;

use super::super::filing::Claim;
use super::super::filing::Facts;
use super::super::filing::Filed;
use super::super::filing::file_completion;
use super::ConnId;
use super::Effect;
use super::MAX_DELTAS_SERVING;
use super::MasterCore;
use super::Out;
use crate::link::Counters;
use crate::trust;

impl MasterCore {
    /// Answers a claim this peer may not make: an `Error` naming why,
    /// counted and logged; nothing of it is recorded.
    pub(super) fn refuse(
        &self,
        out: &mut Out,
        conn: ConnId,
        peer: &str,
        about: u64,
        why: &trust::Refusal,
    ) {
        self.refuse_with(out, conn, peer, ErrorCode::Unexpected, about, why);
    }

    pub(super) fn refuse_with(
        &self,
        out: &mut Out,
        conn: ConnId,
        peer: &str,
        code: ErrorCode,
        about: u64,
        why: &trust::Refusal,
    ) {
        Counters::bump(&self.counters.refused);
        tracing::warn!(peer, "refused: {why}");
        out.error(conn, code, about, why.to_string());
    }

    pub(super) fn received(
        &mut self,
        out: &mut Out,
        now: Timestamp,
        conn: ConnId,
        msg: Message,
        facts: &dyn Facts,
    ) {
        let Some(p) = self.conns.get(&conn) else {
            return;
        };
        let (is_relay, is_client) = (p.role == Role::Relay, p.role == Role::Client);
        let (peer, delta, chunked) = (p.name.clone(), p.delta, p.chunked);
        match msg {
            Message::RegisterRelay(r) if is_relay => self.register_relay(out, now, conn, &peer, r),
            Message::RegisterClient(c) if is_relay => {
                self.client_report(out, now, conn, &peer, c, facts)
            }
            // A client talks to the master directly only as a straggler:
            // its version report, then a delta request.
            Message::RegisterClient(c) if is_client => {
                if let Err(why) = trust::client_speaks_for(&peer, &c.client) {
                    return self.refuse(out, conn, &peer, 0, &why);
                }
                let target = facts
                    .straggler_target(&c.client, now)
                    .filter(|t| c.installed.as_ref() != Some(t))
                    .filter(|_| self.stages.refuses_delta(&c.client).is_none());
                self.next.touches.push(touch(&c, None, now));
                out.send(conn, Message::Registered(Registered { target }));
            }
            Message::DeltaRequest(r) if is_client && delta => {
                if let Err(why) = trust::client_speaks_for(&peer, &r.client) {
                    return self.refuse(out, conn, &peer, r.transfer, &why);
                }
                // A slot, or "busy": the client asks again on its next check.
                // A client a staged run has not admitted is offered nothing.
                let refused = match self.stages.refuses_delta(&r.client) {
                    Some(run) => Some(format!(
                        "not admitted to staged run {run} yet: nothing to install"
                    )),
                    None => (self.deltas_serving >= MAX_DELTAS_SERVING).then(|| {
                        format!("busy: {MAX_DELTAS_SERVING} deltas are being served; ask again")
                    }),
                };
                if let Some(reason) = refused {
                    let body = DeltaBody::Refused { reason };
                    let (transfer, to) = (r.transfer, r.to);
                    out.send(
                        conn,
                        Message::DeltaResponse(DeltaResponse { transfer, to, body }),
                    );
                    return;
                }
                self.deltas_serving += 1;
                out.0.push(Effect::Delta { conn, request: r });
            }
            Message::Completion(c) if is_relay || is_client => {
                self.completion(out, now, conn, &peer, is_relay, c, facts);
            }
            Message::InstallFailed(f) if is_relay || is_client => {
                self.install_failed(out, conn, &peer, is_relay, f, facts)
            }
            Message::ClientLabels(l) if is_relay || is_client => {
                self.client_labels(out, conn, &peer, is_relay, l, facts)
            }
            Message::RoundDone(d) if is_relay => self.round_done(out, conn, &peer, d),
            Message::RollbackReport(r) if is_relay => {
                self.rollback_report(out, conn, &peer, r, facts)
            }
            Message::ArtifactFetch(f) if is_relay && chunked => {
                // Only the artifact of a run this relay is instructed for.
                let instructed = self.active.as_ref().is_some_and(|a| {
                    a.instruction.run == f.run && a.targets(&peer) && *a.artifact() == f.artifact
                });
                if instructed {
                    out.0.push(Effect::Fetch { conn, fetch: f });
                } else {
                    let why = trust::Refusal::NotInstructed {
                        relay: peer.clone(),
                    };
                    self.refuse_with(
                        out,
                        conn,
                        &peer,
                        ErrorCode::UnknownArtifact,
                        f.transfer,
                        &why,
                    );
                }
            }
            Message::Error(e) => {
                tracing::warn!(peer, code = ?e.code, about = e.about, "peer reports: {}", e.reason);
            }
            other => {
                Counters::bump(&self.counters.unexpected);
                tracing::warn!(
                    peer,
                    tag = format_args!("{:#04x}", other.tag()),
                    "unexpected message"
                );
                let reason = format!("message {:#04x} is not expected here", other.tag());
                out.error(conn, ErrorCode::Unexpected, 0, reason);
            }
        }
    }

    pub(super) fn register_relay(
        &mut self,
        out: &mut Out,
        now: Timestamp,
        conn: ConnId,
        peer: &str,
        r: RegisterRelay,
    ) {
        if r.relay != peer {
            let reason = format!("relay name {:?} is not the certificate's", r.relay);
            return out.error(conn, ErrorCode::Unexpected, 0, reason);
        }
        out.send(conn, Message::Registered(Registered { target: None }));
        out.send(
            conn,
            Message::DenyList(DenyList {
                identities: self.denied.clone(),
            }),
        );
        self.relays.insert(r.relay.clone(), conn);
        self.relay_since.insert(r.relay.clone(), now);
        self.orders_behind(out, &r.relay);
        match &r.broadcast {
            Some(p) => self.relay_plugins.insert(r.relay.clone(), p.clone()),
            None => self.relay_plugins.remove(&r.relay),
        };
        tracing::info!(
            relay = %r.relay,
            clients = r.clients,
            group = ?r.group,
            broadcast = r.broadcast.as_deref().unwrap_or("unnamed"),
            "relay registered"
        );
        // Held to the run's broadcast transport: a relay on another plugin
        // is left out (and told why); one that comes back on the right one
        // is taken in again.
        if let Some(active) = self.active.as_ref() {
            let wrong = self.wrong_broadcast(active, &r.relay);
            let targeted = active.left_out.contains(&r.relay) || active.targets(&r.relay);
            let run = active.instruction.run;
            if let Some(a) = self.active.as_mut() {
                if let Some(why) = wrong.filter(|_| targeted) {
                    a.left_out.insert(r.relay.clone());
                    tracing::error!(run, relay = %r.relay, "{why}");
                    return out.error(conn, ErrorCode::Unexpected, 0, why);
                }
                a.left_out.remove(&r.relay);
            }
        }
        // A relay that (re)joins mid-run gets the instruction and the round
        // on air: it resumes the broadcast.
        if self.active.as_ref().is_some_and(|a| a.targets(&r.relay))
            && let Some(mut a) = self.active.take()
        {
            let instructed = self.instruct(out, &mut a, &r.relay, conn);
            self.active = Some(a);
            if !instructed {
                return;
            }
        }
        if let Some(active) = self.active.as_ref().filter(|a| a.targets(&r.relay)) {
            self.instructed
                .insert((active.instruction.run, r.relay.clone()));
            if let Some((round, at)) = active.round {
                let run = active.instruction.run;
                if !self.done.contains(&(run, round, r.relay.clone())) {
                    let budget = active.budget;
                    out.send(
                        conn,
                        Message::StartRound(StartRound {
                            run,
                            round,
                            at,
                            budget,
                        }),
                    );
                }
            }
        }
    }

    /// A client's version report, forwarded by its relay: recorded; a
    /// client of a live run joins it, or is marked as already current.
    pub(super) fn client_report(
        &mut self,
        out: &mut Out,
        now: Timestamp,
        conn: ConnId,
        relay: &str,
        c: RegisterClient,
        facts: &dyn Facts,
    ) {
        if c.relay != relay {
            let reason = format!(
                "client {:?} reported by {relay:?}, not by {:?}",
                c.client, c.relay
            );
            return out.error(conn, ErrorCode::Unexpected, 0, reason);
        }
        let before = self.bound.get(&c.client).cloned();
        if let Err(why) = trust::relay_speaks_for(before.as_deref(), relay, &c.client) {
            // The operator may have moved it since (`haifu fleet move`):
            // the ledger has the last word.
            if facts.client_relay(&c.client).as_deref() != Some(relay) {
                return self.refuse(out, conn, relay, 0, &why);
            }
        }
        if before.as_deref() != Some(relay) {
            // Registered now (first report, or moved here): counted against
            // the relay's bound.
            let registered = self.behind.get(relay).copied().unwrap_or(0);
            if let Err(why) = trust::relay_registers(relay, registered, &c.client) {
                return self.refuse(out, conn, relay, 0, &why);
            }
            *self.behind.entry(relay.to_owned()).or_default() += 1;
            if let Some(old) = before.and_then(|o| self.behind.get_mut(&o)) {
                *old = old.saturating_sub(1);
            }
            self.bound.insert(c.client.clone(), relay.to_owned());
            // An admitted client of a staged run now behind this relay: the
            // relay's list grows.
            self.admitted_moved(out, relay, &c.client);
        }
        let held = self.active.as_ref().and_then(|a| a.broadcast.as_ref());
        if let (Some(held), Some(theirs)) = (held, c.broadcast.as_deref())
            && self.active.as_ref().is_some_and(|a| a.targets(relay))
            && !held.admits(Some(theirs))
        {
            // It could not hear the rounds: it stays out of the run (its
            // report is still recorded below).
            let why = held.refusal(&format!("client {:?}", c.client), theirs);
            tracing::warn!(client = %c.client, relay, "{why}");
        } else if let Some(a) = self.active.as_ref().filter(|a| a.targets(relay)) {
            let run = i64::try_from(a.instruction.run).unwrap_or(i64::MAX);
            self.next
                .joins
                .push((run, c.client.clone(), relay.to_owned()));
            if c.installed.as_ref() == Some(a.artifact()) {
                let update = ClientUpdate::Current {
                    client: c.client.clone(),
                    at: now.to_string(),
                };
                self.next.updates.push((run, update));
            }
            self.readmission(out, conn, a.instruction.run, &c, facts);
        } else if let Some(installed) = &c.installed {
            // Off the air: a client that reports the version of a run that
            // lists it as a straggler has it after all (its completion was
            // lost with its disk's copy); recorded, as late once the run has
            // ended, so every installed client is counted once.
            let straggler = facts.straggler_run(&c.client).and_then(|run| {
                let id = u64::try_from(run).ok()?;
                let digest = match self.digests.get(&id) {
                    Some(d) => *d,
                    None => {
                        let d = facts.run_digest(id)?;
                        self.digests.insert(id, d);
                        d
                    }
                };
                (digest == installed.digest).then_some(run)
            });
            if let Some(run) = straggler {
                let update = ClientUpdate::Current {
                    client: c.client.clone(),
                    at: now.to_string(),
                };
                self.next.updates.push((run, update));
            }
        }
        self.next.touches.push(touch(&c, Some(relay), now));
        self.orders_for(out, &c.client);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn completion(
        &mut self,
        out: &mut Out,
        now: Timestamp,
        conn: ConnId,
        peer: &str,
        is_relay: bool,
        c: Completion,
        facts: &dyn Facts,
    ) {
        let relay = is_relay.then(|| peer.to_owned());
        let allowed = match &relay {
            Some(relay) => trust::relay_completes_for(
                self.bound.get(&c.client).map(String::as_str),
                relay,
                &c.client,
            ),
            None => trust::client_speaks_for(peer, &c.client),
        };
        if let Err(why) = allowed {
            return self.refuse(out, conn, peer, c.run, &why);
        }
        // A relay relays what its clients received from its own broadcast;
        // deltas come from the clients themselves.
        if relay.is_some() && (c.via == Via::Delta || c.run == 0) {
            Counters::bump(&self.counters.unexpected);
            let tag = Message::Completion(c).tag();
            let reason = format!("message {tag:#04x} is not expected here");
            return out.error(conn, ErrorCode::Unexpected, 0, reason);
        }
        if c.via != Via::Delta && !self.stages.admits(c.run, &c.client) {
            let why = trust::Refusal::NotAdmitted {
                run: c.run,
                client: c.client.clone(),
            };
            return self.refuse(out, conn, peer, c.run, &why);
        }
        let on_air = self.active.as_ref().filter(|a| a.instruction.run == c.run);
        let round = on_air.and_then(|a| trust::completion_round(c.run, &a.starts, c.at).ok());
        let joinable = on_air.is_some_and(|a| relay.as_deref().is_none_or(|r| a.targets(r)));
        let claim = Claim {
            completion: c,
            round,
            relay,
            joinable,
        };
        match file_completion(facts, &mut self.digests, claim, now) {
            Filed::Record {
                run,
                join,
                update,
                ack,
            } => {
                self.next.joins.extend(join);
                self.next.updates.push((run, update));
                self.next_acks.push((conn, Message::CompletionAck(ack)));
            }
            // Nothing to write: acknowledged now, so the client stops.
            Filed::AckOnly(ack) => out.send(conn, Message::CompletionAck(ack)),
            Filed::Refused {
                code,
                about,
                reason,
            } => {
                tracing::warn!(peer, "completion refused: {reason}");
                out.error(conn, code, about, reason);
            }
        }
    }

    pub(super) fn round_done(&mut self, out: &mut Out, conn: ConnId, peer: &str, d: RoundDone) {
        let checked = match self
            .active
            .as_ref()
            .filter(|a| a.instruction.run == d.run && a.targets(peer))
        {
            Some(a) => trust::round_report(d.run, d.round, d.bytes, &a.starts, a.instruction.size),
            None => Err(trust::Refusal::NotOnAir {
                run: d.run,
                round: d.round,
            }),
        };
        if let Err(why) = checked {
            return self.refuse(out, conn, peer, d.run, &why);
        }
        tracing::info!(
            relay = peer,
            run = d.run,
            round = d.round,
            datagrams = d.datagrams,
            bytes = d.bytes,
            elapsed_ms = d.elapsed_ms,
            "relay finished a round"
        );
        self.next.traffic.push(Traffic {
            run: i64::try_from(d.run).unwrap_or(i64::MAX),
            peer: peer.to_owned(),
            kind: TrafficKind::Multicast,
            round: Some(d.round),
            bytes: d.bytes,
        });
        if let Some(l) = d.listeners {
            // A relay speaks only for the clients behind it.
            let behind = self.behind.get(peer).copied().unwrap_or(0) as u64;
            let decoded = u64::from(l.decoded).min(behind);
            tracing::info!(
                relay = peer,
                run = d.run,
                round = d.round,
                listening = l.listening,
                decoded,
                silent = l.silent,
                repair_bytes = l.repair_bytes,
                max_loss_permille = l.max_loss_permille,
                ended = l.ended,
                "relay's listeners"
            );
            if !self.done.contains(&(d.run, d.round, peer.to_owned())) {
                let e = self.listeners.entry((d.run, d.round)).or_default();
                e.0 += decoded;
                e.1 = e.1.max(l.max_loss_permille.min(1000));
            }
        }
        self.done.insert((d.run, d.round, peer.to_owned()));
    }
}

fn touch(c: &RegisterClient, relay: Option<&str>, now: Timestamp) -> ClientTouch {
    ClientTouch {
        client: c.client.clone(),
        relay: relay.map(str::to_owned),
        artifact: c.installed.as_ref().map(|i| i.name.to_string()),
        version: c.installed.as_ref().map(|i| i.version.to_string()),
        at: now.to_string(),
    }
}
