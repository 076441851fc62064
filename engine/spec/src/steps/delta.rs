//! `delta: { until: deadline, budget: 50MiB }`: when a straggler boots and
//! reports its version, send it only the difference over unicast (patent
//! steps 107-109), until `until`. `budget` caps the bytes one client may be
//! sent; a client whose delta would exceed it is reported, never silently
//! sent the full artifact.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use serde::{Deserialize, Serialize};

use super::machine::{Command, Poll, RunCx};

use crate::error::ErrorKind;
use crate::fields::{Cx, MapReader, string};
use crate::pos::{Pos, Spanned};
use crate::quantity::parse_bytes;
use crate::shape::{self, Key, Kind};
use crate::timing::{parse_datetime, parse_duration};
use haifu_yaml::Node;

/// Until when deltas are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Until `schedule.deadline` (the default).
    Deadline,
    /// Until this instant.
    At(Timestamp),
    /// For this long after `schedule.start`.
    After(Duration),
}

impl Until {
    /// The instant deltas stop, given the schedule.
    pub fn resolve(&self, start: Timestamp, deadline: Timestamp) -> Timestamp {
        match *self {
            Until::Deadline => deadline,
            Until::At(t) => t,
            Until::After(d) => {
                let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
                start.saturating_add(d).unwrap_or(Timestamp::MAX)
            }
        }
    }
}

/// The `delta` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// Where the step is written.
    pub pos: Pos,
    /// Until when deltas are served.
    pub until: Spanned<Until>,
    /// Most bytes one client may be sent, if capped.
    pub budget: Option<Spanned<u64>>,
}

/// `until`.
const UNTIL: Key = shape::key(
    "until",
    false,
    Kind::Text,
    "deadline (the default), a date-time, or a duration after the start; no later than \
     the deadline.",
);
/// `budget`.
const BUDGET: Key = shape::key(
    "budget",
    false,
    Kind::Text,
    "Most bytes one client may be sent: 50MiB, 200MB, 1GiB.",
);

/// Option keys.
pub(crate) const OPTIONS: &[Key] = &[UNTIL, BUDGET];

pub(crate) fn parse(pos: Pos, args: Option<&Node>, section: &str, cx: &mut Cx) -> Option<Delta> {
    let mut delta = Delta {
        pos,
        until: Spanned::new(Until::Deadline, pos),
        budget: None,
    };
    let Some(args) = args else {
        return Some(delta);
    };
    let mut map = MapReader::new(args, section, cx)?;
    let mut ok = true;
    if let Some(node) = map.take(UNTIL.name) {
        let key = map.key(UNTIL.name);
        match string(node, &key, cx) {
            Some(text) => match parse_until(&text.value) {
                Ok(u) => delta.until = Spanned::new(u, text.pos),
                Err(kind) => {
                    cx.error(text.pos, kind(key));
                    ok = false;
                }
            },
            None => ok = false,
        }
    }
    if let Some(node) = map.take(BUDGET.name) {
        let key = map.key(BUDGET.name);
        match string(node, &key, cx) {
            Some(text) => match parse_bytes(&text.value) {
                Some(b) => delta.budget = Some(Spanned::new(b, text.pos)),
                None => {
                    cx.invalid(
                        text.pos,
                        &key,
                        format!(
                            "invalid size {:?} (expected e.g. 50MiB, 200MB, 1GiB)",
                            text.value
                        ),
                    );
                    ok = false;
                }
            },
            None => ok = false,
        }
    }
    map.finish(OPTIONS, cx);
    ok.then_some(delta)
}

type KindFor = Box<dyn FnOnce(String) -> ErrorKind>;

