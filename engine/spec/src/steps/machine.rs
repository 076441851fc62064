//! The run-time side of steps: one machine per step type, behind one enum.
//!
//! Each step module owns its `State` (serialisable, so the ledger can store
//! it), its `poll` (what the driver must do now, with `now` as an argument)
//! and its `handle` (what the driver reports back). This module only
//! dispatches: adding a step adds a variant here and a module, and the run
//! engine that strings steps together never changes.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use haifu_policy::{Advance, NextRound};

use super::{Step, StepKind, audit, broadcast, delta, disconnect, register};
use crate::timing::Window;

/// The facts of the schedule every step machine may read.
#[derive(Debug, Clone)]
pub struct RunCx {
    /// `schedule.start`.
    pub start: Timestamp,
    /// `schedule.deadline`.
    pub deadline: Timestamp,
    /// The site's time zone.
    pub time_zone: TimeZone,
    /// Rounds start only inside this daily window, if set.
    pub window: Option<Window>,
    /// The workflow's stages (0: an unstaged run).
    pub stages: u32,
}

impl RunCx {
    /// The first instant at or after `at` inside the daily window (`at`
    /// itself without a window).
    pub fn round_time(&self, at: Timestamp) -> Timestamp {
        let Some(window) = self.window else {
            return at;
        };
        let local = at.to_zoned_datetime(self.time_zone.clone());
        let minute = (local.hour() as i32 * 60 + local.minute() as i32) as u16;
        if window.contains(minute) {
            return at;
        }
        let open_today = local
            .with()
            .hour((window.open / 60) as i8)
            .minute((window.open % 60) as i8)
            .second(0)
            .subsec_nanosecond(0)
            .build();
        let next = match open_today {
            Ok(t) if t.timestamp() > at => Some(t),
            Ok(t) => t.checked_add(jiff::ToSpan::day(1)).ok(),
            Err(_) => None,
        };
        next.map(|z| z.timestamp()).unwrap_or(at)
    }
}

/// What the driver must do for the current step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Make sure the artifact is registered; report `Registered`.
    Register,
    /// Nothing to do before this instant.
    SleepUntil(Timestamp),
    /// Run broadcast round `n` (again, after a restart), feed its
    /// completions; report `RoundFinished`.
    StartRound(u32),
    /// Ask the retry policy about round `n`; report `NextRound`.
    AskNextRound(u32),
    /// Staged: place the clients that joined since, admit stage `k` (from
    /// 0) with the stages before it; report `StageStarted`.
    StartStage(u32),
    /// Staged: ask the advance policy about stage `stage` (from 0), after
    /// round `round` brought failures or (`None`) once its broadcast is
    /// over; report `Advance`.
    AskAdvance {
        /// The stage, from 0.
        stage: u32,
        /// The round that brought failures, while the broadcast goes on.
        round: Option<u32>,
    },
    /// Mark every pending client undelivered and list them; report `Audited`.
    Audit,
    /// Serve deltas to stragglers until `until`, then poll again.
    ServeDeltas {
        /// When the step ends.
        until: Timestamp,
    },
    /// Offer each straggler to the disconnect policy; report `CutOffDone`.
    CutOff,
}

/// What the driver reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The artifact is registered.
    Registered,
    /// The open round has been sent.
    RoundFinished,
    /// The retry policy's answer.
    NextRound(NextRound),
    /// Staged: the stage's clients are admitted.
    StageStarted,
    /// Staged: the round just finished brought failures in the stage.
    Failures,
    /// Staged: the advance policy's answer.
    Advance(Advance),
    /// The stragglers are listed.
    Audited,
    /// Every straggler met the disconnect policy.
    CutOffDone,
}

/// A step machine's answer to `poll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// The driver must do this.
    Do(Command),
    /// The step is over.
    Done,
}

