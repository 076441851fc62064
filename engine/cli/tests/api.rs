//! The master's HTTP API against a real `haifu master` process on
//! loopback: who may call it, and what a caller can hold.
//!
//! The two load tests (20,000 idle connections; 300 half-open requests) run
//! alone: they measure time, and the flood takes most of this process's
//! file descriptors and of the ephemeral ports, which the other tests'
//! masters bind their fixed ports among.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::fleet::Fleet;
use serde_json::Value;

/// The load tests write-lock it, the others read-lock it.
static HEAVY: RwLock<()> = RwLock::new(());

fn light() -> RwLockReadGuard<'static, ()> {
    HEAVY.read().unwrap_or_else(|p| p.into_inner())
}

fn heavy() -> RwLockWriteGuard<'static, ()> {
    HEAVY.write().unwrap_or_else(|p| p.into_inner())
}

/// An HTTP answer, head and body split.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request on a new connection: `GET path` with `extra` header lines.
fn request(addr: SocketAddr, path: &str, extra: &str) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    Ok(Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    request(addr, path, &auth).unwrap()
}

/// A master with its API on loopback (plus `extra` config), answering.
fn master(slot: u16, extra: &str) -> (Fleet, SocketAddr) {
    let mut f = Fleet::new(slot);
    let api: SocketAddr = format!("127.0.0.1:{}", f.master_port + 15).parse().unwrap();
    f.write_master(&format!("api: {api}\n{extra}"));
    f.start("master", "master");
    f.wait_for(30, "the API's /healthz", || {
        request(api, "/healthz", "").is_ok_and(|r| r.status == 200)
    });
    (f, api)
}

fn create_token(f: &Fleet, name: &str, scope: &str) -> String {
    let out = f.haifu_ok(&["api", "token", "create", "--name", name, "--scope", scope]);
    let token = out.trim().to_owned();
    assert!(
        token.starts_with("hfu_") && token.len() == 68,
        "only the token on stdout: {out:?}"
    );
    token
}

const DATA: [&str; 6] = [
    "/v1/runs",
    "/v1/runs/1",
    "/v1/runs/1/audit",
    "/v1/fleet",
    "/v1/gate?client=pos-1&service=refund",
    "/v1/no-such-route",
];

/// Without a valid token nothing but /healthz answers, and it says nothing;
/// with a read (or admin) token every endpoint answers; revoked, refused.
#[test]
fn every_data_endpoint_needs_a_token_and_healthz_none() {
    let _shared = light();
    let (mut f, api) = master(0, "");
    let health = get(api, "/healthz", None);
    assert_eq!(
        (health.status, health.json()),
        (200, serde_json::json!({"status": "ok"}))
    );

    let wrong = format!("hfu_{}", "0".repeat(64));
    for path in DATA {
        for (auth, invalid) in [
            ("", false),
            ("Authorization: Basic dXNlcjpwdw==\r\n", true),
            ("Authorization: Bearer\r\n", true),
            ("Authorization: Bearer not-a-token\r\n", true),
            (&*format!("Authorization: Bearer {wrong}\r\n"), true),
        ] {
            let r = request(api, path, auth).unwrap();
            assert_eq!(r.status, 401, "{path} {auth:?}: {r:?}");
            let challenge = r.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{path}: {r:?}");
            assert_eq!(challenge.contains("invalid_token"), invalid, "{r:?}");
            assert!(r.json()["error"].is_string(), "{r:?}");
            assert!(!r.body.contains("pos-1"), "no data: {r:?}");
        }
    }

    let read = create_token(&f, "dashboard", "read");
    let admin = create_token(&f, "ops", "admin");
    for token in [&read, &admin] {
        let want = [200, 404, 404, 200, 200, 404];
        for (path, code) in DATA.iter().zip(want) {
            let r = get(api, path, Some(token));
            assert_eq!(r.status, code, "{path}: {r:?}");
            assert!(r.json().is_object() || r.json().is_array(), "{r:?}");
        }
    }
    let gate = get(api, "/v1/gate?client=pos-1&service=refund", Some(&read)).json();
    assert_eq!(gate["allow"], false, "{gate}");

    // The listing names tokens, never shows one, and notes their use.
    f.wait_for(10, "dashboard's last use in the listing", || {
        let list: Value =
            serde_json::from_str(&f.haifu_ok(&["api", "token", "list", "--json"])).unwrap();
        list[0]["name"] == "dashboard" && list[0]["last_used_at"].is_string()
    });
    let text = f.haifu_ok(&["api", "token", "list"]);
    assert!(
        text.contains("dashboard") && text.contains("admin"),
        "{text}"
    );
    for t in [&read, &admin] {
        assert!(!text.contains(&t[4..]), "{text}");
    }

    // Revoked: refused from the next request; the other token still works.
    f.haifu_ok(&["api", "token", "revoke", "dashboard"]);
    let r = get(api, "/v1/runs", Some(&read));
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(get(api, "/v1/runs", Some(&admin)).status, 200);
    assert!(f.stop("master"), "{}", f.dump());
}

