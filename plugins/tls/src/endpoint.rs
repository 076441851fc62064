//! The endpoint: a listener whose accepted sockets each handshake on their
//! own thread, and outgoing connections.

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use haifu_transport_abi::{Config, Error, StreamEndpoint, Timeout};

use crate::conn::{HELLO, Shared, TlsConnection};
use crate::tls::{DenyList, Identity, cert_names, cert_role, is_denied};
use crate::{DEFAULT_MAX_FRAME, Tls};

const ALPN: &[u8] = b"haifu-tls/1";

const KNOWN: &[&str] = &[
    "ca",
    "cert",
    "key",
    "listen",
    "deny",
    "max_frame",
    "hello_timeout_ms",
    "close_timeout_ms",
    "max_handshakes",
];

/// The default `max_handshakes`.
const DEFAULT_MAX_HANDSHAKES: usize = 64;

/// Live connections by peer identity, to cut when the identity is denied.
type Live = Arc<Mutex<Vec<(String, Weak<Shared>)>>>;

#[derive(Debug, Clone)]
struct Settings {
    max_frame: usize,
    hello_timeout: Duration,
    close_timeout: Duration,
    max_handshakes: usize,
}

/// The accepted sockets still handshaking, oldest first, each with the id
/// its thread removes when it ends. Bounded by `max_handshakes`: a flood of
/// half-open connections can hold that many threads and no more, and a new
/// socket beyond it cuts the oldest (the likeliest to be stale), so the
/// flood never shuts out a peer that completes its handshake promptly.
#[derive(Debug, Default)]
struct Pending {
    sockets: Mutex<(u64, VecDeque<(u64, TcpStream)>)>,
    ended: Condvar,
}

