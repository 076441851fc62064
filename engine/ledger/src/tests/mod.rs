//! The ledger's unit tests across its tables, by subject, on a real SQLite
//! file; each module's own small tests stay beside it.

mod audit;
mod fleet;
mod runs;

use crate::{ClientUpdate, Ledger, NewRun, RunFleet, RunStatus, Transition};

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    (dir, l)
}

fn new_run(l: &mut Ledger, n: usize) -> i64 {
    let clients: Vec<(String, String)> = (0..n)
        .map(|i| (format!("c{i:02}"), format!("relay-{}", i % 2)))
        .collect();
    l.create_run(&NewRun {
        workflow: "w.yaml",
        name: "w",
        artifact: "app",
        version: "1.0.0",
        fleet: &RunFleet::Modelled("sim".into()),
        state: "{}",
        next_wake: None,
        clients: &clients,
    })
    .unwrap()
}

fn step(updates: Vec<ClientUpdate>) -> Transition {
    Transition {
        state: "{}".into(),
        status: RunStatus::Running,
        next_wake: None,
        updates,
        events: vec![("test".into(), "{}".into())],
    }
}

fn done(client: &str, round: Option<u32>) -> ClientUpdate {
    ClientUpdate::Completed {
        client: client.into(),
        round,
        at: "2026-01-01T00:00:00Z".into(),
    }
}
