//! Installing, refusing, switching and rolling back on real files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::{content, key, manifest, stage};
use haifu_core::SigningKey;
use haifu_install::{InstallError, InstallRoot, PostInstall};

fn current_target(root: &Path, link: &str) -> String {
    fs::read_link(root.join(link))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn install_v1_then_v2_keeps_v1_as_previous() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    assert!(root.installed().unwrap().is_none());
    assert!(root.base_for_delta().unwrap().is_none());

    let v1 = content(1, 100_000);
    let got = root.install(stage(&root, "1.0.0", &v1), None).unwrap();
    assert_eq!(got.version, "1.0.0");
    assert_eq!(fs::read(&got.path).unwrap(), v1);
    assert!(root.previous().unwrap().is_none());

    let v2 = content(2, 123_457);
    let got2 = root.install(stage(&root, "2.0.0", &v2), None).unwrap();
    let cur = root.installed().unwrap().unwrap();
    assert_eq!(cur, got2);
    assert_eq!(fs::read(&cur.path).unwrap(), v2);
    assert!(current_target(dir.path(), "current").starts_with("versions/pos-app-2.0.0-"));
    let prev = root.previous().unwrap().unwrap();
    assert_eq!(prev.version, "1.0.0");
    assert_eq!(fs::read(&prev.path).unwrap(), v1);
    let (digest, path) = root.base_for_delta().unwrap().unwrap();
    assert_eq!(digest, common::sha3(&v2));
    assert_eq!(path, cur.path);
    // The manifest beside the artifact is the signed one.
    let m =
        haifu_core::Manifest::from_json(&fs::read(cur.dir.join("manifest.json")).unwrap()).unwrap();
    m.verify(&key().public_key()).unwrap();
    // Staging is empty after installs.
    assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
}

#[test]
fn gc_keeps_only_current_and_previous() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    for i in 1..=4u64 {
        let v = content(i, 5000);
        root.install(stage(&root, &format!("{i}.0.0"), &v), None)
            .unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(dir.path().join("versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("pos-app-3.0.0-"), "{names:?}");
    assert!(names[1].starts_with("pos-app-4.0.0-"), "{names:?}");
}

#[test]
fn wrong_digest_is_refused_staged_file_deleted_and_current_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let v1 = content(1, 10_000);
    root.install(stage(&root, "1.0.0", &v1), None).unwrap();

    let v2 = content(2, 10_000);
    let mut s = root.stage(v2.len() as u64).unwrap();
    let staged = s.path().to_owned();
    s.write_all(&v2).unwrap();
    let mut corrupt = v2.clone();
    corrupt[5] ^= 1;
    let e = s
        .verify(&manifest("2.0.0", &corrupt), &key().public_key())
        .unwrap_err();
    assert!(matches!(e, InstallError::ContentMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&staged.display().to_string()), "{msg}");
    assert!(msg.contains("sha3-256"), "{msg}");
    assert!(!staged.exists());

    // Wrong length.
    let mut s = root.stage(9_999).unwrap();
    s.write_all(&v2[..9_999]).unwrap();
    let e = s
        .verify(&manifest("2.0.0", &v2), &key().public_key())
        .unwrap_err();
    assert!(e.to_string().contains("size is 9999 bytes"), "{e}");

    assert_eq!(root.installed().unwrap().unwrap().version, "1.0.0");
    assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
}

#[test]
fn a_digest_hashed_as_blocks_landed_is_checked_like_the_files() {
    use sha3::{Digest as _, Sha3_256};
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let v1 = content(1, 10_000);
    let digest = |b: &[u8]| haifu_core::Digest::from_bytes(Sha3_256::digest(b).into());
    let mut s = root.stage(v1.len() as u64).unwrap();
    s.write_all(&v1).unwrap();
    s.sync_written().unwrap();
    let verified = s
        .verify_hashed(&manifest("1.0.0", &v1), &key().public_key(), digest(&v1))
        .unwrap();
    root.install(verified, None).unwrap();

    // A digest that is not the signed one is refused and the file deleted.
    let v2 = content(2, 10_000);
    let mut s = root.stage(v2.len() as u64).unwrap();
    let staged = s.path().to_owned();
    s.write_all(&v2).unwrap();
    let e = s
        .verify_hashed(&manifest("2.0.0", &v2), &key().public_key(), digest(&v1))
        .unwrap_err();
    assert!(matches!(e, InstallError::ContentMismatch { .. }), "{e}");
    assert!(!staged.exists());
    assert_eq!(root.installed().unwrap().unwrap().version, "1.0.0");
}

#[test]
fn bad_signature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let v = content(3, 1000);
    let mut s = root.stage(v.len() as u64).unwrap();
    s.write_at(0, &v).unwrap();
    let other = SigningKey::from_seed([9; 32]);
    let forged = haifu_core::Manifest::sign(manifest("1.0.0", &v).body, &other);
    let e = s.verify(&forged, &key().public_key()).unwrap_err();
    assert!(matches!(e, InstallError::UntrustedManifest { .. }), "{e}");
    assert!(e.to_string().contains("pinned master key"), "{e}");

    let mut s = root.stage(v.len() as u64).unwrap();
    s.write_at(0, &v).unwrap();
    let mut tampered = manifest("1.0.0", &v);
    tampered.body.version = "1.0.1".into();
    let e = s.verify(&tampered, &key().public_key()).unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
    assert!(root.installed().unwrap().is_none());
}

