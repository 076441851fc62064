//! Which files the loader opens: only those named by the naming rule, and
//! only from folders and files no one but root or the current user can
//! write. A library that is not asked for never has its constructor run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use haifu_plugin_host::{
    DirError, LoadError, error_chain, list_plugins, load_dir, load_named, plugin_file_name,
};

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A folder 0700 owned by us holding the two real plugins under their names.
fn plugin_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::install("haifu-transport-quic", dir.path());
    common::install("haifu-transport-multicast", dir.path());
    dir
}

/// Builds with `cc` a library whose constructor writes `marker` as soon as
/// it is loaded. `None` when there is no C compiler.
fn marker_library(out: &Path, marker: &Path) -> Option<()> {
    let src = out.with_extension("c");
    fs::write(
        &src,
        format!(
            "#include <stdio.h>\n\
             __attribute__((constructor)) static void ran(void) {{\n\
               FILE *f = fopen(\"{}\", \"w\");\n\
               if (f) {{ fputs(\"constructor ran\\n\", f); fclose(f); }}\n\
             }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .arg(&src)
        .status()
        .ok()?;
    assert!(status.success());
    fs::remove_file(src).unwrap();
    Some(())
}

#[test]
fn a_non_plugin_library_in_the_folder_is_never_loaded() {
    let dir = plugin_folder();
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("constructor-ran");
    if marker_library(&dir.path().join("libevil.so"), &marker).is_none() {
        eprintln!("no C compiler: skipped");
        return;
    }
    fs::copy(
        dir.path().join("libevil.so"),
        dir.path().join("libhaifu_transport_quic.so.bak"),
    )
    .unwrap();

    // What a daemon does.
    let set = load_named(dir.path(), &["quic", "multicast"]).unwrap();
    assert!(set.get("quic").is_some() && set.get("multicast").is_some());
    assert!(set.failed.is_empty(), "{:?}", set.failed);
    // What `haifu plugins` does.
    let listing = list_plugins(dir.path()).unwrap();
    assert_eq!(listing.plugins.len(), 2, "{listing:?}");
    assert!(!listing.has_errors());

    assert!(
        !marker.exists(),
        "a library that is not a named plugin was loaded and its constructor ran"
    );
}

#[test]
fn a_world_writable_folder_is_refused_naming_it_and_its_mode() {
    let dir = plugin_folder();
    chmod(dir.path(), 0o777);
    for e in [
        load_named(dir.path(), &["quic"]).unwrap_err(),
        load_dir(dir.path()).unwrap_err(),
        list_plugins(dir.path()).unwrap_err(),
    ] {
        assert!(matches!(e, DirError::Untrusted { .. }), "{e:?}");
        let m = error_chain(&e);
        assert_eq!(
            m,
            format!(
                "refusing plugins folder {0}: mode 0777 lets group or others write it (run: chmod go-w {0})",
                dir.path().display()
            )
        );
    }
    // Group-writable with a group others are in: refused. (Root can give
    // the folder a group that is nobody's private group; other users keep
    // their own group, which may well be private.)
    chmod(dir.path(), 0o775);
    if running_as_root() {
        std::os::unix::fs::chown(dir.path(), None, Some(12345)).unwrap();
        let e = load_named(dir.path(), &["quic"]).unwrap_err();
        assert!(error_chain(&e).contains("mode 0775"), "{e}");
        // The owner's private group (root's is root) may write: umask 002.
        std::os::unix::fs::chown(dir.path(), None, Some(0)).unwrap();
        assert!(load_named(dir.path(), &["quic"]).is_ok());
    }
    // Sticky /tmp-like folders are no better: anyone may add a file.
    chmod(dir.path(), 0o1777);
    assert!(load_named(dir.path(), &["quic"]).is_err());
    chmod(dir.path(), 0o755);
    assert!(
        load_named(dir.path(), &["quic"])
            .unwrap()
            .get("quic")
            .is_some()
    );
}

#[test]
fn a_writable_plugin_file_is_refused_and_never_opened() {
    let dir = plugin_folder();
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("constructor-ran");
    let file = dir.path().join(plugin_file_name("quic"));
    let have_cc = marker_library(&file, &marker).is_some();
    if !have_cc {
        // Still check the refusal with the real plugin.
        common::install("haifu-transport-quic", dir.path());
    }
    chmod(&file, 0o666);
    let set = load_named(dir.path(), &["quic", "multicast"]).unwrap();
    assert!(set.get("quic").is_none());
    assert!(set.get("multicast").is_some());
    let e = set.failure_of("quic").unwrap();
    assert!(matches!(e, LoadError::Untrusted { .. }), "{e:?}");
    assert_eq!(
        error_chain(e),
        format!(
            "{0}: refused: mode 0666 lets group or others write it (run: chmod go-w {0})",
            file.display()
        )
    );
    // The listing reports it with the reason instead of loading it.
    let listing = list_plugins(dir.path()).unwrap();
    let entry = listing.plugins.iter().find(|p| p.path == file).unwrap();
    assert_eq!(entry.status, "error");
    assert!(
        entry.error.as_deref().unwrap().contains("mode 0666"),
        "{entry:?}"
    );
    assert!(!marker.exists(), "a refused file was opened");

    chmod(&file, 0o620);
    if running_as_root() {
        std::os::unix::fs::chown(&file, None, Some(12345)).unwrap();
        assert!(
            load_named(dir.path(), &["quic"])
                .unwrap()
                .failure_of("quic")
                .is_some()
        );
    }
}

fn running_as_root() -> bool {
    let probe = tempfile::tempfile().unwrap();
    use std::os::unix::fs::MetadataExt;
    probe.metadata().unwrap().uid() == 0
}

#[test]
fn a_file_or_folder_owned_by_another_user_is_refused() {
    if !running_as_root() {
        eprintln!("needs root to give a file away: skipped");
        return;
    }
    let dir = plugin_folder();
    let file = dir.path().join(plugin_file_name("quic"));
    std::os::unix::fs::chown(&file, Some(12345), None).unwrap();
    let set = load_named(dir.path(), &["quic"]).unwrap();
    let e = error_chain(set.failure_of("quic").unwrap());
    assert!(
        e.ends_with("refused: owned by uid 12345, not by root or the current user (uid 0)"),
        "{e}"
    );
    std::os::unix::fs::chown(dir.path(), Some(12345), None).unwrap();
    let e = error_chain(&load_named(dir.path(), &["multicast"]).unwrap_err());
    assert!(e.contains("owned by uid 12345"), "{e}");
}

#[test]
fn links_are_followed_and_their_target_checked() {
    let dir = tempfile::tempdir().unwrap();
    let loose = tempfile::tempdir().unwrap();
    let safe = tempfile::tempdir().unwrap();
    let real = common::install("haifu-transport-quic", safe.path());
    std::os::unix::fs::symlink(&real, dir.path().join(plugin_file_name("quic"))).unwrap();
    let set = load_named(dir.path(), &["quic"]).unwrap();
    assert!(set.get("quic").is_some(), "{:?}", set.failed);

    let target = common::install("haifu-transport-multicast", loose.path());
    chmod(loose.path(), 0o777);
    std::os::unix::fs::symlink(&target, dir.path().join(plugin_file_name("multicast"))).unwrap();
    let set = load_named(dir.path(), &["multicast"]).unwrap();
    let e = error_chain(set.failure_of("multicast").unwrap());
    assert!(e.contains("refused: mode 0777"), "{e}");
    assert!(e.contains(&loose.path().display().to_string()), "{e}");
}

#[test]
fn a_plugin_under_another_plugins_file_name_is_refused_before_init() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::plugin_path("haifu-transport-multicast");
    let file: PathBuf = dir.path().join(plugin_file_name("quic"));
    fs::copy(src, &file).unwrap();
    let set = load_named(dir.path(), &["quic"]).unwrap();
    let e = set.failure_of("quic").unwrap();
    assert!(matches!(e, LoadError::NameMismatch { .. }), "{e:?}");
    assert!(
        error_chain(e)
            .ends_with("declares plugin name \"multicast\", but the file name is for \"quic\""),
        "{e}"
    );
}

#[test]
fn a_name_outside_the_rule_names_no_file() {
    let dir = plugin_folder();
    let set = load_named(dir.path(), &["../quic", "Quic", "", "quic/.."]).unwrap();
    assert!(set.loaded.is_empty() && set.failed.is_empty());
}
