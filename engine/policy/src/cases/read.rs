//! The positioned YAML tree → [`Case`]s, collecting every problem.

use super::call::{build, duration};
use super::{Case, Expect, Expected, ExpectedBudget, Pos, ReasonMatch};
use crate::decision::Role;
use haifu_yaml::{Node, Value};

type Problems = Vec<(Pos, String)>;

const CASE_KEYS: &[&str] = &[
    "name",
    "next_round",
    "allow",
    "disconnect",
    "round_budget",
    "advance",
    "expect",
];

/// The keys `expect:` takes for `role`'s entry point (the reader and the
/// schema both read this).
pub(super) fn expect_keys(role: Role) -> &'static [&'static str] {
    match role {
        Role::Retry => &["stop", "wait", "reason", "reason_contains", "fallback"],
        Role::Restrict => &["allow", "reason", "reason_contains", "fallback"],
        Role::Disconnect => &["cut", "reason", "reason_contains", "fallback"],
        Role::Broadcast => &["proactive", "budget", "time", "silence", "fallback"],
        Role::Advance => &[
            "decide",
            "wait",
            "rollback",
            "reason",
            "reason_contains",
            "fallback",
        ],
    }
}

/// Reads the whole file: `cases:` and its list.
pub(super) fn cases(root: Option<&Node>) -> Result<Vec<Case>, Problems> {
    let mut problems = Problems::new();
    let start = Pos { line: 1, column: 1 };
    let Some(root) = root else {
        return Err(vec![(
            start,
            "empty file; expected `cases:` and a list".into(),
        )]);
    };
    let Some(entries) = map(root, "the file", &mut problems) else {
        return Err(problems);
    };
    let mut list = None;
    for (key, value) in entries {
        match key.scalar() {
            Some("cases") => list = Some(value),
            _ => problems.push(unknown(key, "at the top", &["cases"])),
        }
    }
    let Some(list) = list else {
        problems.push((root.pos, "missing `cases:`".into()));
        return Err(problems);
    };
    let Value::Seq(items) = &list.value else {
        problems.push((
            list.pos,
            format!("cases: expected a list, found {}", found(list)),
        ));
        return Err(problems);
    };
    if items.is_empty() {
        problems.push((
            list.pos,
            "cases: the list is empty; a file with no cases tests nothing".into(),
        ));
    }
    let mut out: Vec<Case> = Vec::new();
    for item in items {
        if let Some(case) = case(item, &mut problems) {
            if let Some(first) = out.iter().find(|c| c.name == case.name) {
                problems.push((
                    case.pos,
                    format!(
                        "case {:?} is also at line {}; names must be unique",
                        case.name, first.pos.line
                    ),
                ));
            }
            out.push(case);
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn case(node: &Node, problems: &mut Problems) -> Option<Case> {
    let entries = map(node, "a case", problems)?;
    let before = problems.len();
    let (mut name, mut call, mut expect) = (None, None, None);
    for (key, value) in entries {
        match key.scalar() {
            Some("name") => match value.scalar() {
                Some(t) if !t.trim().is_empty() => name = Some(t.trim().to_string()),
                _ => problems.push((value.pos, "name: expected the case's name".into())),
            },
            Some(k @ ("next_round" | "allow" | "disconnect" | "round_budget" | "advance")) => {
                if let Some((other, _, _)) = &call {
                    problems.push((
                        key.pos,
                        format!("a case calls one entry point; {other} is already given"),
                    ));
                    continue;
                }
                let role = match k {
                    "next_round" => Role::Retry,
                    "allow" => Role::Restrict,
                    "round_budget" => Role::Broadcast,
                    "advance" => Role::Advance,
                    _ => Role::Disconnect,
                };
                call = Some((k, role, value));
            }
            Some("expect") => expect = Some(value),
            _ => problems.push(unknown(key, "in a case", CASE_KEYS)),
        }
    }
    if name.is_none() {
        problems.push((node.pos, "a case needs a `name:`".into()));
    }
    let Some((entry, role, facts_node)) = call else {
        problems.push((
            node.pos,
            "a case needs one of `next_round:`, `allow:`, `disconnect:`, `round_budget:` or `advance:`".into(),
        ));
        return None;
    };
    let call = facts(entry, role, facts_node, problems);
    let Some(expect_node) = expect else {
        problems.push((node.pos, "a case needs `expect:`".into()));
        return None;
    };
    let expect = self::expect(role, expect_node, problems);
    if problems.len() > before {
        return None;
    }
    Some(Case {
        name: name?,
        pos: node.pos,
        call: call?,
        expect: expect?,
    })
}

/// Flattens `{ client: { version: 2.3.0 } }` into `client.version` and
/// builds the call.
fn facts(entry: &str, role: Role, node: &Node, problems: &mut Problems) -> Option<super::Call> {
    if node.is_null() {
        return build::<Pos>(role, &[]).ok(); // every fact its default
    }
    let entries = map(node, entry, problems)?;
    let mut flat: Vec<(String, Option<String>, Pos)> = Vec::new();
    for (key, value) in entries {
        let Some(k) = key.scalar() else {
            problems.push((key.pos, format!("{entry}: keys are fact names")));
            continue;
        };
        match &value.value {
            Value::Map(inner) if k == "client" || k == "service" => {
                for (ik, iv) in inner {
                    match (ik.scalar(), &iv.value) {
                        (Some(name), Value::Scalar { .. }) => {
                            flat.push((format!("{k}.{name}"), scalar(iv), ik.pos));
                        }
                        _ => problems
                            .push((iv.pos, format!("{entry}.{k}: expected `fact: value` pairs"))),
                    }
                }
            }
            Value::Scalar { .. } => flat.push((k.to_string(), scalar(value), key.pos)),
            _ => problems.push((
                value.pos,
                format!("{entry}.{k}: expected a value, found {}", found(value)),
            )),
        }
    }
    let refs: Vec<(&str, Option<&str>, Pos)> = flat
        .iter()
        .map(|(k, v, p)| (k.as_str(), v.as_deref(), *p))
        .collect();
    match build(role, &refs) {
        Ok(call) => Some(call),
        Err(errors) => {
            problems.extend(
                errors
                    .into_iter()
                    .map(|(key, pos, message)| (pos, prefix(entry, &key, message))),
            );
            None
        }
    }
}

/// `allow.client.version: …`, unless the message already names the fact.
fn prefix(entry: &str, key: &str, message: String) -> String {
    if message.starts_with("unknown fact") || message.contains(" is given twice") {
        message
    } else {
        format!("{entry}.{key}: {message}")
    }
}

fn expect(role: Role, node: &Node, problems: &mut Problems) -> Option<Expect> {
    let keys = expect_keys(role);
    let entries = map(node, "expect", problems)?;
    let before = problems.len();
    let (mut stop, mut wait, mut decision, mut reason, mut fallback) =
        (None, None, None, None, false);
    let (mut decide, mut rollback) = (None, None);
    let mut budget = ExpectedBudget::default();
    for (key, value) in entries {
        let k = key.scalar().unwrap_or("");
        if !keys.contains(&k) {
            problems.push(unknown(
                key,
                &format!("in expect for {}", role.entry_point().0),
                keys,
            ));
            continue;
        }
        match k {
            "stop" => stop = boolean(value, "expect.stop", problems).map(|b| (b, value.pos)),
            "wait" => match value.scalar().map(|t| duration(t.trim())) {
                Some(Ok(d)) => wait = Some(d),
                Some(Err(m)) => problems.push((value.pos, format!("expect.wait: {m}"))),
                None => problems.push((
                    value.pos,
                    "expect.wait: expected seconds or a duration like 20m".into(),
                )),
            },
            "allow" => decision = boolean(value, "expect.allow", problems).map(Expected::Allow),
            "cut" => decision = boolean(value, "expect.cut", problems).map(Expected::Cut),
            "fallback" => fallback = boolean(value, "expect.fallback", problems).unwrap_or(false),
            "rollback" => rollback = boolean(value, "expect.rollback", problems),
            "decide" => match value.scalar().map(str::trim) {
                Some(w @ ("proceed" | "wait" | "pause" | "abort")) => decide = Some(w.to_string()),
                _ => problems.push((
                    value.pos,
                    format!(
                        "expect.decide: expected proceed, wait, pause or abort, found {}",
                        found(value)
                    ),
                )),
            },
            "proactive" => budget.proactive = fraction(value, "expect.proactive", problems),
            "budget" => budget.bytes = fraction(value, "expect.budget", problems),
            "time" => budget.time = seconds(value, "expect.time", problems),
            "silence" => budget.silence = seconds(value, "expect.silence", problems),
            _ => {
                let Some(text) = value.scalar() else {
                    problems.push((value.pos, format!("expect.{k}: expected text")));
                    continue;
                };
                if reason.is_some() {
                    problems.push((key.pos, "give one of reason and reason_contains".into()));
                }
                reason = Some(if k == "reason" {
                    ReasonMatch::Exact(text.to_string())
                } else {
                    ReasonMatch::Contains(text.to_string())
                });
            }
        }
    }
    if role == Role::Retry {
        decision = match (stop, wait) {
            (Some((true, pos)), Some(_)) => {
                problems.push((pos, "expect: stop: true and wait contradict".into()));
                None
            }
            (Some((true, _)), None) => Some(Expected::Stop),
            (_, Some(d)) => Some(Expected::Wait(Some(d))),
            (Some((false, _)), None) => Some(Expected::Wait(None)),
            (None, None) => None,
        };
    }
    if role == Role::Advance {
        decision = decide.map(|decide| Expected::Advance {
            decide,
            wait,
            rollback,
        });
    }
    if role == Role::Broadcast && budget != ExpectedBudget::default() {
        decision = Some(Expected::Budget(budget));
    }
    if decision.is_none() && problems.len() == before {
        let what = match role {
            Role::Retry => "`stop: true`, `stop: false` or `wait: N`",
            Role::Restrict => "`allow: true|false`",
            Role::Disconnect => "`cut: true|false`",
            Role::Broadcast => "one or more of `proactive`, `budget`, `time`, `silence`",
            Role::Advance => "`decide: proceed|wait|pause|abort`",
        };
        problems.push((node.pos, format!("expect: state the decision with {what}")));
    }
    Some(Expect {
        decision: decision?,
        reason,
        fallback,
    })
}

/// The entries of a mapping; a key written twice is reported (YAML
/// libraries keep the last silently, which would hide a case's first
/// `expect:`).
fn map<'a>(node: &'a Node, what: &str, problems: &mut Problems) -> Option<&'a [(Node, Node)]> {
    match &node.value {
        Value::Map(entries) => {
            for (i, (key, _)) in entries.iter().enumerate() {
                let name = key.scalar();
                if name.is_some() && entries[..i].iter().any(|(k, _)| k.scalar() == name) {
                    let name = name.unwrap_or_default();
                    problems.push((key.pos, format!("{what}: key {name:?} is given twice")));
                }
            }
            Some(entries)
        }
        _ => {
            problems.push((
                node.pos,
                format!("{what}: expected a mapping, found {}", found(node)),
            ));
            None
        }
    }
}

fn boolean(node: &Node, key: &str, problems: &mut Problems) -> Option<bool> {
    // Only `true`/`false`: YAML 1.1's `yes`/`no`/`on` are typos here.
    match &node.value {
        Value::Scalar {
            text,
            quoted: false,
        } if text == "true" => Some(true),
        Value::Scalar {
            text,
            quoted: false,
        } if text == "false" => Some(false),
        _ => {
            problems.push((
                node.pos,
                format!("{key}: expected true or false, found {}", found(node)),
            ));
            None
        }
    }
}

/// A finite number written plainly: `0.02`, `3`.
fn fraction(node: &Node, key: &str, problems: &mut Problems) -> Option<f64> {
    match node.scalar().map(|t| t.trim().parse::<f64>()) {
        Some(Ok(x)) if x.is_finite() => Some(x),
        _ => {
            problems.push((
                node.pos,
                format!("{key}: expected a number, found {}", found(node)),
            ));
            None
        }
    }
}

/// Seconds (`120`, `34.159`) or a duration (`90s`, `20m`, `2h`).
fn seconds(node: &Node, key: &str, problems: &mut Problems) -> Option<std::time::Duration> {
    let text = node.scalar().map(str::trim).unwrap_or("");
    let parsed = match text.parse::<f64>() {
        Ok(s) => std::time::Duration::try_from_secs_f64(s).map_err(|_| ()),
        Err(_) => duration(text).map_err(|_| ()),
    };
    match parsed {
        Ok(d) => Some(d),
        Err(()) => {
            problems.push((
                node.pos,
                format!(
                    "{key}: expected seconds (120, 34.159) or a duration like 20m, found {}",
                    found(node)
                ),
            ));
            None
        }
    }
}

fn scalar(node: &Node) -> Option<String> {
    if node.is_null() {
        None
    } else {
        node.scalar().map(str::to_string)
    }
}

fn unknown(key: &Node, where_: &str, known: &[&str]) -> (Pos, String) {
    let name = key.scalar().unwrap_or("?");
    (
        key.pos,
        format!("unknown key {name:?} {where_}; known: {}", known.join(", ")),
    )
}

fn found(node: &Node) -> String {
    match &node.value {
        Value::Map(_) => "a mapping".into(),
        Value::Seq(_) => "a list".into(),
        Value::Scalar { .. } if node.is_null() => "nothing".into(),
        Value::Scalar { text, .. } => format!("{text:?}"),
    }
}
