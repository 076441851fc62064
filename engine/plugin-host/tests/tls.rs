//! The TCP+TLS plugin through the real loader, on loopback, with a fleet CA
//! made by the `pki` module: the handshake limit under a flood of half-open
//! connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use haifu_plugin_host::{Plugin, pki};

const T: Option<Duration> = Some(Duration::from_secs(10));

fn plugin() -> Plugin {
    common::load("haifu-transport-tls")
}

fn config(home: &std::path::Path, name: &str, extra: &str) -> String {
    let ca = pki::ca_files(home);
    let me = pki::cert_files(home, name);
    format!(
        "ca={}\ncert={}\nkey={}\n{extra}",
        ca.cert.display(),
        me.cert.display(),
        me.key.display()
    )
}

/// The threads of this process named `name` (Linux names them in `comm`,
/// cut to 15 bytes).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim_end() == name)
        .count()
}

/// The threat: anyone who can reach the listener opens connections and
/// never says a word. Each would hold a handshake thread for
/// `hello_timeout_ms`; with the limit, at most `max_handshakes` are held,
/// the sockets beyond it are cut, and a real client still connects at once
/// while the flood stays open.
#[test]
fn a_flood_of_half_open_connections_holds_at_most_max_handshakes_and_a_client_still_connects() {
    let home = tempfile::tempdir().unwrap();
    pki::init_ca(home.path(), pki::DEFAULT_CA_NAME).unwrap();
    pki::issue(home.path(), "relay-1", pki::CertRole::Relay).unwrap();
    pki::issue(home.path(), "client-a", pki::CertRole::Client).unwrap();
    let p = plugin();
    // A long hello timeout: the flood is not cleared by timeouts here.
    let srv = p
        .open_endpoint(&config(
            home.path(),
            "relay-1",
            "listen=127.0.0.1:0\nmax_handshakes=4\nhello_timeout_ms=60000",
        ))
        .unwrap();
    let addr = srv.local_addr().unwrap();

    let flood: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    // The listener takes them all in; at most 4 handshake threads live.
    let settle = Instant::now() + Duration::from_secs(10);
    let mut cut = 0;
    while Instant::now() < settle {
        cut = flood.iter().filter(|s| is_cut(s)).count();
        if cut >= 36 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cut >= 36, "only {cut} of 40 half-open sockets were cut");
    let held = threads_named("tls-handshake");
    assert!(held <= 4, "{held} handshake threads for a limit of 4");

    // A real client, while the flood's last sockets are still open.
    let cli = p
        .open_endpoint(&config(home.path(), "client-a", ""))
        .unwrap();
    let started = Instant::now();
    let c = cli.connect(&addr, "relay-1", T).unwrap();
    let s = srv.accept(T).unwrap();
    assert_eq!(s.peer_identity(), "client-a");
    c.send(b"hello", T).unwrap();
    assert_eq!(s.recv(T).unwrap(), b"hello");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the client waited {:?} behind the flood",
        started.elapsed()
    );
    assert!(threads_named("tls-handshake") <= 4);
    drop(flood);
}

/// Whether the listener cut `s`: it reads end-of-file or a reset, where
/// an open socket would have nothing to read yet.
fn is_cut(mut s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let cut = match s.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    cut
}

/// `max_handshakes=0` would accept nothing: refused at open.
#[test]
fn max_handshakes_of_zero_is_refused_at_open() {
    let home = tempfile::tempdir().unwrap();
    pki::init_ca(home.path(), pki::DEFAULT_CA_NAME).unwrap();
    pki::issue(home.path(), "relay-1", pki::CertRole::Relay).unwrap();
    let e = plugin()
        .open_endpoint(&config(
            home.path(),
            "relay-1",
            "listen=127.0.0.1:0\nmax_handshakes=0",
        ))
        .unwrap_err();
    assert!(e.to_string().contains("max_handshakes"), "{e}");
}
