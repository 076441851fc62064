//! The QUIC plugin through the real loader, on loopback, with a fleet CA
//! made by the `pki` module.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use haifu_plugin_host::{Endpoint, ErrorKind, Plugin, pki};

const T: Option<Duration> = Some(Duration::from_secs(10));

/// `server` is a relay, every other name a client.
fn role_for(name: &str) -> pki::CertRole {
    if name == "server" {
        pki::CertRole::Relay
    } else {
        pki::CertRole::Client
    }
}

struct Fleet {
    home: tempfile::TempDir,
}

impl Fleet {
    fn new(names: &[&str]) -> Self {
        let home = tempfile::tempdir().unwrap();
        pki::init_ca(home.path(), pki::DEFAULT_CA_NAME).unwrap();
        for n in names {
            pki::issue(home.path(), n, role_for(n)).unwrap();
        }
        Self { home }
    }

    fn config(&self, name: &str, extra: &str) -> String {
        config_in(self.home.path(), self.home.path(), name, extra)
    }
}

/// Configuration trusting the CA of `ca_home`, presenting `name` from `cert_home`.
fn config_in(ca_home: &Path, cert_home: &Path, name: &str, extra: &str) -> String {
    let ca = pki::ca_files(ca_home);
    let me = pki::cert_files(cert_home, name);
    format!(
        "ca={}\ncert={}\nkey={}\nclose_timeout_ms=2000\n{extra}",
        ca.cert.display(),
        me.cert.display(),
        me.key.display()
    )
}

fn plugin() -> Plugin {
    common::load("haifu-transport-quic")
}

fn server(p: &Plugin, fleet: &Fleet, extra: &str) -> (Endpoint, String) {
    let ep = p
        .open_endpoint(&fleet.config("server", &format!("listen=127.0.0.1:0\n{extra}")))
        .unwrap();
    let addr = ep.local_addr().unwrap();
    (ep, addr)
}

#[test]
fn round_trip_with_identities() {
    let fleet = Fleet::new(&["server", "client-a"]);
    let p = plugin();
    let (srv, addr) = server(&p, &fleet, "");
    let cli = p.open_endpoint(&fleet.config("client-a", "")).unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let c = srv.accept(T).unwrap();
            assert_eq!(c.peer_identity(), "client-a");
            // The role the fleet PKI wrote is the one the plugin reads back.
            assert_eq!(c.peer_role(), Some("client"));
            loop {
                match c.recv(T) {
                    Ok(m) => c.send(&m, T).unwrap(),
                    Err(e) => {
                        assert_eq!(e.kind, ErrorKind::Closed, "{e}");
                        break;
                    }
                }
            }
        });
        let c = cli.connect(&addr, "server", T).unwrap();
        assert_eq!(c.peer_identity(), "server");
        assert_eq!(c.peer_role(), Some("relay"));
        let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        for m in [&b"hello"[..], &[][..], &big[..]] {
            c.send(m, T).unwrap();
            assert_eq!(c.recv(T).unwrap(), m);
        }
        drop(c);
        h.join().unwrap();
    });
}

