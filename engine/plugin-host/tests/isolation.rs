//! Plugins that crash, abort, exit or hang while loading are probed in a
//! child process first: each is reported with its file and fault, within
//! the time limit, and the good plugins beside them load.
//!
//! This test is its own probe program (`harness = false`): run as
//! `isolation probe FILE` it answers like `haifu plugins probe FILE`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use haifu_plugin_host::probe::{
    InventoryEntry, NotLoadable, Prober, inventory_except, serve, set_prober,
};
use haifu_plugin_host::{LoadError, error_chain, list_plugins, load_dir, load_named};

/// A C plugin whose `init` runs `body`, built into `dir` as plugin `name`;
/// `None` without a C compiler.
fn c_plugin(dir: &Path, name: &str, body: &str, ctor: &str) -> Option<()> {
    let abi = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/abi");
    let src = dir.join(format!("{name}.c"));
    std::fs::write(
        &src,
        format!(
            "#include <signal.h>\n#include <stdlib.h>\n#include <unistd.h>\n\
             #include \"haifu_transport.h\"\n\
             static int inst;\n\
             __attribute__((constructor)) static void ctor(void) {{ {ctor} }}\n\
             static HaifuStatus i(const uint8_t *c, size_t n, HaifuHandle *o, HaifuErrorBuf *e) {{\n\
               (void)c; (void)n; (void)e; {body} *o = &inst; return HAIFU_OK; }}\n\
             static void s(HaifuHandle p) {{ (void)p; }}\n\
             static HaifuStatus op(HaifuHandle p, const uint8_t *c, size_t n, HaifuHandle *o, HaifuErrorBuf *e) {{\n\
               (void)p; (void)c; (void)n; (void)o; (void)e; return HAIFU_IO; }}\n\
             static HaifuStatus sd(HaifuHandle g, const uint8_t *d, size_t n, HaifuErrorBuf *e) {{\n\
               (void)g; (void)d; (void)n; (void)e; return HAIFU_IO; }}\n\
             static HaifuStatus rv(HaifuHandle g, uint8_t *b, size_t c, size_t *l, uint64_t t, HaifuErrorBuf *e) {{\n\
               (void)g; (void)b; (void)c; (void)l; (void)t; (void)e; return HAIFU_IO; }}\n\
             static void cl(HaifuHandle g) {{ (void)g; }}\n\
             static const HaifuPluginVTable t = {{ .abi_version = HAIFU_ABI_VERSION,\n\
               .struct_size = sizeof(HaifuPluginVTable), .name = {{(const uint8_t *)\"{name}\", {len}}},\n\
               .version = {{(const uint8_t *)\"0.1.0\", 5}}, .shapes = HAIFU_SHAPE_DATAGRAM,\n\
               .init = i, .shutdown = s, .group_open = op, .group_send = sd,\n\
               .group_recv = rv, .group_close = cl }};\n\
             const HaifuPluginVTable *haifu_transport_entry(void) {{ return &t; }}\n",
            len = name.len()
        ),
    )
    .unwrap();
    let out = dir.join(haifu_plugin_host::plugin_file_name(name));
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-I"])
        .arg(abi.join("include"))
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .ok()?;
    assert!(status.success(), "cc failed for {name}");
    std::fs::remove_file(&src).unwrap();
    Some(())
}