#[test]
fn writes_past_the_expected_length_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let mut s = root.stage(10).unwrap();
    s.write_at(8, b"ab").unwrap();
    let e = s.write_at(9, b"ab").unwrap_err();
    assert!(matches!(e, InstallError::OutOfRange { .. }), "{e}");
    assert!(s.write_at(u64::MAX, b"a").is_err());
    assert!(s.write_all(&[0; 11]).is_err());
}

#[test]
fn installing_the_current_version_again_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let v1 = content(1, 1000);
    let a = root.install(stage(&root, "1.0.0", &v1), None).unwrap();
    let fail = PostInstall::new("false");
    let b = root
        .install(stage(&root, "1.0.0", &v1), Some(&fail))
        .unwrap();
    assert_eq!(a, b);
    assert!(root.previous().unwrap().is_none());
}

#[test]
fn post_install_failure_does_not_switch() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let v1 = content(1, 1000);
    root.install(stage(&root, "1.0.0", &v1), None).unwrap();
    let v2 = content(2, 1000);
    let mut cmd = PostInstall::new("sh");
    cmd.args = vec![
        "-c".into(),
        "echo migrating; echo disk full >&2; exit 3".into(),
    ];
    let e = root
        .install(stage(&root, "2.0.0", &v2), Some(&cmd))
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, InstallError::PostInstall { .. }), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("disk full"), "{msg}");
    assert!(msg.contains("pos-app-2.0.0-"), "{msg}");
    assert_eq!(root.installed().unwrap().unwrap().version, "1.0.0");
    assert!(root.previous().unwrap().is_none());
    // The refused version is not left behind.
    assert_eq!(
        fs::read_dir(dir.path().join("versions")).unwrap().count(),
        1
    );
}

#[test]
fn post_install_sees_the_new_version_and_may_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let v1 = content(1, 1000);
    root.install(stage(&root, "1.0.0", &v1), None).unwrap();
    let out = dir.path().join("env.txt");
    let mut cmd = PostInstall::new("sh");
    cmd.args = vec![
        "-c".into(),
        format!(
            "echo \"$HAIFU_VERSION $HAIFU_CURRENT_VERSION $(cat \"$HAIFU_ARTIFACT\" | wc -c) $PWD\" > {}",
            out.display()
        ),
    ];
    let v2 = content(2, 777);
    let new = root
        .install(stage(&root, "2.0.0", &v2), Some(&cmd))
        .unwrap();
    let seen = fs::read_to_string(&out).unwrap();
    let parts: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(&parts[..3], ["2.0.0", "1.0.0", "777"], "{seen}");
    assert_eq!(
        Path::new(parts[3]).canonicalize().unwrap(),
        new.dir.canonicalize().unwrap()
    );

    let mut slow = PostInstall::new("sleep");
    slow.args = vec!["10".into()];
    slow.timeout = jiff::SignedDuration::from_millis(200);
    let started = std::time::Instant::now();
    let e = root
        .install(stage(&root, "3.0.0", &content(3, 10)), Some(&slow))
        .unwrap_err();
    assert!(started.elapsed().as_secs() < 5);
    assert!(e.to_string().contains("timeout"), "{e}");
    assert_eq!(root.installed().unwrap().unwrap().version, "2.0.0");

    let missing = PostInstall::new("/nonexistent/haifu-post-install");
    let e = root
        .install(stage(&root, "3.0.0", &content(3, 10)), Some(&missing))
        .unwrap_err();
    assert!(e.to_string().contains("could not be started"), "{e}");
}

