//! What the master says to the relay: deny lists, the instruction (which
//! starts the artifact's fetch), rounds to start or stop, acks and
//! rollback orders to pass down to a client, and the fetch's header and
//! chunks (checked by the protocol's cursor before a byte is written).

use haifu_protocol::ArtifactFetch;
use haifu_protocol::ChunkCursor;
use haifu_protocol::ErrorCode;
use haifu_protocol::Instruction;
use haifu_protocol::Message;

use super::Effect;
use super::Fetch;
use super::RelayCore;
use super::error;

impl RelayCore {
    pub(super) fn master_said(&mut self, out: &mut Vec<Effect>, msg: Message, on_disk: bool) {
        match msg {
            Message::Registered(_) => {}
            Message::DenyList(d) => {
                for id in &d.identities {
                    self.clients.remove(id);
                }
                out.push(Effect::Deny(d.identities));
            }
            Message::Instruction(i) => self.instruction(out, i, on_disk),
            Message::StartRound(s) => {
                if let Some(done) = self.sent.get(&(s.run, s.round)) {
                    // Already sent (the master restarted and asks again).
                    out.push(Effect::ToMaster(Message::RoundDone(done.clone())));
                } else if self.sending != Some((s.run, s.round))
                    && !self.queue.iter().any(|q| (q.0, q.1) == (s.run, s.round))
                {
                    tracing::info!(run = s.run, round = s.round, budget = ?s.budget, "round queued");
                    self.queue.push((s.run, s.round, s.budget));
                }
            }
            Message::StopRounds(s) => {
                self.queue.retain(|(run, _, _)| *run != s.run);
                if let Some((run, round)) = self.sending.filter(|(run, _)| *run == s.run) {
                    tracing::info!(run, round, "stopping the round on air");
                    out.push(Effect::StopAir { run, round });
                }
                if self.session.as_ref().is_some_and(|i| i.run == s.run) {
                    tracing::info!(run = s.run, acked = self.acked(s.run), "rounds stopped");
                    self.session = None;
                    self.artifact_ready = false;
                }
            }
            Message::CompletionAck(a) => {
                self.acked
                    .entry(a.run)
                    .or_default()
                    .insert(a.client.clone());
                if let Some(&conn) = self.clients.get(&a.client) {
                    out.push(Effect::ToClient {
                        conn,
                        msg: Message::CompletionAck(a),
                    });
                }
            }
            // The master's order for one of this relay's clients, and the
            // ack of its report: passed on to that client if connected
            // (the master sends the order again when it registers).
            Message::Rollback(r) => match self.clients.get(&r.client) {
                Some(&conn) => {
                    tracing::info!(order = r.order, client = %r.client, "rollback order passed on");
                    out.push(Effect::ToClient {
                        conn,
                        msg: Message::Rollback(r),
                    });
                }
                None => {
                    tracing::debug!(order = r.order, client = %r.client, "rollback order for a client not connected")
                }
            },
            // The master's word on a client's failure (recorded, or
            // readmitted): to that client only, if connected (it resends
            // or reports again otherwise).
            Message::FailureAck(a) => {
                if let Some(&conn) = self.clients.get(&a.client) {
                    out.push(Effect::ToClient {
                        conn,
                        msg: Message::FailureAck(a),
                    });
                }
            }
            Message::RollbackAck(a) => {
                if let Some(&conn) = self.clients.get(&a.client) {
                    out.push(Effect::ToClient {
                        conn,
                        msg: Message::RollbackAck(a),
                    });
                }
            }
            Message::ArtifactHeader(h) => {
                if self.fetch.as_ref().is_none_or(|f| f.transfer != h.transfer) {
                    out.push(Effect::ToMaster(
                        self.unexpected(&Message::ArtifactHeader(h)),
                    ));
                    return;
                }
                let expected = self.session.as_ref().map(|i| i.size);
                if expected != Some(h.size) {
                    tracing::warn!(
                        transfer = h.transfer,
                        size = h.size,
                        "artifact size differs from the instruction"
                    );
                    self.fetch = None;
                    out.push(Effect::FetchDrop {
                        transfer: h.transfer,
                    });
                    return;
                }
                if let Some(f) = self.fetch.as_mut() {
                    f.cursor = ChunkCursor::new(h.transfer, h.size, h.size).ok();
                }
            }
            Message::DataChunk(c) => {
                let Some(f) = self.fetch.as_mut().filter(|f| f.transfer == c.transfer) else {
                    out.push(Effect::ToMaster(self.unexpected(&Message::DataChunk(c))));
                    return;
                };
                // The protocol's rules for a transfer's chunks (order,
                // bounds, the last one exact), before a byte is written.
                let checked = match f.cursor.as_mut() {
                    Some(cursor) => cursor.check(&c).map_err(|e| e.to_string()),
                    None => Err("a chunk before the artifact's header".to_owned()),
                };
                let transfer = c.transfer;
                if let Err(why) = checked {
                    out.push(Effect::ToMaster(error(
                        ErrorCode::TransferFailed,
                        transfer,
                        why,
                    )));
                    self.fetch = None;
                    out.push(Effect::FetchDrop { transfer });
                    return;
                }
                out.push(Effect::FetchWrite {
                    transfer,
                    bytes: c.bytes,
                });
                if c.last
                    && let Some(s) = &self.session
                {
                    out.push(Effect::FetchFinish {
                        transfer,
                        artifact: s.artifact.clone(),
                    });
                }
            }
            Message::Error(e) => {
                tracing::warn!(code = ?e.code, about = e.about, "master reports: {}", e.reason);
                if self.fetch.as_ref().is_some_and(|f| f.transfer == e.about) {
                    self.fetch = None;
                    out.push(Effect::FetchDrop { transfer: e.about });
                }
            }
            other => out.push(Effect::ToMaster(self.unexpected(&other))),
        }
    }

    fn instruction(&mut self, out: &mut Vec<Effect>, i: Instruction, on_disk: bool) {
        tracing::info!(
            run = i.run,
            artifact = %i.artifact.name,
            version = %i.artifact.version,
            size = i.size,
            rounds = i.rounds,
            rate_bps = i.rate_bps,
            "instruction"
        );
        let same = self
            .session
            .as_ref()
            .is_some_and(|s| s.run == i.run && s.artifact == i.artifact);
        if !same {
            self.artifact_ready = false;
            if let Some(f) = self.fetch.take() {
                out.push(Effect::FetchDrop {
                    transfer: f.transfer,
                });
            }
        }
        if on_disk {
            self.artifact_ready = true;
        } else if !self.artifact_ready && self.fetch.is_none() {
            let transfer = self.next_transfer;
            self.next_transfer += 1;
            self.fetch = Some(Fetch {
                transfer,
                cursor: None,
            });
            out.push(Effect::FetchStart { transfer });
            out.push(Effect::ToMaster(Message::ArtifactFetch(ArtifactFetch {
                transfer,
                run: i.run,
                artifact: i.artifact.clone(),
            })));
            tracing::info!(transfer, "fetching the artifact from the master");
        }
        // Every connected client learns the session (of a staged run, only
        // those admitted).
        let key = self.session_key(&i);
        for conn in self.keys_due(&i) {
            out.push(Effect::ToClient {
                conn,
                msg: key.clone(),
            });
        }
        self.session = Some(i);
    }
}
