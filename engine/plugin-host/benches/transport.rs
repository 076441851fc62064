//! Transport benchmarks through the loader, against the same work done
//! without the plugin boundary, in the same run. Prints a table of ratios.
//!
//! `cargo bench -p haifu-plugin-host --bench transport`
//!
//! - multicast: 1 sender, 4 receivers, 1,400-byte datagrams, pacing off; the
//!   rate each receiver gets, plugin vs the plugin's own socket code linked
//!   directly (`plugins/multicast/src/socket.rs`).
//! - quic: one 256 MiB stream (1 MiB messages), and 1,000 sequential short
//!   connections (handshake, one message each way, close); plugin vs quinn
//!   used directly on one tokio runtime.
//!
//! - tls: the same two cases through the TCP+TLS plugin, against the quic
//!   plugin (both through the loader), in alternating order.
//!
//! Each case runs 5 times, alternating which of plugin and direct goes
//! first; medians are shown. The machine has 2 cores: anything else running
//! moves the figures, so compare the ratios, and rerun when in doubt.
//! `HAIFU_BENCH_SCALE=0.1` shrinks every case for a quick look.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../../../plugins/multicast/src/socket.rs"]
mod socket;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use haifu_plugin_host::{Plugin, pki};

const DATAGRAM: usize = 1400;
const RECEIVERS: usize = 4;
const RUNS: usize = 5;

