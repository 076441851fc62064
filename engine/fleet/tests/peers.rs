//! A relay daemon (in-process, over the real QUIC plugin loaded from its
//! `.so`) facing a misbehaving client: unknown and malformed frames are
//! answered and counted with the peer kept, a forged identity is refused at
//! the handshake, a peer that skips the hello is dropped, and the daemon
//! neither panics nor stops serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use haifu_fleet::Shutdown;
use haifu_fleet::config::{PeerAddr, RelayConfig, RelayMulticast, TlsFiles};
use haifu_plugin_host::{Connection, Endpoint, Plugin};
use haifu_protocol::{ErrorCode, Hello, Message, RefusalCode, Role};

fn plugin_dir(into: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let out = into.join("plugins");
    std::fs::create_dir_all(&out).unwrap();
    for name in ["haifu_transport_quic", "haifu_transport_multicast"] {
        let file = format!(
            "{}{name}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        let src = [dir.join(&file), dir.join("deps").join(&file)]
            .into_iter()
            // The newer of the two: a plugin built on its own beside a newer
            // build as a dev-dependency must not shadow it.
            .filter(|p| p.exists())
            .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .expect("the plugins are built with the tests (dev-dependencies)");
        std::fs::copy(src, out.join(&file)).unwrap();
    }
    out
}

/// A certificate for `name`: relay-role for `relay-*`, master-role for
/// `master`, client-role otherwise.
fn tls(home: &Path, name: &str) -> TlsFiles {
    use haifu_plugin_host::pki::CertRole;
    let role = if name.starts_with("relay-") {
        CertRole::Relay
    } else if name == "master" {
        CertRole::Master
    } else {
        CertRole::Client
    };
    let c = haifu_plugin_host::pki::issue(home, name, role).unwrap();
    TlsFiles {
        ca: c.ca_cert,
        cert: c.cert,
        key: c.key,
    }
}

fn endpoint(quic: &Plugin, t: &TlsFiles) -> Endpoint {
    quic.open_endpoint(&format!(
        "ca={}\ncert={}\nkey={}\nthreads=1\n",
        t.ca.display(),
        t.cert.display(),
        t.key.display()
    ))
    .unwrap()
}

fn send(c: &Connection, m: &Message) {
    c.send(&m.encode().unwrap(), Some(Duration::from_secs(5)))
        .unwrap();
}

fn recv(c: &Connection) -> Message {
    let bytes = c.recv(Some(Duration::from_secs(10))).unwrap();
    Message::decode(&bytes).unwrap()
}

fn error_code(m: Message) -> ErrorCode {
    match m {
        Message::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_relay_answers_counts_and_survives_bad_peers() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    haifu_plugin_host::pki::init_ca(&home, "test fleet").unwrap();
    let plugins = plugin_dir(dir.path());
    let base = 30_000 + (std::process::id() % 2000) as u16 * 10;
    let cfg = RelayConfig {
        name: "relay-a".into(),
        // Nobody listens there: the relay keeps retrying and still serves.
        master: PeerAddr {
            address: format!("127.0.0.1:{}", base + 1).parse().unwrap(),
            name: "master".into(),
        },
        listen: format!("127.0.0.1:{base}").parse().unwrap(),
        tls: tls(&home, "relay-a"),
        multicast: RelayMulticast {
            group: format!("239.255.94.1:{}", base + 2).parse().unwrap(),
            interface: Some("127.0.0.1".into()),
            ttl: 1,
            mtu: None,
        },
        data: dir.path().join("data"),
        metrics: None,
        metrics_public: false,
        plugins: Some(plugins.clone()),
        transports: Default::default(),
    };
    let stop = Shutdown::new();
    let relay = {
        let stop = stop.clone();
        std::thread::spawn(move || haifu_fleet::relay::run(cfg, stop))
    };
    let set = haifu_plugin_host::load_dir(&plugins).unwrap();
    let quic = set.get("quic").unwrap().clone();
    let c1 = endpoint(&quic, &tls(&home, "c1"));
    let addr = format!("127.0.0.1:{base}");
    let connect = |ep: &Endpoint| {
        for _ in 0..100 {
            if let Ok(c) = ep.connect(&addr, "relay-a", Some(Duration::from_secs(5))) {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the relay never listened");
    };

    // A proper client, then garbage on the same connection.
    let conn = connect(&c1);
    send(&conn, &Message::Hello(Hello::new(Role::Client, "c1")));
    assert!(matches!(recv(&conn), Message::Welcome(_)));
    conn.send(&[0xee, 1, 2, 3], None).unwrap();
    assert_eq!(error_code(recv(&conn)), ErrorCode::UnknownMessage);
    conn.send(&[0x51, 1, 2], None).unwrap();
    assert_eq!(error_code(recv(&conn)), ErrorCode::Malformed);
    conn.send(&[], None).unwrap();
    assert_eq!(error_code(recv(&conn)), ErrorCode::Malformed);
    // A valid message the relay does not take from a client.
    send(
        &conn,
        &Message::StopRounds(haifu_protocol::StopRounds { run: 1 }),
    );
    assert_eq!(error_code(recv(&conn)), ErrorCode::Unexpected);
    // Registering as someone else is refused.
    send(
        &conn,
        &Message::RegisterClient(haifu_protocol::RegisterClient {
            client: "c2".into(),
            relay: "relay-a".into(),
            installed: None,
            broadcast: None,
        }),
    );
    assert_eq!(error_code(recv(&conn)), ErrorCode::Unexpected);
    // The peer was kept all along.
    send(&conn, &Message::Ping { nonce: 42 });
    assert_eq!(recv(&conn), Message::Pong { nonce: 42 });

    // A certificate for "c3" claiming to be "c1" is refused at the hello.
    let c3 = endpoint(&quic, &tls(&home, "c3"));
    let liar = connect(&c3);
    send(&liar, &Message::Hello(Hello::new(Role::Client, "c1")));
    match recv(&liar) {
        Message::HelloRefused(r) => assert_eq!(r.code, RefusalCode::Denied),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A relay role is not served by a relay.
    let r2 = endpoint(&quic, &tls(&home, "relay-b"));
    let wrong_role = connect(&r2);
    send(
        &wrong_role,
        &Message::Hello(Hello::new(Role::Relay, "relay-b")),
    );
    match recv(&wrong_role) {
        Message::HelloRefused(r) => assert_eq!(r.code, RefusalCode::RoleNotServed),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A peer that skips the hello is dropped.
    let rude = connect(&c3);
    send(&rude, &Message::Ping { nonce: 1 });
    assert!(rude.recv(Some(Duration::from_secs(10))).is_err());

    // The first client is still served.
    send(&conn, &Message::Ping { nonce: 43 });
    assert_eq!(recv(&conn), Message::Pong { nonce: 43 });

    stop.trigger();
    relay.join().unwrap().unwrap();
}
