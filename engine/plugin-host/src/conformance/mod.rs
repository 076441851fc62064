//! Conformance checks that anyone can run against any built plugin: the
//! rules of `plugins/abi/SPEC.md` that can be observed from outside.
//!
//! ```no_run
//! use haifu_plugin_host::{conformance, load};
//! let plugin = load("libmy_transport.so".as_ref())?;
//! let report = conformance::check_datagram(&plugin, "group=239.255.0.9:47000\ninterface=127.0.0.1");
//! for c in &report {
//!     println!("{} {}: {}", if c.passed { "ok  " } else { "FAIL" }, c.name, c.detail);
//! }
//! assert!(report.iter().all(|c| c.passed));
//! # Ok::<(), haifu_plugin_host::LoadError>(())
//! ```

use std::time::{Duration, Instant};

use crate::{ErrorKind, Plugin, TransportError};

/// The outcome of one rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// Short rule name, e.g. `datagram.round_trip`.
    pub name: &'static str,
    /// Whether the plugin followed the rule.
    pub passed: bool,
    /// What was observed.
    pub detail: String,
}

/// Runs one rule's body (a closure, so `?` works inside).
fn run(f: impl FnOnce() -> Result<String, String>) -> Result<String, String> {
    f()
}

fn check(name: &'static str, r: Result<String, String>) -> Check {
    match r {
        Ok(detail) => Check {
            name,
            passed: true,
            detail,
        },
        Err(detail) => Check {
            name,
            passed: false,
            detail,
        },
    }
}

fn expect_kind(
    r: Result<impl std::fmt::Debug, TransportError>,
    kind: ErrorKind,
) -> Result<String, String> {
    match r {
        Err(e) if e.kind == kind => Ok(format!("{kind:?}: {}", e.message)),
        Err(e) => Err(format!(
            "expected {kind:?}, got {:?}: {}",
            e.kind, e.message
        )),
        Ok(v) => Err(format!("expected {kind:?}, got success ({v:?})")),
    }
}

const T: Option<Duration> = Some(Duration::from_secs(5));

/// Datagram-group rules. `config` must describe a group this host can both
/// send to and receive from (e.g. multicast with loopback on 127.0.0.1).
pub fn check_datagram(plugin: &Plugin, config: &str) -> Vec<Check> {
    let mut out = vec![check(
        "datagram.declared",
        if plugin.info().shapes.datagram {
            Ok("shape declared".into())
        } else {
            Err("the plugin does not declare the datagram shape".into())
        },
    )];
    let (a, b) = match (plugin.open_group(config), plugin.open_group(config)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            out.push(check("datagram.open", Err(e.to_string())));
            return out;
        }
    };
    out.push(check("datagram.open", Ok("two members opened".into())));

    out.push(check(
        "datagram.round_trip",
        run(|| {
            a.send(b"conformance").map_err(|e| e.to_string())?;
            let mut buf = [0u8; 65_536];
            for (who, g) in [("first", &a), ("second", &b)] {
                let n = g
                    .recv(&mut buf, T)
                    .map_err(|e| format!("{who} member: {e}"))?;
                if buf.get(..n) != Some(&b"conformance"[..]) {
                    return Err(format!("{who} member got {n} other bytes"));
                }
            }
            Ok("both members received the datagram intact".into())
        }),
    ));

    out.push(check(
        "datagram.timeout",
        run(|| {
            let mut buf = [0u8; 64];
            let t = Instant::now();
            let r = expect_kind(
                b.recv(&mut buf, Some(Duration::from_millis(100))),
                ErrorKind::Timeout,
            )?;
            let took = t.elapsed();
            if took < Duration::from_millis(90) || took > Duration::from_secs(2) {
                return Err(format!("a 100 ms timeout took {took:?}"));
            }
            Ok(format!("{r} after {took:?}"))
        }),
    ));

    out.push(check(
        "datagram.buffer_too_small",
        run(|| {
            a.send(&[1u8; 100]).map_err(|e| e.to_string())?;
            let mut small = [0u8; 10];
            let r = expect_kind(b.recv(&mut small, T), ErrorKind::BufferTooSmall);
            // Drain the first member's copy.
            let mut buf = [0u8; 65_536];
            let _ = a.recv(&mut buf, Some(Duration::from_millis(200)));
            r
        }),
    ));

    out.push(check(
        "datagram.concurrent_send",
        run(|| {
            let errors: Vec<String> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|_| s.spawn(|| (0..50).find_map(|_| a.send(&[2u8; 512]).err())))
                    .collect();
                hs.into_iter()
                    .filter_map(|h| h.join().ok().flatten())
                    .map(|e| e.to_string())
                    .collect()
            });
            // Drain.
            let mut buf = [0u8; 65_536];
            while a.recv(&mut buf, Some(Duration::from_millis(50))).is_ok() {}
            while b.recv(&mut buf, Some(Duration::from_millis(50))).is_ok() {}
            match errors.first() {
                None => Ok("4 threads x 50 sends".into()),
                Some(e) => Err(e.clone()),
            }
        }),
    ));

    out.push(check(
        "datagram.unknown_key",
        expect_kind(
            plugin.open_group(&format!("{config}\nno_such_key_xyz=1")),
            ErrorKind::InvalidArgument,
        ),
    ));
    out
}

