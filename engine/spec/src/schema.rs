//! The workflow's JSON Schema, made from the table the parser reads
//! ([`crate::shape`] and each step's options), so the two cannot drift.
//!
//! It says what stage 1 refuses: unknown and missing keys, values of the
//! wrong kind, a step that does not exist or holds two names, the bounds of
//! `rounds`, empty `targets` and `steps`. What stage 2 checks (dates,
//! durations, versions, names, the order of the steps) it only describes.

use serde_json::{Map, Value, json};

use crate::shape::{Key, Kind};
use crate::steps::StepKind;

/// The JSON Schema (draft 2020-12) of a workflow file, as `haifu schema
/// workflow` prints it and `workflows/workflow.schema.json` holds it.
pub fn schema() -> Value {
    let mut root = mapping(crate::shape::TOP);
    root.insert(
        "$schema".into(),
        "https://json-schema.org/draft/2020-12/schema".into(),
    );
    root.insert("title".into(), "haifu workflow".into());
    root.insert(
        "description".into(),
        "What to distribute, to whom, when, with which transports and policies, and the \
         ordered steps (workflows/README.md). Check a file with `haifu check FILE`."
            .into(),
    );
    Value::Object(root)
}

/// `{type: object, properties, required, additionalProperties: false}`.
fn mapping(keys: &[Key]) -> Map<String, Value> {
    let properties: Map<String, Value> = keys
        .iter()
        .map(|k| (k.name.to_string(), value(k)))
        .collect();
    let required: Vec<&str> = keys.iter().filter(|k| k.required).map(|k| k.name).collect();
    let mut m = Map::new();
    m.insert("type".into(), "object".into());
    m.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        m.insert("required".into(), json!(required));
    }
    m.insert("additionalProperties".into(), false.into());
    m
}

/// The schema of `key`'s value. An optional key may be null (the parser
/// takes a null value as absent); a required one may not.
fn value(key: &Key) -> Value {
    let mut v = match key.kind {
        Kind::Text => text(),
        Kind::Count { min, max } => {
            json!({"type": "integer", "minimum": min, "maximum": max})
        }
        Kind::Flag => json!({"type": "boolean"}),
        Kind::TextList => json!({"type": "array", "items": text()}),
        Kind::TextMap => json!({"type": "object", "additionalProperties": text()}),
        Kind::Map(keys) => Value::Object(mapping(keys)),
        Kind::MapOfLists(keys) => {
            let mut m = mapping(keys);
            let one: Vec<Value> = keys
                .iter()
                .map(|k| json!({"required": [k.name], "properties": {k.name: {"minItems": 1}}}))
                .collect();
            m.insert("anyOf".into(), Value::Array(one));
            Value::Object(m)
        }
        Kind::Steps => json!({"type": "array", "minItems": 1, "items": step()}),
        Kind::List { keys, any_of } => {
            let mut item = mapping(keys);
            let one: Vec<Value> = any_of
                .iter()
                .map(|k| {
                    let map = keys
                        .iter()
                        .any(|key| key.name == *k && matches!(key.kind, Kind::TextMap));
                    let least = if map { "minProperties" } else { "minItems" };
                    json!({"required": [k], "properties": {*k: {least: 1}}})
                })
                .collect();
            item.insert("anyOf".into(), Value::Array(one));
            json!({"type": "array", "minItems": 1, "items": item})
        }
    };
    if let Value::Object(m) = &mut v {
        m.insert("description".into(), key.doc.into());
        if !key.required {
            nullable(m);
        }
    }
    v
}

/// Any scalar but null: the parser reads `version: 2.4` or `name: 7` as
/// text and lets stage 2 judge it.
fn text() -> Value {
    json!({"type": ["string", "number", "boolean"]})
}

fn nullable(m: &mut Map<String, Value>) {
    match m.get_mut("type") {
        Some(Value::Array(types)) => types.push("null".into()),
        Some(t) => *t = json!([t.clone(), "null"]),
        None => {}
    }
}

/// One entry of `steps`: a bare name (a step whose options are all
/// optional), or a mapping of exactly one step name to its options.
fn step() -> Value {
    let bare: Vec<&str> = StepKind::ALL
        .iter()
        .filter(|k| !k.options().iter().any(|o| o.required))
        .map(|k| k.name())
        .collect();
    let mut forms = vec![json!({"type": "string", "enum": bare})];
    for kind in StepKind::ALL {
        let mut options = mapping(kind.options());
        options.insert("description".into(), kind.summary().into());
        if !kind.options().iter().any(|o| o.required) {
            nullable(&mut options);
        }
        forms.push(json!({
            "type": "object",
            "description": kind.summary(),
            "properties": {kind.name(): options},
            "required": [kind.name()],
            "additionalProperties": false,
        }));
    }
    json!({"oneOf": forms})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_top_level_key_of_the_parser_is_in_the_schema() {
        let s = schema();
        let props = s["properties"].as_object().map(|p| p.len());
        assert_eq!(props, Some(crate::shape::TOP.len()));
        assert_eq!(
            s["required"],
            json!([
                "name",
                "artifact",
                "targets",
                "schedule",
                "transports",
                "steps"
            ])
        );
        assert_eq!(s["additionalProperties"], json!(false));
    }

    #[test]
    fn steps_take_their_options() {
        let s = schema();
        let forms = &s["properties"]["steps"]["items"]["oneOf"];
        assert_eq!(
            forms[0]["enum"],
            json!(["register", "audit", "delta", "disconnect"]),
            "broadcast needs rounds, so it is never bare"
        );
        let broadcast = &forms[2]["properties"]["broadcast"];
        assert_eq!(broadcast["required"], json!(["rounds"]));
        assert_eq!(broadcast["type"], json!("object"), "never null");
        assert_eq!(broadcast["properties"]["rounds"]["maximum"], json!(100));
    }
}
