//! Stage 1: the YAML tree → the raw spec (shape only: known keys, YAML
//! types, required keys), every value still carrying its position.

use std::path::{Path, PathBuf};

use crate::error::{ErrorKind, SpecError};
use crate::fields::{Cx, MapReader, string, string_list};
use crate::pos::{Pos, Spanned};
use crate::steps::{self, Step, StepKind};
use haifu_yaml::{self, Node, Value};

/// The top-level keys.
pub(crate) const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "artifact",
    "targets",
    "schedule",
    "transports",
    "rate",
    "policies",
    "steps",
];
const ARTIFACT_KEYS: &[&str] = &["name", "version", "path"];
const TARGET_KEYS: &[&str] = &["relays", "groups"];
const SCHEDULE_KEYS: &[&str] = &["start", "deadline", "time_zone", "window"];
const TRANSPORT_KEYS: &[&str] = &["broadcast", "unicast"];
const POLICY_KEYS: &[&str] = &["retry", "restrict", "disconnect"];

/// A workflow as written: right shape, values not yet interpreted.
/// Obtained from [`parse`]; turned into a [`crate::Plan`] by
/// [`crate::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawSpec {
    /// The workflow file.
    pub file: PathBuf,
    /// `name`.
    pub name: Option<Spanned<String>>,
    /// `description`.
    pub description: Option<Spanned<String>>,
    /// `artifact`.
    pub artifact: Option<RawArtifact>,
    /// `targets`.
    pub targets: Option<RawTargets>,
    /// `schedule`.
    pub schedule: Option<RawSchedule>,
    /// `transports`.
    pub transports: Option<RawTransports>,
    /// `rate`.
    pub rate: Option<Spanned<String>>,
    /// `policies`.
    pub policies: RawPolicies,
    /// `steps` that parsed.
    pub steps: Vec<Step>,
    /// Where `steps` is, if present.
    pub steps_pos: Option<Pos>,
    /// Every step whose name is known, even if its options are wrong, so
    /// the order check does not report a cascade.
    pub(crate) kinds: Vec<(StepKind, Pos)>,
    /// Where the document starts.
    pub pos: Pos,
    /// Whether stage 1 reported errors (then absent values are not reported
    /// again as missing).
    pub(crate) had_errors: bool,
}

/// `artifact: { name, version, path }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawArtifact {
    /// Where the mapping is.
    pub pos: Pos,
    /// `name`.
    pub name: Option<Spanned<String>>,
    /// `version`.
    pub version: Option<Spanned<String>>,
    /// `path`.
    pub path: Option<Spanned<String>>,
}

/// `targets: { relays: [...], groups: [...] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTargets {
    /// Where the mapping is.
    pub pos: Pos,
    /// `relays`.
    pub relays: Vec<Spanned<String>>,
    /// `groups`.
    pub groups: Vec<Spanned<String>>,
}

/// `schedule: { start, deadline, time_zone, window }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSchedule {
    /// Where the mapping is.
    pub pos: Pos,
    /// `start`.
    pub start: Option<Spanned<String>>,
    /// `deadline`.
    pub deadline: Option<Spanned<String>>,
    /// `time_zone`.
    pub time_zone: Option<Spanned<String>>,
    /// `window`.
    pub window: Option<Spanned<String>>,
}

/// `transports: { broadcast, unicast }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTransports {
    /// Where the mapping is.
    pub pos: Pos,
    /// `broadcast`.
    pub broadcast: Option<Spanned<String>>,
    /// `unicast`.
    pub unicast: Option<Spanned<String>>,
}

/// `policies: { retry, restrict, disconnect }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawPolicies {
    /// `retry`.
    pub retry: Option<Spanned<String>>,
    /// `restrict`.
    pub restrict: Option<Spanned<String>>,
    /// `disconnect`.
    pub disconnect: Option<Spanned<String>>,
}

/// Stage 1 with its errors: a raw spec (as much as could be read) and every
/// shape error found.
#[derive(Debug)]
pub struct Parsed {
    /// `None` when the text is not YAML or not a mapping.
    pub raw: Option<RawSpec>,
    /// Shape errors, in file order.
    pub errors: Vec<SpecError>,
}

/// Reads `text` (the contents of `file`) into a raw spec. No I/O.
pub fn parse(file: &Path, text: &str) -> Parsed {
    let mut cx = Cx::new(file.to_path_buf());
    let raw = parse_into(file, text, &mut cx);
    let mut raw = raw;
    if let Some(r) = raw.as_mut() {
        r.had_errors = !cx.errors.is_empty();
    }
    Parsed {
        raw,
        errors: cx.errors,
    }
}

