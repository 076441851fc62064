//! The datagram-group rules (SPEC §5).

use std::time::{Duration, Instant};

use super::{Check, Seen, T, Violation, expect_kind, rule, run};
use crate::{DatagramGroup, ErrorKind, Plugin, RecvBatch};

/// Datagram-group rules with one configuration for both members. `config`
/// must describe a group this host can both send to and receive from
/// (e.g. multicast with loopback on 127.0.0.1).
pub fn check_datagram(plugin: &Plugin, config: &str) -> Vec<Check> {
    check_datagram_pair(plugin, config, config)
}

/// Receives until nothing comes for 100 ms; returns how many.
fn drain(g: &DatagramGroup) -> usize {
    let mut buf = vec![0u8; 65_536];
    let mut n = 0;
    while g.recv(&mut buf, Some(Duration::from_millis(100))).is_ok() {
        n += 1;
    }
    n
}

/// Datagram-group rules with two members, `config_a` and `config_b`: each
/// must receive what either sends.
pub fn check_datagram_pair(plugin: &Plugin, config_a: &str, config_b: &str) -> Vec<Check> {
    let mut out = vec![rule(
        "datagram.declared",
        if plugin.info().shapes.datagram {
            Ok("shape declared".into())
        } else {
            Err("the plugin does not declare the datagram shape".into())
        },
    )];
    let (a, b) = match (plugin.open_group(config_a), plugin.open_group(config_b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            out.push(rule(
                "datagram.open",
                Err(format!("with the engine's keys: {e}").into()),
            ));
            return out;
        }
    };
    out.push(rule(
        "datagram.open",
        Ok("two members opened with the engine's keys".into()),
    ));

    out.push(rule(
        "datagram.round_trip",
        run(|| {
            a.send(b"conformance").map_err(|e| e.to_string())?;
            let mut buf = [0u8; 65_536];
            for (who, g) in [("first", &a), ("second", &b)] {
                let n = g
                    .recv(&mut buf, T)
                    .map_err(|e| format!("{who} member: {e}"))?;
                if buf.get(..n) != Some(&b"conformance"[..]) {
                    return Err(format!("{who} member got {n} other bytes").into());
                }
            }
            Ok("both members received the datagram intact".into())
        }),
    ));

    out.push(rule(
        "datagram.timeout",
        run(|| {
            let mut buf = [0u8; 64];
            let t = Instant::now();
            let r = expect_kind(
                b.recv(&mut buf, Some(Duration::from_millis(200))),
                ErrorKind::Timeout,
            )?;
            let took = t.elapsed();
            if took < Duration::from_millis(190) || took > Duration::from_millis(1200) {
                return Err(format!("a 200 ms timeout took {took:?}").into());
            }
            let t = Instant::now();
            expect_kind(b.recv(&mut buf, Some(Duration::ZERO)), ErrorKind::Timeout)
                .map_err(|e| format!("a poll (timeout 0): {e}"))?;
            let poll = t.elapsed();
            if poll > Duration::from_millis(100) {
                return Err(format!("a poll (timeout 0) took {poll:?}").into());
            }
            a.send(b"after").map_err(|e| e.to_string())?;
            let n = b.recv(&mut buf, T).map_err(|e| e.to_string())?;
            if buf.get(..n) != Some(&b"after"[..]) {
                return Err("the datagram after a timeout was not intact".into());
            }
            drain(&a);
            Ok(format!(
                "{r} after {took:?}; a poll took {poll:?}; nothing lost"
            ))
        }),
    ));

    out.push(rule(
        "datagram.buffer_too_small",
        run(|| {
            a.send(&[1u8; 100]).map_err(|e| e.to_string())?;
            let mut small = [0u8; 10];
            let r = expect_kind(b.recv(&mut small, T), ErrorKind::BufferTooSmall)?;
            // The datagram is dropped; the next one must come whole.
            a.send(b"next").map_err(|e| e.to_string())?;
            let mut buf = [0u8; 64];
            let n = b.recv(&mut buf, T).map_err(|e| e.to_string())?;
            if buf.get(..n) != Some(&b"next"[..]) {
                return Err(format!("after a too-small buffer, got {n} other bytes").into());
            }
            drain(&a);
            Ok(format!("{r}; the next datagram came whole"))
        }),
    ));

    out.push(rule(
        "datagram.oversize",
        run(|| {
            let big = vec![7u8; 70_000];
            match a.send(&big) {
                Err(e) if e.kind == ErrorKind::TooLarge => {
                    Ok(format!("70,000 bytes refused: {}", e.message))
                }
                Err(e) => Err(format!("70,000 bytes: expected TooLarge, got {e}").into()),
                Ok(()) => {
                    // A limit above UDP's is allowed if nothing is cut.
                    let mut buf = vec![0u8; 131_072];
                    let n = b
                        .recv(&mut buf, T)
                        .map_err(|e| format!("70,000 bytes accepted but not received: {e}"))?;
                    drain(&a);
                    if n == big.len() && buf.get(..n) == Some(&big[..]) {
                        Ok("70,000 bytes accepted and received whole".into())
                    } else {
                        Err(format!("70,000 bytes sent, {n} received (truncated)").into())
                    }
                }
            }
        }),
    ));

    out.push(rule(
        "datagram.many_threads",
        run(|| {
            let (errors, got) = std::thread::scope(|s| {
                let rx = s.spawn(|| {
                    let mut buf = vec![0u8; 65_536];
                    let mut got = 0usize;
                    while b.recv(&mut buf, Some(Duration::from_millis(500))).is_ok() {
                        got += 1;
                    }
                    got
                });
                let hs: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| (0..50).find_map(|_| a.send(&[2u8; 512]).err())))
                    .collect();
                let errors: Vec<String> = hs
                    .into_iter()
                    .filter_map(|h| h.join().ok().flatten())
                    .map(|e| e.to_string())
                    .collect();
                (errors, rx.join().unwrap_or(0))
            });
            drain(&a);
            match errors.first() {
                None if got > 0 => Ok(format!(
                    "8 threads x 50 sends while another thread received ({got} of 400 arrived)"
                )),
                None => Err("8 threads x 50 sends, none received".into()),
                Some(e) => Err(e.clone().into()),
            }
        }),
    ));

    out.push(rule(
        "datagram.unknown_key",
        expect_kind(
            plugin.open_group(&format!("{config_a}\nno_such_key_xyz=1")),
            ErrorKind::InvalidArgument,
        ),
    ));

    out.push(rule("datagram.pacing", pacing(plugin, config_a)));
    out.push(rule("datagram.local_addr", local_addr(&a)));
    out.push(rule("datagram.send_batch", send_batch(&a, &b)));
    out.push(rule("datagram.recv_batch", recv_batch(&a, &b)));
    out
}

