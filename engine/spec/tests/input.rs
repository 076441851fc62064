//! Workflow and policy files are read from regular files only and with a
//! cap: `/dev/zero` or a FIFO named as a workflow is an error at once, not a
//! gigabyte read or a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use haifu_spec::{MAX_WORKFLOW_BYTES, load_and_validate};

fn first_error(path: &Path) -> String {
    let errors = load_and_validate(path).unwrap_err();
    errors[0].to_string()
}

#[test]
fn workflow_from_dev_zero_is_refused_without_reading() {
    let started = Instant::now();
    let e = first_error(Path::new("/dev/zero"));
    assert!(e.starts_with("/dev/zero:1:1:"), "{e}");
    assert!(e.contains("not a regular file (a character device)"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn workflow_fifo_does_not_hang() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("w.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("no mkfifo: skipped");
        return;
    }
    let started = Instant::now();
    let e = first_error(&fifo);
    assert!(e.contains("not a regular file (a FIFO)"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn workflow_over_the_cap_names_the_cap() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("big.yaml");
    std::fs::write(
        &p,
        format!(
            "# {}\n",
            "x".repeat(usize::try_from(MAX_WORKFLOW_BYTES).unwrap())
        ),
    )
    .unwrap();
    let e = first_error(&p);
    assert!(
        e.contains(&format!(
            "larger than the {MAX_WORKFLOW_BYTES}-byte limit for workflow files"
        )),
        "{e}"
    );
}

#[test]
fn policy_fifo_does_not_hang() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("p.rhai");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("no mkfifo: skipped");
        return;
    }
    let paths = haifu_policy::PolicyPaths {
        restrict: Some(fifo.clone()),
        ..Default::default()
    };
    let started = Instant::now();
    let errors = haifu_policy::PolicySet::load(&paths).unwrap_err();
    let e = errors[0].to_string();
    assert!(e.starts_with(&fifo.display().to_string()), "{e}");
    assert!(e.contains("not a regular file (a FIFO)"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
