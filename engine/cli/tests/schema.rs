//! The JSON Schemas: the committed ones are what `haifu schema` prints now,
//! every shipped workflow and daemon config names its schema and is valid
//! against it (checked by a real JSON Schema validator), and the schemas
//! refuse what the parsers refuse.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{haifu, repo};
use haifu_fleet::config::{self, ClientConfig, MasterConfig, RelayConfig};
use serde_json::Value;

/// Each schema `haifu schema` prints, and where the repository keeps it.
const COMMITTED: &[(&str, &str)] = &[
    ("workflow", "workflows/workflow.schema.json"),
    ("master", "examples/schemas/master.schema.json"),
    ("relay", "examples/schemas/relay.schema.json"),
    ("client", "examples/schemas/client.schema.json"),
    ("policy-cases", "policies/tests/cases.schema.json"),
];

/// The comment line the YAML language server reads.
const MODELINE: &str = "# yaml-language-server: $schema=";

fn printed(of: &str) -> String {
    let out = haifu(&repo().join(".no-home"))
        .args(["schema", of])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_committed_schemas_are_what_haifu_schema_prints() {
    let mut stale = Vec::new();
    for (of, path) in COMMITTED {
        let committed = std::fs::read_to_string(repo().join(path)).unwrap_or_default();
        if committed != printed(of) {
            stale.push(format!("cargo run -q -- schema {of} > {path}"));
        }
    }
    assert!(
        stale.is_empty(),
        "stale schemas; regenerate them from the top of the repository:\n{}",
        stale.join("\n")
    );
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::validator_for(schema).unwrap()
}

/// Every validation error of `instance`, one per line.
fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// YAML as the JSON the language server checks.
fn as_json(yaml: &str) -> Value {
    serde_yaml::from_str(yaml).unwrap()
}

/// Every YAML file under `dir`, recursively.
fn yaml_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            yaml_files(&p, into);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            into.push(p);
        }
    }
}