/// Eight distinct datagrams, 1 to 1,400 bytes.
fn eight() -> Vec<Vec<u8>> {
    (1..=8u8).map(|i| vec![i; usize::from(i) * 175]).collect()
}

/// Receives `n` datagrams on `g` one call at a time, sorted (SPEC 5.2
/// allows reordering).
fn receive_sorted(g: &DatagramGroup, n: usize) -> Result<Vec<Vec<u8>>, Violation> {
    let mut buf = vec![0u8; 65_536];
    let mut got = Vec::with_capacity(n);
    for i in 0..n {
        let len = g
            .recv(&mut buf, T)
            .map_err(|e| format!("datagram {} of {n}: {e}", i + 1))?;
        got.push(buf[..len].to_vec());
    }
    got.sort();
    Ok(got)
}

/// The appended `group_send_batch`, when offered: a batch goes out whole,
/// each call reporting 1 to the number it was given (SPEC 5.8).
fn send_batch(a: &DatagramGroup, b: &DatagramGroup) -> Seen {
    let sent = eight();
    let refs: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
    // Whatever the rules before left queued (the pacing rule's datagrams
    // reach both members) must not be taken for the batch.
    drain(a);
    drain(b);
    let result = run(|| {
        let mut rest = &refs[..];
        let mut calls = 0;
        while !rest.is_empty() {
            let n = a.send_batch(rest).map_err(|e| e.to_string())?;
            rest = rest.get(n..).ok_or("the host let a count through")?;
            calls += 1;
        }
        let got = receive_sorted(b, sent.len())?;
        drain(a);
        if got != sent {
            return Err("the batch did not arrive intact".into());
        }
        Ok(format!(
            "8 datagrams sent in {calls} call(s), received intact"
        ))
    });
    // Without the call the host's one-at-a-time fallback ran: what it
    // found belongs to the single-call rules above, not to this one.
    match result {
        _ if !a.sends_batches() => Seen::Skip(
            "group_send_batch not offered (or UNSUPPORTED): the host sends one datagram per call"
                .into(),
        ),
        Err(e) => Seen::Fail(e.0),
        Ok(d) => Seen::Pass(d),
    }
}

