//! The run on air: what the driver puts on air (the instruction, each
//! relay's own session key, the broadcast transport the workflow holds it
//! to) and the core's side of it: relays instructed when it goes on air,
//! each round started on the targeted relays, rounds stopped when it
//! leaves the air.

use std::collections::BTreeSet;

use haifu_protocol::ArtifactRef;
use haifu_protocol::ErrorCode;
use haifu_protocol::Instruction;
use haifu_protocol::Message;
use haifu_protocol::RoundBudget;
use haifu_protocol::SessionSecret;
use haifu_protocol::StartRound;
use haifu_protocol::StopRounds;
use jiff::Timestamp;

use super::ConnId;
use super::MasterCore;
use super::Out;
use crate::common::session_key;

/// The master key's seed, from which every relay's session key is derived;
/// never printed.
#[derive(Clone)]
pub(crate) struct SessionSeed(pub(crate) [u8; 32]);

impl std::fmt::Debug for SessionSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSeed(..)")
    }
}

/// The run being broadcast.
#[derive(Debug, Clone)]
pub(crate) struct ActiveRun {
    /// The instruction without its session: each relay gets its own key
    /// ([`ActiveRun::instruction_for`]).
    pub(crate) instruction: Instruction,
    pub(crate) seed: SessionSeed,
    /// The round on air (or the last one), and when it started.
    pub(crate) round: Option<(u32, Timestamp)>,
    /// The budget of the round on air, for relays with feedback repair.
    pub(crate) budget: Option<RoundBudget>,
    /// Every round this master started for the run, in order, with its
    /// start: a completion is recorded in the round on air when the client
    /// finished decoding, not when its (maybe long) install ended.
    pub(crate) starts: Vec<(u32, Timestamp)>,
    /// The relays the workflow targets (empty: all).
    pub(crate) relays: Vec<String>,
    /// The workflow's `transports.broadcast`, when it is held to one: a
    /// relay or client that names another plugin is left out.
    pub(crate) broadcast: Option<RunBroadcast>,
    /// Targeted relays left out because they broadcast with another plugin
    /// (or cannot hold a staged run to its admissions).
    pub(crate) left_out: BTreeSet<String>,
    /// Whether the run has stages: only the clients the driver admits may
    /// receive it (`super::stages`).
    pub(crate) staged: bool,
}

/// The broadcast transport a run is held to, and where its workflow says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunBroadcast {
    /// The plugin name.
    pub(crate) plugin: String,
    /// `FILE:LINE:COLUMN` of `transports.broadcast` in the workflow.
    pub(crate) at: String,
}

impl RunBroadcast {
    /// Whether a peer that named `plugin` (or nothing: a peer without
    /// `transport-names`, taken to use the default) can take part.
    pub(crate) fn admits(&self, plugin: Option<&str>) -> bool {
        plugin.is_none_or(|p| p.replace('-', "_") == self.plugin.replace('-', "_"))
    }

    /// The one-line reason a `who` broadcasting with `plugin` is left out.
    pub(crate) fn refusal(&self, who: &str, plugin: &str) -> String {
        format!(
            "{}: transports.broadcast is {:?} but {who} broadcasts with {plugin:?}: left out of this run",
            self.at, self.plugin
        )
    }
}

impl ActiveRun {
    /// Whether the run is broadcast by `relay`.
    pub(crate) fn targets(&self, relay: &str) -> bool {
        (self.relays.is_empty() || self.relays.iter().any(|r| r == relay))
            && !self.left_out.contains(relay)
    }

    /// The artifact the run broadcasts.
    pub(super) fn artifact(&self) -> &ArtifactRef {
        &self.instruction.artifact
    }

    /// The instruction for `relay`, with the session key of that relay.
    pub(crate) fn instruction_for(&self, relay: &str) -> Instruction {
        let i = &self.instruction;
        let (session_id, secret) = session_key(&self.seed.0, i.run, &i.artifact.digest, relay);
        Instruction {
            session_id,
            session_key: SessionSecret(secret),
            ..i.clone()
        }
    }
}

impl MasterCore {
    /// Why `relay` cannot carry `active` (it named another broadcast
    /// plugin than the run's workflow), if it cannot.
    pub(super) fn wrong_broadcast(&self, active: &ActiveRun, relay: &str) -> Option<String> {
        let held = active.broadcast.as_ref()?;
        let theirs = self.relay_plugins.get(relay)?;
        (!held.admits(Some(theirs))).then(|| held.refusal(&format!("relay {relay:?}"), theirs))
    }

    /// The driver put `active` on air: every targeted relay that
    /// broadcasts with the run's plugin gets its instruction.
    pub(super) fn on_air(&mut self, out: &mut Out, mut active: Box<ActiveRun>) {
        let run = active.instruction.run;
        self.stages.on_air(run, active.staged);
        let relays: Vec<(String, ConnId)> = self
            .relays
            .iter()
            .map(|(name, conn)| (name.clone(), *conn))
            .collect();
        for (name, conn) in relays {
            if !active.targets(&name) {
                continue;
            }
            if let Some(why) = self.wrong_broadcast(&active, &name) {
                active.left_out.insert(name.clone());
                tracing::error!(run, relay = %name, "{why}");
                out.error(conn, ErrorCode::Unexpected, 0, why);
                continue;
            }
            if self.instruct(out, &mut active, &name, conn) {
                self.instructed.insert((run, name));
            }
        }
        self.instructed.retain(|(r, _)| *r == run);
        self.active = Some(*active);
    }

    /// The run's rounds are over: every relay stops offering it.
    pub(super) fn off_air(&mut self, out: &mut Out) {
        if let Some(a) = self.active.take() {
            let run = a.instruction.run;
            tracing::info!(
                run,
                relays = self.relays.len(),
                "off the air: relays stop its rounds"
            );
            for conn in self.relays.values() {
                out.send(*conn, Message::StopRounds(StopRounds { run }));
            }
        }
    }

    /// The driver started `round` at `now` with `budget`: the targeted
    /// relays are told to start it, and which relays have reported a
    /// round done starts over for it.
    pub(super) fn round_started(
        &mut self,
        out: &mut Out,
        now: Timestamp,
        round: u32,
        budget: Option<RoundBudget>,
    ) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        a.round = Some((round, now));
        a.budget = budget;
        a.starts.retain(|(n, _)| *n != round);
        a.starts.push((round, now));
        let run = a.instruction.run;
        self.done.retain(|(r, n, _)| *r == run && *n == round);
        self.listeners.retain(|(r, _), _| *r == run);
        let start = Message::StartRound(StartRound {
            run,
            round,
            at: now,
            budget,
        });
        for (name, conn) in &self.relays {
            if a.targets(name) {
                out.send(*conn, start.clone());
            }
        }
    }
}
