//! A client's labels (`ClientLabels`, feature `labels`): accepted only for
//! the client that is speaking (its own connection) or for a client
//! registered behind the relay that forwards them, each pair held to
//! `haifu_core::check_labels`; the whole set replaces the client's last
//! one in the next fleet write. A refused set records nothing.

use haifu_ledger::LabelReport;
use haifu_protocol::ClientLabels;

use super::super::filing::Facts;
use super::ConnId;
use super::MasterCore;
use super::Out;
use crate::trust;

impl MasterCore {
    pub(super) fn client_labels(
        &mut self,
        out: &mut Out,
        conn: ConnId,
        peer: &str,
        is_relay: bool,
        l: ClientLabels,
        facts: &dyn Facts,
    ) {
        let speaks = if is_relay {
            let bound = self.bound.get(&l.client).cloned();
            trust::relay_completes_for(bound.as_deref(), peer, &l.client).or_else(|why| {
                // Moved by the operator since the master started: the
                // ledger has the last word.
                match facts.client_relay(&l.client) {
                    Some(r) if r == peer => Ok(()),
                    _ => Err(why),
                }
            })
        } else {
            trust::client_speaks_for(peer, &l.client)
        };
        let checked = speaks.and_then(|()| {
            haifu_core::check_labels(l.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|source| trust::Refusal::BadLabels {
                    client: l.client.chars().take(80).collect(),
                    source,
                })
        });
        if let Err(why) = checked {
            return self.refuse(out, conn, peer, 0, &why);
        }
        tracing::info!(client = %l.client, labels = l.labels.len(), "client labels");
        self.next.labels.push(LabelReport {
            client: l.client,
            labels: l.labels,
        });
    }
}
