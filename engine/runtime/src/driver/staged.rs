//! Staged runs on the simulated fleet in virtual time: stage by stage,
//! each soak respected, a bad release paused at the canary, readmission
//! and resume, an abort, and a driver killed mid-stage.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use haifu_ledger::{ClientState, Ledger, RunOrder, RunStatus, StageEvent};
use jiff::{SignedDuration, Timestamp};

use super::stages::ADVANCE_POLICY;
use super::*;
use crate::clock::VirtualClock;
use crate::sim::{SimParams, SimRun};

const START: &str = "2026-12-01T00:00:00Z";

/// 30 clients on three relays; the canary is relay-1's ten, then half of
/// the rest, then all; soaks of 30 min and 20 min.
const STAGES: &str = r"stages:
  - name: canary
    relays: [relay-1]
    gate: { soak: 30m, min_success: 90%, max_failures: 5% }
  - name: half
    percent: 50
    gate: { soak: 20m, max_failures: 5% }
  - name: rest
    percent: 100
    gate: { max_failures: 5% }
";

struct Setup {
    dir: tempfile::TempDir,
    ledger: Ledger,
    store: Store,
    plan: Plan,
    policies: PolicySet,
    id: i64,
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn params() -> SimParams {
    SimParams {
        clients: 30,
        relays: 3,
        loss: 0.0,
        offline: 0.0,
        seed: 5,
        artifact_size: 10_000,
    }
}

/// A staged workflow; `advance` is an advance policy's text, if any.
fn setup(advance: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.tar"), b"the artifact's bytes").unwrap();
    let policies = match advance {
        Some(text) => {
            std::fs::write(dir.path().join("advance.rhai"), text).unwrap();
            "policies: { advance: advance.rhai }\n"
        }
        None => "",
    };
    let wf = dir.path().join("t.yaml");
    std::fs::write(
        &wf,
        format!(
            "name: t\nartifact: {{ name: app, version: 1.0.0, path: a.tar }}\n\
targets: {{ relays: [relay-1, relay-2, relay-3] }}\n\
schedule: {{ start: {START}, deadline: 72h }}\ntransports: {{ broadcast: multicast, unicast: quic }}\n\
{policies}{STAGES}steps:\n  - register\n  - broadcast: {{ rounds: 2 }}\n  - audit\n  - delta: {{ until: deadline }}\n  - disconnect\n"
        ),
    )
    .unwrap();
    let plan = haifu_spec::load_and_validate(&wf).unwrap();
    let policies = PolicySet::load(&plan.policies.paths()).unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let fleet = fleet(dir.path(), 0, 0.0);
    let id = create(&mut ledger, &plan, &fleet.describe(), &fleet.targets()).unwrap();
    Setup {
        dir,
        ledger,
        store,
        plan,
        policies,
        id,
    }
}

fn fleet(dir: &Path, run: i64, fail: f64) -> SimRun {
    let start = ts(START);
    let deadline = start.checked_add(SignedDuration::from_hours(72)).unwrap();
    SimRun::new(params(), start, deadline).failing(&ledger_path(dir), run, fail)
}

fn ledger_path(dir: &Path) -> PathBuf {
    dir.join("l.sqlite")
}

/// Drives the run from `at` on the virtual clock until it finishes, is
/// paused (no order can come on a clock that jumps) or ends.
fn drive_from(s: &mut Setup, fleet: &mut dyn Fleet, at: &str) -> Result<(), RunError> {
    let clock = VirtualClock::new(ts(at));
    let key = SigningKey::from_seed([7; 32]);
    let mut env = Env {
        ledger: &mut s.ledger,
        store: &s.store,
        key: &key,
        policies: &s.policies,
        clock: &clock,
    };
    resume(&mut env, s.id, &s.plan, fleet)
}

fn events(s: &Setup, kind: &str) -> Vec<StageEvent> {
    s.ledger
        .stage_events(s.id)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

fn at(e: &StageEvent) -> Timestamp {
    e.detail["at"].as_str().unwrap().parse().unwrap()
}

fn in_stage(s: &Setup, stage: u32, state: ClientState) -> Vec<String> {
    s.ledger.stage_clients_in(s.id, Some(stage), state).unwrap()
}

#[test]
fn a_healthy_release_goes_through_three_stages_each_soak_respected() {
    let mut s = setup(None);
    let mut f = fleet(s.dir.path(), s.id, 0.0);
    drive_from(&mut s, &mut f, "2026-11-30T23:00:00Z").unwrap();
    let row = s.ledger.run(s.id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Done);

    let sizes: Vec<usize> = f.admissions().iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 20, 30], "each stage admits the ones before it");
    let started = events(&s, "stage-started");
    let clients: Vec<u64> = started
        .iter()
        .map(|e| e.detail["clients"].as_u64().unwrap())
        .collect();
    assert_eq!(clients, [10, 10, 10]);
    let proceeded: Vec<StageEvent> = events(&s, "stage-decided")
        .into_iter()
        .filter(|e| e.detail["decide"] == "proceed")
        .collect();
    assert_eq!(proceeded.len(), 3, "{proceeded:?}");
    // Each next stage starts once the previous stage's soak has gone by
    // since its broadcast ended: the first decision on a stage is taken
    // as its rounds end (nothing failed during them).
    let decided = events(&s, "stage-decided");
    for (k, soak) in [(0u64, 30), (1, 20)] {
        let first = decided.iter().find(|e| e.detail["stage"] == k + 1).unwrap();
        assert_eq!(first.detail["decide"], "wait", "{first:?}");
        let soaked_until = at(first)
            .checked_add(SignedDuration::from_mins(soak))
            .unwrap();
        let next = at(&started[k as usize + 1]);
        assert!(
            next >= soaked_until,
            "stage {} started at {next}, before {soaked_until}",
            k + 2
        );
        assert!(next >= at(&proceeded[k as usize]));
    }
    for k in 0..3 {
        assert_eq!(in_stage(&s, k, ClientState::Delivered).len(), 10);
    }
}

