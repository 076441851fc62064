//! The deny list: read from the ledger, applied to the master's endpoint and
//! sent to every relay.

use std::time::Duration;

use haifu_ledger::Ledger;

use super::hub::Hub;
use super::machine::Event;
use crate::common::Shutdown;

/// Keeps the cut-off clients refused: reads the ledger's deny list every
/// `every`, and when it changes applies it to the master's own endpoint and
/// sends it to every relay (a relay that registers later gets it then).
pub(super) fn deny_list(
    path: &std::path::Path,
    ep: &haifu_plugin_host::Endpoint,
    hub: &std::sync::Arc<Hub>,
    shutdown: &Shutdown,
    every: Duration,
) {
    let ledger = match Ledger::open(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("deny list cannot open the ledger: {e}");
            return;
        }
    };
    let mut last: Option<Vec<String>> = None;
    while !shutdown.is_set() {
        match ledger.denied() {
            Ok(all) => {
                if last.as_ref() != Some(&all) {
                    // The master refuses every one of them, and so does the
                    // gate; a relay's list is bounded by one message.
                    if let Err(e) = ep.set_denied(&all) {
                        tracing::error!("applying the deny list: {e}");
                    }
                    let max = haifu_protocol::limits::MAX_DENIED;
                    if all.len() > max {
                        tracing::warn!(
                            denied = all.len(),
                            "more clients cut off than one deny list carries; relays refuse the first {max} at the handshake"
                        );
                    }
                    let for_relays: Vec<String> = all.iter().take(max).cloned().collect();
                    // What a relay that registers later is sent: it must
                    // encode, so never more than one message carries.
                    hub.handle(Event::Denied(for_relays));
                    tracing::info!(denied = all.len(), "deny list updated");
                    last = Some(all);
                }
            }
            Err(e) => tracing::error!("reading the deny list: {e}"),
        }
        shutdown.sleep(every);
    }
}
