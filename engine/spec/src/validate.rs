//! Stage 2: the raw spec → a plan. Pure but for one read-only lookup:
//! `schedule.time_zone` is resolved in jiff's time-zone database (the
//! system's, or the copy bundled in the binary).

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::error::{ErrorKind, SpecError};
use crate::fields::Cx;
use crate::plan::{Artifact, Plan, Policies, Schedule, Targets, Transports, resolve};
use crate::pos::{Pos, Spanned};
use crate::quantity::parse_rate;
use crate::raw::{RawArtifact, RawSchedule, RawSpec, RawTargets, RawTransports};
use crate::stages;
use crate::steps::{self, Step, StepKind};
use crate::timing::{Window, parse_datetime, parse_duration};

/// Names (workflow, artifact, relays, groups, transports): letters, digits,
/// `.`, `_`, `-`; at most this long.
const MAX_NAME: usize = 128;

pub(crate) fn check_name(cx: &mut Cx, name: &Spanned<String>, key: &str) {
    let v = &name.value;
    let ok = !v.is_empty()
        && v.len() <= MAX_NAME
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        cx.invalid(
            name.pos,
            key,
            format!("{v:?} is not a name (letters, digits, '.', '_', '-'; at most {MAX_NAME})"),
        );
    }
}

/// Interprets a raw spec: dates, durations, versions, names, the step order,
/// cross-checks between sections. Collects every error.
///
/// # Errors
/// Every problem found, in file order.
pub fn validate(raw: &RawSpec) -> Result<Plan, Vec<SpecError>> {
    let mut cx = Cx::new(raw.file.clone());
    // Required sections absent from a raw spec that had no stage-1 errors
    // would otherwise go unreported; stage 1 reports them when it can.
    let missing = |cx: &mut Cx, key: &'static str| {
        if !raw.had_errors {
            cx.error(
                raw.pos,
                ErrorKind::MissingKey {
                    key,
                    section: String::new(),
                },
            );
        }
    };
    let name = raw.name.clone();
    match &name {
        Some(n) => check_name(&mut cx, n, "name"),
        None => missing(&mut cx, "name"),
    }
    let artifact = match &raw.artifact {
        Some(a) => artifact(raw, a, &mut cx),
        None => {
            missing(&mut cx, "artifact");
            None
        }
    };
    let targets = match &raw.targets {
        Some(t) => Some(targets(t, &mut cx)),
        None => {
            missing(&mut cx, "targets");
            None
        }
    };
    let schedule = match &raw.schedule {
        Some(s) => schedule(s, &mut cx),
        None => {
            missing(&mut cx, "schedule");
            None
        }
    };
    let transports = match &raw.transports {
        Some(t) => transports(t, &raw.kinds, &mut cx),
        None => {
            missing(&mut cx, "transports");
            None
        }
    };
    let rate = raw.rate.as_ref().and_then(|r| {
        let parsed = parse_rate(&r.value);
        if parsed.is_none() {
            cx.invalid(
                r.pos,
                "rate",
                format!(
                    "invalid rate {:?} (expected e.g. 20Mbit/s, 800kbit/s, 1Gbit/s)",
                    r.value
                ),
            );
        }
        parsed
    });
    let resolve_policy = |p: &Option<Spanned<String>>| {
        p.as_ref()
            .map(|p| Spanned::new(resolve(&raw.file, &p.value), p.pos))
    };
    let policies = Policies {
        retry: resolve_policy(&raw.policies.retry),
        restrict: resolve_policy(&raw.policies.restrict),
        disconnect: resolve_policy(&raw.policies.disconnect),
        broadcast: resolve_policy(&raw.policies.broadcast),
        advance: resolve_policy(&raw.policies.advance),
    };
    if raw.steps_pos.is_none() {
        missing(&mut cx, "steps");
    }
    let window = schedule.as_ref().map(|s| (s.start, s.deadline));
    steps::validate_each(&raw.steps, window, &mut cx);
    steps::validate_order(&raw.kinds, &mut cx);
    // Relays a stage names must be targeted; with target groups (not
    // resolved to relays here) that cannot be checked.
    let target_relays = raw
        .targets
        .as_ref()
        .filter(|t| t.groups.is_empty())
        .map(|t| t.relays.iter().map(|r| r.value.clone()).collect::<Vec<_>>());
    let has_broadcast = raw.kinds.iter().any(|(k, _)| *k == StepKind::Broadcast);
    let stages = stages::validate(
        &raw.stages,
        target_relays.as_deref(),
        has_broadcast,
        raw.stages_pos,
        &mut cx,
    );
    warn_about_policies(&raw.steps, &policies, &mut cx);
    if let (true, Some(p)) = (raw.stages.is_empty(), &policies.advance) {
        cx.warn(p.pos, "advance policy unused: there are no stages");
    }

    match (name, artifact, targets, schedule, transports) {
        (Some(name), Some(artifact), Some(targets), Some(schedule), Some(transports))
            if cx.errors.is_empty() && !raw.had_errors =>
        {
            Ok(Plan {
                file: raw.file.clone(),
                name,
                description: raw.description.as_ref().map(|d| d.value.clone()),
                artifact,
                targets,
                schedule,
                transports,
                rate,
                policies,
                stages,
                steps: raw.steps.clone(),
                warnings: cx.warnings,
            })
        }
        _ => {
            let mut errors = cx.errors;
            errors.sort_by_key(|e| e.pos);
            Err(errors)
        }
    }
}