#[test]
fn every_shipped_workflow_and_config_names_its_schema_and_is_valid() {
    let mut files = Vec::new();
    yaml_files(&repo().join("workflows"), &mut files);
    yaml_files(&repo().join("examples"), &mut files);
    yaml_files(&repo().join("policies"), &mut files);
    // Prometheus's own files (its scrape config and alert rules), not haifu's.
    files.retain(|p| !p.starts_with(repo().join("examples/grafana")));
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let mut bad = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let Some(named) = text.lines().find_map(|l| l.strip_prefix(MODELINE)) else {
            bad.push(format!("{}: no `{MODELINE}` line", file.display()));
            continue;
        };
        let schema_path = file.parent().unwrap().join(named.trim());
        let committed = COMMITTED
            .iter()
            .any(|(_, p)| repo().join(p).canonicalize().ok() == schema_path.canonicalize().ok());
        assert!(
            committed,
            "{} names {}, not a committed schema",
            file.display(),
            schema_path.display()
        );
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(&schema_path).unwrap()).unwrap();
        for e in errors(&validator(&schema), &as_json(&text)) {
            bad.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

const WORKFLOW: &str = "name: w
artifact: { name: app, version: 2.4.0, path: app.tar }
targets: { relays: [store-east] }
schedule: { start: '2026-12-01T02:00:00+09:00', deadline: 72h }
transports: { broadcast: multicast, unicast: quic }
steps:
  - register
  - broadcast: { rounds: 3 }
  - audit
  - delta: { until: deadline }
  - disconnect
";

/// `WORKFLOW` with `from` replaced by `to`.
fn workflow_with(from: &str, to: &str) -> String {
    assert!(WORKFLOW.contains(from), "{from}");
    WORKFLOW.replacen(from, to, 1)
}

#[test]
fn the_workflow_schema_refuses_what_the_parser_refuses() {
    let v = validator(&haifu_spec::schema());
    let accepted = |text: &str| haifu_spec::check_text(Path::new("w.yaml"), text).is_ok();
    assert!(accepted(WORKFLOW));
    assert_eq!(errors(&v, &as_json(WORKFLOW)), Vec::<String>::new());
    // Also accepted by both: a step's null options, no optional keys.
    let lenient = workflow_with("  - audit\n", "  - audit:\n");
    assert!(accepted(&lenient) && v.is_valid(&as_json(&lenient)));
    let staged = workflow_with(
        "steps:",
        "stages:\n  - { relays: [store-east], gate: { soak: 30m, max_failures: 2% } }\n  - { percent: 100, seed: 3 }\nsteps:",
    );
    assert!(accepted(&staged), "{staged}");
    assert_eq!(errors(&v, &as_json(&staged)), Vec::<String>::new());

    for (what, text) in [
        (
            "an unknown top-level key",
            workflow_with("name: w", "name: w\nnmae: x"),
        ),
        (
            "an unknown nested key",
            workflow_with("deadline: 72h", "deadline: 72h, timezone: UTC"),
        ),
        ("a missing required key", workflow_with("name: w\n", "")),
        (
            "a required key that is null",
            workflow_with("name: w", "name:"),
        ),
        (
            "a mapping where text goes",
            workflow_with("name: w", "name: {a: b}"),
        ),
        ("quoted rounds", workflow_with("rounds: 3", "rounds: '3'")),
        ("zero rounds", workflow_with("rounds: 3", "rounds: 0")),
        ("too many rounds", workflow_with("rounds: 3", "rounds: 101")),
        (
            "a bare broadcast",
            workflow_with("  - broadcast: { rounds: 3 }\n", "  - broadcast\n"),
        ),
        (
            "an unknown step",
            workflow_with("  - audit\n", "  - audti\n"),
        ),
        (
            "two steps in one entry",
            workflow_with("  - audit\n", "  - audit: ~\n    disconnect: ~\n"),
        ),
        (
            "an unknown step option",
            workflow_with("until: deadline", "until: deadline, cap: 1"),
        ),
        (
            "no targets",
            workflow_with("relays: [store-east]", "relays: []"),
        ),
        (
            "no steps",
            format!("{}steps: []\n", WORKFLOW.split("steps:").next().unwrap()),
        ),
        (
            "a list of relays that is text",
            workflow_with("[store-east]", "store-east"),
        ),
        (
            "a stage naming no clients",
            workflow_with("steps:", "stages:\n  - gate: { soak: 1h }\nsteps:"),
        ),
        (
            "a stage with an empty list of relays",
            workflow_with("steps:", "stages:\n  - relays: []\nsteps:"),
        ),
        (
            "an unknown stage key",
            workflow_with("steps:", "stages:\n  - { percent: 10, precent: 5 }\nsteps:"),
        ),
        (
            "an unknown gate key",
            workflow_with(
                "steps:",
                "stages:\n  - { percent: 10, gate: { soka: 1h } }\nsteps:",
            ),
        ),
        ("no stages", workflow_with("steps:", "stages: []\nsteps:")),
        (
            "a percent above 100",
            workflow_with("steps:", "stages:\n  - percent: 101\nsteps:"),
        ),
        (
            "stages that are a mapping",
            workflow_with("steps:", "stages: { percent: 10 }\nsteps:"),
        ),
    ] {
        assert!(!accepted(&text), "the parser accepts {what}:\n{text}");
        assert!(
            !v.is_valid(&as_json(&text)),
            "the schema accepts {what}, which the parser refuses:\n{text}"
        );
    }
}

/// Writes `text` as a config file and loads it with the daemons' reader.
fn loads<T: for<'de> serde::Deserialize<'de> + config::Resolve>(text: &str) -> Result<T, String> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.yaml");
    std::fs::write(&p, text).unwrap();
    config::load::<T>(&p).map_err(|e| e.to_string())
}

fn config_schema(of: &str) -> jsonschema::Validator {
    validator(&serde_json::from_str(&printed(of)).unwrap())
}