fn a_folder_of_crashing_plugins_lists_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::install("haifu-transport-multicast", d);
    common::install("haifu-transport-quic", d);
    if c_plugin(d, "segv", "*(volatile int *)0 = 1;", "").is_none() {
        eprintln!("no C compiler: skipped");
        return;
    }
    c_plugin(d, "aborts", "abort();", "").unwrap();
    c_plugin(d, "exits", "_exit(3);", "").unwrap();
    c_plugin(d, "hangs", "for (;;) pause();", "").unwrap();
    c_plugin(d, "ctor", "", "*(volatile int *)0 = 1;").unwrap();
    c_plugin(d, "fine", "", "").unwrap();

    let t = Instant::now();
    let set = load_dir(d).unwrap();
    let took = t.elapsed();
    let mut names: Vec<&str> = set.loaded.iter().map(|p| p.name()).collect();
    names.sort_unstable();
    assert_eq!(names, ["fine", "multicast", "quic"]);
    // The probes run side by side: one time limit for all, not one each.
    assert!(took < Duration::from_secs(4), "took {took:?}");

    let fault = |name: &str| {
        let e = set
            .failure_of(name)
            .unwrap_or_else(|| panic!("no error for {name}"));
        assert!(matches!(e, LoadError::Probe { .. }), "{e:?}");
        error_chain(e)
    };
    let file = |name: &str| d.join(haifu_plugin_host::plugin_file_name(name));
    assert_eq!(
        fault("segv"),
        format!("{}: killed by SIGSEGV in init", file("segv").display())
    );
    assert_eq!(
        fault("aborts"),
        format!("{}: killed by SIGABRT in init", file("aborts").display())
    );
    assert_eq!(
        fault("exits"),
        format!("{}: exited with status 3 in init", file("exits").display())
    );
    assert_eq!(
        fault("hangs"),
        format!(
            "{}: no answer in 2 s in init (killed)",
            file("hangs").display()
        )
    );
    assert_eq!(
        fault("ctor"),
        format!(
            "{}: killed by SIGSEGV in dlopen (the library's constructors)",
            file("ctor").display()
        )
    );
    assert_eq!(set.failed.len(), 5);

    // A daemon loads only what it names; a bad one it names is an error,
    // the good one beside it loads.
    let set = load_named(d, &["quic", "segv"]).unwrap();
    assert!(set.get("quic").is_some());
    assert!(set.failure_of("segv").is_some());

    // The listing names each bad file with its fault.
    let table = list_plugins(d).unwrap().to_table();
    assert!(table.contains("killed by SIGABRT in init"), "{table}");
    assert!(table.contains("no answer in 2 s in init"), "{table}");
}

/// A daemon's check of its folder: the plugins it runs are not probed
/// again, and a folder of many files costs at most `most` probes.
fn a_daemons_folder_check_skips_what_it_runs_and_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::install("haifu-transport-multicast", d);
    for n in ["junka", "junkb", "junkc"] {
        let file = d.join(haifu_plugin_host::plugin_file_name(n));
        std::fs::write(&file, b"not a library").unwrap();
    }
    // Reported as the daemon says, which a probe would never say: the
    // file was not probed.
    let running = InventoryEntry {
        name: "multicast".into(),
        state: Err(NotLoadable("in use, as the daemon loaded it".into())),
    };
    let found = inventory_except(d, std::slice::from_ref(&running), 2).unwrap();
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0].name, "multicast");
    assert_eq!(
        found[0].state.as_ref().unwrap_err().0,
        "in use, as the daemon loaded it"
    );
    let probed: Vec<&str> = found[1..].iter().map(|e| e.name.as_str()).collect();
    assert_eq!(probed, ["junka", "junkb"], "name order, at most 2");
    assert!(found[1..].iter().all(|e| e.state.is_err()), "{found:?}");
}

fn a_probe_that_cannot_start_is_named() {
    let p = Prober::new("/nonexistent/haifu", ["plugins", "probe"]);
    let e = p.probe(Path::new("/tmp/x.so")).unwrap_err();
    assert!(
        error_chain(&e).starts_with("cannot run the plugin probe /nonexistent/haifu: "),
        "{}",
        error_chain(&e)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("probe") {
        let file = args.get(2).expect("probe FILE");
        std::process::exit(serve(Path::new(file), &mut std::io::stdout().lock()));
    }
    let me = std::env::current_exe().unwrap();
    assert!(set_prober(
        Prober::new(me, ["probe"]).with_timeout(Duration::from_secs(2))
    ));
    a_probe_that_cannot_start_is_named();
    println!("test a_probe_that_cannot_start_is_named ... ok");
    a_folder_of_crashing_plugins_lists_the_good_ones();
    println!("test a_folder_of_crashing_plugins_lists_the_good_ones ... ok");
    a_daemons_folder_check_skips_what_it_runs_and_is_bounded();
    println!("test a_daemons_folder_check_skips_what_it_runs_and_is_bounded ... ok");
}
