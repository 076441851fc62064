//! What the connection threads, the recorder and the driver share: the
//! relays connected now, the run on air and who is registered behind whom.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::AtomicU64;

use haifu_protocol::ArtifactRef;
use haifu_protocol::Instruction;
use haifu_protocol::SessionSecret;
use jiff::Timestamp;

use crate::common::session_key;
use crate::link::Link;

/// A relay connected now.
#[derive(Debug)]
pub(super) struct RelayEntry {
    pub(super) link: Arc<Link>,
    /// Which connection: a reconnect replaces the entry, and the old
    /// connection's thread must not remove the new one.
    pub(super) serial: u64,
}

/// The master key's seed, from which every relay's session key is derived;
/// never printed.
#[derive(Clone)]
pub(super) struct SessionSeed(pub(super) [u8; 32]);

impl std::fmt::Debug for SessionSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSeed(..)")
    }
}

/// The run being broadcast.
#[derive(Debug, Clone)]
pub(super) struct ActiveRun {
    /// The instruction without its session: each relay gets its own key
    /// ([`ActiveRun::instruction_for`]).
    pub(super) instruction: Instruction,
    pub(super) seed: SessionSeed,
    /// The round on air (or the last one), and when it started.
    pub(super) round: Option<(u32, Timestamp)>,
    /// Every round this master started for the run, in order, with its
    /// start: a completion is recorded in the round on air when the client
    /// finished decoding, not when its (maybe long) install ended.
    pub(super) starts: Vec<(u32, Timestamp)>,
    /// The relays the workflow targets (empty: all).
    pub(super) relays: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct HubState {
    pub(super) relays: BTreeMap<String, RelayEntry>,
    /// The clients cut off, as last read from the ledger.
    pub(super) denied: Vec<String>,
    pub(super) active: Option<ActiveRun>,
    /// `(run, round, relay)` reported done.
    pub(super) done: BTreeSet<(u64, u32, String)>,
    /// The relay each known client is registered behind (from the ledger
    /// at start, then as relays report clients): a relay speaks only for
    /// its own.
    pub(super) bound: HashMap<String, String>,
    /// How many clients are registered behind each relay (bounded by
    /// `trust::MAX_CLIENTS_PER_RELAY`).
    pub(super) behind: HashMap<String, usize>,
}

/// What the connection threads, the recorder and the driver share.
#[derive(Debug, Default)]
pub(super) struct Hub {
    pub(super) state: Mutex<HubState>,
    pub(super) changed: Condvar,
    pub(super) serial: AtomicU64,
}

impl Hub {
    pub(super) fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ActiveRun {
    pub(super) fn targets(&self, relay: &str) -> bool {
        self.relays.is_empty() || self.relays.iter().any(|r| r == relay)
    }

    pub(super) fn artifact(&self) -> &ArtifactRef {
        &self.instruction.artifact
    }

    /// The instruction for `relay`, with the session key of that relay.
    pub(super) fn instruction_for(&self, relay: &str) -> Instruction {
        let i = &self.instruction;
        let (session_id, secret) = session_key(&self.seed.0, i.run, &i.artifact.digest, relay);
        Instruction {
            session_id,
            session_key: SessionSecret(secret),
            ..i.clone()
        }
    }
}