fn parse_into(file: &Path, text: &str, cx: &mut Cx) -> Option<RawSpec> {
    let root = match haifu_yaml::parse(text) {
        Ok(Some(root)) if !root.is_null() => root,
        Ok(_) => {
            cx.error(Pos { line: 1, column: 1 }, ErrorKind::Empty);
            return None;
        }
        Err(e) => {
            cx.error(e.pos, ErrorKind::Yaml(e.message));
            return None;
        }
    };
    let mut top = MapReader::new(&root, "", cx)?;
    let name = top.require("name", cx).and_then(|n| string(n, "name", cx));
    let description = top
        .take("description")
        .and_then(|n| string(n, "description", cx));
    let artifact = top.require("artifact", cx).and_then(|n| artifact(n, cx));
    let targets = top.require("targets", cx).and_then(|n| targets(n, cx));
    let schedule = top.require("schedule", cx).and_then(|n| schedule(n, cx));
    let transports = top
        .require("transports", cx)
        .and_then(|n| transports(n, cx));
    let rate = top.take("rate").and_then(|n| string(n, "rate", cx));
    let policies = top
        .take("policies")
        .and_then(|n| policies(n, cx))
        .unwrap_or_default();
    let steps_node = top.require("steps", cx);
    let (steps, kinds) = steps_node.map(|n| steps(n, cx)).unwrap_or_default();
    top.finish(TOP_KEYS, cx);
    Some(RawSpec {
        file: file.to_path_buf(),
        name,
        description,
        artifact,
        targets,
        schedule,
        transports,
        rate,
        policies,
        steps,
        steps_pos: steps_node.map(|n| n.pos),
        kinds,
        pos: root.pos,
        had_errors: false,
    })
}

fn text_field(
    map: &mut MapReader<'_>,
    key: &'static str,
    required: bool,
    cx: &mut Cx,
) -> Option<Spanned<String>> {
    let node = if required {
        map.require(key, cx)
    } else {
        map.take(key)
    };
    let k = map.key(key);
    node.and_then(|n| string(n, &k, cx))
}

fn artifact(node: &Node, cx: &mut Cx) -> Option<RawArtifact> {
    let mut m = MapReader::new(node, "artifact", cx)?;
    let a = RawArtifact {
        pos: m.pos,
        name: text_field(&mut m, "name", true, cx),
        version: text_field(&mut m, "version", true, cx),
        path: text_field(&mut m, "path", true, cx),
    };
    m.finish(ARTIFACT_KEYS, cx);
    Some(a)
}

fn targets(node: &Node, cx: &mut Cx) -> Option<RawTargets> {
    let mut m = MapReader::new(node, "targets", cx)?;
    let relays_node = m.take("relays");
    let groups_node = m.take("groups");
    let relays = relays_node.and_then(|n| string_list(n, "targets.relays", cx));
    let groups = groups_node.and_then(|n| string_list(n, "targets.groups", cx));
    // "At least one" only when both are absent or read fine but empty: a
    // list of the wrong type was reported already.
    let wrong =
        (relays_node.is_some() && relays.is_none()) || (groups_node.is_some() && groups.is_none());
    let (relays, groups) = (relays.unwrap_or_default(), groups.unwrap_or_default());
    if !wrong && relays.is_empty() && groups.is_empty() {
        cx.invalid(m.pos, "targets", "name at least one relay or group");
    }
    let t = RawTargets {
        pos: m.pos,
        relays,
        groups,
    };
    m.finish(TARGET_KEYS, cx);
    Some(t)
}

fn schedule(node: &Node, cx: &mut Cx) -> Option<RawSchedule> {
    let mut m = MapReader::new(node, "schedule", cx)?;
    let s = RawSchedule {
        pos: m.pos,
        start: text_field(&mut m, "start", true, cx),
        deadline: text_field(&mut m, "deadline", true, cx),
        time_zone: text_field(&mut m, "time_zone", false, cx),
        window: text_field(&mut m, "window", false, cx),
    };
    m.finish(SCHEDULE_KEYS, cx);
    Some(s)
}

fn transports(node: &Node, cx: &mut Cx) -> Option<RawTransports> {
    let mut m = MapReader::new(node, "transports", cx)?;
    let t = RawTransports {
        pos: m.pos,
        broadcast: text_field(&mut m, "broadcast", true, cx),
        unicast: text_field(&mut m, "unicast", false, cx),
    };
    m.finish(TRANSPORT_KEYS, cx);
    Some(t)
}

fn policies(node: &Node, cx: &mut Cx) -> Option<RawPolicies> {
    let mut m = MapReader::new(node, "policies", cx)?;
    let p = RawPolicies {
        retry: text_field(&mut m, "retry", false, cx),
        restrict: text_field(&mut m, "restrict", false, cx),
        disconnect: text_field(&mut m, "disconnect", false, cx),
    };
    m.finish(POLICY_KEYS, cx);
    Some(p)
}

fn steps(node: &Node, cx: &mut Cx) -> (Vec<Step>, Vec<(StepKind, Pos)>) {
    let Value::Seq(items) = &node.value else {
        cx.error(
            node.pos,
            ErrorKind::WrongType {
                key: "steps".into(),
                expected: "a list",
                found: crate::fields::found(node),
            },
        );
        return (Vec::new(), Vec::new());
    };
    if items.is_empty() {
        cx.invalid(node.pos, "steps", "no steps");
    }
    let mut parsed = Vec::new();
    let mut kinds = Vec::new();
    for (i, n) in items.iter().enumerate() {
        let (kind, step) = steps::parse(n, i, cx);
        if let Some(k) = kind {
            kinds.push(k);
        }
        parsed.extend(step);
    }
    (parsed, kinds)
}
