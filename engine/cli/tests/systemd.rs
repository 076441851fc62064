//! The daemons under systemd's `Type=notify`: `READY=1` on `$NOTIFY_SOCKET`
//! only once they serve, `STOPPING=1` on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fleet::{Fleet, base_port, http_get};

/// The next notification, or a panic naming `what` after 30 s.
fn next(sock: &UnixDatagram, what: &str, f: &Fleet) -> String {
    let mut buf = [0u8; 256];
    match sock.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("no {what} notification: {e}\n{}", f.dump()),
    }
}

fn start(f: &Fleet, role: &str, name: &str, socket: &std::path::Path) -> Child {
    let log = std::fs::File::create(f.log_path(name)).unwrap();
    f.haifu()
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", socket)
        .args([role, "--config", &format!("{name}.yaml")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn sigterm(child: &mut Child) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap().success()
}

#[test]
fn a_daemon_says_ready_once_it_serves_and_stopping_on_sigterm() {
    let mut f = Fleet::new(0);
    let api = format!("127.0.0.1:{}", base_port(0) + 19);
    f.write_master(&format!("api: {api}\n"));
    let socket = f.path("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let mut master = start(&f, "master", "master", &socket);
    assert_eq!(next(&sock, "READY=1", &f), "READY=1");
    // Ready means serving: the API answers at once, no retry.
    assert_eq!(http_get(&api, "", "/healthz").0, 200);
    assert!(sigterm(&mut master), "{}", f.dump());
    assert_eq!(next(&sock, "STOPPING=1", &f), "STOPPING=1");
    assert!(f.log("master").contains("told systemd: ready"));

    // A client is ready once it is set up and reaches for its relay, even
    // while the relay is not there yet.
    let relay_port = f.write_relay("store-east", base_port(0) + 18);
    f.write_client("pos-1", "store-east", relay_port, "");
    let mut client = start(&f, "client", "pos-1", &socket);
    assert_eq!(next(&sock, "READY=1", &f), "READY=1");
    assert!(sigterm(&mut client), "{}", f.dump());
    assert_eq!(next(&sock, "STOPPING=1", &f), "STOPPING=1");
}

#[test]
fn a_daemon_that_cannot_start_never_says_ready() {
    let f = Fleet::new(1);
    // No certificate was issued for this master: it stops before serving.
    std::fs::write(
        f.path("master.yaml"),
        format!("home: home\nlisten: 127.0.0.1:{}\n", base_port(1)),
    )
    .unwrap();
    let socket = f.path("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut master = start(&f, "master", "master", &socket);
    assert!(!master.wait().unwrap().success());
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1", "only STOPPING=1, never READY=1");
    assert!(sock.recv(&mut buf).is_err(), "nothing else");
}