/// The durable state of one step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum StepState {
    /// [`register::State`]
    Register(register::State),
    /// [`broadcast::State`]
    Broadcast(broadcast::State),
    /// [`audit::State`]
    Audit(audit::State),
    /// [`delta::State`]
    Delta(delta::State),
    /// [`disconnect::State`]
    Disconnect(disconnect::State),
}

impl Step {
    /// The state of this step before it begins.
    pub fn begin(&self) -> StepState {
        match self {
            Step::Register(_) => StepState::Register(Default::default()),
            Step::Broadcast(_) => StepState::Broadcast(Default::default()),
            Step::Audit(_) => StepState::Audit(Default::default()),
            Step::Delta(_) => StepState::Delta(Default::default()),
            Step::Disconnect(_) => StepState::Disconnect(Default::default()),
        }
    }
}

impl StepState {
    /// Which step this state belongs to.
    pub fn kind(&self) -> StepKind {
        match self {
            StepState::Register(_) => StepKind::Register,
            StepState::Broadcast(_) => StepKind::Broadcast,
            StepState::Audit(_) => StepKind::Audit,
            StepState::Delta(_) => StepKind::Delta,
            StepState::Disconnect(_) => StepKind::Disconnect,
        }
    }

    /// What the driver must do at `now`. The same state always gives the
    /// same command, so a driver that restarts from a saved state redoes
    /// exactly the command that was in flight. A state that does not belong
    /// to `step` (the workflow changed under a run) restarts the step.
    pub fn poll(&mut self, step: &Step, cx: &RunCx, now: Timestamp) -> Poll {
        match (&mut *self, step) {
            (StepState::Register(s), Step::Register(_)) => s.poll(),
            (StepState::Broadcast(s), Step::Broadcast(spec)) => s.poll(spec, cx, now),
            (StepState::Audit(s), Step::Audit(_)) => s.poll(),
            (StepState::Delta(s), Step::Delta(spec)) => s.poll(spec, cx, now),
            (StepState::Disconnect(s), Step::Disconnect(_)) => s.poll(cx, now),
            _ => {
                *self = step.begin();
                self.poll(step, cx, now)
            }
        }
    }

