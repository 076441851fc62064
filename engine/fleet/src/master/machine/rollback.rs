//! The master's part of `haifu rollback`: the orders the operator recorded
//! in the ledger go to each client through the relay it is registered
//! behind (again whenever that relay or the client registers, until the
//! client's report is durable), and a client's report is taken only from
//! that relay and only for an order sent to that client; the ack follows
//! the commit that holds the outcome.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use haifu_ledger::RollbackResult;
use haifu_protocol::ErrorCode;
use haifu_protocol::Message;
use haifu_protocol::Rollback;
use haifu_protocol::RollbackAck;
use haifu_protocol::RollbackOutcome;
use haifu_protocol::RollbackReport;

use super::super::filing::Facts;
use super::ConnId;
use super::MasterCore;
use super::Out;
use crate::trust;

/// The orders waiting for a client's report.
#[derive(Debug, Default)]
pub(crate) struct Orders {
    /// By order id: the message, and whether a report is being written.
    waiting: BTreeMap<u64, (Rollback, bool)>,
    /// Orders whose report is durable since the last read of the ledger
    /// (a read taken before that commit still lists them).
    finished: BTreeSet<u64>,
}

impl Orders {
    /// The report of `order` is durable: it is sent no more.
    pub(super) fn recorded(&mut self, order: u64) {
        self.waiting.remove(&order);
        self.finished.insert(order);
    }

    /// The orders for `client` still waiting for a report.
    fn for_client<'a>(&'a self, client: &'a str) -> impl Iterator<Item = &'a Rollback> + 'a {
        self.waiting
            .values()
            .filter(move |(o, reported)| !reported && o.client == client)
            .map(|(o, _)| o)
    }
}

impl MasterCore {
    /// The orders now in the ledger: new ones are sent at once to their
    /// client's relay, if it is connected (otherwise when it registers).
    pub(super) fn rollback_orders(&mut self, out: &mut Out, orders: Vec<Rollback>) {
        let listed: BTreeSet<u64> = orders.iter().map(|o| o.order).collect();
        self.orders.finished.retain(|o| listed.contains(o));
        self.orders.waiting.retain(|o, _| listed.contains(o));
        for o in orders {
            if self.orders.finished.contains(&o.order) || self.orders.waiting.contains_key(&o.order)
            {
                continue;
            }
            tracing::info!(order = o.order, client = %o.client, to = ?o.to.as_ref().map(ToString::to_string), "rollback ordered");
            self.send_order(out, &o);
            self.orders.waiting.insert(o.order, (o, false));
        }
    }

    /// Sends `o` to the relay its client is registered behind, if that
    /// relay is connected.
    fn send_order(&self, out: &mut Out, o: &Rollback) {
        let conn = self
            .bound
            .get(&o.client)
            .and_then(|relay| self.relays.get(relay));
        if let Some(&conn) = conn {
            out.send(conn, Message::Rollback(o.clone()));
        }
    }

    /// A relay registered: the orders for its clients go to it.
    pub(super) fn orders_behind(&self, out: &mut Out, relay: &str) {
        for (o, reported) in self.orders.waiting.values() {
            if !reported && self.bound.get(&o.client).is_some_and(|b| b == relay) {
                self.send_order(out, o);
            }
        }
    }

    /// A client reported in (through its relay): its orders go again, as
    /// it may not have been connected when they were first sent.
    pub(super) fn orders_for(&self, out: &mut Out, client: &str) {
        for o in self.orders.for_client(client) {
            self.send_order(out, o);
        }
    }

    /// A client's report on an order, through `relay`: taken only from
    /// the relay the client is registered behind and only for an order
    /// sent to that client; recorded in the next write, acked once durable.
    pub(super) fn rollback_report(
        &mut self,
        out: &mut Out,
        conn: ConnId,
        relay: &str,
        r: RollbackReport,
        facts: &dyn Facts,
    ) {
        let bound = self.bound.get(&r.client).map(String::as_str);
        if let Err(why) = trust::relay_completes_for(bound, relay, &r.client) {
            return self.refuse(out, conn, relay, r.order, &why);
        }
        let Some((order, reported)) = self.orders.waiting.get_mut(&r.order) else {
            if self.orders.finished.contains(&r.order)
                || facts.rollback_recorded(r.order, &r.client)
            {
                // Recorded already: the ack was lost; say it again.
                let ack = RollbackAck {
                    order: r.order,
                    client: r.client,
                };
                return out.send(conn, Message::RollbackAck(ack));
            }
            let why = trust::Refusal::NoSuchOrder {
                order: r.order,
                client: r.client.clone(),
            };
            return self.refuse_with(out, conn, relay, ErrorCode::Unexpected, r.order, &why);
        };
        if order.client != r.client {
            let why = trust::Refusal::NoSuchOrder {
                order: r.order,
                client: r.client.clone(),
            };
            return self.refuse(out, conn, relay, r.order, &why);
        }
        if *reported {
            // A resend while the first is being written: its ack follows.
            return;
        }
        *reported = true;
        let outcome = match &r.outcome {
            RollbackOutcome::Done { version, .. } => {
                tracing::info!(order = r.order, client = %r.client, version = %version, "client rolled back");
                haifu_ledger::RollbackOutcome::Done {
                    version: version.to_string(),
                }
            }
            RollbackOutcome::Refused { reason } => {
                tracing::warn!(order = r.order, client = %r.client, "client refused the rollback: {reason}");
                haifu_ledger::RollbackOutcome::Refused {
                    reason: reason.clone(),
                }
            }
        };
        self.next.rollbacks.push(RollbackResult {
            order: i64::try_from(r.order).unwrap_or(i64::MAX),
            client: r.client.clone(),
            outcome,
            at: r.at.to_string(),
        });
        let ack = RollbackAck {
            order: r.order,
            client: r.client,
        };
        self.next_acks.push((conn, Message::RollbackAck(ack)));
    }
}
