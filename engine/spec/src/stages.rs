//! `stages:`: a phased rollout. The broadcast goes to one stage at a time;
//! each stage names its clients (relays, clients by name, labels, or a
//! percentage of the clients in no earlier stage) and its gate (a soak, the least
//! success and the most failures it tolerates).
//!
//! This module reads and validates the list (stages 1 and 2 of the
//! workflow, with positions). Who is in which stage for a given fleet, and
//! what the gate decides, is the runtime's (`haifu_runtime::stage`) and the
//! advance policy's.

use std::time::Duration;

use crate::fields::{Cx, MapReader, join, string, string_list, uint};
use crate::pos::{Pos, Spanned};
use crate::shape::{self, Key};
use crate::timing::parse_duration;
use haifu_core::Labels;
use haifu_yaml::{Node, Value};

/// One stage as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStage {
    /// Where the entry is.
    pub pos: Pos,
    /// `name`.
    pub name: Option<Spanned<String>>,
    /// `relays`.
    pub relays: Vec<Spanned<String>>,
    /// `clients`.
    pub clients: Vec<Spanned<String>>,
    /// `labels`, in the order written.
    pub labels: Vec<RawLabel>,
    /// `percent`.
    pub percent: Option<Spanned<u64>>,
    /// `seed`.
    pub seed: Option<Spanned<u64>>,
    /// `gate`.
    pub gate: Option<RawGate>,
}

/// One `key: value` of a stage's `labels`, as written.
pub type RawLabel = (Spanned<String>, Spanned<String>);

/// `gate: { soak, min_success, max_failures }` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawGate {
    /// Where the mapping is.
    pub pos: Pos,
    /// `soak`.
    pub soak: Option<Spanned<String>>,
    /// `min_success`.
    pub min_success: Option<Spanned<String>>,
    /// `max_failures`.
    pub max_failures: Option<Spanned<String>>,
}

/// One stage of a phased rollout, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Where the stage is written.
    pub pos: Pos,
    /// Its name (`stage-N` when the workflow gives none); unique.
    pub name: String,
    /// Every client behind these relays is in the stage.
    pub relays: Vec<String>,
    /// These clients are in the stage.
    pub clients: Vec<String>,
    /// Every client whose labels hold all these pairs is in the stage
    /// (empty: none is named by label).
    pub labels: Labels,
    /// This percentage (1..=100, rounded up) of the clients in no earlier
    /// stage and not named by this one, drawn by `seed`.
    pub percent: Option<u8>,
    /// The draw's seed.
    pub seed: u64,
    /// When the next stage may start.
    pub gate: StageGate,
}

impl Stage {
    /// The one stage a workflow without `stages:` amounts to: every
    /// target at once (`all`, percent 100, no gate), written at `pos`.
    pub fn everyone(pos: Pos) -> Stage {
        Stage {
            pos,
            name: "all".into(),
            relays: Vec::new(),
            clients: Vec::new(),
            labels: Labels::new(),
            percent: Some(100),
            seed: 0,
            gate: StageGate::default(),
        }
    }
}

/// A stage's gate: the thresholds the advance policy is handed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StageGate {
    /// How long after the stage's broadcast the decision waits.
    pub soak: Duration,
    /// The least share of the stage's clients, in percent (0..=100), that
    /// must have installed without failing.
    pub min_success: Option<f64>,
    /// The most failures tolerated.
    pub max_failures: Option<FailureLimit>,
}

/// `max_failures`: a share of the stage's clients or a count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FailureLimit {
    /// In percent of the stage's clients, 0..=100.
    Percent(f64),
    /// Failed clients.
    Count(u64),
}

/// At most this many stages: a rollout of more is surely a typo, and each
/// one is a row per client in the audit.
pub const MAX_STAGES: usize = 100;

