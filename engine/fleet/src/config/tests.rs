//! Loading config files: places in errors, defaults, checks, and the
//! shipped examples.

use std::path::{Path, PathBuf};

use super::*;

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.yaml");
    std::fs::write(&p, text).unwrap();
    (d, p)
}

#[test]
fn errors_name_file_line_and_column() {
    let (_d, p) = write("home: h\nlisten: 127.0.0.1:7400\nlisen: 1\n");
    let e = load::<MasterConfig>(&p).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:3:", p.display())), "{e}");
    assert!(e.contains("unknown field `lisen`"), "{e}");
    assert!(!e.contains('\n'), "{e}");

    let (_d, p) = write("home: h\nlisten: nowhere\n");
    let e = load::<MasterConfig>(&p).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:2:", p.display())), "{e}");
}

#[test]
fn transports_are_named_with_sections_for_the_plugins_in_use() {
    let base = "home: h\nlisten: 127.0.0.1:7400\n";
    let (_d, p) = write(base);
    let t = load::<MasterConfig>(&p).unwrap().transports;
    assert_eq!(
        (t.control.as_str(), t.broadcast.as_str()),
        ("quic", "multicast")
    );
    let (_d, p) = write(&format!(
        "{base}transports: {{broadcast: udp-peers, config: {{udp-peers: {{peers: '10.0.0.5', ttl: 3, join: true}}}}}}\n"
    ));
    let t = load::<MasterConfig>(&p).unwrap().transports;
    assert_eq!(
        t.section("udp-peers"),
        [
            ("join".into(), "true".into()),
            ("peers".into(), "10.0.0.5".into()),
            ("ttl".into(), "3".into())
        ]
    );
    let (_d, p) = write(&format!(
        "{base}transports: {{config: {{udp-peer: {{peers: x}}}}}}\n"
    ));
    let e = load::<MasterConfig>(&p).unwrap_err().to_string();
    assert!(
        e.contains(
            "transports.config.udp-peer: no transport of this daemon uses plugin \"udp-peer\""
        ),
        "{e}"
    );
    let (_d, p) = write(&format!("{base}transports: {{control: ../quic}}\n"));
    let e = load::<MasterConfig>(&p).unwrap_err().to_string();
    assert!(
        e.contains("transports.control \"../quic\" is not a plugin name"),
        "{e}"
    );
    let (_d, p) = write(&format!("{base}transports: {{contrl: quic}}\n"));
    let e = load::<MasterConfig>(&p).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:3:", p.display())) && e.contains("contrl"),
        "{e}"
    );
}

#[test]
fn api_limits_default_and_are_checked() {
    let (_d, p) = write("home: h\nlisten: 127.0.0.1:7400\napi: 127.0.0.1:7480\n");
    assert_eq!(
        load::<MasterConfig>(&p).unwrap().api_limits,
        ApiLimits::default()
    );
    let (_d, p) = write(
        "home: h\nlisten: 127.0.0.1:7400\napi_limits: {max_connections: 64, header_timeout_secs: 2}\n",
    );
    let l = load::<MasterConfig>(&p).unwrap().api_limits;
    assert_eq!((l.max_connections, l.header_timeout_secs), (64, 2));
    assert_eq!(l.request_timeout_secs, 30, "the others keep their defaults");
    let (_d, p) = write("home: h\nlisten: 127.0.0.1:7400\napi_limits: {max_connections: 0}\n");
    let e = load::<MasterConfig>(&p).unwrap_err().to_string();
    assert!(e.contains("api_limits.max_connections 0"), "{e}");
}

#[test]
fn relative_paths_follow_the_file_and_values_are_checked() {
    let (d, p) = write(
        "name: relay-a\nmaster: {address: '127.0.0.1:7400', name: master}\n\
         listen: 127.0.0.1:7401\ntls: {ca: ca.pem, cert: r.pem, key: r.key}\n\
         multicast: {group: '239.255.91.7:7500', interface: 127.0.0.1}\ndata: cache\n",
    );
    let c = load::<RelayConfig>(&p).unwrap();
    assert_eq!(c.data, d.path().join("cache"));
    assert_eq!(c.tls.ca, d.path().join("ca.pem"));

    let (_d, p) = write(
        "name: relay-a\nmaster: {address: '127.0.0.1:7400', name: master}\n\
         listen: 127.0.0.1:7401\ntls: {ca: ca.pem, cert: r.pem, key: r.key}\n\
         multicast: {group: '10.0.0.1:7500'}\ndata: cache\n",
    );
    let e = load::<RelayConfig>(&p).unwrap_err().to_string();
    assert!(
        e.contains("10.0.0.1:7500 is not a multicast address"),
        "{e}"
    );

    let (_d, p) = write(
        "name: relay-a\nmaster: {address: '127.0.0.1:7400', name: master}\n\
         listen: 127.0.0.1:7401\ntls: {ca: ca.pem, cert: r.pem, key: r.key}\n\
         multicast: {group: '239.255.91.7:7500', mtu: 9}\ndata: cache\n",
    );
    let e = load::<RelayConfig>(&p).unwrap_err().to_string();
    assert!(e.contains("multicast.mtu 9 is not an MTU"), "{e}");
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/fleet")
        .join(name)
}

