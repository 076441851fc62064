//! `haifu plugins` against folders of good and bad plugins, through the
//! real binary: the probe child, and the conformance checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fleet::{Fleet, Layout, http_get};

/// Builds the C source `src` into `dir` as plugin `name`, linking `libs`;
/// `None` without a C compiler.
fn cc(dir: &Path, name: &str, src: &Path, libs: &[&str]) -> Option<std::path::PathBuf> {
    let abi = common::repo().join("plugins/abi");
    let out = dir.join(haifu_plugin_host::plugin_file_name(name));
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-O1", "-I"])
        .arg(abi.join("include"))
        .arg("-o")
        .arg(&out)
        .arg(src)
        .args(libs)
        .status()
        .ok()?;
    assert!(status.success(), "cc failed for {}", src.display());
    Some(out)
}

/// A plugin whose `init` runs `body`.
fn c_plugin(dir: &Path, name: &str, body: &str) -> Option<std::path::PathBuf> {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(
        &src,
        format!(
            "#include <stdlib.h>\n#include <unistd.h>\n#include \"haifu_transport.h\"\n\
             static int inst;\n\
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
    let out = cc(dir, name, &src, &[]);
    std::fs::remove_file(&src).unwrap();
    out
}

#[test]
fn a_crashing_aborting_and_hanging_plugin_are_named_and_the_others_listed() {
    let home = tempfile::tempdir().unwrap();
    let dir = common::fleet::plugin_dir(home.path());
    if c_plugin(&dir, "segv", "*(volatile int *)0 = 1;").is_none() {
        eprintln!("no C compiler: skipped");
        return;
    }
    c_plugin(&dir, "aborts", "abort();").unwrap();
    c_plugin(&dir, "hangs", "for (;;) pause();").unwrap();
    let t = Instant::now();
    let out = common::haifu(home.path())
        .args(["plugins", "--plugins"])
        .arg(&dir)
        .env("HAIFU_PLUGIN_PROBE_TIMEOUT_MS", "1500")
        .output()
        .unwrap();
    let took = t.elapsed();
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let line = |needle: &str| {
        table
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}:\n{table}"))
            .to_owned()
    };
    assert!(line("libhaifu_transport_segv.so").ends_with(": killed by SIGSEGV in init"));
    assert!(line("libhaifu_transport_aborts.so").ends_with(": killed by SIGABRT in init"));
    assert!(line("libhaifu_transport_hangs.so").ends_with(": no answer in 1.5 s in init (killed)"));
    assert!(line("quic ").contains("stream"), "{table}");
    assert!(line("tls ").contains("stream"), "{table}");
    assert!(line("multicast ").contains("datagram"), "{table}");
}

/// `haifu plugins check FILE [--config …]`: its output and exit status.
fn check(home: &Path, file: &Path, config: &[&str]) -> (bool, String) {
    let mut c = common::haifu(home);
    c.args(["plugins", "check"]).arg(file);
    for pair in config {
        c.args(["--config", pair]);
    }
    let out = c.output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const UNICAST: [&str; 2] = [
    "bind=127.0.0.1:{port}",
    "peers=127.0.0.1:{port_a},127.0.0.1:{port_b}",
];

#[test]
fn the_c_starter_passes_the_checks_and_a_plugin_that_breaks_a_rule_fails() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("p");
    std::fs::create_dir(&dir).unwrap();
    let starter = common::repo().join("plugins/starters/c/udp_peers.c");
    let Some(good) = cc(&dir, "udp_peers", &starter, &["-lpthread"]) else {
        eprintln!("no C compiler: skipped");
        return;
    };
    let (ok, text) = check(home.path(), &good, &UNICAST);
    assert!(ok, "{text}");
    assert!(text.contains("ok    datagram.buffer_too_small"), "{text}");
    // The starter offers no batched calls: those two rules are skipped.
    assert!(text.contains("skip  datagram.send_batch"), "{text}");
    assert!(
        text.ends_with("12 rules: 10 passed, 2 skipped, 0 failed\n"),
        "{text}"
    );

    // The same plugin, but it truncates into a too-small buffer and says OK.
    let source = std::fs::read_to_string(&starter).unwrap();
    let breaking = source.replace(
        "if ((size_t)n > cap) {",
        "if ((size_t)n > cap) { n = (ssize_t)cap; } if (0) {",
    );
    assert_ne!(source, breaking);
    let src = dir.join("truncates.c");
    std::fs::write(&src, breaking).unwrap();
    let bad = cc(&dir, "truncates", &src, &["-lpthread"]).unwrap();
    let (ok, text) = check(home.path(), &bad, &UNICAST);
    assert!(!ok, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("datagram.buffer_too_small"))
        .unwrap();
    assert!(
        line.starts_with("FAIL") && line.contains("expected BufferTooSmall, got success"),
        "{line}"
    );
    assert!(text.ends_with("1 failed\n"), "{text}");

    // Without peers a member only receives: the round trip fails, saying so.
    let (ok, text) = check(home.path(), &good, &UNICAST[..1]);
    assert!(!ok);
    assert!(text.contains("no peers configured"), "{text}");
}

#[test]
fn the_first_party_plugins_pass_the_checks() {
    let home = tempfile::tempdir().unwrap();
    let dir = common::fleet::plugin_dir(home.path());
    for name in ["multicast", "quic", "tls"] {
        let file = dir.join(haifu_plugin_host::plugin_file_name(name));
        let (ok, text) = check(home.path(), &file, &[]);
        assert!(ok, "{text}");
        assert!(!text.contains("FAIL"), "{text}");
    }
    // JSON: one object per rule.
    let out = common::haifu(home.path())
        .args(["plugins", "check", "--json"])
        .arg(dir.join(haifu_plugin_host::plugin_file_name("quic")))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules = v.as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["name"] == "stream.close_during_recv" && r["passed"] == true)
    );
}

