//! A staged run's admissions on the master: which clients the driver has
//! let into the broadcast so far, each relay's instruction carrying only
//! its own admitted clients (feature `stages`; a relay without it is never
//! instructed for a staged run and is named once in an error), and what a
//! client outside them cannot claim: a round completion (it was never
//! handed the key) or a delta.
//!
//! Held in memory only: a restarted master instructs a staged run's relays
//! with nobody admitted until its driver resumes the run and admits the
//! stages reached again, so it errs towards withholding, never towards a
//! version installed outside its stage. A completion is held to the
//! admissions once the run is known to be staged (it went on air or was
//! admitted since the start); one resent before that is filed as before.

use std::collections::BTreeSet;

use haifu_protocol::Message;
use haifu_protocol::limits::MAX_ADMITTED;

use super::ActiveRun;
use super::ConnId;
use super::MasterCore;
use super::Out;

/// The staged run this master knows of, and who it admits.
#[derive(Debug, Default)]
pub(super) struct Admissions {
    /// The staged run and every client admitted so far (`None`: the run on
    /// air is not staged, or none is known).
    run: Option<(u64, BTreeSet<String>)>,
    /// Relays already named for being left out of the staged run.
    said: BTreeSet<String>,
}

impl Admissions {
    /// A run went on air: a staged one keeps what was admitted for it (the
    /// driver may admit before the run goes on air); any other run ends the
    /// last one's admissions.
    pub(super) fn on_air(&mut self, run: u64, staged: bool) {
        if !staged {
            self.run = None;
        } else if self.run.as_ref().is_none_or(|(r, _)| *r != run) {
            self.run = Some((run, BTreeSet::new()));
            self.said.clear();
        }
    }

    /// The driver admitted `clients` of staged run `run`; an admission is
    /// never taken back.
    fn admit(&mut self, run: u64, clients: Vec<String>) {
        match &mut self.run {
            Some((r, admitted)) if *r == run => admitted.extend(clients),
            _ => {
                self.run = Some((run, clients.into_iter().collect()));
                self.said.clear();
            }
        }
    }

    /// Whether `client` may have received run `run`'s broadcast: any client
    /// of a run not known to be staged; of the staged one, those admitted.
    pub(super) fn admits(&self, run: u64, client: &str) -> bool {
        match &self.run {
            Some((r, admitted)) if *r == run => admitted.contains(client),
            _ => true,
        }
    }

    /// The staged run that has not admitted `client`, if there is one: it
    /// is offered no delta.
    pub(super) fn refuses_delta(&self, client: &str) -> Option<u64> {
        let (run, admitted) = self.run.as_ref()?;
        (!admitted.contains(client)).then_some(*run)
    }

    fn admitted(&self, run: u64) -> Option<&BTreeSet<String>> {
        self.run
            .as_ref()
            .filter(|(r, _)| *r == run)
            .map(|(_, admitted)| admitted)
    }
}

impl MasterCore {
    /// Sends `relay` (on `conn`) its instruction for `active`: of a staged
    /// run with the clients behind it admitted so far. A relay that cannot
    /// hold a staged run to them (no `stages`, or more than one instruction
    /// can list) is left out instead, named once; its clients stay pending.
    /// Returns whether it was instructed.
    pub(super) fn instruct(
        &mut self,
        out: &mut Out,
        active: &mut ActiveRun,
        relay: &str,
        conn: ConnId,
    ) -> bool {
        let mut instruction = active.instruction_for(relay);
        if !active.staged {
            out.send(conn, Message::Instruction(instruction));
            return true;
        }
        let run = instruction.run;
        let admitted: Vec<String> = self
            .stages
            .admitted(run)
            .into_iter()
            .flatten()
            .filter(|c| self.bound.get(*c).is_some_and(|r| r == relay))
            .cloned()
            .collect();
        let has_stages = self.conns.get(&conn).is_some_and(|p| p.stages);
        let why = if !has_stages {
            Some("the relay does not know stages (an older haifu); it cannot withhold the session key from clients outside the stage, so it is not instructed and its clients stay pending".to_owned())
        } else if admitted.len() > MAX_ADMITTED {
            Some(format!(
                "{} clients behind the relay are admitted, more than one instruction lists ({MAX_ADMITTED}); the relay is not instructed and its clients stay pending",
                admitted.len()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            active.left_out.insert(relay.to_owned());
            if self.stages.said.insert(relay.to_owned()) {
                tracing::error!(run, relay, "staged run: {why}");
            }
            return false;
        }
        tracing::info!(
            run,
            relay,
            admitted = admitted.len(),
            "staged run: instruction with the relay's admitted clients"
        );
        instruction.admitted = Some(admitted);
        out.send(conn, Message::Instruction(instruction));
        true
    }

    /// The driver admitted `clients` of staged run `run` (every one so
    /// far): each targeted relay of it on air is instructed again with its
    /// own admitted clients.
    pub(super) fn admit(&mut self, out: &mut Out, run: u64, clients: Vec<String>) {
        tracing::info!(
            run,
            admitted = clients.len(),
            "staged run: clients admitted"
        );
        self.stages.admit(run, clients);
        let Some(mut active) = self.active.take() else {
            return;
        };
        if active.staged && active.instruction.run == run {
            let relays: Vec<(String, ConnId)> = self
                .relays
                .iter()
                .filter(|(name, _)| active.targets(name))
                .map(|(name, conn)| (name.clone(), *conn))
                .collect();
            for (name, conn) in relays {
                if self.instruct(out, &mut active, &name, conn) {
                    self.instructed.insert((run, name));
                }
            }
        }
        self.active = Some(active);
    }

    /// `client` is now registered behind `relay`: if a staged run on air
    /// admitted it, the relay is instructed again so its list names it.
    pub(super) fn admitted_moved(&mut self, out: &mut Out, relay: &str, client: &str) {
        let run = match &self.active {
            Some(a) if a.staged && a.targets(relay) => a.instruction.run,
            _ => return,
        };
        if !self
            .stages
            .admitted(run)
            .is_some_and(|a| a.contains(client))
        {
            return;
        }
        let (Some(&conn), Some(mut active)) = (self.relays.get(relay), self.active.take()) else {
            return;
        };
        self.instruct(out, &mut active, relay, conn);
        self.active = Some(active);
    }
}

/// The admitted clients an instruction lists, for tests.
#[cfg(test)]
pub(super) fn admitted_in(msg: &Message) -> Option<&[String]> {
    match msg {
        Message::Instruction(haifu_protocol::Instruction {
            admitted: Some(a), ..
        }) => Some(a),
        _ => None,
    }
}