#[test]
fn the_shipped_example_configs_load() {
    let m = load::<MasterConfig>(&example("master.yaml")).unwrap();
    assert_eq!(m.name, "master");
    let r = load::<RelayConfig>(&example("relay-east.yaml")).unwrap();
    assert_eq!(r.name, "store-east");
    let c = load::<ClientConfig>(&example("pos-0001.yaml")).unwrap();
    assert_eq!(c.artifact, "pos-app");
    assert!(c.post_install.is_some());
}

#[test]
fn client_labels_are_read_and_each_bad_one_is_one_line_at_its_place() {
    let base = "id: pos-1\nartifact: pos-app\nrelay: {address: '127.0.0.1:7401', name: r1}\n\
                tls: {ca: ca.pem, cert: c.pem, key: c.key}\nmaster_key: m.pub\ninstall_root: i\n";
    let (_d, p) = write(&format!(
        "{base}labels:\n  site: store-12\n  ring: canary\n"
    ));
    let c = load::<ClientConfig>(&p).unwrap();
    assert_eq!(c.labels.len(), 2);
    assert_eq!(c.labels["ring"], "canary");
    let (_d, p) = write(base);
    assert!(
        load::<ClientConfig>(&p).unwrap().labels.is_empty(),
        "none by default"
    );

    let err = |extra: &str| {
        let (_d, p) = write(&format!("{base}{extra}"));
        let e = load::<ClientConfig>(&p).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        e.replace(&p.display().to_string(), "FILE")
    };
    let e = err("labels:\n  site: store-12\n  ring: 'two words'\n");
    assert!(
        e.starts_with("FILE:9:9: labels.ring: label value \"two words\" must be"),
        "{e}"
    );
    let e = err("labels:\n  Ring: canary\n");
    assert!(
        e.starts_with("FILE:8:3: labels: label key \"Ring\" must be"),
        "{e}"
    );
    let e = err(&format!("labels:\n  ring: {}\n", "x".repeat(64)));
    assert!(e.starts_with("FILE:8:9: labels.ring: label value"), "{e}");
    let many: String = (0..17).map(|i| format!("  k{i}: v\n")).collect();
    let e = err(&format!("labels:\n{many}"));
    assert!(
        e.starts_with("FILE:8:3: labels: 17 labels, at most 16"),
        "{e}"
    );
    let e = err("labels: [ring]\n");
    assert!(e.starts_with("FILE:7:"), "{e}");
}

#[test]
fn a_client_health_command_is_read_and_each_bad_value_is_one_line_at_its_place() {
    let base = "id: pos-1\nartifact: pos-app\nrelay: {address: '127.0.0.1:7401', name: r1}\n\
                tls: {ca: ca.pem, cert: c.pem, key: c.key}\nmaster_key: m.pub\ninstall_root: i\n";
    let (_d, p) = write(&format!(
        "{base}health:\n  program: /usr/bin/curl\n  args: [-fs, http://localhost:8080/health]\n  delay_secs: 30\n"
    ));
    let c = load::<ClientConfig>(&p).unwrap();
    let h = c.health.unwrap();
    assert_eq!((h.delay_secs, h.timeout_secs), (30, 60), "timeout defaults");
    assert_eq!(h.args.len(), 2);
    let (_d, p) = write(base);
    assert!(load::<ClientConfig>(&p).unwrap().health.is_none());

    let err = |extra: &str| {
        let (_d, p) = write(&format!("{base}{extra}"));
        let e = load::<ClientConfig>(&p).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        e.replace(&p.display().to_string(), "FILE")
    };
    let e = err("health:\n  program: check\n  timeout_secs: 0\n");
    assert!(
        e.starts_with("FILE:9:17: health.timeout_secs 0 is not between 1 and 86400"),
        "{e}"
    );
    let e = err("health:\n  program: check\n  delay_secs: 90000\n");
    assert!(e.starts_with("FILE:9:15: health.delay_secs 90000"), "{e}");
    let e = err("health:\n  program: ''\n");
    assert!(e.starts_with("FILE:8:12: health.program is empty"), "{e}");
    let e = err("health:\n  program: check\n  delay: 5\n");
    assert!(e.contains("delay"), "an unknown key is refused: {e}");
}
