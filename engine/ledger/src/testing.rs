//! Test fixtures for the crates whose tests keep runs in a ledger: one way
//! to create a run, so a change to [`NewRun`] is made here rather than in
//! every test that needs a run. Built for this crate's tests and, through
//! the `testing` feature, for the crates that enable it on their
//! dev-dependency; never part of a daemon.

use crate::{Ledger, LedgerError, NewRun, RunFleet};

/// A run to create in a test's ledger. Unless changed by the methods
/// below: workflow `w.yaml` (named `w`) of `app` 1.0.0, driven live, an
/// empty snapshot (`{}`), no wake-up and no clients.
#[derive(Debug, Clone)]
pub struct TestRun {
    workflow: String,
    name: String,
    version: String,
    fleet: RunFleet,
    state: String,
    clients: Vec<(String, String)>,
    stages: Vec<(String, u32)>,
}

impl Default for TestRun {
    fn default() -> Self {
        Self {
            workflow: "w.yaml".into(),
            name: "w".into(),
            version: "1.0.0".into(),
            fleet: RunFleet::Live,
            state: "{}".into(),
            clients: Vec::new(),
            stages: Vec::new(),
        }
    }
}

impl TestRun {
    /// The default run (see [`TestRun`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Targets `clients`, each with the relay it is behind.
    pub fn clients<C: Into<String>, R: Into<String>>(
        mut self,
        clients: impl IntoIterator<Item = (C, R)>,
    ) -> Self {
        self.clients = clients
            .into_iter()
            .map(|(c, r)| (c.into(), r.into()))
            .collect();
        self
    }

    /// Places its clients in stages: `(client, stage)`.
    pub fn stages<C: Into<String>>(mut self, placed: impl IntoIterator<Item = (C, u32)>) -> Self {
        self.stages = placed.into_iter().map(|(c, s)| (c.into(), s)).collect();
        self
    }

    /// Driven by `fleet` rather than live.
    pub fn fleet(mut self, fleet: RunFleet) -> Self {
        self.fleet = fleet;
        self
    }

    /// Starts from this snapshot of the run machine.
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = state.into();
        self
    }

    /// Of workflow `file`, named `name`.
    pub fn workflow(mut self, file: &str, name: &str) -> Self {
        self.workflow = file.into();
        self.name = name.into();
        self
    }

    /// Of `app` at `version`.
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.into();
        self
    }

    /// Creates the run in `ledger`; returns its id.
    pub fn create(&self, ledger: &mut Ledger) -> Result<i64, LedgerError> {
        ledger.create_run(&NewRun {
            workflow: &self.workflow,
            name: &self.name,
            artifact: "app",
            version: &self.version,
            fleet: &self.fleet,
            state: &self.state,
            next_wake: None,
            clients: &self.clients,
            stages: &self.stages,
        })
    }
}
