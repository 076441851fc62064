//! Local files the `haifu` binary trusts, writes or refuses: what a failed
//! command leaves behind, the modes of the home, keys and ledger, `export`
//! never overwriting by surprise, and inputs that are refused before they
//! can cost memory or time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{haifu, ok, run};

/// Runs a command that must fail; returns its one-line stderr.
fn fails(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(!out.status.success(), "haifu {args:?} should have failed");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "error should be one line: {err:?}");
    assert!(err.starts_with("haifu: error: "), "{err}");
    err.trim_end().to_owned()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn artifact(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, "some artifact bytes\n".repeat(1000)).unwrap();
    p
}

fn register(home: &Path, file: &Path, version: &str) {
    ok(
        home,
        &[
            "register",
            "--name",
            "app",
            "--version",
            version,
            file.to_str().unwrap(),
        ],
    );
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    tempfile::tempfile().unwrap().metadata().unwrap().uid() == 0
}

#[test]
fn register_of_an_unreadable_file_creates_nothing() {
    let t = tempfile::tempdir().unwrap();
    let file = artifact(t.path(), "secret.bin");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
    let home = t.path().join("home");
    let mut cmd = if running_as_root() {
        // Root reads anything: run haifu as nobody, in a folder nobody owns.
        if Command::new("setpriv").arg("--help").output().is_err() {
            eprintln!("root without setpriv: skipped");
            return;
        }
        std::os::unix::fs::chown(t.path(), Some(65534), Some(65534)).unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_haifu"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_haifu"))
    };
    let out = cmd
        .arg("--home")
        .arg(&home)
        .args(["register", "--name", "app", "--version", "1.0.0"])
        .arg(&file)
        .env_remove("HAIFU_HOME")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("cannot read {}", file.display()))
            && err.contains("ermission denied"),
        "{err}"
    );
    assert!(!home.exists(), "a failed register created the home");
}

#[test]
fn home_keys_and_ledger_are_private_whatever_the_umask() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let file = artifact(t.path(), "a.bin");
    let script = format!(
        "umask 000; exec '{}' --home '{}' register --name app --version 1.0.0 '{}'",
        env!("CARGO_BIN_EXE_haifu"),
        home.display(),
        file.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&home), 0o700, "home");
    assert_eq!(mode(&home.join("keys")), 0o700, "keys/");
    assert_eq!(mode(&home.join("keys/master.key")), 0o600, "master.key");
    assert_eq!(mode(&home.join("ledger.sqlite")), 0o600, "ledger");
    for extra in ["ledger.sqlite-wal", "ledger.sqlite-shm"] {
        let p = home.join(extra);
        if p.exists() {
            assert_eq!(mode(&p) & 0o077, 0, "{extra}");
        }
    }
}

