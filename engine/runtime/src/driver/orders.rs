//! The driver honours operators' orders (pause, resume, abort) written to
//! the ledger by another connection, in virtual time: a clock that carries
//! out a script of orders as it passes their instants.

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use haifu_ledger::{Ledger, RunOrder, RunStatus};
use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::clock::VirtualClock;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A virtual clock that wakes the driver every minute (as a real one does
/// every second) and gives the orders of its script, each once the clock
/// reaches its instant, through its own ledger connection.
struct OperatorClock {
    clock: VirtualClock,
    ledger: Mutex<Ledger>,
    run: i64,
    script: Mutex<Vec<(Timestamp, RunOrder)>>,
}

impl OperatorClock {
    fn give_due_orders(&self) {
        let now = self.clock.now();
        let mut script = self.script.lock().unwrap();
        while script.first().is_some_and(|(at, _)| *at <= now) {
            let (_, order) = script.remove(0);
            let mut l = self.ledger.lock().unwrap();
            l.order_run(self.run, order, "ops", Some("testing"))
                .unwrap();
        }
    }
}

impl Clock for OperatorClock {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn sleep_until(&self, at: Timestamp) {
        self.clock.sleep_until(at);
        self.give_due_orders();
    }

    fn order_poll(&self) -> Option<SignedDuration> {
        Some(SignedDuration::from_mins(1))
    }
}

/// Four clients; round n delivers client n, so c4 is a straggler the
/// deadline cuts off. Remembers when each round went out.
struct RoundLog {
    rounds: Vec<(u32, Timestamp)>,
}

impl Fleet for RoundLog {
    fn describe(&self) -> RunFleet {
        RunFleet::Modelled("orders-test".into())
    }
    fn targets(&self) -> Vec<(String, String)> {
        (1..=4).map(|i| (format!("c{i}"), "r".to_owned())).collect()
    }
    fn broadcast_round(
        &mut self,
        round: u32,
        pending: &[String],
        clock: &dyn Clock,
    ) -> Vec<String> {
        self.rounds.push((round, clock.now()));
        let me = format!("c{round}");
        pending.iter().filter(|c| **c == me).cloned().collect()
    }
    fn delta_boots(
        &mut self,
        _: &[String],
        _: Timestamp,
        _: Timestamp,
    ) -> Vec<(String, Timestamp)> {
        Vec::new()
    }
    fn last_contact(&self, _: &str, _: &[Timestamp], _: Timestamp) -> Option<Timestamp> {
        None
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    store: Store,
    plan: Plan,
    id: i64,
    fleet: RoundLog,
    path: std::path::PathBuf,
}

fn setup() -> Setup {
    setup_with("")
}

/// [`setup`] with more keys in `schedule` (`, key: value`).
fn setup_with(schedule: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.tar"), b"the artifact's bytes").unwrap();
    let wf = dir.path().join("t.yaml");
    std::fs::write(
        &wf,
        format!("name: t\nartifact: {{ name: app, version: 1.0.0, path: a.tar }}\ntargets: {{ relays: [r] }}\n\
schedule: {{ start: 2026-12-01T00:00:00Z, deadline: 72h{schedule} }}\ntransports: {{ broadcast: multicast, unicast: quic }}\n\
steps:\n  - register\n  - broadcast: {{ rounds: 3 }}\n  - audit\n  - delta: {{ until: deadline }}\n  - disconnect\n"),
    )
    .unwrap();
    let plan = haifu_spec::load_and_validate(&wf).unwrap();
    let path = dir.path().join("l.sqlite");
    let mut ledger = Ledger::open(&path).unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let fleet = RoundLog { rounds: Vec::new() };
    let id = create(&mut ledger, &plan, &fleet.describe(), &fleet.targets()).unwrap();
    Setup {
        _dir: dir,
        ledger,
        store,
        plan,
        id,
        fleet,
        path,
    }
}

fn drive_with(s: &mut Setup, script: Vec<(&str, RunOrder)>) {
    let clock = OperatorClock {
        clock: VirtualClock::new(ts("2026-11-30T23:00:00Z")),
        ledger: Mutex::new(Ledger::open(&s.path).unwrap()),
        run: s.id,
        script: Mutex::new(script.into_iter().map(|(at, o)| (ts(at), o)).collect()),
    };
    let key = SigningKey::from_seed([7; 32]);
    let policies = haifu_policy::PolicySet::defaults();
    let mut env = Env {
        ledger: &mut s.ledger,
        store: &s.store,
        key: &key,
        policies: &policies,
        clock: &clock,
    };
    resume(&mut env, s.id, &s.plan, &mut s.fleet).unwrap();
}

fn orders(l: &Ledger, id: i64) -> Vec<RunOrder> {
    l.orders(id).unwrap().into_iter().map(|o| o.order).collect()
}

/// Paused after round 1 and resumed after the deadline: no round goes out
/// while paused, the deadline cuts nobody off until the resume, and the
/// run then finishes its rounds and its cut-off.
#[test]
fn a_paused_run_starts_no_round_and_cuts_nobody_off_until_resumed() {
    let mut s = setup();
    let paused = "2026-12-01T00:05:00Z";
    let resumed = "2026-12-05T00:00:00Z";
    drive_with(
        &mut s,
        vec![(paused, RunOrder::Pause), (resumed, RunOrder::Resume)],
    );
    let rounds = &s.fleet.rounds;
    assert_eq!(rounds.first().map(|r| r.0), Some(1));
    assert!(rounds[0].1 < ts(paused));
    assert!(
        rounds.len() > 1,
        "the run went on after its resume: {rounds:?}"
    );
    for (n, at) in &rounds[1..] {
        assert!(
            *at >= ts(resumed),
            "round {n} went out at {at}, while paused"
        );
    }
    let row = s.ledger.run(s.id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Done);
    assert_eq!(row.paused, None);
    let cut = s.ledger.run_clients(s.id).unwrap();
    let c4 = cut.iter().find(|c| c.client == "c4").unwrap();
    // The default disconnect policy keeps a straggler, with its reason:
    // the cut-off was decided, and only after the resume.
    assert_eq!(c4.state, haifu_ledger::ClientState::Undelivered);
    assert!(c4.reason.is_some(), "the cut-off never looked at c4");
    let state = crate::machine::RunState::of_run(&row).unwrap();
    let finished = state.finished_at.unwrap();
    assert!(
        finished >= ts(resumed),
        "the run ended at {finished}, while paused"
    );
    assert_eq!(orders(&s.ledger, s.id), [RunOrder::Pause, RunOrder::Resume]);
}

/// Aborted between rounds: the run ends failed with the operator's
/// reason, and no round goes out after the abort.
#[test]
fn an_aborted_run_ends_failed_with_the_reason_and_starts_no_round() {
    let mut s = setup();
    let aborted = "2026-12-01T00:05:00Z";
    drive_with(&mut s, vec![(aborted, RunOrder::Abort)]);
    assert!(s.fleet.rounds.iter().all(|(_, at)| *at < ts(aborted)));
    let row = s.ledger.run(s.id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Failed);
    assert_eq!(
        s.ledger.failure(s.id).unwrap().as_deref(),
        Some("aborted by ops: testing")
    );
    assert_eq!(orders(&s.ledger, s.id), [RunOrder::Abort]);
    assert_eq!(row.next_wake, None);
}

/// Aborted while paused: it ends there, never resumed.
#[test]
fn a_paused_run_can_be_aborted() {
    let mut s = setup();
    drive_with(
        &mut s,
        vec![
            ("2026-12-01T00:05:00Z", RunOrder::Pause),
            ("2026-12-02T00:00:00Z", RunOrder::Abort),
        ],
    );
    assert_eq!(s.fleet.rounds.len(), 1);
    let row = s.ledger.run(s.id).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Failed);
}

/// Paused in its delta step and aborted after the deadline: by default
/// the deadline cuts nobody off while paused; with
/// `schedule.cut_off_while_paused` the cut-off is decided at the deadline
/// though the run stays paused (it does not finish).
#[test]
fn a_paused_run_cuts_off_at_the_deadline_only_when_the_workflow_says_so() {
    let script = || {
        vec![
            ("2026-12-02T00:00:00Z", RunOrder::Pause),
            ("2026-12-05T00:00:00Z", RunOrder::Abort),
        ]
    };
    let c4_reason = |s: &Setup| {
        let clients = s.ledger.run_clients(s.id).unwrap();
        clients
            .into_iter()
            .find(|c| c.client == "c4")
            .unwrap()
            .reason
    };
    for (schedule, cuts) in [("", false), (", cut_off_while_paused: true", true)] {
        let mut s = setup_with(schedule);
        assert_eq!(s.plan.schedule.cut_off_while_paused, cuts);
        drive_with(&mut s, script());
        assert_eq!(s.fleet.rounds.len(), 3, "{schedule}");
        let row = s.ledger.run(s.id).unwrap().unwrap();
        assert_eq!(row.status, RunStatus::Failed, "aborted while paused");
        let state = crate::machine::RunState::of_run(&row).unwrap();
        assert_eq!(state.finished_at, None, "a paused run does not finish");
        // The default disconnect policy keeps a straggler, with a reason:
        // the reason shows the cut-off decided.
        assert_eq!(c4_reason(&s).is_some(), cuts, "{schedule}");
    }
}