/// A third plugin chosen by name in the daemons' configs carries a round:
/// the relay broadcasts through the C starter (UDP unicast to its client)
/// with the operator's `peers` from its `transports.config` section, the
/// client receives through it, and the audit has the client delivered.
///
/// The master holds each run to its workflow's `transports:` (the relay
/// and the client name their broadcast plugin, feature `transport-names`):
/// a workflow that says `broadcast: multicast` leaves this relay out with
/// an error at the workflow's position, and one whose `unicast` is not the
/// master's control transport fails, `haifu run --live` with it.
#[test]
fn a_daemon_configured_with_the_c_starter_carries_a_round() {
    let mut f = Fleet::with(
        3,
        &Layout {
            relays: &[("relay-a", &["c1"])],
            relay: "transports:\n  broadcast: udp-peers\n  config:\n    udp-peers: { peers: '127.0.0.1' }\n",
            client: "transports: { broadcast: udp-peers }\n",
            ..Layout::default()
        },
    );
    let starter = common::repo().join("plugins/starters/c/udp_peers.c");
    if cc(&f.plugins, "udp_peers", &starter, &["-lpthread"]).is_none() {
        eprintln!("no C compiler: skipped");
        return;
    }
    let artifact = f.artifact("app-1.bin", 1 << 20, 9);
    // Three workflows of one shape: the plugins named differ.
    let workflow = |name: &str, version: &str, broadcast: &str, unicast: &str| {
        f.workflow(name, "app-1.bin", version, &["relay-a"], 1, 1, "100Mbit/s");
        let path = f.path(&format!("{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "transports: {broadcast: multicast, unicast: quic}",
            &format!("transports: {{broadcast: {broadcast}, unicast: {unicast}}}"),
        );
        std::fs::write(&path, &text).unwrap();
        // FILE:LINE:COLUMN of each transport's value.
        let (n, line) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.starts_with("transports:"))
            .unwrap();
        let at = |v: &str| {
            let key = format!("{v}: ");
            let col = line.find(&key).unwrap() + key.len() + 1;
            format!("{name}.yaml:{}:{col}", n + 1)
        };
        (at("broadcast"), at("unicast"))
    };
    let (wrong_at, _) = workflow("wrong", "0.9.0", "multicast", "quic");
    workflow("one", "1.0.0", "udp-peers", "quic");
    let (_, control_at) = workflow("control", "1.0.1", "udp-peers", "tls");

    f.start_master_and_relays();
    f.start_clients(&["c1"]);

    // The relay broadcasts with udp-peers, the workflow says multicast:
    // left out, in the master's log and the relay's, at the position.
    let out = f.haifu_ok(&["run", "wrong.yaml", "--live", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["undelivered"], 1, "{report:#}\n{}", f.dump());
    let why = format!(
        "{wrong_at}: transports.broadcast is \"multicast\" but relay \"relay-a\" broadcasts with \"udp-peers\": left out of this run"
    );
    assert!(f.log("master").contains(&why), "want {why}\n{}", f.dump());
    f.wait_log("relay-a", &why, 1, 10);
    assert!(!f.path("c1-root/current/artifact").exists());

    // Held to the right plugin, the same relay carries the round.
    let out = f.haifu_ok(&["run", "one.yaml", "--live", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "done", "{report:#}\n{}", f.dump());
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    assert_eq!(
        std::fs::read(f.path("c1-root/current/artifact")).unwrap(),
        std::fs::read(&artifact).unwrap()
    );
    assert!(f.log("relay-a").contains("udp-peers"), "{}", f.dump());

    // A control transport the master does not speak: the run is marked
    // failed and `haifu run --live` ends non-zero with the position.
    let out = f
        .haifu()
        .args(["run", "control.yaml", "--live"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}\n{}", f.dump());
    let why = format!(
        "{control_at}: transports.unicast is \"tls\" but this master's control transport is \"quic\""
    );
    assert!(err.contains(&why), "want {why}\n{err}");
    assert!(err.contains("failed"), "{err}");
    let runs = f.json(&["status", "--json"]);
    let failed: Vec<&serde_json::Value> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{runs:#}");
    let id = failed[0]["id"].to_string();
    let detail = f.json(&["status", &id, "--json"]);
    assert!(
        detail["failure"].as_str().unwrap().contains(&why),
        "{detail:#}"
    );
}

/// `haifu check` resolves a workflow's transports against the plugins the
/// daemons would load: an unknown name, a typo and a plugin of the wrong
/// shape each fail at their position; the shipped names pass.
#[test]
fn a_workflow_naming_an_unknown_transport_fails_check_at_its_position() {
    let home = tempfile::tempdir().unwrap();
    let dir = common::fleet::plugin_dir(home.path());
    let wf = common::repo().join("workflows/urgent-security-fix.yaml");
    let text = std::fs::read_to_string(&wf).unwrap();
    let (line_no, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("broadcast: multicast"))
        .unwrap();
    let column = line.find("multicast").unwrap() + 1;
    let run = |replacement: &str| {
        // Beside the original, so its relative paths still resolve.
        let copy = wf.with_file_name(format!(".transports-test-{}.yaml", std::process::id()));
        std::fs::write(&copy, text.replace("broadcast: multicast", replacement)).unwrap();
        let out = common::haifu(home.path())
            .args(["check", "--plugins"])
            .arg(&dir)
            .arg(&copy)
            .output()
            .unwrap();
        std::fs::remove_file(&copy).unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        (out.status.code(), err, copy)
    };
    let (code, err, copy) = run("broadcast: no-such-plugin");
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "{}:{}:{column}: transports.broadcast: no transport plugin \"no-such-plugin\" in {} (it holds multicast, quic, tls)",
        copy.display(),
        line_no + 1,
        dir.display()
    );
    assert!(err.contains(&want), "{err}\nwant {want}");
    let (code, err, _) = run("broadcast: multicst");
    assert_eq!(code, Some(1));
    assert!(err.contains("(did you mean \"multicast\"?)"), "{err}");
    let (code, err, _) = run("broadcast: quic");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("transports.broadcast: plugin \"quic\" offers peer streams, not the datagram groups this transport needs"),
        "{err}"
    );
    let (code, err, _) = run("broadcast: multicast");
    assert_eq!(code, Some(0), "{err}");
}

/// A daemon refuses to start, in one line naming the file and its fault,
/// when a plugin it needs crashes at load; a crashing plugin it does not
/// name is never loaded into it, the daemon starts, and its metrics count
/// the plugin as one that does not load.
#[test]
fn a_daemon_refuses_to_start_only_when_a_plugin_it_needs_is_bad() {
    let mut f = Fleet::with(
        4,
        &Layout {
            relays: &[("relay-a", &[])],
            ..Layout::default()
        },
    );
    if c_plugin(&f.plugins, "segv", "*(volatile int *)0 = 1;").is_none() {
        eprintln!("no C compiler: skipped");
        return;
    }
    let yaml = f.path("relay-a.yaml");
    let good = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, format!("{good}transports: {{broadcast: segv}}\n")).unwrap();
    let mut child = f
        .haifu()
        .args(["relay", "--config", "relay-a.yaml"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the relay did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err.lines().last().unwrap();
    assert!(
        line.starts_with("haifu: error: transports.broadcast plugin \"segv\": ")
            && line.ends_with("libhaifu_transport_segv.so: killed by SIGSEGV in init"),
        "{err}"
    );
    // Not named: never opened in the relay's process, and the relay runs;
    // its check of the folder (each file probed in a child) names it in
    // the log and in the relay's metrics.
    std::fs::write(&yaml, format!("{good}metrics: 127.0.0.1:0\n")).unwrap();
    f.start_master_and_relays();
    let mut addr = None;
    f.wait_for(60, "the relay's metrics listener", || {
        addr = f.log("relay-a").lines().find_map(|l| {
            let at = l.find("metrics serving listen=")?;
            let rest = &l[at + "metrics serving listen=".len()..];
            Some(rest.split_whitespace().next()?.to_owned())
        });
        addr.is_some()
    });
    let addr = addr.unwrap();
    let mut body = String::new();
    f.wait_for(60, "the segv plugin in the relay's metrics", || {
        body = http_get(&addr, "", "/metrics").1;
        body.contains("haifu_plugin_load_failures{plugin=\"segv\"} 1")
    });
    assert!(body.contains("haifu_plugins_found "), "{body}");
    let log = f.log("relay-a");
    assert!(
        log.contains("a plugin in the folder does not load") && log.contains("killed by SIGSEGV"),
        "{log}"
    );
}

/// The control links over the TCP+TLS plugin: master, relay and client
/// configured with `transports: { control: tls }` carry a round end to end
/// (the fleet CA, identities and roles as over QUIC).
#[test]
fn a_round_with_the_control_links_over_tcp_and_tls() {
    let tls = "transports: { control: tls }\n";
    let mut f = Fleet::with(
        2,
        &Layout {
            master: tls,
            relays: &[("relay-a", &["c1", "c2"])],
            relay: tls,
            client: tls,
            ..Layout::default()
        },
    );
    let artifact = f.artifact("app-1.bin", 1 << 20, 11);
    f.workflow("one", "app-1.bin", "1.0.0", &["relay-a"], 2, 1, "100Mbit/s");
    // The workflow's unicast must be the master's control transport.
    let workflow = std::fs::read_to_string(f.path("one.yaml")).unwrap();
    std::fs::write(
        f.path("one.yaml"),
        workflow.replace("unicast: quic", "unicast: tls"),
    )
    .unwrap();
    f.start_master_and_relays();
    f.start_clients(&["c1", "c2"]);
    let out = f.haifu_ok(&["run", "one.yaml", "--live", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "done", "{report:#}\n{}", f.dump());
    assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    for id in ["c1", "c2"] {
        assert_eq!(
            std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap(),
            std::fs::read(&artifact).unwrap()
        );
    }
    assert!(
        f.log("relay-a").contains("control=tls"),
        "{}",
        f.log("relay-a")
    );
}
