//! The loader against a folder of good and bad plugin files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use haifu_plugin_host::{LoadError, error_chain, list_plugins, load_dir};

/// A system library that exists and does not export the entry symbol.
fn some_foreign_library() -> Option<std::path::PathBuf> {
    [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
        "/usr/lib/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists())
}

#[test]
fn bad_plugins_are_reported_and_good_ones_still_load() {
    let dir = tempfile::tempdir().unwrap();
    common::install("haifu-transport-multicast", dir.path());
    common::install("haifu-transport-quic", dir.path());
    common::install_as("haifu-testkit-bad-version", dir.path(), "bad_version");
    common::install_as("haifu-testkit-init-fails", dir.path(), "init-fails");
    common::install_as("haifu-testkit-init-panics", dir.path(), "init-panics");
    // Under their own names the test kit's libraries are not plugin files:
    // never opened.
    common::install("haifu-testkit-init-panics", dir.path());
    std::fs::write(
        dir.path().join("libhaifu_transport_notalib.so"),
        b"#!/bin/sh\necho not a library\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("README.txt"),
        b"ignored: not a library name",
    )
    .unwrap();
    let foreign = some_foreign_library();
    if let Some(f) = &foreign {
        std::fs::copy(f, dir.path().join("libhaifu_transport_foreign.so")).unwrap();
    }

    let set = load_dir(dir.path()).unwrap();
    let mut names: Vec<&str> = set.loaded.iter().map(|p| p.name()).collect();
    names.sort_unstable();
    assert_eq!(names, ["multicast", "quic"]);
    assert!(set.get("multicast").unwrap().info().shapes.datagram);
    assert!(set.get("quic").unwrap().info().shapes.stream);

    let msg = |file: &str| -> String {
        let e = set
            .failed
            .iter()
            .find(|e| e.path().file_name().unwrap() == file)
            .unwrap_or_else(|| panic!("no error for {file}"));
        error_chain(e)
    };
    let m = msg("libhaifu_transport_notalib.so");
    assert!(
        m.contains("libhaifu_transport_notalib.so: cannot load as a library"),
        "{m}"
    );
    assert!(
        m.contains("invalid ELF header") || m.contains("too short"),
        "{m}"
    );

    let m = msg("libhaifu_transport_bad_version.so");
    assert!(
        m.ends_with("libhaifu_transport_bad_version.so: plugin ABI 2, host ABI 1"),
        "{m}"
    );

    let m = msg("libhaifu_transport_init_fails.so");
    assert!(
        m.contains(
            "plugin \"init-fails\" failed to initialise: no usable network interface (test fixture)"
        ),
        "{m}"
    );

    let m = msg("libhaifu_transport_init_panics.so");
    assert!(
        m.contains("failed to initialise: plugin panicked: init blew up (test fixture)"),
        "{m}"
    );

    if foreign.is_some() {
        let m = msg("libhaifu_transport_foreign.so");
        assert!(m.contains("does not export haifu_transport_entry"), "{m}");
        assert!(m.contains("undefined symbol"), "{m}");
    }
    let expected_failures = if foreign.is_some() { 5 } else { 4 };
    assert_eq!(set.failed.len(), expected_failures);
}

#[test]
fn listing_is_json_and_a_table() {
    let dir = tempfile::tempdir().unwrap();
    common::install("haifu-transport-multicast", dir.path());
    common::install_as("haifu-testkit-bad-version", dir.path(), "bad_version");
    let listing = list_plugins(dir.path()).unwrap();
    assert!(listing.has_errors());
    let json = serde_json::to_value(&listing).unwrap();
    let plugins = json["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 2);
    let bad = plugins.iter().find(|p| p["status"] == "error").unwrap();
    assert_eq!(bad["abi_version"], 2);
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("plugin ABI 2, host ABI 1")
    );
    let good = plugins.iter().find(|p| p["status"] == "ok").unwrap();
    assert_eq!(good["name"], "multicast");
    assert_eq!(good["shapes"], serde_json::json!(["datagram"]));
    let table = listing.to_table();
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("multicast"), "{table}");
    assert!(table.contains("plugin ABI 2, host ABI 1"), "{table}");
}

#[test]
fn missing_folder_is_an_error_naming_it() {
    let e = load_dir(std::path::Path::new("/nonexistent/haifu-plugins")).unwrap_err();
    assert!(
        error_chain(&e).contains("/nonexistent/haifu-plugins"),
        "{e}"
    );
}

#[test]
fn missing_file_is_a_stat_error() {
    let e = haifu_plugin_host::load(std::path::Path::new("/nonexistent/libx.so")).unwrap_err();
    assert!(matches!(e, LoadError::Stat { .. }), "{e:?}");
    assert!(
        error_chain(&e).contains("No such file"),
        "{}",
        error_chain(&e)
    );
}

