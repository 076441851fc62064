//! The encoders' output (read back with a parser that is not ours), the
//! catalogue and the listener against hostile callers over real sockets;
//! by subject in the files beside: the master's census from a real ledger
//! (`census`), a round's figures on both ends (`rounds`), and the
//! examples that use the metrics (`examples`).

mod census;
mod examples;
mod rounds;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::*;
use crate::link::Counters;

/// `text` read by `prometheus-parse`: every sample as (name, labels, value);
/// a histogram as its `_count`.
fn parse(text: &str) -> Vec<(String, String, f64)> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            (s.metric, s.labels.to_string(), v)
        })
        .collect()
}

fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|s| s.2)
}

fn done(
    datagrams: u64,
    bytes: u64,
    elapsed_ms: u64,
    listeners: Option<haifu_protocol::RoundListeners>,
) -> haifu_protocol::RoundDone {
    haifu_protocol::RoundDone {
        run: 1,
        round: 1,
        datagrams,
        bytes,
        elapsed_ms,
        listeners,
    }
}

#[test]
fn a_relays_rounds_encode_with_units_help_and_types() {
    let links = std::sync::Arc::new(Counters::default());
    let m = RelayMetrics::new(std::sync::Arc::clone(&links));
    m.round_sent(&done(700, 1_013_600, 2_500, None));
    m.round_sent(&done(
        300,
        434_400,
        900,
        Some(haifu_protocol::RoundListeners {
            listening: 8,
            decoded: 6,
            silent: 1,
            repair_bytes: 28_960,
            max_loss_permille: 50,
            ended: 0,
        }),
    ));
    m.round_failed();
    m.fetched(4096);
    m.fetch_done(true);
    m.denied(3);
    Counters::bump(&links.malformed);
    m.watch(|| RelayView {
        master_connected: true,
        clients_connected: 7,
    });
    let text = m.exporter().text().unwrap();
    for line in [
        "# TYPE haifu_relay_multicast_sent_bytes_total counter",
        "haifu_relay_multicast_sent_bytes_total 1448000",
        "haifu_relay_datagrams_sent_total 1000",
        "# TYPE haifu_relay_round_duration_seconds histogram",
        "haifu_relay_round_duration_seconds_count 2",
        "haifu_relay_round_duration_seconds_bucket{le=\"+Inf\"} 2",
        "haifu_relay_rounds_total{outcome=\"failed\"} 1",
        "haifu_relay_rounds_total{outcome=\"sent\"} 2",
        "haifu_relay_fetched_bytes_total 4096",
        "haifu_relay_repair_sent_bytes_total 28960",
        "haifu_relay_round_listeners_total{outcome=\"decoded\"} 6",
        "haifu_relay_round_listeners_total{outcome=\"undecoded\"} 1",
        "haifu_relay_round_listeners_total{outcome=\"silent\"} 1",
        "haifu_relay_clients_connected 7",
        "haifu_relay_master_connected 1",
        "haifu_relay_denied_clients 3",
        "haifu_control_frames_refused_total{reason=\"malformed\"} 1",
        "haifu_build_info{version=\"0.1.0\",role=\"relay\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
    assert!(
        text.contains("# HELP haifu_relay_multicast_sent_bytes_total Bytes sent"),
        "{text}"
    );
    let samples = parse(&text);
    assert_eq!(
        value(&samples, "haifu_relay_multicast_sent_bytes_total", ""),
        Some(1_448_000.0)
    );
    let sum = value(&samples, "haifu_relay_round_duration_seconds_sum", "").unwrap();
    assert!((sum - 3.4).abs() < 1e-9, "{sum}");
    assert_eq!(
        value(&samples, "haifu_relay_rounds_total", "outcome=\"sent\""),
        Some(2.0)
    );
}

#[test]
fn openmetrics_text_ends_with_eof_and_names_units() {
    let m = RelayMetrics::new(std::sync::Arc::default());
    m.round_sent(&done(1, 1448, 10, None));
    let text = m.exporter().openmetrics().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# UNIT haifu_relay_multicast_sent_bytes bytes"),
        "{text}"
    );
    assert!(
        text.contains("haifu_relay_multicast_sent_bytes_total 1448"),
        "{text}"
    );
}

#[test]
fn a_clients_installs_datagrams_and_state_encode() {
    let m = ClientMetrics::new(std::sync::Arc::default());
    m.installed(Via::Broadcast, true);
    m.installed(Via::Master, false);
    m.session_failed(&crate::FleetError::Install {
        what: "installing",
        source: haifu_install::InstallError::Corrupt {
            path: "current".into(),
            reason: "a test".into(),
        },
    });
    m.acknowledged();
    m.watch(|| ClientView {
        relay_connected: true,
        receiving: false,
        pending: 1,
        installed: Some(("pos-app".into(), "2.4.0".into())),
        stalls: 2,
    });
    let samples = parse(&m.exporter().text().unwrap());
    let get = |n: &str, l: &str| value(&samples, n, l);
    assert_eq!(
        get(
            "haifu_client_installs_total",
            "outcome=\"ok\",via=\"broadcast\""
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "haifu_client_installs_total",
            "outcome=\"failed\",via=\"broadcast\""
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "haifu_client_installs_total",
            "outcome=\"failed\",via=\"master\""
        ),
        Some(1.0)
    );
    assert_eq!(
        get("haifu_client_completions_acknowledged_total", ""),
        Some(1.0)
    );
    assert_eq!(get("haifu_client_completions_pending", ""), Some(1.0));
    assert_eq!(get("haifu_client_stalls_total", ""), Some(2.0));
    assert_eq!(
        get(
            "haifu_client_installed_info",
            "artifact=\"pos-app\",version=\"2.4.0\""
        ),
        Some(1.0)
    );
}

