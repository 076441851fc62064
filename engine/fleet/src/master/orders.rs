//! Rollback orders: read from the ledger (where `haifu rollback` records
//! them) and handed to the core, which sends each to its client's relay.

use std::sync::Arc;
use std::time::Duration;

use haifu_ledger::Ledger;
use haifu_ledger::RollbackRow;
use haifu_protocol::Rollback;

use super::hub::Hub;
use super::machine::Event;
use crate::common::Shutdown;

/// Most orders handed to the core at once; the rest follow as these are
/// reported on.
const MAX_ORDERS: usize = 1024;

/// Reads the orders not yet reported on every `every` and hands them to
/// the core when they change.
pub(super) fn rollback_orders(
    path: &std::path::Path,
    hub: &Arc<Hub>,
    shutdown: &Shutdown,
    every: Duration,
) {
    let ledger = match Ledger::open(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("rollback orders cannot open the ledger: {e}");
            return;
        }
    };
    let mut last: Option<Vec<i64>> = None;
    while !shutdown.is_set() {
        match ledger.pending_rollbacks(MAX_ORDERS) {
            Ok(rows) => {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                if last.as_ref() != Some(&ids) {
                    let orders = rows.iter().filter_map(order).collect();
                    hub.handle(Event::Rollbacks(orders));
                    last = Some(ids);
                }
            }
            Err(e) => tracing::error!("reading the rollback orders: {e}"),
        }
        shutdown.sleep(every);
    }
}

/// The order as the protocol carries it; a row that does not fit (it was
/// checked when recorded) is logged and left out.
fn order(row: &RollbackRow) -> Option<Rollback> {
    let parsed = (
        u64::try_from(row.id),
        row.artifact.parse(),
        row.to_version.as_deref().map(str::parse).transpose(),
        u64::try_from(row.through_run),
    );
    match parsed {
        (Ok(order), Ok(artifact), Ok(to), Ok(through_run)) => Some(Rollback {
            order,
            client: row.client.clone(),
            artifact,
            to,
            through_run,
        }),
        _ => {
            tracing::error!(order = row.id, client = %row.client, "rollback order does not read back; left out");
            None
        }
    }
}
