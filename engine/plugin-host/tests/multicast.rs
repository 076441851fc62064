//! The multicast plugin through the real loader, on loopback (127.0.0.1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use haifu_plugin_host::{DatagramGroup, ErrorKind, Plugin, RecvBatch};

fn plugin() -> Plugin {
    common::load("haifu-transport-multicast")
}

fn group(p: &Plugin, port: u16, extra: &str) -> DatagramGroup {
    p.open_group(&format!(
        "group=239.255.77.1:{port}\ninterface=127.0.0.1\nloopback=true\n{extra}"
    ))
    .unwrap()
}

#[test]
fn round_trip_to_two_receivers() {
    let p = plugin();
    let port = common::unique_port();
    let a = group(&p, port, "");
    let b = group(&p, port, "");
    let tx = group(&p, port, "join=false");
    tx.send(b"hello group").unwrap();
    let mut buf = [0u8; 2048];
    for r in [&a, &b] {
        let n = r.recv(&mut buf, Some(Duration::from_secs(2))).unwrap();
        assert_eq!(&buf[..n], b"hello group");
    }
}

#[test]
fn many_receivers_get_every_datagram() {
    let p = plugin();
    let port = common::unique_port();
    let receivers: Vec<DatagramGroup> = (0..8).map(|_| group(&p, port, "")).collect();
    let tx = group(&p, port, "join=false\nrate=20M");
    let count = 200u32;
    std::thread::scope(|s| {
        let handles: Vec<_> = receivers
            .iter()
            .map(|r| {
                s.spawn(move || {
                    let mut buf = [0u8; 2048];
                    let mut seen = vec![false; count as usize];
                    while let Ok(n) = r.recv(&mut buf, Some(Duration::from_millis(500))) {
                        let i = u32::from_be_bytes(buf[..4].try_into().unwrap());
                        assert_eq!(n, 1400);
                        seen[i as usize] = true;
                    }
                    seen.iter().filter(|s| **s).count()
                })
            })
            .collect();
        let mut datagram = vec![0xA5u8; 1400];
        for i in 0..count {
            datagram[..4].copy_from_slice(&i.to_be_bytes());
            tx.send(&datagram).unwrap();
        }
        for h in handles {
            assert_eq!(h.join().unwrap(), count as usize);
        }
    });
}

#[test]
fn receive_times_out() {
    let p = plugin();
    let g = group(&p, common::unique_port(), "");
    let mut buf = [0u8; 64];
    let t = Instant::now();
    let e = g
        .recv(&mut buf, Some(Duration::from_millis(100)))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(t.elapsed() >= Duration::from_millis(90));
    let e = g.recv(&mut buf, Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
}

#[test]
fn sending_is_paced_to_the_configured_rate() {
    let p = plugin();
    let port = common::unique_port();
    // 8 Mbit/s = 1 MB/s: 100 datagrams of 1000 B take about 100 ms.
    let tx = group(&p, port, "join=false\nrate=8M");
    let t = Instant::now();
    for _ in 0..100 {
        tx.send(&[0u8; 1000]).unwrap();
    }
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(90), "{took:?}");
    assert!(took < Duration::from_millis(400), "{took:?}");
}

#[test]
fn oversize_and_undersize_are_errors_not_crashes() {
    let p = plugin();
    let port = common::unique_port();
    let rx = group(&p, port, "");
    let tx = group(&p, port, "join=false\nmax_datagram=1500");
    let e = tx.send(&[0u8; 1501]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    tx.send(&[7u8; 100]).unwrap();
    let mut small = [0u8; 10];
    let e = rx
        .recv(&mut small, Some(Duration::from_secs(2)))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BufferTooSmall, "{e}");
    assert!(e.message.contains("100 bytes"), "{e}");
    let e = tx.recv(&mut small, Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let p = plugin();
    for (config, needle) in [
        ("", "missing required key \"group\""),
        ("group=10.1.2.3:5000", "not a multicast address"),
        ("group=239.1.1.1:5000\ninterface=nosuchif0", "nosuchif0"),
        ("group=239.1.1.1:5000\nrate=fast", "bad rate"),
        ("group=239.1.1.1:5000\nttl=300", "ttl"),
        (
            "group=239.1.1.1:5000\ncolour=blue",
            "unknown key \"colour\"",
        ),
        ("nonsense", "expected key=value"),
    ] {
        let e = p.open_group(config).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{config}: {e}");
        assert!(e.to_string().contains(needle), "{config}: {e}");
    }
}

#[test]
fn interface_by_name() {
    let p = plugin();
    let port = common::unique_port();
    let rx = p
        .open_group(&format!("group=239.255.77.2:{port}\ninterface=lo"))
        .unwrap();
    let tx = p
        .open_group(&format!(
            "group=239.255.77.2:{port}\ninterface=lo\njoin=false"
        ))
        .unwrap();
    tx.send(b"by name").unwrap();
    let mut buf = [0u8; 64];
    let n = rx.recv(&mut buf, Some(Duration::from_secs(2))).unwrap();
    assert_eq!(&buf[..n], b"by name");
}

#[test]
fn the_stream_shape_is_unsupported_here() {
    let e = plugin().open_endpoint("").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
}

#[test]
fn conforms_to_the_transport_spec() {
    let port = common::unique_port();
    let report = haifu_plugin_host::conformance::check_datagram(
        &plugin(),
        &format!("group=239.255.77.3:{port}\ninterface=127.0.0.1"),
    );
    let failed: Vec<_> = report.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(report.len() >= 6);
    // The batched calls are the plugin's own, not the host's fallback.
    for name in ["datagram.send_batch", "datagram.recv_batch"] {
        let c = report.iter().find(|c| c.name == name).unwrap();
        assert!(!c.skipped, "{c:?}");
    }
}

/// The operator's section is added after the engine's keys; a key the
/// engine sets is refused before the plugin sees it.
#[test]
fn operator_sections_pass_through_and_never_override_the_engine() {
    let port = common::unique_port();
    let engine = format!("group=239.255.77.9:{port}\ninterface=127.0.0.1");
    let p = plugin().with_config(vec![("max_datagram".into(), "100".into())]);
    let g = p.open_group(&engine).unwrap();
    let e = g.send(&[0u8; 101]).unwrap_err();
    assert_eq!(e.kind, haifu_plugin_host::ErrorKind::TooLarge, "{e}");
    let clash = plugin().with_config(vec![("group".into(), "239.255.77.10:1".into())]);
    let e = clash.open_group(&engine).unwrap_err();
    assert_eq!(e.kind, haifu_plugin_host::ErrorKind::InvalidArgument);
    assert!(
        e.to_string()
            .contains("operator key \"group\" is one the engine sets"),
        "{e}"
    );
    let bad = plugin().with_config(vec![("ttl".into(), "1\ngroup=x".into())]);
    assert!(bad.open_group(&engine).is_err());
    // The bound address.
    let a = g.local_addr().unwrap().unwrap();
    assert!(a.ends_with(&format!(":{port}")), "{a}");
}

fn numbered(count: u32, len: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut d = vec![0x5Au8; len];
            d[..4].copy_from_slice(&i.to_be_bytes());
            d
        })
        .collect()
}