/// Reads `stages:` (stage 1: shape only).
pub(crate) fn parse(node: &Node, cx: &mut Cx) -> Vec<RawStage> {
    let key = "stages";
    let Value::Seq(items) = &node.value else {
        cx.error(
            node.pos,
            crate::error::ErrorKind::WrongType {
                key: key.into(),
                expected: "a list",
                found: crate::fields::found(node),
            },
        );
        return Vec::new();
    };
    if items.is_empty() {
        cx.invalid(node.pos, key, "no stages (leave the key out for none)");
    }
    if items.len() > MAX_STAGES {
        cx.invalid(
            node.pos,
            key,
            format!("{} stages, at most {MAX_STAGES}", items.len()),
        );
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, n)| stage(n, &format!("{key}[{i}]"), cx))
        .collect()
}

/// Takes `key` from `m` and reads it with `read`: the one shape every
/// key of a stage and of its gate is read in.
fn take<T>(
    m: &mut MapReader<'_>,
    key: &Key,
    cx: &mut Cx,
    read: impl FnOnce(&Node, &str, &mut Cx) -> Option<T>,
) -> Taken<T> {
    match m.take(key.name) {
        None => Taken::Absent,
        Some(n) => match read(n, &m.key(key.name), cx) {
            Some(v) => Taken::Read(v),
            None => Taken::Wrong,
        },
    }
}

/// A key as [`take`] found it.
enum Taken<T> {
    /// Not written (or null).
    Absent,
    /// Written but of the wrong type (reported).
    Wrong,
    /// Read.
    Read(T),
}

impl<T> Taken<T> {
    fn value(self) -> Option<T> {
        match self {
            Taken::Read(v) => Some(v),
            _ => None,
        }
    }
}

fn stage(node: &Node, section: &str, cx: &mut Cx) -> Option<RawStage> {
    let mut m = MapReader::new(node, section, cx)?;
    let [name, relays, clients, labels, percent, seed, gate] = shape::STAGE;
    let name = take(&mut m, name, cx, string).value();
    let relays = take(&mut m, relays, cx, string_list);
    let clients = take(&mut m, clients, cx, string_list);
    let labels = take(&mut m, labels, cx, label_map);
    let percent = take(&mut m, percent, cx, uint);
    let seed = take(&mut m, seed, cx, uint).value();
    let gate = take(&mut m, gate, cx, raw_gate).value();
    // "At least one" only when nothing was of the wrong type (reported).
    let wrong = [&relays, &clients]
        .iter()
        .any(|t| matches!(t, Taken::Wrong))
        || matches!(labels, Taken::Wrong)
        || matches!(percent, Taken::Wrong);
    let named = !matches!(percent, Taken::Absent);
    let relays = relays.value().unwrap_or_default();
    let clients = clients.value().unwrap_or_default();
    let labels = labels.value().unwrap_or_default();
    if !wrong && !named && relays.is_empty() && clients.is_empty() && labels.is_empty() {
        cx.invalid(
            m.pos,
            section,
            "name its clients: relays, clients, labels or a percent",
        );
    }
    let s = RawStage {
        pos: m.pos,
        name,
        relays,
        clients,
        labels,
        percent: percent.value(),
        seed,
        gate,
    };
    m.finish(shape::STAGE, cx);
    Some(s)
}

/// `labels: { key: value, ... }`: text keys and values, as written.
fn label_map(node: &Node, key: &str, cx: &mut Cx) -> Option<Vec<RawLabel>> {
    let Value::Map(entries) = &node.value else {
        cx.error(
            node.pos,
            crate::error::ErrorKind::WrongType {
                key: key.into(),
                expected: "a mapping",
                found: crate::fields::found(node),
            },
        );
        return None;
    };
    Some(
        entries
            .iter()
            .filter_map(|(k, v)| {
                let name = string(k, key, cx)?;
                let value = string(v, &join(key, &name.value), cx)?;
                Some((name, value))
            })
            .collect(),
    )
}

fn raw_gate(node: &Node, section: &str, cx: &mut Cx) -> Option<RawGate> {
    let mut m = MapReader::new(node, section, cx)?;
    let g = RawGate {
        pos: m.pos,
        soak: take(&mut m, &shape::SOAK, cx, string).value(),
        min_success: take(&mut m, &shape::MIN_SUCCESS, cx, string).value(),
        max_failures: take(&mut m, &shape::MAX_FAILURES, cx, string).value(),
    };
    m.finish(shape::GATE, cx);
    Some(g)
}