fn scale() -> f64 {
    std::env::var("HAIFU_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---------------------------------------------------------------- multicast

/// What one receiver saw: datagrams and the time between first and last.
fn receive_loop(mut recv: impl FnMut(&mut [u8]) -> bool) -> (u64, Duration) {
    let mut buf = vec![0u8; 65_536];
    let mut count = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    while recv(&mut buf) {
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        count += 1;
    }
    (count, first.map_or(Duration::ZERO, |f| last - f))
}

/// Sends one datagram; false on error.
type SendFn = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;
/// Receives one datagram; false on timeout or error.
type RecvFn = Box<dyn FnMut(&mut [u8]) -> bool + Send>;

struct McastResult {
    per_receiver_mbps: f64,
    delivered: f64,
}

fn mcast_run(
    n: u64,
    open: &(dyn Fn(bool) -> SendFn + Sync),
    open_rx: &(dyn Fn() -> RecvFn + Sync),
) -> McastResult {
    let receivers: Vec<_> = (0..RECEIVERS).map(|_| open_rx()).collect();
    let send = open(false);
    let results: Vec<(u64, Duration)> = std::thread::scope(|s| {
        let hs: Vec<_> = receivers
            .into_iter()
            .map(|r| s.spawn(move || receive_loop(r)))
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let mut d = vec![0x5Au8; DATAGRAM];
        for i in 0..n {
            d[..8].copy_from_slice(&i.to_be_bytes());
            assert!(send(&d));
        }
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let rates: Vec<f64> = results
        .iter()
        .map(|(c, d)| (*c as f64 * DATAGRAM as f64) / d.as_secs_f64().max(1e-9) / 1e6)
        .collect();
    let delivered =
        results.iter().map(|(c, _)| *c as f64).sum::<f64>() / (RECEIVERS as f64 * n as f64);
    McastResult {
        per_receiver_mbps: rates.iter().sum::<f64>() / rates.len() as f64,
        delivered,
    }
}

fn bench_multicast(plugin: &Plugin) -> (f64, f64, f64, f64) {
    let n = (300_000.0 * scale()) as u64;
    let (mut via, mut direct, mut via_d, mut direct_d) = (vec![], vec![], vec![], vec![]);
    let run_plugin = |via: &mut Vec<f64>, via_d: &mut Vec<f64>| {
        let port = common::unique_port();
        let cfg = |extra: &str| {
            format!("group=239.255.91.1:{port}\ninterface=127.0.0.1\nloopback=true\n{extra}")
        };
        let r = mcast_run(
            n,
            &|_| {
                let g = plugin.open_group(&cfg("join=false")).unwrap();
                Box::new(move |d: &[u8]| g.send(d).is_ok())
            },
            &|| {
                let g = plugin.open_group(&cfg("")).unwrap();
                Box::new(move |b: &mut [u8]| g.recv(b, Some(Duration::from_millis(300))).is_ok())
            },
        );
        via.push(r.per_receiver_mbps);
        via_d.push(r.delivered);
    };
    let run_direct = |direct: &mut Vec<f64>, direct_d: &mut Vec<f64>| {
        let port = common::unique_port();
        let opts = |join: bool| socket::Options {
            group: SocketAddr::from((Ipv4Addr::new(239, 255, 91, 2), port)),
            interface: socket::Interface::V4(Ipv4Addr::LOCALHOST),
            ttl: 1,
            loopback: true,
            rate_bps: 0,
            join,
            recv_buffer: 8 << 20,
            send_buffer: 4 << 20,
        };
        let r = mcast_run(
            n,
            &|_| {
                let s = socket::McastSocket::open(&opts(false)).unwrap();
                Box::new(move |d: &[u8]| s.send(d).is_ok())
            },
            &|| {
                let s = socket::McastSocket::open(&opts(true)).unwrap();
                Box::new(move |b: &mut [u8]| s.recv(b, Some(Duration::from_millis(300))).is_ok())
            },
        );
        direct.push(r.per_receiver_mbps);
        direct_d.push(r.delivered);
    };
    // Alternate which goes first, so neither always meets a warmer or
    // quieter machine.
    for i in 0..RUNS {
        if i % 2 == 0 {
            run_plugin(&mut via, &mut via_d);
            run_direct(&mut direct, &mut direct_d);
        } else {
            run_direct(&mut direct, &mut direct_d);
            run_plugin(&mut via, &mut via_d);
        }
    }
    (median(via), median(direct), median(via_d), median(direct_d))
}

// --------------------------------------------------------------------- quic

const STREAM_BYTES: usize = 256 << 20;
const MESSAGE: usize = 1 << 20;

struct Pki {
    home: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        pki::init_ca(home.path(), pki::DEFAULT_CA_NAME).unwrap();
        pki::issue(home.path(), "server", pki::CertRole::Relay).unwrap();
        pki::issue(home.path(), "client", pki::CertRole::Client).unwrap();
        Self { home }
    }

    fn config(&self, name: &str, extra: &str) -> String {
        let ca = pki::ca_files(self.home.path());
        let me = pki::cert_files(self.home.path(), name);
        format!(
            "ca={}\ncert={}\nkey={}\n{extra}",
            ca.cert.display(),
            me.cert.display(),
            me.key.display()
        )
    }
}

fn plugin_stream(plugin: &Plugin, pki: &Pki, bytes: usize) -> f64 {
    let srv = plugin
        .open_endpoint(&pki.config("server", "listen=127.0.0.1:0"))
        .unwrap();
    let addr = srv.local_addr().unwrap();
    let cli = plugin.open_endpoint(&pki.config("client", "")).unwrap();
    let t = Some(Duration::from_secs(60));
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let c = srv.accept(t).unwrap();
            let mut got = 0usize;
            while got < bytes {
                got += c.recv_with(t, <[u8]>::len).unwrap();
            }
            Instant::now()
        });
        let c = cli.connect(&addr, "server", t).unwrap();
        let msg = vec![7u8; MESSAGE];
        let start = Instant::now();
        for _ in 0..bytes / MESSAGE {
            c.send(&msg, t).unwrap();
        }
        let end = h.join().unwrap();
        drop(c);
        bytes as f64 / (end - start).as_secs_f64() / 1e6
    })
}

fn plugin_conns(plugin: &Plugin, pki: &Pki, n: usize) -> f64 {
    let srv = plugin
        .open_endpoint(&pki.config("server", "listen=127.0.0.1:0"))
        .unwrap();
    let addr = srv.local_addr().unwrap();
    let cli = plugin.open_endpoint(&pki.config("client", "")).unwrap();
    let t = Some(Duration::from_secs(10));
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..n {
                let c = srv.accept(t).unwrap();
                let m = c.recv(t).unwrap();
                c.send(&m, t).unwrap();
            }
        });
        let start = Instant::now();
        for _ in 0..n {
            let c = cli.connect(&addr, "server", t).unwrap();
            c.send(b"ping", t).unwrap();
            assert_eq!(c.recv(t).unwrap(), b"ping");
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
}