impl Pending {
    /// Waits until fewer than `max` handshakes run, cutting the oldest
    /// when the limit is reached, then registers `sock`; returns its id.
    fn admit(&self, sock: &TcpStream, max: usize) -> Option<u64> {
        let copy = sock.try_clone().ok()?;
        let mut g = lock(&self.sockets);
        let deadline = Instant::now() + Duration::from_secs(5);
        while g.1.len() >= max.max(1) {
            if let Some((_, oldest)) = g.1.front() {
                // The thread wakes with an error and removes itself.
                let _ = oldest.shutdown(std::net::Shutdown::Both);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            g = self
                .ended
                .wait_timeout(g, left.min(Duration::from_millis(100)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        g.0 += 1;
        let id = g.0;
        g.1.push_back((id, copy));
        Some(id)
    }

    fn end(&self, id: u64) {
        lock(&self.sockets).1.retain(|(i, _)| *i != id);
        self.ended.notify_all();
    }
}

/// An endpoint.
#[derive(Debug)]
pub(crate) struct TlsEndpoint {
    local: Option<SocketAddr>,
    accepted: Option<Mutex<Receiver<TlsConnection>>>,
    client: Arc<rustls::ClientConfig>,
    deny: DenyList,
    live: Live,
    stop: Arc<AtomicBool>,
    settings: Settings,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The verified peer's identity and role, or `DENIED`.
fn peer_of(tls: &rustls::Connection, deny: &DenyList) -> Result<(String, &'static str), Error> {
    let first = tls
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| Error::denied("peer presented no certificate"))?;
    let names = cert_names(first).map_err(Error::denied)?;
    let role = cert_role(first).map_err(Error::denied)?;
    if is_denied(deny, &names) {
        return Err(Error::denied("identity denied"));
    }
    let identity = names
        .into_iter()
        .next()
        .ok_or_else(|| Error::denied("certificate without a name"))?;
    Ok((identity, role))
}

/// The TLS handshake, then `check` (the accepting side refuses a denied
/// identity there, before its hello), then the hello each way; returns
/// what `check` found and the plaintext read past the peer's hello. A
/// refusal by the peer is `DENIED`.
fn handshake<T>(
    tls: &mut rustls::Connection,
    sock: &mut TcpStream,
    deadline: Instant,
    check: impl FnOnce(&rustls::Connection) -> Result<T, Error>,
) -> Result<(T, Vec<u8>), Error> {
    let left = || {
        let l = deadline.saturating_duration_since(Instant::now());
        if l.is_zero() {
            Err(Error::timeout())
        } else {
            Ok(l)
        }
    };
    let tls_err = |e: std::io::Error| -> Error {
        let text = e.to_string();
        if text.contains("AccessDenied")
            || text.contains("CertificateUnknown")
            || text.contains("BadCertificate")
            || text.contains("ApplicationVerificationFailure")
        {
            Error::denied(format!("refused by the peer: {text}"))
        } else if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            Error::timeout()
        } else {
            Error::io(format!("handshake: {text}"))
        }
    };
    while tls.is_handshaking() {
        sock.set_read_timeout(Some(left()?))?;
        sock.set_write_timeout(Some(left()?))?;
        if let Err(e) = tls.complete_io(sock) {
            // Let the peer know why (the alert rustls queued).
            while tls.wants_write() && tls.write_tls(sock).is_ok() {}
            return Err(tls_err(e));
        }
    }
    let checked = check(tls)?;
    tls.writer().write_all(HELLO)?;
    while tls.wants_write() {
        sock.set_write_timeout(Some(left()?))?;
        tls.write_tls(sock).map_err(tls_err)?;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < HELLO.len() {
        match tls.reader().read(&mut buf) {
            Ok(0) => return Err(Error::denied("the peer closed before its hello")),
            Ok(n) => {
                got.extend_from_slice(buf.get(..n).unwrap_or_default());
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(tls_err(e)),
        }
        sock.set_read_timeout(Some(left()?))?;
        match tls.read_tls(sock) {
            Ok(0) => return Err(Error::denied("the peer closed before its hello")),
            Ok(_) => {}
            Err(e) => return Err(tls_err(e)),
        }
        if let Err(e) = tls.process_new_packets() {
            while tls.wants_write() && tls.write_tls(sock).is_ok() {}
            return Err(tls_err(std::io::Error::other(format!("{e:?}"))));
        }
    }
    if got.get(..4) != Some(&HELLO[..]) {
        return Err(Error::io("the peer did not say hello"));
    }
    got.drain(..4);
    Ok((checked, got))
}

/// The accepting side of one socket, on its own thread.
fn serve_one(
    mut sock: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    deny: DenyList,
    live: Live,
    settings: Settings,
    out: Sender<TlsConnection>,
    handshaken: impl FnOnce(),
) {
    let run = || -> Result<TlsConnection, Error> {
        let server =
            rustls::ServerConnection::new(cfg).map_err(|e| Error::internal(e.to_string()))?;
        let mut tls = rustls::Connection::Server(server);
        tls.set_buffer_limit(None);
        let deadline = Instant::now() + settings.hello_timeout;
        let shaken = handshake(&mut tls, &mut sock, deadline, |t| peer_of(t, &deny));
        // No longer a pending handshake the limit may cut.
        handshaken();
        let ((identity, role), pending) = shaken?;
        TlsConnection::start(
            tls,
            sock,
            pending,
            identity,
            role,
            settings.max_frame,
            settings.close_timeout,
        )
    };
    if let Ok(conn) = run() {
        lock(&live).push((conn.peer_identity_owned(), Arc::downgrade(&conn.shared)));
        let _ = out.send(conn);
    }
}

impl TlsConnection {
    fn peer_identity_owned(&self) -> String {
        haifu_transport_abi::StreamConnection::peer_identity(self).to_owned()
    }
}

impl StreamEndpoint for TlsEndpoint {
    type Transport = Tls;
    type Connection = TlsConnection;

    fn open(_: &Tls, config: &Config) -> Result<Self, Error> {
        config.check_known(KNOWN)?;
        let path = |k: &str| config.require(k).map(PathBuf::from);
        let id = Identity::load(&path("ca")?, &path("cert")?, &path("key")?)?;
        let deny: DenyList = Arc::new(RwLock::new(
            config
                .get("deny")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<HashSet<_>>(),
        ));
        let settings = Settings {
            max_frame: config.parse_or("max_frame", DEFAULT_MAX_FRAME)?,
            hello_timeout: Duration::from_millis(config.parse_or("hello_timeout_ms", 10_000u64)?),
            close_timeout: Duration::from_millis(config.parse_or("close_timeout_ms", 2_000u64)?),
            max_handshakes: config.parse_or("max_handshakes", DEFAULT_MAX_HANDSHAKES)?,
        };
        if settings.max_handshakes == 0 {
            return Err(Error::invalid("max_handshakes must be at least 1"));
        }
        // No resumption: every connection proves its certificate again, so
        // the deny list and the role are checked on each.
        let mut client = id.client_config(ALPN)?;
        client.resumption = rustls::client::Resumption::disabled();
        let client = Arc::new(client);
        let live: Live = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (mut local, mut accepted) = (None, None);
        if let Some(listen) = config.parse_opt::<SocketAddr>("listen")? {
            let mut server = id.server_config(Arc::clone(&deny), ALPN)?;
            server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            server.send_tls13_tickets = 0;
            let server = Arc::new(server);
            let listener = TcpListener::bind(listen)
                .map_err(|e| Error::io(format!("cannot listen on {listen}: {e}")))?;
            local = Some(listener.local_addr()?);
            let (tx, rx) = channel();
            accepted = Some(Mutex::new(rx));
            let (deny, live, stop, settings) = (
                Arc::clone(&deny),
                Arc::clone(&live),
                Arc::clone(&stop),
                settings.clone(),
            );
            let pending = Arc::new(Pending::default());
            std::thread::Builder::new()
                .name("tls-accept".into())
                .spawn(move || {
                    // Blocking accept; closing the endpoint wakes it with a
                    // connection of its own (see Drop).
                    while !stop.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((sock, _)) if stop.load(Ordering::SeqCst) => drop(sock),
                            Ok((sock, _)) => {
                                // Handshake flights are small writes: no Nagle.
                                let _ = sock.set_nodelay(true);
                                let Some(id) = pending.admit(&sock, settings.max_handshakes) else {
                                    continue;
                                };
                                let (cfg, deny, live, settings, tx, pending) = (
                                    Arc::clone(&server),
                                    Arc::clone(&deny),
                                    Arc::clone(&live),
                                    settings.clone(),
                                    tx.clone(),
                                    Arc::clone(&pending),
                                );
                                let spawned = std::thread::Builder::new()
                                    .name("tls-handshake".into())
                                    .spawn({
                                        let pending = Arc::clone(&pending);
                                        move || {
                                            let done = || pending.end(id);
                                            serve_one(sock, cfg, deny, live, settings, tx, done);
                                            // Again, for a handshake that failed early.
                                            pending.end(id);
                                        }
                                    });
                                if spawned.is_err() {
                                    pending.end(id);
                                }
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                })
                .map_err(|e| Error::io(format!("cannot start the accept thread: {e}")))?;
        }
        Ok(Self {
            local,
            accepted,
            client,
            deny,
            live,
            stop,
            settings,
        })
    }

    fn local_addr(&self) -> Result<String, Error> {
        self.local
            .map(|a| a.to_string())
            .ok_or_else(|| Error::unsupported("this endpoint does not listen"))
    }

    fn accept(&self, timeout: Timeout) -> Result<TlsConnection, Error> {
        let Some(rx) = &self.accepted else {
            return Err(Error::unsupported("this endpoint does not listen"));
        };
        let rx = lock(rx);
        match timeout {
            None => rx.recv().map_err(|_| Error::closed("endpoint closed")),
            Some(t) if t.is_zero() => rx.try_recv().map_err(|e| match e {
                TryRecvError::Empty => Error::timeout(),
                TryRecvError::Disconnected => Error::closed("endpoint closed"),
            }),
            Some(t) => rx.recv_timeout(t).map_err(|e| match e {
                RecvTimeoutError::Timeout => Error::timeout(),
                RecvTimeoutError::Disconnected => Error::closed("endpoint closed"),
            }),
        }
    }

    fn connect(
        &self,
        addr: &str,
        server_name: &str,
        timeout: Timeout,
    ) -> Result<TlsConnection, Error> {
        let target = addr
            .to_socket_addrs()
            .map_err(|e| Error::invalid(format!("address {addr:?}: {e}")))?
            .next()
            .ok_or_else(|| Error::invalid(format!("address {addr:?} resolves to nothing")))?;
        let wait = timeout.unwrap_or(self.settings.hello_timeout);
        let deadline = Instant::now() + wait;
        let mut sock = TcpStream::connect_timeout(&target, wait.max(Duration::from_millis(1)))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Error::timeout(),
                _ => Error::io(format!("connect to {addr}: {e}")),
            })?;
        sock.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| Error::invalid(format!("server name {server_name:?}: {e}")))?;
        let client = rustls::ClientConnection::new(Arc::clone(&self.client), name)
            .map_err(|e| Error::internal(e.to_string()))?;
        let mut tls = rustls::Connection::Client(client);
        tls.set_buffer_limit(None);
        let ((identity, role), pending) =
            handshake(&mut tls, &mut sock, deadline, |t| peer_of(t, &self.deny))?;
        if identity != server_name {
            return Err(Error::denied(format!(
                "{addr} proved {identity:?}, not {server_name:?}"
            )));
        }
        let conn = TlsConnection::start(
            tls,
            sock,
            pending,
            identity.clone(),
            role,
            self.settings.max_frame,
            self.settings.close_timeout,
        )?;
        lock(&self.live).push((identity, Arc::downgrade(&conn.shared)));
        Ok(conn)
    }

    fn set_denied(&self, identities: &[&str]) -> Result<(), Error> {
        {
            let mut set = self.deny.write().unwrap_or_else(|p| p.into_inner());
            set.clear();
            set.extend(identities.iter().map(|s| (*s).to_owned()));
        }
        let mut live = lock(&self.live);
        live.retain(|(id, weak)| {
            let Some(shared) = weak.upgrade() else {
                return false;
            };
            if identities.contains(&id.as_str()) {
                shared.cut();
                return false;
            }
            true
        });
        Ok(())
    }
}

impl Drop for TlsEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(mut at) = self.local {
            // Wake the blocking accept; an unspecified address is reached
            // on loopback.
            if at.ip().is_unspecified() {
                at.set_ip(match at {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            let _ = TcpStream::connect_timeout(&at, Duration::from_millis(200));
        }
    }
}
