//! Stage 1: the YAML tree → the raw spec (shape only: known keys, YAML
//! types, required keys), every value still carrying its position.

use std::path::{Path, PathBuf};

use crate::error::{ErrorKind, SpecError};
use crate::fields::{Cx, MapReader, flag, string, string_list};
use crate::pos::{Pos, Spanned};
use crate::shape::{self, Key};
use crate::stages::{self, RawStage};
use crate::steps::{self, Step, StepKind};
use haifu_yaml::{self, Node, Value};

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
    /// `stages` that parsed (empty without the key).
    pub stages: Vec<RawStage>,
    /// Where `stages` is, if present.
    pub stages_pos: Option<Pos>,
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
    /// `cut_off_while_paused`.
    pub cut_off_while_paused: Option<Spanned<bool>>,
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

/// `policies: { retry, restrict, disconnect, broadcast, advance }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawPolicies {
    /// `retry`.
    pub retry: Option<Spanned<String>>,
    /// `restrict`.
    pub restrict: Option<Spanned<String>>,
    /// `disconnect`.
    pub disconnect: Option<Spanned<String>>,
    /// `broadcast`.
    pub broadcast: Option<Spanned<String>>,
    /// `advance`.
    pub advance: Option<Spanned<String>>,
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
    let [
        name_key,
        description_key,
        artifact_key,
        targets_key,
        schedule_key,
        transports_key,
        rate_key,
        policies_key,
        stages_key,
        steps_key,
    ] = shape::TOP;
    let name = text_field(&mut top, name_key, cx);
    let description = text_field(&mut top, description_key, cx);
    let artifact =
        field(&mut top, artifact_key, cx).and_then(|n| artifact(n, artifact_key.name, cx));
    let targets = field(&mut top, targets_key, cx).and_then(|n| targets(n, targets_key.name, cx));
    let schedule =
        field(&mut top, schedule_key, cx).and_then(|n| schedule(n, schedule_key.name, cx));
    let transports =
        field(&mut top, transports_key, cx).and_then(|n| transports(n, transports_key.name, cx));
    let rate = text_field(&mut top, rate_key, cx);
    let policies = field(&mut top, policies_key, cx)
        .and_then(|n| policies(n, policies_key.name, cx))
        .unwrap_or_default();
    let stages_node = field(&mut top, stages_key, cx);
    let stages = stages_node
        .map(|n| stages::parse(n, cx))
        .unwrap_or_default();
    let steps_node = field(&mut top, steps_key, cx);
    let (steps, kinds) = steps_node.map(|n| steps(n, cx)).unwrap_or_default();
    top.finish(shape::TOP, cx);
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
        stages,
        stages_pos: stages_node.map(|n| n.pos),
        steps,
        steps_pos: steps_node.map(|n| n.pos),
        kinds,
        pos: root.pos,
        had_errors: false,
    })
}

/// The value of `key` in `map`: required or not as the shape says.
fn field<'a>(map: &mut MapReader<'a>, key: &Key, cx: &mut Cx) -> Option<&'a Node> {
    if key.required {
        map.require(key.name, cx)
    } else {
        map.take(key.name)
    }
}

fn text_field(map: &mut MapReader<'_>, key: &Key, cx: &mut Cx) -> Option<Spanned<String>> {
    let node = field(map, key, cx);
    let k = map.key(key.name);
    node.and_then(|n| string(n, &k, cx))
}

fn artifact(node: &Node, section: &str, cx: &mut Cx) -> Option<RawArtifact> {
    let mut m = MapReader::new(node, section, cx)?;
    let a = RawArtifact {
        pos: m.pos,
        name: text_field(&mut m, &shape::ARTIFACT_NAME, cx),
        version: text_field(&mut m, &shape::ARTIFACT_VERSION, cx),
        path: text_field(&mut m, &shape::ARTIFACT_PATH, cx),
    };
    m.finish(shape::ARTIFACT, cx);
    Some(a)
}

fn targets(node: &Node, section: &str, cx: &mut Cx) -> Option<RawTargets> {
    let mut m = MapReader::new(node, section, cx)?;
    let [relays_key, groups_key] = shape::TARGETS;
    let relays_node = field(&mut m, relays_key, cx);
    let groups_node = field(&mut m, groups_key, cx);
    let relays = relays_node.and_then(|n| string_list(n, &m.key(relays_key.name), cx));
    let groups = groups_node.and_then(|n| string_list(n, &m.key(groups_key.name), cx));
    // "At least one" only when both are absent or read fine but empty: a
    // list of the wrong type was reported already.
    let wrong =
        (relays_node.is_some() && relays.is_none()) || (groups_node.is_some() && groups.is_none());
    let (relays, groups) = (relays.unwrap_or_default(), groups.unwrap_or_default());
    if !wrong && relays.is_empty() && groups.is_empty() {
        cx.invalid(m.pos, section, "name at least one relay or group");
    }
    let t = RawTargets {
        pos: m.pos,
        relays,
        groups,
    };
    m.finish(shape::TARGETS, cx);
    Some(t)
}

fn schedule(node: &Node, section: &str, cx: &mut Cx) -> Option<RawSchedule> {
    let mut m = MapReader::new(node, section, cx)?;
    let s = RawSchedule {
        pos: m.pos,
        start: text_field(&mut m, &shape::START, cx),
        deadline: text_field(&mut m, &shape::DEADLINE, cx),
        time_zone: text_field(&mut m, &shape::TIME_ZONE, cx),
        window: text_field(&mut m, &shape::WINDOW, cx),
        cut_off_while_paused: m
            .take(shape::CUT_OFF_WHILE_PAUSED.name)
            .and_then(|n| flag(n, &m.key(shape::CUT_OFF_WHILE_PAUSED.name), cx)),
    };
    m.finish(shape::SCHEDULE, cx);
    Some(s)
}

fn transports(node: &Node, section: &str, cx: &mut Cx) -> Option<RawTransports> {
    let mut m = MapReader::new(node, section, cx)?;
    let t = RawTransports {
        pos: m.pos,
        broadcast: text_field(&mut m, &shape::BROADCAST, cx),
        unicast: text_field(&mut m, &shape::UNICAST, cx),
    };
    m.finish(shape::TRANSPORTS, cx);
    Some(t)
}

fn policies(node: &Node, section: &str, cx: &mut Cx) -> Option<RawPolicies> {
    let mut m = MapReader::new(node, section, cx)?;
    let p = RawPolicies {
        retry: text_field(&mut m, &shape::RETRY, cx),
        restrict: text_field(&mut m, &shape::RESTRICT, cx),
        disconnect: text_field(&mut m, &shape::DISCONNECT, cx),
        broadcast: text_field(&mut m, &shape::BROADCAST_POLICY, cx),
        advance: text_field(&mut m, &shape::ADVANCE, cx),
    };
    m.finish(shape::POLICIES, cx);
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
