//! The ledger's unit tests across its tables, by subject, on a real SQLite
//! file; each module's own small tests stay beside it.

mod audit;
mod fleet;
mod orders;
mod runs;
mod stages;

use crate::{ClientUpdate, Ledger, RunFleet, RunStatus, Transition};

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    (dir, l)
}

fn new_run(l: &mut Ledger, n: usize) -> i64 {
    let clients = (0..n).map(|i| (format!("c{i:02}"), format!("relay-{}", i % 2)));
    let run = crate::testing::TestRun::new().clients(clients);
    let run = run.fleet(RunFleet::Modelled("sim".into()));
    run.create(l).unwrap()
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
