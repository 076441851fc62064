//! `haifu register` and friends, run as the real binary against a real home.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use haifu_core::{Manifest, PublicKey};
use serde_json::Value;
use sha3::{Digest as _, Sha3_256};

mod common;
use common::{haifu, ok, run};

/// Runs a command that must fail; returns its one-line stderr.
fn fails(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(!out.status.success(), "haifu {args:?} should have failed");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "error should be one line: {err:?}");
    assert!(err.starts_with("haifu: error: "), "{err}");
    err
}

fn artifact(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let mut v = Vec::with_capacity(len);
    let mut x = seed;
    while v.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.extend_from_slice(format!("record {} {}\n", v.len(), x >> 40).as_bytes());
    }
    v.truncate(len);
    let p = dir.join(name);
    fs::write(&p, v).unwrap();
    p
}

fn sha3_hex(path: &Path) -> String {
    hex::encode(Sha3_256::digest(fs::read(path).unwrap()))
}

fn object_files(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let objects = home.join("store/objects");
    if let Ok(fans) = fs::read_dir(objects) {
        for fan in fans {
            for f in fs::read_dir(fan.unwrap().path()).unwrap() {
                out.push(f.unwrap().path());
            }
        }
    }
    out
}

#[test]
fn register_prints_a_signed_manifest_that_verifies() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let file = artifact(t.path(), "app.bin", 300_000, 1);
    let json = ok(
        &home,
        &[
            "register",
            "--name",
            "pos-app",
            "--version",
            "2.4.0",
            file.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(json.lines().count(), 1);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["name"], "pos-app");
    assert_eq!(v["version"], "2.4.0");
    assert_eq!(v["size"], 300_000);
    assert_eq!(v["sha3_256"], sha3_hex(&file));
    assert_eq!(v["signature"].as_str().unwrap().len(), 128);

    let public: PublicKey = ok(&home, &["keys", "show"]).trim().parse().unwrap();
    let manifest = Manifest::from_json(json.as_bytes()).unwrap();
    manifest.verify(&public).unwrap();

    let listed: Value = serde_json::from_str(&ok(&home, &["versions", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["sha3_256"], v["sha3_256"]);
    assert_eq!(object_files(&home).len(), 1);

    // Exporting gives the same bytes back.
    let out = t.path().join("out.bin");
    ok(
        &home,
        &["export", "pos-app", "2.4.0", "-o", out.to_str().unwrap()],
    );
    assert_eq!(fs::read(&out).unwrap(), fs::read(&file).unwrap());
}

#[test]
fn same_content_again_changes_nothing_other_content_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let a = artifact(t.path(), "a.bin", 100_000, 1);
    let b = artifact(t.path(), "b.bin", 100_000, 2);
    let args = |f: &Path| {
        vec![
            "register".to_owned(),
            "--name".into(),
            "app".into(),
            "--version".into(),
            "1.0.0".into(),
            f.display().to_string(),
            "--json".into(),
        ]
    };
    let a_args = args(&a);
    let a_ref: Vec<&str> = a_args.iter().map(String::as_str).collect();
    let first = ok(&home, &a_ref);
    let second = ok(&home, &a_ref);
    assert_eq!(
        first, second,
        "re-registering must return the manifest on record"
    );

    let b_args = args(&b);
    let b_ref: Vec<&str> = b_args.iter().map(String::as_str).collect();
    let err = fails(&home, &b_ref);
    assert!(err.contains("app 1.0.0 is already registered"), "{err}");
    assert!(err.contains(&sha3_hex(&b)), "{err}");
    assert_eq!(
        object_files(&home).len(),
        1,
        "a refused file must not reach the store"
    );
    let listed: Value = serde_json::from_str(&ok(&home, &["versions", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["sha3_256"], sha3_hex(&a));
    assert_eq!(fsck(&home)["problems"].as_array().unwrap().len(), 0);
}

fn fsck(home: &Path) -> Value {
    let out = run(home, &["fsck", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bad_input_gets_one_line_naming_the_value_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let file = artifact(t.path(), "a.bin", 1000, 1);
    let f = file.to_str().unwrap();

    let e = fails(&home, &["register", "--name", "", "--version", "1.0.0", f]);
    assert!(e.contains("artifact name is empty"), "{e}");
    let e = fails(
        &home,
        &["register", "--name", "bad name", "--version", "1.0.0", f],
    );
    assert!(e.contains("\"bad name\""), "{e}");
    let e = fails(&home, &["register", "--name", "app", "--version", "1.2", f]);
    assert!(e.contains("version \"1.2\" is not semver"), "{e}");
    let missing = t.path().join("missing.bin");
    let e = fails(
        &home,
        &[
            "register",
            "--name",
            "app",
            "--version",
            "1.0.0",
            missing.to_str().unwrap(),
        ],
    );
    assert!(
        e.contains(&format!("cannot read {}", missing.display())),
        "{e}"
    );
    let e = fails(
        &home,
        &[
            "register",
            "--name",
            "app",
            "--version",
            "1.0.0",
            t.path().to_str().unwrap(),
        ],
    );
    assert!(e.contains("not a regular file"), "{e}");
    assert!(
        !home.exists(),
        "bad arguments must not even create the home"
    );

    // A home that cannot be created: its parent is a regular file.
    let bad_home = file.join("home");
    let e = fails(
        &bad_home,
        &["register", "--name", "app", "--version", "1.0.0", f],
    );
    assert!(
        e.contains(&format!("cannot create home {}", bad_home.display())),
        "{e}"
    );
}

#[test]
fn a_corrupted_object_is_named_and_re_registering_repairs_it() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let file = artifact(t.path(), "a.bin", 200_000, 3);
    ok(
        &home,
        &[
            "register",
            "--name",
            "app",
            "--version",
            "1.0.0",
            file.to_str().unwrap(),
        ],
    );
    let objects = object_files(&home);
    let obj = &objects[0];
    let mut bytes = fs::read(obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(obj, &bytes).unwrap();

    let out_file = t.path().join("out.bin");
    let e = fails(
        &home,
        &["export", "app", "1.0.0", "-o", out_file.to_str().unwrap()],
    );
    assert!(
        e.contains(&format!("store object {} is corrupted", obj.display())),
        "{e}"
    );
    assert!(
        !out_file.exists(),
        "nothing half-written on a failed export"
    );

    let out = run(&home, &["fsck"]);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("1 problems") && report.contains("is corrupted"),
        "{report}"
    );

    // Registering the same content stores a fresh copy.
    ok(
        &home,
        &[
            "register",
            "--name",
            "app",
            "--version",
            "1.0.0",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(fsck(&home)["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn killed_mid_registration_leaves_store_and_ledger_consistent() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    // Large enough that registration is still running when it is killed.
    let file = artifact(t.path(), "big.bin", 192 << 20, 5);
    // Create the home first so the temporary file is easy to watch for.
    ok(&home, &["keys", "show"]);
    let mut child = haifu(&home)
        .args(["register", "--name", "big", "--version", "1.0.0"])
        .arg(&file)
        .spawn()
        .unwrap();
    let tmp = home.join("store/tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let writing = fs::read_dir(&tmp).map(|d| d.count() > 0).unwrap_or(false);
        if writing || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "registration finished before it could be killed"
    );

    let listed: Value = serde_json::from_str(&ok(&home, &["versions", "--json"])).unwrap();
    assert_eq!(
        listed,
        Value::Array(vec![]),
        "no ledger row for a killed registration"
    );
    let report = fsck(&home);
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(
        report["objects"], 0,
        "no object under a name without its full content"
    );
    assert!(
        fs::read_dir(&tmp).unwrap().next().is_none(),
        "abandoned temporary file cleaned up"
    );

    let json = ok(
        &home,
        &[
            "register",
            "--name",
            "big",
            "--version",
            "1.0.0",
            file.to_str().unwrap(),
            "--json",
        ],
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["sha3_256"], sha3_hex(&file));
}

/// A full disk: the home sits on a 2 MiB tmpfs in a private mount namespace
/// (`unshare -rm`), so the test needs no privileges and leaves no mount
/// behind. Where user namespaces are not allowed the test says so and stops.
#[test]
fn a_full_disk_is_reported_and_leaves_nothing_half_written() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    fs::create_dir(&home).unwrap();
    let file = artifact(t.path(), "a.bin", 1 << 20, 9);
    // Random-looking bytes do not compress: 6 MiB cannot fit in 2 MiB.
    let mut big = Vec::with_capacity(6 << 20);
    let mut x = 0x9e3779b97f4a7c15u64;
    while big.len() < 6 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    let big_file = t.path().join("big.bin");
    fs::write(&big_file, &big).unwrap();
    let exe = env!("CARGO_BIN_EXE_haifu");
    let script = format!(
        "set -u
mount -t tmpfs -o size=2m tmpfs '{home}' || exit 77
H='{exe} --home {home}'
$H register --name small --version 1.0.0 '{small}' >/dev/null || exit 3
$H register --name big --version 1.0.0 '{big}'; echo \"rc=$?\"
$H versions --json
$H fsck --json
ls '{home}/store/tmp' | wc -l",
        home = home.display(),
        small = file.display(),
        big = big_file.display(),
    );
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .output();
    let out = match out {
        // 77: the mount was refused; 1 with nothing on stdout: unshare was.
        Ok(o)
            if o.status.code() != Some(77)
                && !(o.status.code() == Some(1) && o.stdout.is_empty()) =>
        {
            o
        }
        other => {
            eprintln!("skipped: cannot mount a private tmpfs here ({other:?})");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let err_line = stderr
        .lines()
        .find(|l| l.starts_with("haifu: error:"))
        .unwrap_or_default();
    assert!(err_line.contains("No space left on device"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "rc=1");
    let versions: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(
        versions.as_array().unwrap().len(),
        1,
        "only the small one is registered"
    );
    let report: Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["objects"], 1);
    assert_eq!(lines[3].trim(), "0", "the temporary file was removed");
}

#[test]
fn versions_lists_newest_first_and_keys_are_stable() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    for (i, v) in ["1.2.0", "1.10.0", "1.9.3"].iter().enumerate() {
        let f = artifact(t.path(), &format!("{i}.bin"), 5000, i as u64);
        ok(
            &home,
            &[
                "register",
                "--name",
                "kiosk",
                "--version",
                v,
                f.to_str().unwrap(),
            ],
        );
    }
    let listed: Value = serde_json::from_str(&ok(&home, &["versions", "kiosk", "--json"])).unwrap();
    let order: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["1.10.0", "1.9.3", "1.2.0"]);
    let table = ok(&home, &["versions"]);
    assert!(table.lines().nth(1).unwrap().contains("1.10.0"), "{table}");
    let k1 = ok(&home, &["keys", "show"]);
    let k2 = ok(&home, &["keys", "show"]);
    assert_eq!(k1, k2);
    assert_eq!(k1.trim().len(), 64);
}

#[test]
fn every_command_has_help() {
    let t = tempfile::tempdir().unwrap();
    for cmd in [
        &["--help"][..],
        &["register", "--help"],
        &["versions", "--help"],
        &["keys", "show", "--help"],
        &["fsck", "--help"],
        &["export", "--help"],
        &["manifest", "--help"],
    ] {
        let out = ok(t.path(), cmd);
        assert!(out.contains("Usage: haifu"), "{cmd:?}: {out}");
    }
}

#[test]
fn fsck_repair_removes_old_orphans_and_keeps_fresh_ones() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let f1 = artifact(t.path(), "1.bin", 50_000, 1);
    let f2 = artifact(t.path(), "2.bin", 50_000, 2);
    ok(
        &a,
        &[
            "register",
            "--name",
            "x",
            "--version",
            "1.0.0",
            f1.to_str().unwrap(),
        ],
    );
    ok(
        &a,
        &[
            "register",
            "--name",
            "x",
            "--version",
            "2.0.0",
            f2.to_str().unwrap(),
        ],
    );
    ok(&b, &["keys", "show"]);
    ok(&b, &["fsck"]);
    // Objects no version of home b refers to: one old, one fresh.
    let objects = object_files(&a);
    for (i, obj) in objects.iter().enumerate() {
        let rel = obj.strip_prefix(&a).unwrap();
        let dest = b.join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(obj, &dest).unwrap();
        if i == 0 {
            let status = Command::new("touch")
                .args(["-d", "2 hours ago"])
                .arg(&dest)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let before: Value = serde_json::from_str(&ok(&b, &["fsck", "--json"])).unwrap();
    assert_eq!(before["unreferenced_objects"].as_array().unwrap().len(), 2);
    let after: Value = serde_json::from_str(&ok(&b, &["fsck", "--repair", "--json"])).unwrap();
    assert_eq!(after["removed"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(
        after["unreferenced_objects"].as_array().unwrap().len(),
        1,
        "{after}"
    );
    assert_eq!(object_files(&b).len(), 1);
    // Home a's registered objects are untouched by its own repair.
    ok(&a, &["fsck", "--repair"]);
    assert_eq!(object_files(&a).len(), 2);
}