/// quinn used directly, with the same certificates and the ring provider,
/// and the same thread layout as the plugin: server and client endpoints
/// each on their own one-worker runtime.
struct Direct {
    rt: tokio::runtime::Runtime,
    srv_rt: tokio::runtime::Runtime,
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
}

impl Direct {
    fn new(pki: &Pki) -> Self {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = pki::ca_files(pki.home.path());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&ca.cert).unwrap())
            .unwrap();
        let roots = Arc::new(roots);
        let leaf = |name: &str| {
            let f = pki::cert_files(pki.home.path(), name);
            (
                vec![CertificateDer::from_pem_file(&f.cert).unwrap()],
                PrivateKeyDer::from_pem_file(&f.key).unwrap(),
            )
        };
        let (chain, key) = leaf("server");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&roots),
            Arc::clone(&provider),
        )
        .build()
        .unwrap();
        let mut stls = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        stls.alpn_protocols = vec![b"haifu/1".to_vec()];
        let (chain, key) = leaf("client");
        let mut ctls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        ctls.alpn_protocols = vec![b"haifu/1".to_vec()];
        let one = || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
        };
        Self {
            rt: one(),
            srv_rt: one(),
            server: quinn::ServerConfig::with_crypto(Arc::new(
                quinn::crypto::rustls::QuicServerConfig::try_from(stls).unwrap(),
            )),
            client: quinn::ClientConfig::new(Arc::new(
                quinn::crypto::rustls::QuicClientConfig::try_from(ctls).unwrap(),
            )),
        }
    }

    fn endpoints(&self) -> (quinn::Endpoint, quinn::Endpoint) {
        let srv = {
            let _g = self.srv_rt.enter();
            quinn::Endpoint::server(self.server.clone(), "127.0.0.1:0".parse().unwrap()).unwrap()
        };
        let _g = self.rt.enter();
        let mut cli = quinn::Endpoint::client("0.0.0.0:0".parse().unwrap()).unwrap();
        cli.set_default_client_config(self.client.clone());
        (srv, cli)
    }

    fn stream(&self, bytes: usize) -> f64 {
        let (srv, cli) = self.endpoints();
        let addr = srv.local_addr().unwrap();
        let server = self.srv_rt.spawn(async move {
            let conn = srv.accept().await.unwrap().await.unwrap();
            let (_s, mut r) = conn.accept_bi().await.unwrap();
            let mut buf = vec![0u8; MESSAGE];
            let mut got = 0usize;
            while got < bytes {
                got += r.read(&mut buf).await.unwrap().unwrap();
            }
            (Instant::now(), conn)
        });
        self.rt.block_on(async move {
            let conn = cli.connect(addr, "server").unwrap().await.unwrap();
            let (mut s, _r) = conn.open_bi().await.unwrap();
            let msg = vec![7u8; MESSAGE];
            let start = Instant::now();
            for _ in 0..bytes / MESSAGE {
                s.write_all(&msg).await.unwrap();
            }
            let (end, _c) = server.await.unwrap();
            bytes as f64 / (end - start).as_secs_f64() / 1e6
        })
    }

    fn conns(&self, n: usize) -> f64 {
        let (srv, cli) = self.endpoints();
        let addr = srv.local_addr().unwrap();
        self.srv_rt.spawn(async move {
            for _ in 0..n {
                let conn = srv.accept().await.unwrap().await.unwrap();
                let (mut s, mut r) = conn.accept_bi().await.unwrap();
                let m = r.read_to_end(64).await.unwrap();
                s.write_all(&m).await.unwrap();
                s.finish().unwrap();
                conn.closed().await;
            }
        });
        self.rt.block_on(async move {
            let start = Instant::now();
            for _ in 0..n {
                let conn = cli.connect(addr, "server").unwrap().await.unwrap();
                let (mut s, mut r) = conn.open_bi().await.unwrap();
                s.write_all(b"ping").await.unwrap();
                s.finish().unwrap();
                assert_eq!(r.read_to_end(64).await.unwrap(), b"ping");
                conn.close(0u32.into(), b"done");
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
    }
}

fn bench_quic(plugin: &Plugin) -> ((f64, f64), (f64, f64)) {
    let pki = Pki::new();
    let direct = Direct::new(&pki);
    let bytes = ((STREAM_BYTES as f64 * scale()) as usize / MESSAGE).max(1) * MESSAGE;
    let n = ((1000.0 * scale()) as usize).max(10);
    let (mut sv, mut sd, mut cv, mut cd) = (vec![], vec![], vec![], vec![]);
    for i in 0..RUNS {
        if i % 2 == 0 {
            sv.push(plugin_stream(plugin, &pki, bytes));
            sd.push(direct.stream(bytes));
            cv.push(plugin_conns(plugin, &pki, n));
            cd.push(direct.conns(n));
        } else {
            sd.push(direct.stream(bytes));
            sv.push(plugin_stream(plugin, &pki, bytes));
            cd.push(direct.conns(n));
            cv.push(plugin_conns(plugin, &pki, n));
        }
    }
    ((median(sv), median(sd)), (median(cv), median(cd)))
}

/// The TCP+TLS plugin against the QUIC plugin: (stream tls, stream quic),
/// (connections tls, connections quic).
fn bench_tls(tls: &Plugin, quic: &Plugin) -> ((f64, f64), (f64, f64)) {
    let pki = Pki::new();
    let bytes = ((STREAM_BYTES as f64 * scale()) as usize / MESSAGE).max(1) * MESSAGE;
    let n = ((1000.0 * scale()) as usize).max(10);
    let (mut st, mut sq, mut ct, mut cq) = (vec![], vec![], vec![], vec![]);
    for i in 0..RUNS {
        let order: [&Plugin; 2] = if i % 2 == 0 { [tls, quic] } else { [quic, tls] };
        for p in order {
            let (s, c) = (plugin_stream(p, &pki, bytes), plugin_conns(p, &pki, n));
            if std::ptr::eq(p, tls) {
                st.push(s);
                ct.push(c);
            } else {
                sq.push(s);
                cq.push(c);
            }
        }
    }
    ((median(st), median(sq)), (median(ct), median(cq)))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // we need, so only run in full when asked to bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "transport benchmark: run with `cargo bench -p haifu-plugin-host --bench transport`"
        );
        return;
    }
    let mcast = common::load("haifu-transport-multicast");
    let quic = common::load("haifu-transport-quic");
    let tls = common::load("haifu-transport-tls");
    println!("running: {RUNS} runs per case, medians; scale {}", scale());
    let (mv, md, mvd, mdd) = bench_multicast(&mcast);
    let ((sv, sd), (cv, cd)) = bench_quic(&quic);
    let ((ts, tq), (tc, tcq)) = bench_tls(&tls, &quic);
    println!();
    println!("| case | via plugin | direct | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| multicast 1400 B, 1→{RECEIVERS}, unpaced: per-receiver rate | {mv:.0} MB/s ({:.0}% delivered) | {md:.0} MB/s ({:.0}% delivered) | {:.2}x | ≥0.9x |",
        mvd * 100.0,
        mdd * 100.0,
        mv / md
    );
    println!(
        "| quic one {} MiB stream | {sv:.0} MB/s | {sd:.0} MB/s | {:.2}x | ≥0.8x |",
        ((STREAM_BYTES as f64 * scale()) as usize / MESSAGE).max(1),
        sv / sd
    );
    println!(
        "| quic short connections (mTLS handshake, echo, close) | {cv:.0} conn/s | {cd:.0} conn/s | {:.2}x | ≥0.8x |",
        cv / cd
    );
    println!();
    println!("| case | tls plugin | quic plugin | tls/quic |");
    println!("|---|---|---|---|");
    println!(
        "| one {} MiB stream | {ts:.0} MB/s | {tq:.0} MB/s | {:.2}x |",
        ((STREAM_BYTES as f64 * scale()) as usize / MESSAGE).max(1),
        ts / tq
    );
    println!(
        "| {} short connections (mTLS handshake, echo, close) | {tc:.0} conn/s | {tcq:.0} conn/s | {:.2}x |",
        ((1000.0 * scale()) as usize).max(10),
        tc / tcq
    );
}