#[test]
fn a_master_key_readable_by_others_is_refused_naming_file_mode_and_fix() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let file = artifact(t.path(), "a.bin");
    register(&home, &file, "1.0.0");
    let key = home.join("keys/master.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o666)).unwrap();
    let e = fails(
        &home,
        &[
            "register",
            "--name",
            "app",
            "--version",
            "1.0.1",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        e,
        format!(
            "haifu: error: master key {0} has mode 0666: group or others may read it; if it is still secret, run: chmod 600 {0}",
            key.display()
        )
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    register(&home, &file, "1.0.1");
}

#[test]
fn export_never_overwrites_by_surprise_and_never_writes_into_the_home() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let file = artifact(t.path(), "a.bin");
    register(&home, &file, "1.0.0");
    let ledger = home.join("ledger.sqlite");
    let ledger_before = fs::read(&ledger).unwrap();

    // An existing file needs --force.
    let out = t.path().join("out.bin");
    fs::write(&out, b"mine").unwrap();
    let e = fails(
        &home,
        &["export", "app", "1.0.0", "-o", out.to_str().unwrap()],
    );
    assert!(
        e.ends_with(&format!(
            "{} exists; refusing to overwrite it (use --force to replace it)",
            out.display()
        )),
        "{e}"
    );
    assert_eq!(fs::read(&out).unwrap(), b"mine");
    ok(
        &home,
        &[
            "export",
            "app",
            "1.0.0",
            "-o",
            out.to_str().unwrap(),
            "--force",
        ],
    );
    assert_eq!(fs::read(&out).unwrap(), fs::read(&file).unwrap());

    // Inside the home: refused even with --force, however it is spelt.
    fs::create_dir(t.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(&home, t.path().join("link")).unwrap();
    let spellings = [
        ledger.clone(),
        home.join("store/../ledger.sqlite"),
        t.path().join("sub/../home/keys/master.key"),
        t.path().join("link/ledger.sqlite"),
        home.join("new-file"),
    ];
    for target in &spellings {
        let e = fails(
            &home,
            &[
                "export",
                "app",
                "1.0.0",
                "-o",
                target.to_str().unwrap(),
                "--force",
            ],
        );
        assert!(e.contains("it is inside the home"), "{target:?}: {e}");
    }
    assert_eq!(
        fs::read(&ledger).unwrap(),
        ledger_before,
        "the ledger was touched"
    );
    assert!(!home.join("new-file").exists());
    ok(&home, &["versions"]);
    // Nothing half-written beside the output either.
    let names: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn read_only_commands_and_refused_exports_create_no_home() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let out = t.path().join("out.bin");
    let e = fails(
        &home,
        &["export", "app", "1.0.0", "-o", out.to_str().unwrap()],
    );
    assert!(e.contains("no ledger at"), "{e}");
    let e = fails(
        &home,
        &[
            "service",
            "set",
            "refund",
            "--artifact",
            "app",
            "--since",
            "1.0.0",
        ],
    );
    assert!(e.contains("artifact app is not registered"), "{e}");
    // Commands that only read say there is nothing, and create nothing.
    for args in [
        &["versions"][..],
        &["status"],
        &["audit", "1"],
        &["manifest", "app", "1.0.0"],
        &["gate", "--client", "c", "--service", "s"],
        &["fleet", "list"],
        &["api", "token", "list"],
    ] {
        let e = fails(&home, args);
        assert!(e.contains("no ledger at"), "{args:?}: {e}");
    }
    assert!(!home.exists());
    assert!(!out.exists());
}

#[test]
fn service_set_refuses_control_characters_and_unknown_artifacts() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let file = artifact(t.path(), "a.bin");
    register(&home, &file, "1.0.0");
    let e = fails(
        &home,
        &[
            "service",
            "set",
            "refund\u{1b}[2J",
            "--artifact",
            "app",
            "--since",
            "1.0.0",
        ],
    );
    assert!(
        e.contains("service name \"refund\\u{1b}[2J\" must be"),
        "{e}"
    );
    let e = fails(
        &home,
        &[
            "service",
            "set",
            "refund",
            "--artifact",
            "ap",
            "--since",
            "1.0.0",
        ],
    );
    assert!(
        e.ends_with("artifact ap is not registered (register a version first)"),
        "{e}"
    );
    let said = ok(
        &home,
        &[
            "service",
            "set",
            "refund",
            "--artifact",
            "app",
            "--since",
            "1.0.0",
        ],
    );
    assert_eq!(said.trim(), "service refund: app since 1.0.0");
}

#[test]
fn a_version_longer_than_128_characters_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let file = artifact(t.path(), "a.bin");
    let long = format!("1.0.0-{}", "a".repeat(10_000));
    let e = fails(
        &home,
        &[
            "register",
            "--name",
            "app",
            "--version",
            &long,
            file.to_str().unwrap(),
        ],
    );
    assert!(e.contains("10006 bytes long, the limit is 128"), "{e}");
    assert!(e.len() < 300, "{e}");
    assert!(!home.exists());
}

#[test]
fn simulate_refuses_a_client_count_it_cannot_hold() {
    let t = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let e = fails(
        &t.path().join("home"),
        &[
            "simulate",
            "workflows/nightly-store-rollout.yaml",
            "--clients",
            "100000000",
        ],
    );
    assert!(
        e.contains("--clients 100000000 is more than the simulator's limit of 10000000"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn check_of_a_device_is_refused_at_once() {
    let t = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(&t.path().join("home"), &["check", "/dev/zero"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a regular file (a character device)"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_master_that_cannot_start_leaves_no_home() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("master.yaml");
    let plugins = t.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o700)).unwrap();
    // No certificates at all.
    fs::write(
        &cfg,
        "home: mhome\nlisten: 127.0.0.1:0\nname: master\nplugins: plugins\n",
    )
    .unwrap();
    let out = haifu(&t.path().join("unused"))
        .args(["master", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("tls.ca:") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!t.path().join("mhome").exists(), "{err}");

    // Certificates present, but no plugins in the folder.
    for f in ["ca.pem", "m.pem", "m.key"] {
        fs::write(t.path().join(f), "x").unwrap();
    }
    fs::write(
        &cfg,
        "home: mhome\nlisten: 127.0.0.1:0\nname: master\nplugins: plugins\n\
         tls: {ca: ca.pem, cert: m.pem, key: m.key}\n",
    )
    .unwrap();
    let out = haifu(&t.path().join("unused"))
        .args(["master", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no quic plugin in"), "{err}");
    assert!(!t.path().join("mhome").exists(), "{err}");
}

#[test]
fn plugins_listing_refuses_a_world_writable_folder() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("plugins");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let e = fails(
        &t.path().join("home"),
        &["plugins", "--plugins", dir.to_str().unwrap()],
    );
    assert!(
        e.ends_with(&format!(
            "refusing plugins folder {0}: mode 0777 lets group or others write it (run: chmod go-w {0})",
            dir.display()
        )),
        "{e}"
    );
}