/// Stage 2: names, bounds, percentages, durations, and the cross-checks
/// (a relay or client in two stages; a relay not among the targets; stages
/// without a broadcast). Collects every error.
pub(crate) fn validate(
    stages: &[RawStage],
    target_relays: Option<&[String]>,
    has_broadcast: bool,
    stages_pos: Option<Pos>,
    cx: &mut Cx,
) -> Vec<Stage> {
    // Only once the list read: a list of the wrong shape was reported.
    if let (Some(pos), false, false) = (stages_pos, has_broadcast, stages.is_empty()) {
        cx.invalid(
            pos,
            "stages",
            "stages need a broadcast step: a stage is a broadcast to some of the clients",
        );
    }
    let mut out: Vec<Stage> = Vec::new();
    let mut relays_seen: Vec<(String, usize)> = Vec::new();
    let mut clients_seen: Vec<(String, usize)> = Vec::new();
    for (i, raw) in stages.iter().enumerate() {
        let section = format!("stages[{i}]");
        let name = match &raw.name {
            Some(n) => {
                crate::validate::check_name(cx, n, &join(&section, "name"));
                n.value.clone()
            }
            None => format!("stage-{}", i + 1),
        };
        if let Some(first) = out.iter().position(|s| s.name == name) {
            let at = raw.name.as_ref().map_or(raw.pos, |n| n.pos);
            cx.invalid(
                at,
                &join(&section, "name"),
                format!("{name:?} is already the name of stages[{first}]"),
            );
        }
        let unique = |list: &[Spanned<String>],
                      key: &str,
                      seen: &mut Vec<(String, usize)>,
                      cx: &mut Cx|
         -> Vec<String> {
            let key = join(&section, key);
            let mut mine = Vec::new();
            for item in list {
                crate::validate::check_name(cx, item, &key);
                match seen.iter().find(|(v, _)| *v == item.value) {
                    Some((_, j)) if *j == i => {
                        cx.invalid(item.pos, &key, format!("{:?} is listed twice", item.value));
                    }
                    Some((_, j)) => cx.invalid(
                        item.pos,
                        &key,
                        format!("{:?} is already in stages[{j}]", item.value),
                    ),
                    None => {
                        seen.push((item.value.clone(), i));
                        mine.push(item.value.clone());
                    }
                }
            }
            mine
        };
        let relays = unique(&raw.relays, "relays", &mut relays_seen, cx);
        let clients = unique(&raw.clients, "clients", &mut clients_seen, cx);
        let labels = labels(&raw.labels, &join(&section, "labels"), cx);
        if let Some(targets) = target_relays {
            for r in &raw.relays {
                if !targets.contains(&r.value) {
                    cx.invalid(
                        r.pos,
                        &join(&section, "relays"),
                        format!("{:?} is not among targets.relays", r.value),
                    );
                }
            }
        }
        let percent = raw.percent.as_ref().and_then(|p| {
            if (1..=100).contains(&p.value) {
                u8::try_from(p.value).ok()
            } else {
                cx.invalid(
                    p.pos,
                    &join(&section, "percent"),
                    format!("{} is not a percentage from 1 to 100", p.value),
                );
                None
            }
        });
        let seed = raw.seed.as_ref().map_or(0, |s| {
            if s.value > u64::from(u32::MAX) {
                cx.invalid(
                    s.pos,
                    &join(&section, "seed"),
                    format!("{} is more than {}", s.value, u32::MAX),
                );
            }
            s.value
        });
        let gate = raw
            .gate
            .as_ref()
            .map(|g| gate(g, &join(&section, "gate"), cx))
            .unwrap_or_default();
        out.push(Stage {
            pos: raw.pos,
            name,
            relays,
            clients,
            labels,
            percent,
            seed,
            gate,
        });
    }
    if let Some(last) = out.last()
        && last.percent != Some(100)
    {
        cx.warn(
            last.pos,
            format!(
                "the last stage {:?} is not percent: 100: clients in no stage will not install \
                 this version",
                last.name
            ),
        );
    }
    out
}

