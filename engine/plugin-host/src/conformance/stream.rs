//! The peer-stream rules (SPEC §6).

use std::time::{Duration, Instant};

use super::{Check, Seen, T, Violation, expect_kind, rule, run};
use crate::{Connection, Endpoint, ErrorKind, Plugin, TransportError};

/// Connects `cli` to `srv` (at `addr`, proving `name`), accepting on a
/// second thread.
fn pair(
    srv: &Endpoint,
    cli: &Endpoint,
    addr: &str,
    name: &str,
) -> Result<(Connection, Connection), TransportError> {
    std::thread::scope(|s| {
        let h = s.spawn(|| srv.accept(T));
        let c = cli.connect(addr, name, T);
        let a = h
            .join()
            .unwrap_or_else(|_| Err(crate::loader::host_error("accept thread panicked")));
        Ok((c?, a?))
    })
}

/// Closes both ends at once: a close flushes and waits (a bounded time)
/// for the peer to finish too, so closing them one after the other would
/// wait that time out.
fn close_pair(c: Connection, a: Connection) {
    std::thread::scope(|s| {
        s.spawn(move || drop(c));
        drop(a);
    });
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
    let mut out = vec![rule(
        "stream.declared",
        if plugin.info().shapes.stream {
            Ok("shape declared".into())
        } else {
            Err("the plugin does not declare the stream shape".into())
        },
    )];
    let (srv, cli) = match (plugin.open_endpoint(server), plugin.open_endpoint(client)) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => {
            out.push(rule(
                "stream.open",
                Err(format!("with the engine's keys: {e}").into()),
            ));
            return out;
        }
    };
    let addr = match srv.local_addr() {
        Ok(a) => a,
        Err(e) => {
            out.push(rule(
                "stream.local_addr",
                Err(Violation::from(e.to_string())),
            ));
            return out;
        }
    };
    out.push(rule(
        "stream.open",
        Ok(format!("server listening on {addr}")),
    ));
    out.push(rule("stream.buffer_too_small", small_buffer(&srv, &addr)));

    let (c, a) = match pair(&srv, &cli, &addr, server_name) {
        Ok(p) => p,
        Err(e) => {
            out.push(rule(
                "stream.connect_accept",
                Err(Violation::from(e.to_string())),
            ));
            return out;
        }
    };
    out.push(rule("stream.connect_accept", Ok("connected".into())));
    out.push(rule(
        "stream.identities",
        if a.peer_identity() == client_identity && c.peer_identity() == server_name {
            Ok(format!("server sees {:?}, client sees {:?}", a.peer_identity(), c.peer_identity()))
        } else {
            Err(format!(
                "server sees {:?} (want {client_identity:?}), client sees {:?} (want {server_name:?})",
                a.peer_identity(),
                c.peer_identity()
            ).into())
        },
    ));
    out.push(rule(
        "stream.roles",
        match (
            plugin.inner.vt.conn_peer_role.is_some(),
            a.peer_role(),
            c.peer_role(),
        ) {
            (false, _, _) => Seen::Skip(
                "conn_peer_role not offered: the plugin cannot carry the fleet's control links"
                    .into(),
            ),
            (true, Some("client"), Some("relay")) => {
                Seen::Pass("server sees role client, client sees role relay".into())
            }
            (true, x, y) => Seen::Fail(format!(
                "server sees role {x:?} (want client), client sees {y:?} (want relay)"
            )),
        },
    ));

    out.push(rule(
        "stream.messages",
        run(|| {
            let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 253) as u8).collect();
            for m in [&b"x"[..], &[][..], &big[..]] {
                c.send(m, T).map_err(|e| e.to_string())?;
                let got = a.recv(T).map_err(|e| e.to_string())?;
                if got != m {
                    return Err(format!("sent {} bytes, received {}", m.len(), got.len()).into());
                }
                a.send(m, T).map_err(|e| e.to_string())?;
                if c.recv(T).map_err(|e| e.to_string())? != m {
                    return Err("reply differs".into());
                }
            }
            Ok("1 B, 0 B and 1 MiB both ways".into())
        }),
    ));

    out.push(rule(
        "stream.timeout",
        run(|| {
            let t = Instant::now();
            expect_kind(a.recv(Some(Duration::from_millis(200))), ErrorKind::Timeout)?;
            let took = t.elapsed();
            if took < Duration::from_millis(190) || took > Duration::from_millis(1200) {
                return Err(format!("a 200 ms timeout took {took:?}").into());
            }
            let t = Instant::now();
            expect_kind(a.recv(Some(Duration::ZERO)), ErrorKind::Timeout)
                .map_err(|e| format!("a poll (timeout 0): {e}"))?;
            let poll = t.elapsed();
            if poll > Duration::from_millis(100) {
                return Err(format!("a poll (timeout 0) took {poll:?}").into());
            }
            c.send(b"after", T).map_err(|e| e.to_string())?;
            match a.recv(T) {
                Ok(m) if m == b"after" => Ok(format!(
                    "200 ms took {took:?}, a poll {poll:?}; the message after a timeout intact"
                )),
                Ok(m) => Err(format!("got {} other bytes", m.len()).into()),
                Err(e) => Err(Violation::from(e.to_string())),
            }
        }),
    ));

    out.push(rule(
        "stream.too_large",
        too_large(plugin, client, &srv, &addr, server_name),
    ));

    out.push(rule(
        "stream.many_threads",
        run(|| {
            // Send and recv at once on one connection, both directions.
            let both = std::thread::scope(|s| {
                let tx = s.spawn(|| (0..200).find_map(|i: u32| c.send(&i.to_be_bytes(), T).err()));
                let mut seen = 0u32;
                let mut fault = None;
                for i in 0..200u32 {
                    match a.recv(T) {
                        Ok(m) if m == i.to_be_bytes() => seen += 1,
                        Ok(_) => {
                            fault = Some(format!("message {i} out of order"));
                            break;
                        }
                        Err(e) => {
                            fault = Some(e.to_string());
                            break;
                        }
                    }
                    if let Err(e) = a.send(b"ack", T) {
                        fault = Some(e.to_string());
                        break;
                    }
                }
                let sent = tx.join().ok().flatten();
                (seen, fault.or(sent.map(|e| e.to_string())))
            });
            if let (_, Some(e)) = both {
                return Err(format!("send beside recv: {e}").into());
            }
            for _ in 0..200 {
                c.recv(T).map_err(|e| format!("acks: {e}"))?;
            }
            // Eight connections made and used at once.
            let faults: Vec<String> = std::thread::scope(|s| {
                let acc = s.spawn(|| {
                    std::thread::scope(|s2| {
                        for _ in 0..8 {
                            let conn = srv.accept(T).map_err(|e| e.to_string())?;
                            // Each echo owns its connection and closes it
                            // as soon as the peer has finished.
                            s2.spawn(move || {
                                while let Ok(m) = conn.recv(T) {
                                    if conn.send(&m, T).is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        Ok(())
                    })
                });
                let hs: Vec<_> = (0..8u8)
                    .map(|k| {
                        let cli = &cli;
                        let addr = &addr;
                        s.spawn(move || -> Result<(), Violation> {
                            let conn = cli
                                .connect(addr, server_name, T)
                                .map_err(|e| e.to_string())?;
                            for i in 0..20u8 {
                                conn.send(&[k, i], T).map_err(|e| e.to_string())?;
                                if conn.recv(T).map_err(|e| e.to_string())? != [k, i] {
                                    return Err(format!("connection {k}: echo {i} differs").into());
                                }
                            }
                            Ok(())
                        })
                    })
                    .collect();
                let mut faults: Vec<String> = hs
                    .into_iter()
                    .filter_map(|h| h.join().unwrap_or(Err("thread panicked".into())).err())
                    .map(|Violation(seen)| seen)
                    .collect();
                if let Ok(Err(e)) = acc.join() {
                    faults.push(e);
                }
                faults
            });
            match faults.first() {
                None => Ok("send beside recv on one connection (200 each way); \
                            8 connections x 20 echoes from 8 threads"
                    .into()),
                Some(e) => Err(e.clone().into()),
            }
        }),
    ));

    out.push(rule(
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
            match pair(&srv, &cli, &addr, server_name) {
                Ok((c2, a2)) => {
                    close_pair(c2, a2);
                    Ok(format!("refused while denied ({r}), admitted after"))
                }
                Err(e) => Err(format!("not readmitted: {e}").into()),
            }
        }),
    ));

    out.push(rule(
        "stream.close_during_recv",
        run(|| {
            let t = Instant::now();
            let r = std::thread::scope(|s| {
                let h = s.spawn(|| a.recv(Some(Duration::from_secs(10))));
                std::thread::sleep(Duration::from_millis(200));
                drop(c);
                h.join()
                    .unwrap_or_else(|_| Err(crate::loader::host_error("recv thread panicked")))
            });
            let r = expect_kind(r, ErrorKind::Closed)?;
            let took = t.elapsed();
            if took > Duration::from_secs(5) {
                return Err(format!("the peer's close reached recv after {took:?}").into());
            }
            Ok(format!("{r} after {took:?}, the peer closed at 200 ms"))
        }),
    ));

    out.push(rule(
        "stream.unknown_key",
        expect_kind(
            plugin.open_endpoint(&format!("{client}\nno_such_key_xyz=1")),
            ErrorKind::InvalidArgument,
        ),
    ));
    out
}

/// `endpoint_local_addr` into a 1-byte buffer: `BUFFER_TOO_SMALL` with
/// `*out_len` the size needed; then into exactly that size: the address.
fn small_buffer(srv: &Endpoint, addr: &str) -> Seen {
    let (r, len, _) = srv.local_addr_raw(1);
    if let Err(e) = expect_kind(r, ErrorKind::BufferTooSmall) {
        return Seen::Fail(format!("endpoint_local_addr with a 1-byte buffer: {e}"));
    }
    if len != addr.len() {
        return Seen::Fail(format!(
            "endpoint_local_addr with a 1-byte buffer set *out_len to {len}, {} needed",
            addr.len()
        ));
    }
    let (r, len2, buf) = srv.local_addr_raw(len);
    match r {
        Ok(()) if buf.get(..len2) == Some(addr.as_bytes()) => Seen::Pass(format!(
            "1-byte buffer: BufferTooSmall with *out_len {len}; {len} bytes: {addr}"
        )),
        Ok(()) => Seen::Fail("the exact-size buffer got other text".into()),
        Err(e) => Seen::Fail(format!("with the size asked for: {e}")),
    }
}

/// With `max_frame=4096` on the sender, a 4,097-byte message is refused
/// with `TOO_LARGE` before anything is sent: the next message arrives
/// intact as the first.
fn too_large(plugin: &Plugin, client: &str, srv: &Endpoint, addr: &str, name: &str) -> Seen {
    let small = match plugin.open_endpoint(&format!("{client}\nmax_frame=4096")) {
        Ok(e) => e,
        Err(e) if e.kind == ErrorKind::InvalidArgument => {
            return Seen::Skip(format!("no max_frame key: {}", e.message));
        }
        Err(e) => return Seen::Fail(e.to_string()),
    };
    let (c, a) = match pair(srv, &small, addr, name) {
        Ok(p) => p,
        Err(e) => return Seen::Fail(e.to_string()),
    };
    let r = match expect_kind(c.send(&[9u8; 4097], T), ErrorKind::TooLarge) {
        Ok(r) => r,
        Err(e) => return Seen::Fail(format!("4,097 bytes with max_frame=4096: {e}")),
    };
    if let Err(e) = c.send(b"fits", T) {
        return Seen::Fail(format!("after a refused message: {e}"));
    }
    let seen = match a.recv(T) {
        Ok(m) if m == b"fits" => Seen::Pass(format!("{r}; nothing of it was sent")),
        Ok(m) => Seen::Fail(format!(
            "the peer received {} bytes of the refused message",
            m.len()
        )),
        Err(e) => Seen::Fail(e.to_string()),
    };
    close_pair(c, a);
    seen
}