/// Peer-stream rules. `server` must listen (its local address is used),
/// `client` connects to it as `server_name`, and presents `client_identity`.
pub fn check_stream(
    plugin: &Plugin,
    server: &str,
    client: &str,
    server_name: &str,
    client_identity: &str,
) -> Vec<Check> {
    let mut out = Vec::new();
    let (srv, cli) = match (plugin.open_endpoint(server), plugin.open_endpoint(client)) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => {
            out.push(check("stream.open", Err(e.to_string())));
            return out;
        }
    };
    let addr = match srv.local_addr() {
        Ok(a) => a,
        Err(e) => {
            out.push(check("stream.local_addr", Err(e.to_string())));
            return out;
        }
    };
    out.push(check(
        "stream.open",
        Ok(format!("server listening on {addr}")),
    ));

    let pair = std::thread::scope(|s| {
        let h = s.spawn(|| srv.accept(T));
        let c = cli.connect(&addr, server_name, T);
        (
            c,
            h.join()
                .unwrap_or_else(|_| Err(crate::loader::host_error("accept thread panicked"))),
        )
    });
    let (c, a) = match pair {
        (Ok(c), Ok(a)) => (c, a),
        (Err(e), _) | (_, Err(e)) => {
            out.push(check("stream.connect_accept", Err(e.to_string())));
            return out;
        }
    };
    out.push(check("stream.connect_accept", Ok("connected".into())));
    out.push(check(
        "stream.identities",
        if a.peer_identity() == client_identity && c.peer_identity() == server_name {
            Ok(format!("server sees {:?}, client sees {:?}", a.peer_identity(), c.peer_identity()))
        } else {
            Err(format!(
                "server sees {:?} (want {client_identity:?}), client sees {:?} (want {server_name:?})",
                a.peer_identity(),
                c.peer_identity()
            ))
        },
    ));

    out.push(check(
        "stream.messages",
        run(|| {
            let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 253) as u8).collect();
            for m in [&b"x"[..], &[][..], &big[..]] {
                c.send(m, T).map_err(|e| e.to_string())?;
                let got = a.recv(T).map_err(|e| e.to_string())?;
                if got != m {
                    return Err(format!("sent {} bytes, received {}", m.len(), got.len()));
                }
                a.send(m, T).map_err(|e| e.to_string())?;
                if c.recv(T).map_err(|e| e.to_string())? != m {
                    return Err("reply differs".into());
                }
            }
            Ok("1 B, 0 B and 1 MiB both ways".into())
        }),
    ));

    out.push(check(
        "stream.timeout_loses_nothing",
        run(|| {
            expect_kind(a.recv(Some(Duration::from_millis(50))), ErrorKind::Timeout)?;
            c.send(b"after", T).map_err(|e| e.to_string())?;
            match a.recv(T) {
                Ok(m) if m == b"after" => Ok("message after a timeout intact".into()),
                Ok(m) => Err(format!("got {} other bytes", m.len())),
                Err(e) => Err(e.to_string()),
            }
        }),
    ));

    out.push(check(
        "stream.deny",
        run(|| {
            srv.set_denied(&[client_identity])
                .map_err(|e| e.to_string())?;
            let r = expect_kind(cli.connect(&addr, server_name, T), ErrorKind::Denied)?;
            expect_kind(
                srv.accept(Some(Duration::from_millis(200))),
                ErrorKind::Timeout,
            )
            .map_err(|e| format!("a denied peer reached accept: {e}"))?;
            srv.set_denied::<&str>(&[]).map_err(|e| e.to_string())?;
            let again = std::thread::scope(|s| {
                let h = s.spawn(|| srv.accept(T).map(|_| ()));
                let c2 = cli.connect(&addr, server_name, T).map(|_| ());
                (c2, h.join().unwrap_or(Ok(())))
            });
            match again {
                (Ok(()), Ok(())) => Ok(format!("refused while denied ({r}), admitted after")),
                (Err(e), _) | (_, Err(e)) => Err(format!("not readmitted: {e}")),
            }
        }),
    ));

    out.push(check(
        "stream.close",
        run(|| {
            drop(c);
            expect_kind(a.recv(T), ErrorKind::Closed)
        }),
    ));
    out
}