fn artifact(raw: &RawSpec, a: &RawArtifact, cx: &mut Cx) -> Option<Artifact> {
    if let Some(n) = &a.name {
        check_name(cx, n, "artifact.name");
    }
    let version = a.version.as_ref().and_then(|v| {
        semver::Version::parse(v.value.trim())
            .map_err(|e| {
                cx.invalid(
                    v.pos,
                    "artifact.version",
                    format!("{:?} is not a semantic version like 2.4.0 ({e})", v.value),
                );
            })
            .ok()
    });
    let path = a.path.as_ref().map(|p| {
        if p.value.trim().is_empty() {
            cx.invalid(p.pos, "artifact.path", "empty path");
        }
        Spanned::new(resolve(&raw.file, &p.value), p.pos)
    });
    Some(Artifact {
        name: a.name.as_ref()?.value.clone(),
        version: version?,
        path: path?,
    })
}

fn targets(t: &RawTargets, cx: &mut Cx) -> Targets {
    let unique = |list: &[Spanned<String>], key: &str, cx: &mut Cx| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for item in list {
            check_name(cx, item, key);
            if out.contains(&item.value) {
                cx.invalid(item.pos, key, format!("{:?} is listed twice", item.value));
            } else {
                out.push(item.value.clone());
            }
        }
        out
    };
    Targets {
        relays: unique(&t.relays, "targets.relays", cx),
        groups: unique(&t.groups, "targets.groups", cx),
    }
}

fn schedule(s: &RawSchedule, cx: &mut Cx) -> Option<Schedule> {
    let start = s
        .start
        .as_ref()
        .and_then(|st| match parse_datetime(&st.value) {
            Ok(v) => Some(v),
            Err(reason) => {
                cx.error(
                    st.pos,
                    ErrorKind::BadDateTime {
                        key: "schedule.start".into(),
                        text: st.value.clone(),
                        reason: reason.to_string(),
                    },
                );
                None
            }
        });
    let time_zone = match &s.time_zone {
        Some(tz) => match TimeZone::get(tz.value.trim()) {
            Ok(zone) => Some(zone),
            Err(_) => {
                cx.invalid(
                    tz.pos,
                    "schedule.time_zone",
                    format!(
                        "unknown time zone {:?} (expected an IANA name like Asia/Tokyo)",
                        tz.value
                    ),
                );
                None
            }
        },
        None => start.map(|(_, offset)| TimeZone::fixed(offset)),
    };
    let window = s.window.as_ref().and_then(|w| {
        Window::parse(&w.value)
            .map_err(|m| {
                cx.invalid(
                    w.pos,
                    "schedule.window",
                    format!("invalid window {:?}: {m}", w.value),
                );
            })
            .ok()
    });
    let deadline = match (&s.deadline, start) {
        (Some(d), Some((start, _))) => deadline(d, start, cx),
        (Some(d), None) => {
            // Still check its syntax, so every error shows at once.
            let _ = deadline(d, Timestamp::UNIX_EPOCH, cx);
            None
        }
        (None, _) => None,
    };
    Some(Schedule {
        start: start?.0,
        deadline: deadline?,
        time_zone: time_zone?,
        window: match (&s.window, window) {
            (Some(_), None) => return None,
            (_, w) => w,
        },
        cut_off_while_paused: s.cut_off_while_paused.as_ref().is_some_and(|f| f.value),
    })
}

