//! The JSON Schema of a cases file (`haifu schema policy-cases`), made from
//! the tables the reader uses: each entry point's facts ([`Call::keys`],
//! written flat as `client.version` or nested under `client:`) and the
//! keys its `expect:` takes. What only the reader checks: values (a version,
//! a time, a duration), unique names, and that `stop: true` and `wait`
//! agree.

use serde_json::{Map, Value, json};

use super::Call;
use super::read::expect_keys;
use crate::decision::Role;

/// A fact's value as YAML writes it: text, a number, a boolean, or `~`.
fn scalar() -> Value {
    json!({ "type": ["string", "number", "boolean", "null"] })
}

/// An entry point's facts.
fn facts(role: Role) -> Value {
    let mut props = Map::new();
    let mut nested: Map<String, Value> = Map::new();
    for key in Call::keys(role) {
        props.insert((*key).to_owned(), scalar());
        if let Some((group, name)) = key.split_once('.') {
            let entry = nested.entry(group.to_owned()).or_insert_with(
                || json!({ "type": "object", "properties": {}, "additionalProperties": false }),
            );
            if let Some(p) = entry.get_mut("properties").and_then(Value::as_object_mut) {
                p.insert(name.to_owned(), scalar());
            }
        }
    }
    props.extend(nested);
    json!({
        "description": format!("The facts of {}(): unset ones get their defaults (policies/README.md).", role.entry_point().0),
        "type": ["object", "null"],
        "properties": props,
        "additionalProperties": false,
    })
}

/// What a case of `role` expects.
fn expect(role: Role) -> Value {
    let mut props = Map::new();
    for key in expect_keys(role) {
        let (kind, about) = match *key {
            "stop" => (json!("boolean"), "next_round stops"),
            "wait" => (
                json!(["integer", "string"]),
                "next_round or advance waits: seconds, or a duration like 20m",
            ),
            "allow" => (json!("boolean"), "allow's answer"),
            "cut" => (json!("boolean"), "disconnect's answer"),
            "decide" => (
                json!("string"),
                "advance's decision: proceed, wait, pause or abort",
            ),
            "rollback" => (json!("boolean"), "whether advance's abort rolls back"),
            "fallback" => (
                json!("boolean"),
                "the script must fall back to the safe default",
            ),
            "reason" => (json!("string"), "the reason, exactly"),
            "proactive" => (
                json!("number"),
                "round_budget's proactive share, a fraction of K",
            ),
            "budget" => (
                json!("number"),
                "round_budget's byte budget, a multiple of the artifact",
            ),
            "time" => (
                json!(["number", "string"]),
                "round_budget's longest round: seconds, or a duration like 2m",
            ),
            "silence" => (
                json!(["number", "string"]),
                "round_budget's silence: seconds, or a duration like 2s",
            ),
            _ => (json!("string"), "text the reason contains"),
        };
        props.insert(
            (*key).to_owned(),
            json!({ "type": kind, "description": about }),
        );
    }
    json!({ "type": "object", "properties": props, "additionalProperties": false })
}

/// The schema of a cases file.
pub fn schema() -> Value {
    let variants: Vec<Value> = Role::ALL
        .into_iter()
        .map(|role| {
            let entry = role.entry_point().0;
            json!({
                "type": "object",
                "required": ["name", entry, "expect"],
                "properties": {
                    "name": { "type": "string", "description": "The case's name, unique in its file." },
                    entry: facts(role),
                    "expect": expect(role),
                },
                "additionalProperties": false,
            })
        })
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "haifu policy cases",
        "description": "Table-driven cases for a policy script: `haifu policy test POLICY.rhai CASES.yaml`.",
        "type": "object",
        "required": ["cases"],
        "properties": {
            "cases": {
                "type": "array",
                "items": { "oneOf": variants },
            }
        },
        "additionalProperties": false,
    })
}
