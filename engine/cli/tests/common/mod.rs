//! Running the real `haifu` binary from integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The top of the repository (workflows name paths relative to it).
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `haifu --home HOME`, run from the top of the repository, quiet logs.
pub(crate) fn haifu(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_haifu"));
    c.arg("--home")
        .arg(home)
        .env_remove("HAIFU_HOME")
        .env_remove("HAIFU_LOG_FORMAT")
        .env("RUST_LOG", "warn")
        .current_dir(repo());
    c
}

pub(crate) fn run(home: &Path, args: &[&str]) -> Output {
    haifu(home).args(args).output().unwrap()
}

/// Runs a command that must succeed; returns its stdout.
pub(crate) fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(
        out.status.success(),
        "haifu {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must succeed and print JSON.
pub(crate) fn json(home: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(home, args)).unwrap()
}
pub(crate) mod fleet;