fn parse_until(text: &str) -> Result<Until, KindFor> {
    let text = text.trim();
    if text == "deadline" {
        return Ok(Until::Deadline);
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) && text.contains('-') {
        return parse_datetime(text)
            .map(|(t, _)| Until::At(t))
            .map_err(|reason| {
                let (text, reason) = (text.to_string(), reason.to_string());
                Box::new(move |key| ErrorKind::BadDateTime { key, text, reason }) as KindFor
            });
    }
    parse_duration(text).map(Until::After).ok_or_else(|| {
        let text = text.to_string();
        Box::new(move |key| ErrorKind::Invalid {
            key,
            message: format!(
                "expected \"deadline\", a date-time or a duration after the start, found {text:?}"
            ),
        }) as KindFor
    })
}

impl Delta {
    /// Pure checks against the schedule: deltas end after the start and no
    /// later than the deadline (cut-offs happen at the deadline).
    pub(crate) fn validate(
        &self,
        section: &str,
        schedule: Option<(Timestamp, Timestamp)>,
        cx: &mut Cx,
    ) {
        let Some((start, deadline)) = schedule else {
            return;
        };
        let end = self.until.value.resolve(start, deadline);
        let key = format!("{section}.until");
        if end <= start {
            cx.invalid(
                self.until.pos,
                &key,
                format!("ends at {end}, not after the start {start}"),
            );
        } else if end > deadline {
            cx.invalid(
                self.until.pos,
                &key,
                format!("ends at {end}, after the deadline {deadline}"),
            );
        }
    }
}

/// Run state of `delta`: deltas are served until the step's end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When the step ends (fixed when it begins).
    pub until: Option<Timestamp>,
}

impl State {
    pub(crate) fn poll(&mut self, spec: &Delta, cx: &RunCx, now: Timestamp) -> Poll {
        let until = *self
            .until
            .get_or_insert_with(|| spec.until.value.resolve(cx.start, cx.deadline));
        if now < until {
            Poll::Do(Command::ServeDeltas { until })
        } else {
            Poll::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (Option<Delta>, Vec<String>) {
        let mut cx = Cx::new("w.yaml".into());
        let node = haifu_yaml::parse(text).unwrap().unwrap();
        let d = parse(Pos::default(), Some(&node), "steps[3].delta", &mut cx);
        (d, cx.errors.iter().map(|e| e.kind.to_string()).collect())
    }

    #[test]
    fn until_accepts_deadline_datetime_and_duration() {
        assert_eq!(
            parsed("{ until: deadline }").0.unwrap().until.value,
            Until::Deadline
        );
        assert_eq!(
            parsed("{ until: 48h }").0.unwrap().until.value,
            Until::After(Duration::from_secs(48 * 3600))
        );
        assert!(matches!(
            parsed("{ until: 2026-12-03T00:00:00+09:00 }")
                .0
                .unwrap()
                .until
                .value,
            Until::At(_)
        ));
        assert_eq!(
            parsed("{ budget: 50MiB }").0.unwrap().budget.unwrap().value,
            50 << 20
        );
    }

    #[test]
    fn bad_until_and_budget_are_named() {
        let (d, errors) = parsed("{ until: forever, budget: lots }");
        assert!(d.is_none());
        assert_eq!(
            errors,
            vec![
                "steps[3].delta.until: expected \"deadline\", a date-time or a duration after the start, found \"forever\"",
                "steps[3].delta.budget: invalid size \"lots\" (expected e.g. 50MiB, 200MB, 1GiB)",
            ]
        );
    }

    #[test]
    fn until_must_fall_between_start_and_deadline() {
        let start = Timestamp::from_second(0).unwrap();
        let deadline = Timestamp::from_second(3600).unwrap();
        let mut cx = Cx::new("w.yaml".into());
        let mut d = parsed("{ until: 2h }").0.unwrap();
        d.validate("steps[3].delta", Some((start, deadline)), &mut cx);
        assert_eq!(cx.errors.len(), 1);
        d.until.value = Until::Deadline;
        d.validate("steps[3].delta", Some((start, deadline)), &mut cx);
        assert_eq!(cx.errors.len(), 1);
    }
}
