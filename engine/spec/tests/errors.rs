//! Golden error messages: each `fixtures/bad/NAME.yaml` has the exact lines
//! `haifu check` prints in `fixtures/bad/NAME.expected`.
//!
//! After a deliberate change of wording, regenerate with
//! `HAIFU_BLESS=1 cargo test -p haifu-spec --test errors` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn bad_workflows_print_exactly_the_expected_errors() {
    // Cargo runs integration tests from the package root, so paths in the
    // messages are relative to engine/spec, as an operator's would be.
    let dir = Path::new("tests/fixtures/bad");
    let bless = std::env::var_os("HAIFU_BLESS").is_some();
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    entries.sort();
    for workflow in entries {
        let errors = haifu_spec::load_and_validate(&workflow)
            .err()
            .unwrap_or_else(|| panic!("{} validated clean", workflow.display()));
        let actual: String = errors.iter().map(|e| format!("{e}\n")).collect();
        let expected_path = workflow.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("no {}", expected_path.display()));
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                workflow.display()
            ));
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} bad workflows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_error_is_one_line_with_file_line_and_column() {
    for entry in std::fs::read_dir("tests/fixtures/bad").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for e in haifu_spec::load_and_validate(&path).unwrap_err() {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(e.pos.line >= 1 && e.pos.column >= 1, "{line}");
            assert!(!line.ends_with('.'), "{line}");
            let message = &line[line.find(": ").unwrap() + 2..];
            let first = message.chars().next().unwrap();
            assert!(
                !first.is_uppercase() || message.starts_with("YAML"),
                "{line}"
            );
        }
    }
}

#[test]
fn a_workflow_that_cannot_be_read_is_one_error() {
    let errors =
        haifu_spec::load_and_validate(Path::new("tests/fixtures/no-such.yaml")).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .starts_with("tests/fixtures/no-such.yaml:1:1: workflow: cannot read: ")
    );
}
