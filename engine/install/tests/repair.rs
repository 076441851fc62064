//! `open` brings a damaged or interrupted root back to a committed state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::{content, stage};
use haifu_install::{InstallError, InstallRoot};

#[test]
fn reopening_cleans_staging_and_temp_links() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let v1 = content(1, 1000);
    root.install(stage(&root, "1.0.0", &v1), None).unwrap();
    let mut s = root.stage(1 << 20).unwrap();
    s.write_at(0, b"half").unwrap();
    // A process killed here leaves its file: simulate by leaking it.
    std::mem::forget(s);
    fs::create_dir(dir.path().join("staging/stage-x.dir")).unwrap();
    fs::write(dir.path().join("staging/stage-x.dir/artifact"), b"x").unwrap();
    symlink("versions/nowhere", dir.path().join("current.tmp")).unwrap();
    drop(root);

    let root = InstallRoot::open(dir.path()).unwrap();
    assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
    assert!(fs::symlink_metadata(dir.path().join("current.tmp")).is_err());
    assert_eq!(root.installed().unwrap().unwrap().version, "1.0.0");
}

#[test]
fn dangling_current_falls_back_to_previous_or_to_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    root.install(stage(&root, "1.0.0", &content(1, 100)), None)
        .unwrap();
    let v2 = root
        .install(stage(&root, "2.0.0", &content(2, 100)), None)
        .unwrap();
    fs::remove_dir_all(&v2.dir).unwrap();
    // Before repair, reading names the link and the reason.
    let e = root.installed().unwrap_err();
    assert!(e.to_string().contains("current"), "{e}");

    let root = InstallRoot::open(dir.path()).unwrap();
    assert_eq!(root.installed().unwrap().unwrap().version, "1.0.0");

    // No usable previous either: nothing is installed.
    let cur = root.installed().unwrap().unwrap();
    fs::remove_file(cur.dir.join("manifest.json")).unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    assert!(root.installed().unwrap().is_none());
    assert!(root.previous().unwrap().is_none());
    // And a fresh install works from there.
    root.install(stage(&root, "3.0.0", &content(3, 100)), None)
        .unwrap();
    assert_eq!(root.installed().unwrap().unwrap().version, "3.0.0");
}

#[test]
fn broken_versions_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let v = root
        .install(stage(&root, "1.0.0", &content(1, 100)), None)
        .unwrap();
    // Truncated artifact.
    fs::write(&v.path, b"short").unwrap();
    let e = root.installed().unwrap_err();
    assert!(e.to_string().contains("5 bytes"), "{e}");
    // Garbage manifest.
    fs::write(v.dir.join("manifest.json"), b"{").unwrap();
    assert!(
        root.installed()
            .unwrap_err()
            .to_string()
            .contains("manifest")
    );
}

#[test]
fn things_this_crate_never_writes_are_errors_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("current"), b"not a link").unwrap();
    let e = InstallRoot::open(dir.path()).unwrap_err();
    assert!(matches!(e, InstallError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("current"), "{e}");
    assert!(dir.path().join("current").exists());

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("versions"), b"file").unwrap();
    let e = InstallRoot::open(dir.path()).unwrap_err();
    assert!(e.to_string().contains("versions"), "{e}");
    assert!(e.to_string().contains("expected a folder"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("root");
    fs::write(&file, b"file").unwrap();
    let e = InstallRoot::open(&file).unwrap_err();
    assert!(e.to_string().contains("root"), "{e}");
}