    /// The driver reports `input` at `now`.
    pub fn handle(&mut self, input: &Input, cx: &RunCx, now: Timestamp) {
        match self {
            StepState::Register(s) => s.handle(input),
            StepState::Broadcast(s) => s.handle(input, cx, now),
            StepState::Audit(s) => s.handle(input, now),
            StepState::Delta(_) => {}
            StepState::Disconnect(s) => s.handle(input),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pos::{Pos, Spanned};
    use crate::steps::{Audit, Broadcast, Delta, Disconnect, Register, delta::Until};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cx(window: Option<Window>) -> RunCx {
        RunCx {
            start: ts("2026-12-01T00:00:00Z"),
            deadline: ts("2026-12-04T00:00:00Z"),
            time_zone: TimeZone::UTC,
            window,
            stages: 0,
        }
    }

    fn broadcast(rounds: u32) -> Step {
        Step::Broadcast(Broadcast {
            pos: Pos::default(),
            rounds: Spanned::new(rounds, Pos::default()),
        })
    }

    #[test]
    fn broadcast_follows_its_table_and_never_exceeds_the_plan() {
        let step = broadcast(2);
        let c = cx(None);
        let mut s = step.begin();
        let t0 = ts("2026-11-30T12:00:00Z");
        assert_eq!(
            s.poll(&step, &c, t0),
            Poll::Do(Command::SleepUntil(c.start))
        );
        assert_eq!(s.poll(&step, &c, c.start), Poll::Do(Command::StartRound(1)));
        assert_eq!(
            s.poll(&step, &c, c.start),
            Poll::Do(Command::StartRound(1)),
            "idempotent"
        );
        s.handle(&Input::RoundFinished, &c, c.start);
        assert_eq!(
            s.poll(&step, &c, c.start),
            Poll::Do(Command::AskNextRound(1))
        );
        s.handle(
            &Input::NextRound(NextRound::Wait(Duration::from_secs(60))),
            &c,
            c.start,
        );
        let t1 = ts("2026-12-01T00:01:00Z");
        assert_eq!(
            s.poll(&step, &c, c.start),
            Poll::Do(Command::SleepUntil(t1))
        );
        assert_eq!(s.poll(&step, &c, t1), Poll::Do(Command::StartRound(2)));
        s.handle(&Input::RoundFinished, &c, t1);
        // The plan had two rounds: no policy question, the step is over.
        assert_eq!(s.poll(&step, &c, t1), Poll::Done);
        let StepState::Broadcast(b) = s else { panic!() };
        assert_eq!(b.started, vec![c.start, t1]);
    }

    /// Two stages of one round each: admitted, gated after failures,
    /// held by a pause, sent again after the resume, then the next stage
    /// with its round numbered on.
    #[test]
    fn a_staged_broadcast_goes_stage_by_stage_through_its_gates() {
        let step = broadcast(1);
        let mut c = cx(None);
        c.stages = 2;
        let mut s = step.begin();
        let t = c.start;
        let proceed = Advance::Proceed {
            reason: "ok".into(),
        };
        let pause = Advance::Pause {
            reason: "bad".into(),
        };
        let wait = Advance::Wait {
            wait: Duration::from_secs(600),
            reason: "soak".into(),
        };
        assert_eq!(s.poll(&step, &c, t), Poll::Do(Command::StartStage(0)));
        s.handle(&Input::StageStarted, &c, t);
        assert_eq!(s.poll(&step, &c, t), Poll::Do(Command::StartRound(1)));
        s.handle(&Input::RoundFinished, &c, t);
        s.handle(&Input::Failures, &c, t);
        let early = Command::AskAdvance {
            stage: 0,
            round: Some(1),
        };
        assert_eq!(s.poll(&step, &c, t), Poll::Do(early.clone()));
        s.handle(&Input::Advance(pause.clone()), &c, t);
        assert_eq!(s.poll(&step, &c, t), Poll::Do(early), "held until resumed");
        s.handle(&Input::Advance(wait.clone()), &c, t);
        let gate = Command::AskAdvance {
            stage: 0,
            round: None,
        };
        assert_eq!(s.poll(&step, &c, t), Poll::Do(gate.clone()));
        // The first wait after the pause sends the stage's round again.
        s.handle(&Input::Advance(wait.clone()), &c, t);
        assert_eq!(s.poll(&step, &c, t), Poll::Do(Command::StartRound(2)));
        s.handle(&Input::RoundFinished, &c, t);
        assert_eq!(s.poll(&step, &c, t), Poll::Do(gate.clone()));
        s.handle(&Input::Advance(wait), &c, t);
        let soaked = ts("2026-12-01T00:10:00Z");
        assert_eq!(s.poll(&step, &c, t), Poll::Do(Command::SleepUntil(soaked)));
        assert_eq!(s.poll(&step, &c, soaked), Poll::Do(gate));
        s.handle(&Input::Advance(proceed.clone()), &c, soaked);
        assert_eq!(s.poll(&step, &c, soaked), Poll::Do(Command::StartStage(1)));
        s.handle(&Input::StageStarted, &c, soaked);
        assert_eq!(s.poll(&step, &c, soaked), Poll::Do(Command::StartRound(3)));
        s.handle(&Input::RoundFinished, &c, soaked);
        s.poll(&step, &c, soaked);
        s.handle(&Input::Advance(proceed), &c, soaked);
        assert_eq!(
            s.poll(&step, &c, soaked),
            Poll::Done,
            "after the last stage"
        );
        let StepState::Broadcast(b) = s else { panic!() };
        assert_eq!(b.started.len(), 3);
        assert_eq!(b.stage.map(|p| (p.index, p.rounds_before)), Some((1, 2)));
    }

    #[test]
    fn broadcast_stops_early_when_the_policy_says_so() {
        let step = broadcast(5);
        let c = cx(None);
        let mut s = step.begin();
        s.poll(&step, &c, c.start);
        s.handle(&Input::RoundFinished, &c, c.start);
        s.handle(
            &Input::NextRound(NextRound::Stop {
                reason: "everyone has it".into(),
            }),
            &c,
            c.start,
        );
        assert_eq!(s.poll(&step, &c, c.start), Poll::Done);
    }

    #[test]
    fn rounds_wait_for_the_nightly_window() {
        let step = broadcast(3);
        let c = cx(Some(Window {
            open: 120,
            close: 300,
        }));
        let mut s = step.begin();
        let two = ts("2026-12-01T02:00:00Z");
        assert_eq!(
            s.poll(&step, &c, c.start),
            Poll::Do(Command::SleepUntil(two))
        );
        assert_eq!(s.poll(&step, &c, two), Poll::Do(Command::StartRound(1)));
        s.handle(&Input::RoundFinished, &c, two);
        s.poll(&step, &c, two);
        // 6 h later is 08:00, outside the window: the next night at 02:00.
        s.handle(
            &Input::NextRound(NextRound::Wait(Duration::from_secs(6 * 3600))),
            &c,
            two,
        );
        assert_eq!(
            s.poll(&step, &c, two),
            Poll::Do(Command::SleepUntil(ts("2026-12-02T02:00:00Z")))
        );
    }

    #[test]
    fn the_other_steps_ask_once_and_finish() {
        let c = cx(None);
        let now = c.start;
        let reg = Step::Register(Register {
            pos: Pos::default(),
        });
        let mut s = reg.begin();
        assert_eq!(s.poll(&reg, &c, now), Poll::Do(Command::Register));
        s.handle(&Input::Registered, &c, now);
        assert_eq!(s.poll(&reg, &c, now), Poll::Done);

        let audit = Step::Audit(Audit {
            pos: Pos::default(),
        });
        let mut s = audit.begin();
        assert_eq!(s.poll(&audit, &c, now), Poll::Do(Command::Audit));
        s.handle(&Input::Audited, &c, now);
        assert_eq!(s.poll(&audit, &c, now), Poll::Done);

        let delta = Step::Delta(Delta {
            pos: Pos::default(),
            until: Spanned::new(Until::Deadline, Pos::default()),
            budget: None,
        });
        let mut s = delta.begin();
        assert_eq!(
            s.poll(&delta, &c, now),
            Poll::Do(Command::ServeDeltas { until: c.deadline })
        );
        assert_eq!(s.poll(&delta, &c, c.deadline), Poll::Done);

        let cut = Step::Disconnect(Disconnect {
            pos: Pos::default(),
        });
        let mut s = cut.begin();
        assert_eq!(
            s.poll(&cut, &c, now),
            Poll::Do(Command::SleepUntil(c.deadline))
        );
        assert_eq!(s.poll(&cut, &c, c.deadline), Poll::Do(Command::CutOff));
        s.handle(&Input::CutOffDone, &c, c.deadline);
        assert_eq!(s.poll(&cut, &c, c.deadline), Poll::Done);
    }

    #[test]
    fn a_state_from_another_step_restarts_the_step() {
        let c = cx(None);
        let audit = Step::Audit(Audit {
            pos: Pos::default(),
        });
        let mut s = StepState::Register(register::State { done: true });
        assert_eq!(s.poll(&audit, &c, c.start), Poll::Do(Command::Audit));
        assert_eq!(s.kind(), StepKind::Audit);
    }

    #[test]
    fn states_round_trip_through_json() {
        let step = broadcast(3);
        let c = cx(None);
        let mut s = step.begin();
        s.poll(&step, &c, c.start);
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains("\"step\":\"broadcast\"") && json.contains("\"phase\":\"round_open\""),
            "{json}"
        );
        let back: StepState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