#[test]
fn a_failing_release_pauses_after_the_canary_and_a_readmitted_fix_proceeds() {
    let mut s = setup(None);
    let mut f = fleet(s.dir.path(), s.id, 0.5);
    drive_from(&mut s, &mut f, "2026-11-30T23:00:00Z").unwrap();
    let row = s.ledger.run(s.id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Running);
    let pause = row.paused.expect("paused by the advance policy");
    assert_eq!(pause.by, ADVANCE_POLICY);
    assert!(
        pause.reason.as_deref().unwrap_or("").contains("failed"),
        "{pause:?}"
    );
    assert_eq!(f.admissions().len(), 1, "only the canary was admitted");
    assert_eq!(f.admissions()[0].len(), 10);
    let failed = in_stage(&s, 0, ClientState::Failed);
    assert!(!failed.is_empty());
    for k in 1..3 {
        assert_eq!(in_stage(&s, k, ClientState::Pending).len(), 10, "stage {k}");
    }
    let decided = events(&s, "stage-decided");
    assert_eq!(decided.last().unwrap().detail["decide"], "pause");

    // The fix is in: the operator readmits the failed clients and resumes.
    for c in &failed {
        assert!(s.ledger.readmit_failed(s.id, c, "ops").unwrap());
    }
    s.ledger
        .order_run(s.id, RunOrder::Resume, "ops", None)
        .unwrap();
    // The fixed build fails nowhere.
    let mut f = fleet(s.dir.path(), s.id, 0.0);
    drive_from(&mut s, &mut f, "2026-12-01T06:00:00Z").unwrap();
    let row = s.ledger.run(s.id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Done, "{:?}", row.paused);
    assert_eq!(events(&s, "stage-started").len(), 3);
    assert!(in_stage(&s, 0, ClientState::Failed).is_empty());
    assert_eq!(in_stage(&s, 0, ClientState::Delivered).len(), 10);
}