#[test]
fn many_clients_at_once() {
    let names: Vec<String> = (0..16).map(|i| format!("client-{i}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("server");
    let fleet = Fleet::new(&all);
    let p = plugin();
    let (srv, addr) = server(&p, &fleet, "threads=2");
    std::thread::scope(|s| {
        let srv = &srv;
        let server = s.spawn(move || {
            let mut seen = Vec::new();
            let mut workers = Vec::new();
            for _ in 0..names.len() {
                let c = srv.accept(T).unwrap();
                seen.push(c.peer_identity().to_owned());
                workers.push(std::thread::spawn(move || {
                    let m = c.recv(T).unwrap();
                    assert_eq!(m, c.peer_identity().as_bytes());
                    c.send(&m, T).unwrap();
                    // Wait for the client to finish before closing.
                    assert_eq!(c.recv(T).unwrap_err().kind, ErrorKind::Closed);
                }));
            }
            for w in workers {
                w.join().unwrap();
            }
            seen.sort();
            seen
        });
        let clients: Vec<_> = (0..16)
            .map(|i| {
                let (p, fleet, addr) = (&p, &fleet, &addr);
                s.spawn(move || {
                    let name = format!("client-{i}");
                    let ep = p.open_endpoint(&fleet.config(&name, "")).unwrap();
                    let c = ep.connect(addr, "server", T).unwrap();
                    c.send(name.as_bytes(), T).unwrap();
                    assert_eq!(c.recv(T).unwrap(), name.as_bytes());
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let mut expected: Vec<String> = (0..16).map(|i| format!("client-{i}")).collect();
        expected.sort();
        assert_eq!(server.join().unwrap(), expected);
    });
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let fleet = Fleet::new(&["server"]);
    let rogue = Fleet::new(&["client-a"]);
    let p = plugin();
    let (srv, addr) = server(&p, &fleet, "");
    // Trusts the fleet CA (so it accepts the server) but presents a
    // certificate of another CA under a name the fleet knows.
    let cli = p
        .open_endpoint(&config_in(
            fleet.home.path(),
            rogue.home.path(),
            "client-a",
            "",
        ))
        .unwrap();
    let e = cli.connect(&addr, "server", T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied, "{e}");
    let e = srv.accept(Some(Duration::from_millis(300))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
}

#[test]
fn a_server_with_the_wrong_name_is_refused() {
    let fleet = Fleet::new(&["server", "client-a"]);
    let p = plugin();
    let (_srv, addr) = server(&p, &fleet, "");
    let cli = p.open_endpoint(&fleet.config("client-a", "")).unwrap();
    let e = cli.connect(&addr, "master", T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied, "{e}");
}

#[test]
fn deny_listed_identities_are_refused_at_the_handshake_and_cut_off() {
    let fleet = Fleet::new(&["server", "client-a", "client-b"]);
    let p = plugin();
    let (srv, addr) = server(&p, &fleet, "deny=client-b");
    let a = p.open_endpoint(&fleet.config("client-a", "")).unwrap();
    let b = p.open_endpoint(&fleet.config("client-b", "")).unwrap();

    let e = b.connect(&addr, "server", T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied, "{e}");

    let ca = a.connect(&addr, "server", T).unwrap();
    let sa = srv.accept(T).unwrap();
    assert_eq!(sa.peer_identity(), "client-a");

    // Deny client-a at run time: its live connection is cut off too.
    srv.set_denied(&["client-a"]).unwrap();
    let e = ca.recv(T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied, "{e}");
    let e = a.connect(&addr, "server", T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied, "{e}");

    // client-b was readmitted by the same update.
    let cb = b.connect(&addr, "server", T).unwrap();
    let sb = srv.accept(T).unwrap();
    assert_eq!(sb.peer_identity(), "client-b");
    cb.send(b"back", T).unwrap();
    assert_eq!(sb.recv(T).unwrap(), b"back");
    // Nothing from the denied client ever reached accept.
    assert!(
        srv.accept(Some(Duration::from_millis(200)))
            .unwrap_err()
            .is_timeout()
    );
}

#[test]
fn frames_over_the_limit_are_refused_on_both_sides() {
    let fleet = Fleet::new(&["server", "client-a"]);
    let p = plugin();
    let (srv, addr) = server(&p, &fleet, "max_frame=1024");
    let cli = p
        .open_endpoint(&fleet.config("client-a", "max_frame=4096"))
        .unwrap();
    let c = cli.connect(&addr, "server", T).unwrap();
    let s = srv.accept(T).unwrap();
    let e = c.send(&[0u8; 4097], T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    c.send(&[1u8; 1024], T).unwrap();
    assert_eq!(s.recv(T).unwrap().len(), 1024);
    c.send(&[2u8; 2000], T).unwrap();
    let e = s.recv(T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert!(e.message.contains("2000"), "{e}");
}

#[test]
fn a_receive_timeout_loses_nothing() {
    let fleet = Fleet::new(&["server", "client-a"]);
    let p = plugin();
    let (srv, addr) = server(&p, &fleet, "");
    let cli = p.open_endpoint(&fleet.config("client-a", "")).unwrap();
    let c = cli.connect(&addr, "server", T).unwrap();
    let s = srv.accept(T).unwrap();
    let e = s.recv(Some(Duration::from_millis(50))).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    c.send(b"late", T).unwrap();
    assert_eq!(s.recv(T).unwrap(), b"late");
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let fleet = Fleet::new(&["server"]);
    let p = plugin();
    let e = p.open_endpoint("listen=127.0.0.1:0").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("\"ca\""), "{e}");
    let e = p
        .open_endpoint(&format!(
            "ca=/nonexistent/ca.crt\ncert={}\nkey={}",
            pki::cert_files(fleet.home.path(), "server").cert.display(),
            pki::cert_files(fleet.home.path(), "server").key.display()
        ))
        .unwrap_err();
    assert!(e.message.contains("/nonexistent/ca.crt"), "{e}");
    let e = p
        .open_endpoint(&fleet.config("server", "threads=0"))
        .unwrap_err();
    assert!(e.message.contains("threads"), "{e}");
    let cli = p.open_endpoint(&fleet.config("server", "")).unwrap();
    let e = cli.accept(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    let e = cli.connect("not an address", "server", T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn conforms_to_the_transport_spec() {
    let fleet = Fleet::new(&["server", "client-a"]);
    let report = haifu_plugin_host::conformance::check_stream(
        &plugin(),
        &fleet.config("server", "listen=127.0.0.1:0"),
        &fleet.config("client-a", ""),
        "server",
        "client-a",
    );
    let failed: Vec<_> = report.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(report.len() >= 7);
}
