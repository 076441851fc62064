//! The master's deltas: built (and their bytes) and refused. Served deltas
//! and full copies are unicast transfers (`haifu_master_unicast_*`, kinds
//! `delta`, `delta-bsdiff`, `full`), counted where the bytes are recorded.
//!
//! Process-wide counts, bumped by [`crate::deltas`]'s free functions (the
//! background prebuild and the straggler path, which hold no metrics
//! handle): a process runs one master, so they are that master's.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::{Registry, Unit};

use super::families::counters;

static BUILT: AtomicU64 = AtomicU64::new(0);
static BUILT_BYTES: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// A delta of `bytes` was built (and cached).
pub(crate) fn delta_built(bytes: usize) {
    BUILT.fetch_add(1, Ordering::Relaxed);
    BUILT_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// A straggler's delta request was refused.
pub(crate) fn delta_refused() {
    REFUSED.fetch_add(1, Ordering::Relaxed);
}

/// Registers the families.
pub(super) fn register(r: &mut Registry) {
    r.register_collector(Box::new(Deltas));
}

#[derive(Debug)]
struct Deltas;

impl Collector for Deltas {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counters(
            &mut enc,
            "haifu_master_deltas_built",
            "Deltas the master built and cached (ahead of time for a running run's \
             undelivered clients, or on a straggler's request); served ones are \
             haifu_master_unicast_transfers_total{kind=~\"delta.*\"}",
            None,
            &[(Vec::new(), get(&BUILT))],
        )?;
        counters(
            &mut enc,
            "haifu_master_deltas_built",
            "Bytes of the deltas the master built",
            Some(&Unit::Bytes),
            &[(Vec::new(), get(&BUILT_BYTES))],
        )?;
        counters(
            &mut enc,
            "haifu_master_deltas_refused",
            "Straggler delta requests refused (no running run with an open delta window lists \
             the client, a version other than the run's, an unrecorded base version, a store \
             or ledger error)",
            None,
            &[(Vec::new(), get(&REFUSED))],
        )
    }
}