/// Parameters are decoded strictly, and a body over the limit is refused
/// before anything reads it.
#[test]
fn bad_percent_encoding_and_big_bodies_are_refused() {
    let _shared = light();
    let (mut f, api) = master(1, "api_limits: {max_body_bytes: 1024}\n");
    let token = create_token(&f, "t", "read");
    for bad in ["pos%+1", "pos%", "pos%4", "pos%zz", "pos%ff"] {
        let r = get(
            api,
            &format!("/v1/gate?client={bad}&service=x"),
            Some(&token),
        );
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        let e = r.json()["error"].as_str().unwrap().to_owned();
        assert!(e.contains("\"client\""), "names the parameter: {e}");
    }
    let ok = get(api, "/v1/gate?client=pos%2D1&service=a+b", Some(&token));
    assert_eq!(ok.status, 200, "{ok:?}");

    let auth = format!("Authorization: Bearer {token}\r\nContent-Length: 4096\r\n");
    let r = request(api, "/v1/runs", &auth).unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    assert!(f.stop("master"), "{}", f.dump());
}

/// An `api:` address off loopback with no token in the ledger: the master
/// does not start, and says why and what to do, on one line.
#[test]
fn a_non_loopback_api_without_a_token_refuses_to_start() {
    let _shared = light();
    let f = Fleet::new(2);
    let addr = format!("0.0.0.0:{}", f.master_port + 15);
    f.write_master(&format!("api: {addr}\n"));
    let mut child = f
        .haifu()
        .args(["master", "--config", "master.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the master started with {addr} and no token");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("haifu: error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(&format!("{addr} is not a loopback address"))
            && line.contains("haifu api token create"),
        "{line}"
    );
}

/// Raises this process's soft `RLIMIT_NOFILE` as far as allowed (the master
/// it starts inherits it too); returns the new soft limit.
fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let want = lim.maximum.unwrap_or(u64::MAX).min(1 << 20);
    if lim.current.is_some_and(|c| c < want) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: lim.maximum,
            },
        )
        .unwrap();
    }
    getrlimit(Resource::Nofile).current.unwrap_or(want)
}