/// SPEC 5.8–5.9 on a real group: 64 datagrams leave in one `sendmmsg` and
/// come in as batches of at most 16, whole and in order.
#[test]
fn a_batch_of_64_goes_out_in_one_call_and_comes_in_as_batches() {
    let p = plugin();
    let port = common::unique_port();
    let rx = group(&p, port, "");
    let tx = group(&p, port, "join=false");
    let datagrams = numbered(64, 1448);
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    assert_eq!(tx.send_batch(&refs).unwrap(), 64);
    let mut batch = RecvBatch::new(16, 2048);
    let mut got = Vec::new();
    let mut calls = 0;
    while got.len() < datagrams.len() {
        let n = rx
            .recv_batch(&mut batch, Some(Duration::from_secs(2)))
            .unwrap();
        assert!((1..=16).contains(&n), "{n}");
        assert_eq!(batch.too_large(), 0);
        got.extend(batch.datagrams().map(<[u8]>::to_vec));
        calls += 1;
    }
    assert_eq!(got, datagrams);
    assert!(calls >= 4);
    // Nothing more: the wait for the first datagram is the timeout.
    let t = Instant::now();
    let e = rx
        .recv_batch(&mut batch, Some(Duration::from_millis(100)))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(t.elapsed() >= Duration::from_millis(90));
    assert!(batch.is_empty());
    let e = tx.recv_batch(&mut batch, Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
}

#[test]
fn a_batch_stops_before_an_oversize_datagram_and_drops_one_too_large_for_its_slot() {
    let p = plugin();
    let port = common::unique_port();
    let rx = group(&p, port, "");
    let tx = group(&p, port, "join=false\nmax_datagram=1500");
    let (ok, big) = (vec![1u8; 1000], vec![2u8; 1501]);
    assert_eq!(tx.send_batch(&[&ok, &ok, &big, &ok]).unwrap(), 2);
    let e = tx.send_batch(&[&big, &ok]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    tx.send(&[3u8; 100]).unwrap();
    // Slots of 500 bytes: the two of 1,000 are dropped and counted, the
    // one of 100 comes whole.
    let mut batch = RecvBatch::new(8, 500);
    let mut seen = Vec::new();
    let mut too_large = 0;
    while seen.len() + too_large < 3 {
        rx.recv_batch(&mut batch, Some(Duration::from_secs(2)))
            .unwrap();
        too_large += batch.too_large();
        seen.extend(batch.datagrams().map(<[u8]>::to_vec));
    }
    assert_eq!(too_large, 2);
    assert_eq!(seen, vec![vec![3u8; 100]]);
}

#[test]
fn batched_sending_is_paced_to_the_configured_rate() {
    let p = plugin();
    let tx = group(&p, common::unique_port(), "join=false\nrate=8M");
    let datagrams = numbered(100, 1000);
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    let t = Instant::now();
    let mut rest = &refs[..];
    let mut calls = 0;
    while !rest.is_empty() {
        rest = &rest[tx.send_batch(rest).unwrap()..];
        calls += 1;
    }
    let took = t.elapsed();
    // 100 × 1,000 bytes at 8 Mbit/s: 100 ms, in bursts of about 2 ms.
    assert!(took >= Duration::from_millis(90), "{took:?}");
    assert!(took < Duration::from_millis(400), "{took:?}");
    assert!(calls > 1 && calls < 100, "{calls}");
}