#[test]
fn a_clients_decoded_blocks_count_across_calls_and_sessions() {
    use haifu_carousel::{CarouselConfig, CarouselKey, Receiver, Sender};
    let key = CarouselKey::new(9, [3; 32]);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sender = Sender::new(key.clone(), data.len() as u64, CarouselConfig::default()).unwrap();
    let datagrams = sender.encode_round(&data, 1).unwrap();
    let m = ClientMetrics::new(std::sync::Arc::default());
    let stats = crate::broadcast::ReceiveStats::default();
    let mut seen = 0;
    for run in [1, 2] {
        let mut r = Receiver::new(key.clone(), sender.plan().unwrap());
        for (i, d) in datagrams.iter().enumerate() {
            let _ = r.handle_datagram(d);
            while r.poll_block().is_some() {}
            if i % 50 == 0 {
                // The same progress twice adds nothing.
                m.received(run, &stats, &r);
                m.received(run, &stats, &r);
            }
        }
        m.received(run, &stats, &r);
        assert!(r.is_complete());
        seen += u64::from(r.progress().objects_done);
    }
    let samples = parse(&m.exporter().text().unwrap());
    let blocks = value(&samples, "haifu_client_blocks_decoded_total", "").unwrap();
    assert!(blocks >= seen as f64 && blocks > 0.0, "{blocks} < {seen}");
    assert_eq!(
        value(&samples, "haifu_client_decoded_bytes_total", ""),
        Some(2.0 * data.len() as f64),
        "both sessions, each counted once"
    );
}

#[test]
fn the_catalogue_lists_every_family_once_with_help_and_conventional_names() {
    let mut all = std::collections::BTreeSet::new();
    for d in Daemon::ALL {
        let c = catalogue(d);
        assert!(c.len() >= 8, "{d:?}: {c:?}");
        assert!(c.iter().any(|m| m.name == "haifu_build_info"), "{c:?}");
        for m in &c {
            assert!(m.name.starts_with("haifu_"), "{m:?}");
            assert!(!m.help.is_empty(), "{m:?}");
            assert_eq!(m.kind == "counter", m.name.ends_with("_total"), "{m:?}");
            assert!(
                ["counter", "gauge", "histogram"].contains(&m.kind.as_str()),
                "{m:?}"
            );
            assert!(all.insert((d, m.name.clone())), "{m:?} twice");
        }
    }
    let master: Vec<String> = catalogue(Daemon::Master)
        .into_iter()
        .map(|m| m.name)
        .collect();
    for name in [
        "haifu_master_run_clients",
        "haifu_master_runs",
        "haifu_master_relay_connected",
        "haifu_master_ledger_commit_duration_seconds",
        "haifu_master_completions_recorded_total",
        "haifu_claims_refused_total",
    ] {
        assert!(master.iter().any(|m| m == name), "{name} in {master:?}");
    }
}

/// A metrics listener on an ephemeral loopback port, with a 1 s header
/// timeout; stopped when the returned flag is set.
fn listener() -> (SocketAddr, crate::Shutdown) {
    let m = RelayMetrics::new(std::sync::Arc::default());
    m.round_sent(&done(10, 14_480, 100, None));
    let stop = crate::Shutdown::new();
    let limits = ApiLimits {
        header_timeout_secs: 1,
        ..LIMITS
    };
    let addr = spawn_limited(
        "127.0.0.1:0".parse().unwrap(),
        m.exporter(),
        limits,
        stop.clone(),
    )
    .unwrap();
    (addr, stop)
}

/// Sends `request` and reads the answer until the server closes or 5 s
/// pass: (status, head and body).
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn the_listener_answers_metrics_and_refuses_the_rest() {
    let (addr, stop) = listener();
    let (status, text) = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(
        text.contains("haifu_relay_multicast_sent_bytes_total 14480"),
        "{text}"
    );
    let (status, text) = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    for (request, want) in [
        (
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            404,
        ),
        (
            b"GET /metrics/../etc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            404,
        ),
        (
            b"GET /v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            404,
        ),
        (
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            405,
        ),
        (b"BREW /metrics HTCPCP/1.0\r\n\r\n", 400),
    ] {
        let (status, text) = exchange(addr, request);
        assert_eq!(status, want, "{}: {text}", String::from_utf8_lossy(request));
    }
    stop.trigger();
}

#[test]
fn a_huge_head_gets_431_and_a_slow_one_is_cut_off() {
    let (addr, stop) = listener();
    let mut huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..400 {
        huge.extend_from_slice(format!("X-Padding-{i}: {}\r\n", "a".repeat(64)).as_bytes());
    }
    huge.extend_from_slice(b"\r\n");
    let (status, text) = exchange(addr, &huge);
    assert_eq!(status, 431, "{text}");

    // Slowloris: a byte of the head every 300 ms never finishes it; the
    // listener closes the connection once the header timeout (1 s) passes.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .cycle()
    {
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            // hyper may answer 408 before closing.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "a head sent a byte at a time is cut off");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The listener still serves.
    let (status, _) = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    stop.trigger();
}

#[test]
fn idle_connections_past_the_cap_do_not_keep_a_scraper_out() {
    let (addr, stop) = listener();
    let idle: Vec<TcpStream> = (0..LIMITS.max_connections * 2)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let (status, text) = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    drop(idle);
    stop.trigger();
}
