//! The group commit: one write in flight at a time, everything that
//! arrives meanwhile gathered into the next, a failed write written again
//! first, and the acks a write carries sent only once it is durable.

use haifu_ledger::FleetBatch;
use haifu_protocol::Message;

use super::Effect;
use super::MasterCore;
use super::Out;

impl MasterCore {
    /// The write in flight is durable: now, and only now, its acks.
    pub(super) fn committed(&mut self, out: &mut Out) {
        let (_, acks) = self.in_flight.take().unwrap_or_default();
        for (conn, ack) in acks {
            match &ack {
                Message::CompletionAck(a) => *self.recorded.entry(a.run).or_default() += 1,
                Message::RollbackAck(a) => self.orders.recorded(a.order),
                _ => {}
            }
            out.send(conn, ack);
        }
    }

    /// The write in flight rolled back: written again, first, with
    /// whatever arrived meanwhile.
    pub(super) fn commit_failed(&mut self) {
        // Version reports and round figures are sent once; dropping
        // them would lose them.
        if let Some((mut batch, mut acks)) = self.in_flight.take() {
            tracing::error!(
                completions = acks.len(),
                "a ledger write failed; writing it again"
            );
            append(&mut batch, std::mem::take(&mut self.next));
            acks.append(&mut self.next_acks);
            self.next = batch;
            self.next_acks = acks;
        }
    }

    /// Starts the next write when none is in flight and rows wait.
    pub(super) fn write_next(&mut self, out: &mut Out) {
        if self.in_flight.is_none() && !self.next.is_empty() {
            let batch = std::mem::take(&mut self.next);
            let acks = std::mem::take(&mut self.next_acks);
            self.in_flight = Some((batch.clone(), acks));
            out.0.push(Effect::Write(batch));
        }
    }
}

/// Appends `more`'s rows after `batch`'s.
fn append(batch: &mut FleetBatch, more: FleetBatch) {
    let FleetBatch {
        touches,
        joins,
        updates,
        events,
        traffic,
        rollbacks,
        labels,
        failures,
    } = more;
    batch.touches.extend(touches);
    batch.joins.extend(joins);
    batch.updates.extend(updates);
    batch.events.extend(events);
    batch.traffic.extend(traffic);
    batch.rollbacks.extend(rollbacks);
    batch.labels.extend(labels);
    batch.failures.extend(failures);
}