#[test]
fn the_config_schemas_refuse_what_the_daemons_refuse() {
    let master = "home: h\nlisten: 127.0.0.1:7400\napi: 127.0.0.1:7480\n";
    let v = config_schema("master");
    assert!(loads::<MasterConfig>(master).is_ok());
    assert_eq!(errors(&v, &as_json(master)), Vec::<String>::new());
    for (what, text) in [
        ("an unknown key", format!("{master}lisen: 1\n")),
        ("a missing key", master.replace("home: h\n", "")),
        (
            "text where a number goes",
            format!("{master}poll_ms: fast\n"),
        ),
        ("a zero poll", format!("{master}poll_ms: 0\n")),
        (
            "an API connection cap of 0",
            format!("{master}api_limits: {{max_connections: 0}}\n"),
        ),
        (
            "a header cap below 8 KiB",
            format!("{master}api_limits: {{max_header_bytes: 100}}\n"),
        ),
        (
            "an unknown api_limits key",
            format!("{master}api_limits: {{max_conns: 5}}\n"),
        ),
        ("relays as text", format!("{master}relays: store-east\n")),
    ] {
        assert!(
            loads::<MasterConfig>(&text).is_err(),
            "the master accepts {what}"
        );
        assert!(!v.is_valid(&as_json(&text)), "the schema accepts {what}");
    }

    let relay = "name: r\nmaster: {address: '127.0.0.1:7400', name: master}\n\
                 listen: 127.0.0.1:7401\ntls: {ca: a, cert: b, key: c}\n\
                 multicast: {group: '239.255.91.7:7500'}\ndata: d\n";
    let v = config_schema("relay");
    assert!(loads::<RelayConfig>(relay).is_ok());
    assert!(v.is_valid(&as_json(relay)));
    for (what, text) in [
        ("a TLS file missing", relay.replace(", key: c", "")),
        (
            "an unknown TLS key",
            relay.replace("key: c", "key: c, pem: d"),
        ),
        ("a negative ttl", relay.replace("7500'}", "7500', ttl: -1}")),
    ] {
        assert!(
            loads::<RelayConfig>(&text).is_err(),
            "the relay accepts {what}"
        );
        assert!(!v.is_valid(&as_json(&text)), "the schema accepts {what}");
    }

    let client = "id: c1\nartifact: app\nrelay: {address: '127.0.0.1:7401', name: r}\n\
                  tls: {ca: a, cert: b, key: c}\nmaster_key: k\ninstall_root: i\n";
    let v = config_schema("client");
    assert!(loads::<ClientConfig>(client).is_ok());
    assert!(v.is_valid(&as_json(client)));
    let labelled = format!("{client}labels: {{site: store-12, ring: canary}}\n");
    assert!(loads::<ClientConfig>(&labelled).is_ok());
    assert!(v.is_valid(&as_json(&labelled)));
    for (what, text) in [
        (
            "a drop rate above 1",
            format!("{client}testing: {{drop_datagrams: 2}}\n"),
        ),
        ("a zero stall", format!("{client}receive_stall_secs: 0\n")),
        (
            "a post-install without a program",
            format!("{client}post_install: {{args: [x]}}\n"),
        ),
        (
            "a label key in capitals",
            format!("{client}labels: {{Ring: a}}\n"),
        ),
        (
            "a label value with a space",
            format!("{client}labels: {{ring: 'a b'}}\n"),
        ),
        (
            "a label value too long",
            format!("{client}labels: {{ring: {}}}\n", "v".repeat(64)),
        ),
        (
            "17 labels",
            format!(
                "{client}labels: {{{}}}\n",
                (0..17)
                    .map(|i| format!("k{i}: v"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    ] {
        assert!(
            loads::<ClientConfig>(&text).is_err(),
            "the client accepts {what}"
        );
        assert!(!v.is_valid(&as_json(&text)), "the schema accepts {what}");
    }
}

#[test]
fn the_policy_cases_schema_refuses_what_the_reader_refuses() {
    let schema: Value = serde_json::from_str(&printed("policy-cases")).unwrap();
    let v = validator(&schema);
    let read = |text: &str| {
        haifu_policy::cases::CaseFile::parse(Path::new("cases.yaml"), text).map_err(|e| {
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
    };
    let good = "cases:\n  - name: a\n    allow: { client: { version: 2.4.0 }, service.since: 2.4.0 }\n    expect: { allow: true, reason_contains: runs }\n  - name: b\n    next_round: { round: 1, rounds: 3 }\n    expect: { wait: 20m }\n  - name: c\n    round_budget: { size: 64MiB, last_loss: 0.05 }\n    expect: { proactive: 0.053, budget: 3, time: 34.159, silence: 1s }\n";
    assert!(read(good).is_ok(), "{:?}", read(good));
    assert!(
        errors(&v, &as_json(good)).is_empty(),
        "{:?}",
        errors(&v, &as_json(good))
    );
    for bad in [
        // An unknown fact.
        "cases:\n  - name: a\n    allow: { client: { versoin: 2.4.0 } }\n    expect: { allow: true }\n",
        // Another entry point's decision.
        "cases:\n  - name: a\n    allow: {}\n    expect: { cut: true }\n",
        // A reason for a round budget, which has none.
        "cases:\n  - name: a\n    round_budget: {}\n    expect: { budget: 3, reason: x }\n",
        // No expectation.
        "cases:\n  - name: a\n    disconnect: {}\n",
        // Two entry points.
        "cases:\n  - name: a\n    allow: {}\n    disconnect: {}\n    expect: { allow: true }\n",
        // An unknown key at the top.
        "cases: []\ncase: []\n",
    ] {
        assert!(read(bad).is_err(), "the reader takes {bad:?}");
        assert!(
            !errors(&v, &as_json(bad)).is_empty(),
            "the schema takes {bad:?}"
        );
    }
}