#[test]
fn only_files_named_by_the_rule_are_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::install("haifu-transport-multicast", dir.path());
    // A copy under another name is not a plugin file: not even opened.
    std::fs::copy(&a, dir.path().join("libzz_copy.so")).unwrap();
    std::fs::copy(&a, dir.path().join("libhaifu_transport_Bad-Name.so")).unwrap();
    let set = load_dir(dir.path()).unwrap();
    assert_eq!(set.loaded.len(), 1);
    assert!(set.failed.is_empty(), "{:?}", set.failed);
    assert_eq!(
        haifu_plugin_host::plugin_name_of_file("libhaifu_transport_init_fails.so"),
        Some("init_fails")
    );
    assert_eq!(
        haifu_plugin_host::plugin_name_of_file("libzz_copy.so"),
        None
    );
}

/// The raw ABI from C: the header and the example in the ABI crate build
/// into a plugin the loader accepts. Skipped when no C compiler exists.
#[test]
fn a_plugin_written_in_c_loads() {
    let abi = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/abi");
    let dir = tempfile::tempdir().unwrap();
    // Named by the rule, so it is also a plugin of a folder.
    let out = dir
        .path()
        .join(haifu_plugin_host::plugin_file_name("cdemo"));
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-I"])
        .arg(abi.join("include"))
        .arg("-o")
        .arg(&out)
        .arg(abi.join("examples/cdemo.c"))
        .status();
    let Ok(status) = status else {
        eprintln!("no C compiler: skipped");
        return;
    };
    assert!(status.success());
    let p = haifu_plugin_host::load(&out).unwrap();
    assert_eq!(p.name(), "cdemo");
    assert!(p.info().shapes.datagram && !p.info().shapes.stream);
    let e = p.open_group("").unwrap_err();
    assert_eq!(e.kind, haifu_plugin_host::ErrorKind::Io);
    assert_eq!(e.message, "no groups here");
    let listing = list_plugins(dir.path()).unwrap();
    assert_eq!(listing.plugins.len(), 1);
    assert_eq!(listing.plugins[0].name.as_deref(), Some("cdemo"));
    assert_eq!(listing.plugins[0].status, "ok");
}

/// ABI 1 grows only by appended fields: a plugin built against the header
/// as first released (a smaller `struct_size`) still loads, and its
/// missing fields read as absent; a table smaller than that is refused.
#[test]
fn a_table_from_before_the_appended_fields_loads() {
    let abi = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/abi");
    let dir = tempfile::tempdir().unwrap();
    let build = |size: &str, file: &str| {
        let src = dir.path().join(format!("{file}.c"));
        std::fs::write(
            &src,
            format!(
                "#include <stddef.h>\n#include \"haifu_transport.h\"\n\
                 static int inst;\n\
                 static HaifuStatus i(const uint8_t *c, size_t n, HaifuHandle *o, HaifuErrorBuf *e) {{\n\
                   (void)c; (void)n; (void)e; *o = &inst; return HAIFU_OK; }}\n\
                 static void s(HaifuHandle p) {{ (void)p; }}\n\
                 static HaifuStatus op(HaifuHandle p, const uint8_t *c, size_t n, HaifuHandle *o, HaifuErrorBuf *e) {{\n\
                   (void)p; (void)c; (void)n; (void)o; (void)e; return HAIFU_IO; }}\n\
                 static HaifuStatus sd(HaifuHandle g, const uint8_t *d, size_t n, HaifuErrorBuf *e) {{\n\
                   (void)g; (void)d; (void)n; (void)e; return HAIFU_IO; }}\n\
                 static HaifuStatus rv(HaifuHandle g, uint8_t *b, size_t c, size_t *l, uint64_t t, HaifuErrorBuf *e) {{\n\
                   (void)g; (void)b; (void)c; (void)l; (void)t; (void)e; return HAIFU_IO; }}\n\
                 static void cl(HaifuHandle g) {{ (void)g; }}\n\
                 static const HaifuPluginVTable t = {{ .abi_version = HAIFU_ABI_VERSION,\n\
                   .struct_size = {size}, .name = {{(const uint8_t *)\"old\", 3}},\n\
                   .version = {{(const uint8_t *)\"0.1.0\", 5}}, .shapes = HAIFU_SHAPE_DATAGRAM,\n\
                   .init = i, .shutdown = s, .group_open = op, .group_send = sd,\n\
                   .group_recv = rv, .group_close = cl }};\n\
                 const HaifuPluginVTable *haifu_transport_entry(void) {{ return &t; }}\n"
            ),
        )
        .unwrap();
        let out = dir.path().join(format!("lib{file}.so"));
        let status = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-Wall", "-Werror", "-I"])
            .arg(abi.join("include"))
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status();
        match status {
            Ok(s) => {
                assert!(s.success());
                Some(out)
            }
            Err(_) => None,
        }
    };
    let Some(old) = build("offsetof(HaifuPluginVTable, conn_peer_role)", "old") else {
        eprintln!("no C compiler: skipped");
        return;
    };
    let p = haifu_plugin_host::load(&old).unwrap();
    assert_eq!(p.name(), "old");
    let short = build("offsetof(HaifuPluginVTable, conn_close)", "short").unwrap();
    let e = haifu_plugin_host::load(&short).unwrap_err();
    assert!(matches!(e, LoadError::TableTooSmall { .. }), "{e}");
}