fn deadline(d: &Spanned<String>, start: Timestamp, cx: &mut Cx) -> Option<Timestamp> {
    let text = d.value.trim();
    let looks_like_date = text.len() >= 10 && text.as_bytes().get(4) == Some(&b'-');
    let at = if looks_like_date {
        match parse_datetime(text) {
            Ok((t, _)) => t,
            Err(reason) => {
                cx.error(
                    d.pos,
                    ErrorKind::BadDateTime {
                        key: "schedule.deadline".into(),
                        text: d.value.clone(),
                        reason: reason.to_string(),
                    },
                );
                return None;
            }
        }
    } else {
        let Some(dur) = parse_duration(text) else {
            cx.error(
                d.pos,
                ErrorKind::BadDuration {
                    key: "schedule.deadline".into(),
                    text: d.value.clone(),
                },
            );
            return None;
        };
        let dur = SignedDuration::try_from(dur).unwrap_or(SignedDuration::MAX);
        start.saturating_add(dur).unwrap_or(Timestamp::MAX)
    };
    if at <= start {
        cx.invalid(
            d.pos,
            "schedule.deadline",
            format!("{at} is not after the start {start}"),
        );
        return None;
    }
    Some(at)
}

fn transports(t: &RawTransports, kinds: &[(StepKind, Pos)], cx: &mut Cx) -> Option<Transports> {
    for name in [&t.broadcast, &t.unicast].into_iter().flatten() {
        check_name(cx, name, "transports");
    }
    let needs_unicast = kinds.iter().find(|(k, _)| *k == StepKind::Delta);
    if let (Some((_, delta)), None) = (needs_unicast, &t.unicast) {
        cx.invalid(
            t.pos,
            "transports",
            format!(
                "the delta step (at {}) needs a unicast transport, e.g. unicast: quic",
                delta
            ),
        );
    }
    Some(Transports {
        broadcast: t.broadcast.as_ref()?.value.clone(),
        unicast: t.unicast.as_ref().map(|u| u.value.clone()),
        broadcast_at: t.broadcast.as_ref()?.pos,
        unicast_at: t.unicast.as_ref().map(|u| u.pos),
    })
}

fn warn_about_policies(steps: &[Step], policies: &Policies, cx: &mut Cx) {
    let has = |k: StepKind| steps.iter().find(|s| s.kind() == k);
    let rounds = steps.iter().find_map(|s| match s {
        Step::Broadcast(b) => Some(b),
        _ => None,
    });
    match (rounds, &policies.retry) {
        (Some(b), None) if b.rounds.value > 1 => cx.warn(
            b.pos,
            "no retry policy: rounds will be 1 h apart (the safe default)",
        ),
        (None, Some(p)) => cx.warn(p.pos, "retry policy unused: there is no broadcast step"),
        _ => {}
    }
    match (has(StepKind::Disconnect), &policies.disconnect) {
        (Some(s), None) => cx.warn(
            s.pos(),
            "no disconnect policy: the disconnect step will keep every client connected (the safe default)",
        ),
        (None, Some(p)) => cx.warn(p.pos, "disconnect policy unused: there is no disconnect step"),
        _ => {}
    }
    // No warning when it is absent: the default budget is the one rounds
    // had before it was a policy, and suits most fleets.
    if let (None, Some(p)) = (rounds, &policies.broadcast) {
        cx.warn(p.pos, "broadcast policy unused: there is no broadcast step");
    }
}