#[test]
fn post_install_parses_from_config() {
    let p: PostInstall =
        serde_json::from_str(r#"{"program":"systemctl","args":["restart","pos"],"timeout":"30s"}"#)
            .unwrap();
    assert_eq!(p.timeout, jiff::SignedDuration::from_secs(30));
    let p: PostInstall = serde_json::from_str(r#"{"program":"true"}"#).unwrap();
    assert_eq!(p.timeout, jiff::SignedDuration::from_mins(5));
    assert!(serde_json::from_str::<PostInstall>(r#"{"program":"x","tmeout":"1s"}"#).is_err());
}

#[test]
fn rollback_swaps_current_and_previous_and_never_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let e = root.rollback("pos-app", None).unwrap_err();
    assert!(matches!(e, InstallError::NoPrevious { .. }), "{e}");
    let v1 = content(1, 1000);
    let v2 = content(2, 1000);
    root.install(stage(&root, "1.0.0", &v1), None).unwrap();
    root.install(stage(&root, "2.0.0", &v2), None).unwrap();
    // Not the version asked for, or another artifact: nothing changes.
    let e = root.rollback("pos-app", Some("0.9.0")).unwrap_err();
    assert!(
        e.to_string()
            .contains("the kept previous version is 1.0.0, not 0.9.0"),
        "{e}"
    );
    let e = root.rollback("other", None).unwrap_err();
    assert!(matches!(e, InstallError::RollbackRefused { .. }), "{e}");
    assert_eq!(root.installed().unwrap().unwrap().version, "2.0.0");
    let back = root.rollback("pos-app", Some("1.0.0")).unwrap();
    assert_eq!(back.version, "1.0.0");
    assert_eq!(root.installed().unwrap().unwrap().version, "1.0.0");
    assert_eq!(root.previous().unwrap().unwrap().version, "2.0.0");
    assert_eq!(
        fs::read(root.installed().unwrap().unwrap().path).unwrap(),
        v1
    );
    // A second rollback would move forward: refused, nothing changes.
    let e = root.rollback("pos-app", None).unwrap_err();
    assert!(e.to_string().contains("never moves forward"), "{e}");
    assert_eq!(root.installed().unwrap().unwrap().version, "1.0.0");
    // Reinstalling the version kept as previous works too.
    root.install(stage(&root, "1.0.0", &v1), None).unwrap();
    assert_eq!(root.installed().unwrap().unwrap().version, "1.0.0");
    assert_eq!(root.previous().unwrap().unwrap().version, "2.0.0");
}

#[test]
fn a_health_check_runs_for_the_current_version_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path()).unwrap();
    let ok = PostInstall::new("true");
    assert!(
        root.check_current(&ok).unwrap().is_none(),
        "nothing current"
    );
    root.install(stage(&root, "1.0.0", &content(1, 100)), None)
        .unwrap();
    root.install(stage(&root, "2.0.0", &content(2, 100)), None)
        .unwrap();
    let checked = root.check_current(&ok).unwrap().unwrap();
    assert_eq!(checked.version, "2.0.0");
    // It sees the version it checks and the one before it.
    let mut cmd = PostInstall::new("sh");
    cmd.args = vec![
        "-c".into(),
        "echo \"down: $HAIFU_VERSION after $HAIFU_CURRENT_VERSION\" >&2; exit 7".into(),
    ];
    let e = root.check_current(&cmd).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, InstallError::PostInstall { .. }), "{msg}");
    assert!(msg.contains("exit status: 7"), "{msg}");
    assert!(msg.contains("down: 2.0.0 after 1.0.0"), "{msg}");
    // A failure switches nothing: that is the caller's choice.
    assert_eq!(root.installed().unwrap().unwrap().version, "2.0.0");
    assert_eq!(root.previous().unwrap().unwrap().version, "1.0.0");
}