/// The appended `group_recv_batch`, when offered: datagrams come in whole
/// in batches, the wait for the first is the timeout (a poll with 0), and
/// one longer than a slot is reported as too large, never cut (SPEC 5.9).
fn recv_batch(a: &DatagramGroup, b: &DatagramGroup) -> Seen {
    let result = run(|| {
        let sent = eight();
        for d in &sent {
            a.send(d).map_err(|e| e.to_string())?;
        }
        let mut batch = RecvBatch::new(16, 65_536);
        let mut got = Vec::new();
        let mut calls = 0;
        while got.len() < sent.len() {
            b.recv_batch(&mut batch, T)
                .map_err(|e| format!("after {} of {} datagrams: {e}", got.len(), sent.len()))?;
            got.extend(batch.datagrams().map(<[u8]>::to_vec));
            calls += 1;
        }
        got.sort();
        drain(a);
        if got != sent {
            return Err(format!("{} datagrams received, not the 8 sent intact", got.len()).into());
        }
        let t = Instant::now();
        expect_kind(
            b.recv_batch(&mut batch, Some(Duration::from_millis(200))),
            ErrorKind::Timeout,
        )
        .map_err(|e| format!("with nothing sent: {e}"))?;
        let took = t.elapsed();
        if took < Duration::from_millis(190) || took > Duration::from_millis(1200) {
            return Err(format!("a 200 ms timeout took {took:?}").into());
        }
        expect_kind(
            b.recv_batch(&mut batch, Some(Duration::ZERO)),
            ErrorKind::Timeout,
        )
        .map_err(|e| format!("a poll (timeout 0): {e}"))?;
        a.send(&[4u8; 100]).map_err(|e| e.to_string())?;
        let mut small = RecvBatch::new(4, 10);
        b.recv_batch(&mut small, T)
            .map_err(|e| format!("100 bytes into slots of 10: {e}"))?;
        if small.too_large() != 1 || small.datagrams().next().is_some() {
            return Err(format!(
                "100 bytes into slots of 10: {} too large, {} handed on (expected 1 and 0)",
                small.too_large(),
                small.datagrams().count()
            )
            .into());
        }
        drain(a);
        Ok(format!(
            "8 datagrams in {calls} call(s); timeout and poll kept; 100 bytes reported too large for a 10-byte slot"
        ))
    });
    // Without the call the host's one-at-a-time fallback ran: what it
    // found belongs to the single-call rules above, not to this one.
    match result {
        _ if !b.receives_batches() => Seen::Skip(
            "group_recv_batch not offered (or UNSUPPORTED): the host receives one datagram per call"
                .into(),
        ),
        Err(e) => Seen::Fail(e.0),
        Ok(d) => Seen::Pass(d),
    }
}

/// With `rate=8M` (8,000,000 bits of payload a second), 384 datagrams of
/// 1,000 bytes must take 384 ms: never less than 90% of it (the rate is a
/// ceiling), at most twice it (once more if the host was busy).
fn pacing(plugin: &Plugin, config: &str) -> Seen {
    // A send-only member of its own (`join=false`), so it binds nothing
    // the two members hold.
    let paced = match plugin.open_group(&format!(
        "{}\nrate=8M\njoin=false",
        without(config, &["rate", "join"])
    )) {
        Ok(g) => g,
        Err(e) if e.kind == ErrorKind::InvalidArgument => {
            return Seen::Skip(format!(
                "no rate key ({}): the engine paces for it",
                e.message
            ));
        }
        Err(e) => return Seen::Fail(e.to_string()),
    };
    let want = Duration::from_millis(384);
    let mut tries = Vec::new();
    for _ in 0..2 {
        let t = Instant::now();
        for _ in 0..384 {
            if let Err(e) = paced.send(&[3u8; 1000]) {
                return Seen::Fail(e.to_string());
            }
        }
        let took = t.elapsed();
        if took < want.mul_f64(0.9) {
            return Seen::Fail(format!(
                "384 x 1,000 bytes at rate=8M took {took:?}: faster than the rate ({want:?} of payload)"
            ));
        }
        tries.push(took);
        if took <= want * 2 {
            return Seen::Pass(format!(
                "384 x 1,000 bytes at rate=8M took {tries:?} (expected {want:?} of payload)"
            ));
        }
    }
    Seen::Fail(format!(
        "384 x 1,000 bytes at rate=8M took {tries:?}, expected about {want:?} (payload bits)"
    ))
}

/// `config` without the lines of `keys`.
fn without(config: &str, keys: &[&str]) -> String {
    config
        .lines()
        .filter(|l| {
            let k = l.split('=').next().unwrap_or("").trim();
            !keys.contains(&k)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The appended `group_local_addr`, when offered, names a bound address.
fn local_addr(g: &DatagramGroup) -> Seen {
    match g.local_addr() {
        Ok(None) => Seen::Skip("group_local_addr not offered".into()),
        Ok(Some(a)) if !a.is_empty() => Seen::Pass(format!("bound to {a}")),
        Ok(Some(_)) => Seen::Fail("group_local_addr returned empty text".into()),
        Err(e) => Seen::Fail(e.to_string()),
    }
}
