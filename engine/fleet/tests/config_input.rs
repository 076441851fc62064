//! Daemon configs are read like workflows: regular files only, at most
//! `MAX_CONFIG_BYTES`, and no YAML aliases (which `serde_yaml` would expand).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use haifu_fleet::config::{ClientConfig, MAX_CONFIG_BYTES, MasterConfig, load};

#[test]
fn config_aliases_are_refused_with_file_line_column() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("client.yaml");
    // The "billion laughs" shape: each level repeats the one before.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    std::fs::write(&p, text).unwrap();
    let e = load::<ClientConfig>(&p).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:2:", p.display())), "{e}");
    assert!(e.contains("YAML aliases (*name) are not supported"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn config_over_the_cap_is_refused_naming_the_cap() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("master.yaml");
    let cap = usize::try_from(MAX_CONFIG_BYTES).unwrap();
    std::fs::write(&p, format!("# {}\nhome: h\n", "x".repeat(cap))).unwrap();
    let e = load::<MasterConfig>(&p).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: cannot read: larger than the {cap}-byte limit for daemon configs",
            p.display()
        )
    );
}

#[test]
fn config_that_is_a_device_or_fifo_is_refused_at_once() {
    let e = load::<MasterConfig>(std::path::Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/dev/zero: cannot read: not a regular file (a character device)"
    );
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("master.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("no mkfifo: FIFO case skipped");
        return;
    }
    // Opening a FIFO with no writer blocks; the check must come first.
    let started = Instant::now();
    let e = load::<MasterConfig>(&fifo).unwrap_err().to_string();
    assert!(
        e.ends_with("cannot read: not a regular file (a FIFO)"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