#[test]
fn an_abort_decision_ends_the_run() {
    let mut s = setup(Some(
        "fn advance(ctx) { #{ decide: \"abort\", reason: \"no stage may pass\" } }\n",
    ));
    let mut f = fleet(s.dir.path(), s.id, 0.0);
    drive_from(&mut s, &mut f, "2026-11-30T23:00:00Z").unwrap();
    let row = s.ledger.run(s.id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Failed);
    let why = s.ledger.failure(s.id).unwrap().unwrap();
    assert!(
        why.contains(ADVANCE_POLICY) && why.contains("no stage may pass"),
        "{why}"
    );
    assert_eq!(f.admissions().len(), 1);
    assert_eq!(in_stage(&s, 1, ClientState::Pending).len(), 10);
}

/// Aborts with `rollback` in stage 2 once its broadcast is over; waits
/// out the canary's soak, then lets it pass.
const ABORT_ROLLING_BACK: &str = "fn advance(ctx) {
    if ctx.stage == 2 && ctx.soaked > 0 {
        return #{ decide: \"abort\", rollback: true, reason: \"stage 2 looks wrong\" };
    }
    if ctx.soak_left > 0 { return #{ decide: \"wait\", wait: ctx.soak_left, reason: \"soaking\" }; }
    #{ decide: \"proceed\", reason: \"fine\" }
}
";

#[test]
fn an_abort_with_rollback_orders_the_started_stages_back_once() {
    let mut s = setup(Some(ABORT_ROLLING_BACK));
    // The sim's clients are in the fleet table, as a live master's are.
    for (client, relay) in fleet(s.dir.path(), s.id, 0.0).targets() {
        s.ledger
            .touch_client(&client, Some(&relay), Some("app"), Some("0.9.0"), START)
            .unwrap();
    }
    let mut f = fleet(s.dir.path(), s.id, 0.0);
    drive_from(&mut s, &mut f, "2026-11-30T23:00:00Z").unwrap();
    let row = s.ledger.run(s.id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Failed);
    let installed: Vec<String> = [0, 1]
        .into_iter()
        .flat_map(|k| in_stage(&s, k, ClientState::Delivered))
        .collect();
    assert_eq!(installed.len(), 20, "the canary and stage 2 installed");
    let orders = s.ledger.rollbacks().unwrap();
    let mut ordered: Vec<String> = orders.iter().map(|o| o.client.clone()).collect();
    ordered.sort();
    let mut want = installed.clone();
    want.sort();
    assert_eq!(ordered, want, "every client that installed, nobody else");
    assert!(
        orders
            .iter()
            .all(|o| o.by == ADVANCE_POLICY && o.artifact == "app" && o.to_version.is_none())
    );
    assert_eq!(s.ledger.pending_rollbacks(100).unwrap().len(), 20);
    assert_eq!(in_stage(&s, 2, ClientState::Pending).len(), 10);

    // A driver started again finds the run ended: no order twice.
    let mut f = fleet(s.dir.path(), s.id, 0.0);
    let _ended = drive_from(&mut s, &mut f, "2026-12-01T06:00:00Z");
    let row = s.ledger.run(s.id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Failed);
    assert_eq!(s.ledger.rollbacks().unwrap().len(), 20);
}

/// Dies in the given round, as a killed driver would.
struct KilledIn {
    inner: SimRun,
    round: u32,
}

impl Fleet for KilledIn {
    fn describe(&self) -> RunFleet {
        self.inner.describe()
    }
    fn targets(&self) -> Vec<(String, String)> {
        self.inner.targets()
    }
    fn broadcast_round(
        &mut self,
        round: u32,
        pending: &[String],
        clock: &dyn Clock,
    ) -> Vec<String> {
        assert!(round != self.round, "killed in round {round}");
        self.inner.broadcast_round(round, pending, clock)
    }
    fn admit(&mut self, clients: &[String]) {
        self.inner.admit(clients);
    }
    fn delta_boots(
        &mut self,
        s: &[String],
        a: Timestamp,
        b: Timestamp,
    ) -> Vec<(String, Timestamp)> {
        self.inner.delta_boots(s, a, b)
    }
    fn last_contact(&self, c: &str, r: &[Timestamp], now: Timestamp) -> Option<Timestamp> {
        self.inner.last_contact(c, r, now)
    }
}

