//! What the relay's clients say: a registration (held to the
//! certificate's identity), a completion, a failure report or a rollback
//! report (only about the client itself, passed up while the master is
//! there), feedback for the round on air.

use haifu_protocol::ErrorCode;
use haifu_protocol::Message;
use haifu_protocol::Registered;

use super::ConnId;
use super::Effect;
use super::RelayCore;
use super::error;

impl RelayCore {
    pub(super) fn client_said(&mut self, out: &mut Vec<Effect>, conn: ConnId, msg: Message) {
        let Some(id) = self.conns.get(&conn).cloned() else {
            return;
        };
        let to = |msg| Effect::ToClient { conn, msg };
        match msg {
            Message::RegisterClient(r) => {
                if r.client != id {
                    let why = format!("client id {:?} is not the certificate's {id:?}", r.client);
                    out.push(to(error(ErrorCode::Unexpected, 0, why)));
                    return;
                }
                tracing::info!(
                    client = %id,
                    installed = ?r.installed.as_ref().map(|i| i.version.to_string()),
                    "client registered"
                );
                if let (Some(theirs), Some(mine)) = (&r.broadcast, &self.broadcast)
                    && theirs != mine
                {
                    // It cannot hear this relay's rounds; the master leaves
                    // it out of runs and says why.
                    tracing::warn!(
                        client = %id,
                        client_broadcast = %theirs,
                        relay_broadcast = %mine,
                        "client receives broadcasts with another transport plugin than this relay sends with"
                    );
                }
                let (installed, broadcast) = (r.installed, r.broadcast);
                self.clients.insert(id.clone(), conn);
                self.reports
                    .insert(id.clone(), (installed.clone(), broadcast.clone()));
                // A client outside a staged run's stages is told of no
                // target: it has no version to want yet.
                let target = self
                    .session
                    .as_ref()
                    .filter(|s| Self::admitted(s, &id))
                    .map(|s| s.artifact.clone());
                out.push(to(Message::Registered(Registered { target })));
                if let Some(s) = self.session.as_ref().filter(|s| Self::admitted(s, &id)) {
                    out.push(to(self.session_key(s)));
                }
                if self.master_up {
                    out.push(Effect::ToMaster(self.report(&id, installed, broadcast)));
                }
            }
            Message::ClientLabels(l) => {
                // Only its own, and only checked by the master: a relay
                // forwards, it never authors.
                if l.client != id {
                    let why = format!("labels for {:?}, not the certificate's {id:?}", l.client);
                    out.push(to(error(ErrorCode::Unexpected, 0, why)));
                    return;
                }
                self.labels.insert(id, l.clone());
                if self.master_up {
                    out.push(Effect::ToMaster(Message::ClientLabels(l)));
                }
            }
            Message::Completion(c) => {
                if c.client != id {
                    let why = "completion for another client".to_owned();
                    out.push(to(error(ErrorCode::Unexpected, c.run, why)));
                } else if self.master_up {
                    out.push(Effect::ToMaster(Message::Completion(c)));
                } else {
                    // No master now: the client resends until acked.
                    tracing::debug!(client = %id, "completion held back: no master connection");
                }
            }
            Message::InstallFailed(f) => {
                // Only about itself, like a completion: a relay never
                // speaks for a client of another relay, nor lets one client
                // speak for another.
                if f.client != id {
                    let why = "failure report for another client".to_owned();
                    out.push(to(error(ErrorCode::Unexpected, f.run, why)));
                } else if self.master_up {
                    out.push(Effect::ToMaster(Message::InstallFailed(f)));
                } else {
                    tracing::debug!(client = %id, "failure report held back: no master connection");
                }
            }
            Message::RollbackReport(r) => {
                // Only about itself; a rollback order from a client (or
                // anything else it may not say) is refused below.
                if r.client != id {
                    let why = "rollback report for another client".to_owned();
                    out.push(to(error(ErrorCode::Unexpected, r.order, why)));
                } else if self.master_up {
                    out.push(Effect::ToMaster(Message::RollbackReport(r)));
                } else {
                    tracing::debug!(client = %id, "rollback report held back: no master connection");
                }
            }
            Message::Feedback(f) => {
                // Only a registered client's, about the session on air; a
                // report between rounds has nobody to act on it.
                let on_air = self.session.as_ref().is_some_and(|s| {
                    s.run == f.run
                        && s.session_id == f.session_id
                        && self.sending.is_some_and(|(run, _)| run == s.run)
                });
                if on_air && self.clients.get(&id) == Some(&conn) {
                    out.push(Effect::Feedback {
                        client: id,
                        feedback: f,
                    });
                }
            }
            Message::Error(e) => {
                tracing::warn!(client = %id, code = ?e.code, "client reports: {}", e.reason);
            }
            other => out.push(to(self.unexpected(&other))),
        }
    }
}