/// The flood: 20,000 idle connections used to exhaust the master's
/// descriptors, and it answered nothing meanwhile. Now the cap (512) holds,
/// the oldest idle connections make room, and a token holder is answered
/// within seconds both during the flood and after it.
///
/// 20,000 descriptors in this one process need a hard `RLIMIT_NOFILE` above
/// 20,000; where it is lower (it is exactly 20,000 on the machine this was
/// written on, so 19,000 are opened there), the test opens as many as it
/// allows less a reserve for the other tests, and prints how many.
#[test]
fn twenty_thousand_idle_connections_do_not_keep_a_token_holder_out() {
    let _alone = heavy();
    let limit = usize::try_from(raise_fd_limit()).unwrap();
    let target = 20_000usize.min(limit.saturating_sub(1_000.min(limit / 4)));
    // The flood must be well over the cap for the cap to be what is tested:
    // under a low hard limit, a smaller cap.
    let cap = if target >= 4 * 512 { 512 } else { 64 };
    eprintln!("RLIMIT_NOFILE {limit}: opening {target} idle connections against a cap of {cap}");
    assert!(
        target >= 4 * cap,
        "RLIMIT_NOFILE {limit} is too low for this test"
    );
    let (mut f, api) = master(3, &format!("api_limits: {{max_connections: {cap}}}\n"));
    let token = create_token(&f, "load", "read");

    // A token holder asking all along the flood.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asker = {
        let stop = std::sync::Arc::clone(&stop);
        let token = token.clone();
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut asked = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                let r = get(api, "/v1/runs", Some(&token));
                assert_eq!(r.status, 200, "during the flood: {r:?}");
                worst = worst.max(t.elapsed());
                asked += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (asked, worst)
        })
    };

    let started = Instant::now();
    let threads = 4;
    let openers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut held = Vec::with_capacity(target / threads);
                let mut failed = 0;
                for _ in 0..target / threads {
                    match TcpStream::connect_timeout(&api, Duration::from_secs(5)) {
                        Ok(s) => held.push(s),
                        Err(_) => failed += 1,
                    }
                }
                (held, failed)
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut failed = 0;
    for t in openers {
        let (h, n) = t.join().unwrap();
        held.extend(h);
        failed += n;
    }
    let flood = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (asked, worst) = asker.join().unwrap();
    eprintln!(
        "{} connections opened ({failed} failed) in {flood:.1?}; \
         {asked} requests during the flood, slowest {worst:.2?}",
        held.len()
    );
    assert!(held.len() >= target * 9 / 10, "{} of {target}", held.len());
    assert!(worst < Duration::from_secs(5), "slowest answer {worst:?}");

    // Every connection still open on this side: the master answers anyway.
    let t = Instant::now();
    let r = get(api, "/v1/runs", Some(&token));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(get(api, "/v1/runs", None).status, 401);
    assert!(
        f.log("master").contains("api: connection cap reached"),
        "{}",
        f.dump()
    );
    drop(held);
    // Alive and well: it stops cleanly when asked.
    assert!(f.stop("master"), "{}", f.dump());
}

/// The slow loris: 300 requests whose headers never end were still
/// open after 35 s. The header timeout (5 s by default) closes them, and a
/// connection trickling a byte a second does not keep its own alive.
#[test]
fn half_open_requests_are_closed_by_the_header_timeout() {
    let _alone = heavy();
    let (mut f, api) = master(4, "");
    let token = create_token(&f, "loris", "read");
    let timeout = Duration::from_secs(5);
    let started = Instant::now();
    let mut half: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(api).unwrap();
            write!(
                s,
                "GET /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            )
            .unwrap();
            s
        })
        .collect();
    let trickler = std::thread::spawn(move || {
        let mut s = TcpStream::connect(api).unwrap();
        let t = Instant::now();
        for b in b"GET /v1/runs HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        t.elapsed()
    });
    // Meanwhile a token holder is answered.
    assert_eq!(get(api, "/v1/runs", Some(&token)).status, 200);

    let mut closed_after = Vec::new();
    for s in &mut half {
        s.set_read_timeout(Some(timeout * 3)).unwrap();
        let mut buf = [0u8; 512];
        // EOF (or a reset): the master closed it.
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("still open after {:?}", started.elapsed())
                }
                Err(_) => break,
            }
        }
        closed_after.push(started.elapsed());
    }
    let first = closed_after.iter().min().unwrap();
    let last = closed_after.iter().max().unwrap();
    eprintln!("300 half-open requests closed between {first:.2?} and {last:.2?}");
    assert!(*first >= timeout - Duration::from_millis(500), "{first:?}");
    assert!(*last < timeout + Duration::from_secs(3), "{last:?}");
    let trickled = trickler.join().unwrap();
    assert!(trickled < timeout + Duration::from_secs(3), "{trickled:?}");
    assert_eq!(get(api, "/v1/runs", Some(&token)).status, 200);
    assert!(f.stop("master"), "{}", f.dump());
}