#[test]
fn a_driver_killed_mid_stage_resumes_in_the_same_stage() {
    let mut s = setup(None);
    // Rounds 1-2 are the canary's, 3-4 the second stage's: killed in 3.
    let mut killed = KilledIn {
        inner: fleet(s.dir.path(), s.id, 0.0),
        round: 3,
    };
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drive_from(&mut s, &mut killed, "2026-11-30T23:00:00Z")
    }));
    assert!(died.is_err());
    let row = s.ledger.run(s.id).unwrap().unwrap();
    let state = RunState::of_run(&row).unwrap();
    assert_eq!(state.stage().map(|p| p.index), Some(1), "died in stage 2");
    assert_eq!(events(&s, "stage-started").len(), 2);

    let mut f = fleet(s.dir.path(), s.id, 0.0);
    drive_from(&mut s, &mut f, "2026-12-01T05:00:00Z").unwrap();
    let sizes: Vec<usize> = f.admissions().iter().map(Vec::len).collect();
    assert_eq!(sizes, [20, 30], "re-admitted in stage 2, then stage 3");
    let started: Vec<u64> = events(&s, "stage-started")
        .iter()
        .map(|e| e.detail["stage"].as_u64().unwrap())
        .collect();
    assert_eq!(started, [1, 2, 3], "stage 2 is not started twice");
    let row = s.ledger.run(s.id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Done);
}

/// A client joins the run (through another ledger connection, as a live
/// master records a registration) while the canary's round is on air.
struct JoinsInRound1 {
    inner: SimRun,
    ledger: PathBuf,
    run: i64,
}

impl Fleet for JoinsInRound1 {
    fn describe(&self) -> RunFleet {
        self.inner.describe()
    }
    fn targets(&self) -> Vec<(String, String)> {
        self.inner.targets()
    }
    fn broadcast_round(
        &mut self,
        round: u32,
        pending: &[String],
        clock: &dyn Clock,
    ) -> Vec<String> {
        if round == 1 {
            let mut l = Ledger::open(&self.ledger).unwrap();
            let batch = haifu_ledger::FleetBatch {
                joins: vec![(self.run, "late-1".into(), "relay-1".into())],
                ..Default::default()
            };
            l.apply_fleet(&batch).unwrap();
        }
        self.inner.broadcast_round(round, pending, clock)
    }
    fn admit(&mut self, clients: &[String]) {
        self.inner.admit(clients);
    }
    fn delta_boots(
        &mut self,
        s: &[String],
        a: Timestamp,
        b: Timestamp,
    ) -> Vec<(String, Timestamp)> {
        self.inner.delta_boots(s, a, b)
    }
    fn last_contact(&self, c: &str, r: &[Timestamp], now: Timestamp) -> Option<Timestamp> {
        self.inner.last_contact(c, r, now)
    }
}

/// Joined during the canary, behind the canary's relay: placed when the
/// next stage starts, in it (the canary was already under way), and
/// admitted with it.
#[test]
fn a_client_that_joins_mid_run_is_placed_in_the_next_stage_to_start() {
    let mut s = setup(None);
    let mut f = JoinsInRound1 {
        inner: fleet(s.dir.path(), s.id, 0.0),
        ledger: ledger_path(s.dir.path()),
        run: s.id,
    };
    drive_from(&mut s, &mut f, "2026-11-30T23:00:00Z").unwrap();
    let admitted = f.inner.admissions();
    assert!(!admitted[0].contains(&"late-1".to_owned()));
    assert!(admitted[1].contains(&"late-1".to_owned()), "{admitted:?}");
    let row = s
        .ledger
        .run_clients(s.id)
        .unwrap()
        .into_iter()
        .find(|c| c.client == "late-1")
        .unwrap();
    assert_eq!(row.stage, Some(1), "not into the canary already begun");
}