/// A stage's labels: each key and value by `haifu_core`'s check (the one
/// a client's config is held to), each error at its place.
fn labels(raw: &[RawLabel], key: &str, cx: &mut Cx) -> Labels {
    let mut out = Labels::new();
    if raw.len() > haifu_core::MAX_LABELS {
        let e = haifu_core::LabelError::TooMany { count: raw.len() };
        if let Some((first, _)) = raw.first() {
            cx.invalid(first.pos, key, e.to_string());
        }
        return out;
    }
    for (k, v) in raw {
        if let Err(e) = haifu_core::check_label_key(&k.value) {
            cx.invalid(k.pos, key, e.to_string());
        } else if let Err(e) = haifu_core::check_label_value(&v.value) {
            cx.invalid(v.pos, &join(key, &k.value), e.to_string());
        } else if out.contains_key(&k.value) {
            cx.invalid(k.pos, key, format!("{:?} is written twice", k.value));
        } else {
            out.insert(k.value.clone(), v.value.clone());
        }
    }
    out
}

fn gate(g: &RawGate, section: &str, cx: &mut Cx) -> StageGate {
    let soak = g.soak.as_ref().and_then(|s| {
        let d = parse_duration(&s.value);
        if d.is_none() {
            cx.error(
                s.pos,
                crate::error::ErrorKind::BadDuration {
                    key: join(section, "soak"),
                    text: s.value.clone(),
                },
            );
        }
        d
    });
    let min_success = g.min_success.as_ref().and_then(|m| {
        let p = percentage(&m.value);
        if p.is_none() {
            cx.invalid(
                m.pos,
                &join(section, "min_success"),
                format!(
                    "{:?} is not a percentage from 0% to 100% (e.g. 95%)",
                    m.value
                ),
            );
        }
        p
    });
    let max_failures = g.max_failures.as_ref().and_then(|m| {
        let limit = failure_limit(&m.value);
        if limit.is_none() {
            cx.invalid(
                m.pos,
                &join(section, "max_failures"),
                format!(
                    "{:?} is neither a percentage from 0% to 100% (2%) nor a count (3)",
                    m.value
                ),
            );
        }
        limit
    });
    StageGate {
        soak: soak.unwrap_or_default(),
        min_success,
        max_failures,
    }
}

/// `95%`, `99.5 %` → 95.0, 99.5; the sign is required, so a bare number
/// is never taken for a percentage by mistake.
fn percentage(text: &str) -> Option<f64> {
    let number = text.trim().strip_suffix('%')?.trim();
    // Digits and at most one point: no exponents, signs, inf or NaN.
    let plain = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.matches('.').count() <= 1;
    let p: f64 = number.parse().ok().filter(|_| plain)?;
    (0.0..=100.0).contains(&p).then_some(p)
}

fn failure_limit(text: &str) -> Option<FailureLimit> {
    if text.trim().ends_with('%') {
        return percentage(text).map(FailureLimit::Percent);
    }
    text.trim().parse().ok().map(FailureLimit::Count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_need_their_sign_and_stay_in_range() {
        assert_eq!(percentage("95%"), Some(95.0));
        assert_eq!(percentage(" 99.5 % "), Some(99.5));
        assert_eq!(percentage("0%"), Some(0.0));
        assert_eq!(percentage("100%"), Some(100.0));
        for bad in [
            "95", "101%", "-1%", "1e2%", "inf%", "NaN%", "%", "9.5.1%", "x%",
        ] {
            assert_eq!(percentage(bad), None, "{bad}");
        }
    }

    #[test]
    fn failure_limits_are_a_percentage_or_a_count() {
        assert_eq!(failure_limit("2%"), Some(FailureLimit::Percent(2.0)));
        assert_eq!(failure_limit("3"), Some(FailureLimit::Count(3)));
        assert_eq!(failure_limit("0"), Some(FailureLimit::Count(0)));
        for bad in ["-3", "2.5", "three", "200%"] {
            assert_eq!(failure_limit(bad), None, "{bad}");
        }
    }
}
