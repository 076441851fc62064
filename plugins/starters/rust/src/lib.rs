//! A haifu transport plugin to start from: datagram groups over UDP
//! unicast to a list of peers, for networks without multicast. It follows
//! `plugins/abi/SPEC.md` and passes `haifu plugins check`; replace the
//! socket code with your transport and keep the shape.
//!
//! `group_open` keys (SPEC §5.6 lists the ones the engine adds):
//!
//! | key | meaning |
//! |---|---|
//! | `group` | engine: `HOST:PORT`; its port is the default bound and peer port |
//! | `join` | engine: `false` is send-only, bound to an ephemeral port |
//! | `loopback` | engine: `false` drops datagrams from this member's own address |
//! | `ttl` | engine: IP TTL of sent datagrams |
//! | `interface` | engine: accepted and ignored (unicast follows the routes) |
//! | `peers` | where every datagram goes, `host:port,...` (`:port` defaults to the group's); without it the member only receives |
//! | `bind` | the address to receive on (default `0.0.0.0:<group port>`) |
//! | `max_datagram` | larger sends are refused with `TOO_LARGE` (default 65,507) |

// The ABI crate's `export_transport!` holds the only `unsafe` a plugin
// needs, and allows it there.
#![deny(unsafe_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use haifu_transport_abi::{
    Config, DatagramGroup, Error, Timeout, Transport, export_transport, status,
};

/// The plugin instance: nothing shared between groups.
#[derive(Debug)]
pub struct Template;

impl Transport for Template {
    const NAME: &'static str = "template";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(config: &Config) -> Result<Self, Error> {
        // Every call of init must be cheap and take nothing exclusive: the
        // host runs it in a probe child first (SPEC 1.7).
        config.check_known(&[])?;
        Ok(Self)
    }
}

/// One member of a group.
#[derive(Debug)]
pub struct Group {
    socket: UdpSocket,
    local: SocketAddr,
    peers: Vec<SocketAddr>,
    loopback: bool,
    max_datagram: usize,
    /// `recv` sets the socket's read timeout: one receiver at a time.
    recv_lock: Mutex<()>,
}

const KNOWN: &[&str] = &[
    "group",
    "join",
    "loopback",
    "ttl",
    "interface",
    "peers",
    "bind",
    "max_datagram",
];

/// `host:port`, or `host` with `default_port`.
fn addr(text: &str, default_port: u16, what: &str) -> Result<SocketAddr, Error> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .or_else(|_| format!("{text}:{default_port}").parse())
        .map_err(|_| {
            Error::invalid(format!(
                "configuration: bad {what} {text:?} (expected a.b.c.d:port)"
            ))
        })
}

impl DatagramGroup for Group {
    type Transport = Template;

    fn open(_: &Template, config: &Config) -> Result<Self, Error> {
        config.check_known(KNOWN)?;
        let port = match config.get("group") {
            Some(g) => addr(g, 0, "group")?.port(),
            None => 0,
        };
        let join = config.bool_or("join", true)?;
        let peers = match config.get("peers") {
            Some(list) => list
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| addr(p, port, "peer"))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let bind = match (join, config.get("bind")) {
            (false, _) => "0.0.0.0:0"
                .parse()
                .map_err(|_| Error::internal("address"))?,
            (true, Some(b)) => addr(b, port, "bind")?,
            (true, None) => SocketAddr::from(([0, 0, 0, 0], port)),
        };
        let socket =
            UdpSocket::bind(bind).map_err(|e| Error::io(format!("cannot bind {bind}: {e}")))?;
        let ttl: u32 = config.parse_or("ttl", 1)?;
        socket
            .set_ttl(ttl)
            .map_err(|e| Error::invalid(format!("configuration: ttl {ttl}: {e}")))?;
        let max_datagram: usize = config.parse_or("max_datagram", 65_507)?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket,
            local,
            peers,
            loopback: config.bool_or("loopback", true)?,
            max_datagram,
            recv_lock: Mutex::new(()),
        })
    }

    fn send(&self, datagram: &[u8]) -> Result<(), Error> {
        if self.peers.is_empty() {
            return Err(Error::unsupported(
                "no peers configured (peers=host:port,...): this member only receives",
            ));
        }
        if datagram.len() > self.max_datagram {
            return Err(Error::too_large(format!(
                "datagram of {} bytes, limit {}",
                datagram.len(),
                self.max_datagram
            )));
        }
        for peer in &self.peers {
            // A peer that is down must not stop the others: datagrams may
            // be lost, the engine's carousel copes.
            match self.socket.send_to(datagram, peer) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(Error::io(format!("send to {peer}: {e}"))),
            }
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8], timeout: Timeout) -> Result<usize, Error> {
        let _one = self.recv_lock.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut scratch = vec![0u8; 65_536];
        loop {
            // A zero read timeout means "none" to the OS: poll with 1 µs.
            let wait = deadline.map(|d| {
                d.saturating_duration_since(Instant::now())
                    .max(Duration::from_micros(1))
            });
            self.socket.set_read_timeout(wait)?;
            let (n, from) = match self.socket.recv_from(&mut scratch) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e.into()),
            };
            let own = from.port() == self.local.port()
                && (from.ip() == self.local.ip() || self.local.ip().is_unspecified());
            if own && !self.loopback {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Error::timeout());
                }
                continue;
            }
            let Some(dst) = buf.get_mut(..n) else {
                return Err(Error::new(
                    status::BUFFER_TOO_SMALL,
                    format!("datagram of {n} bytes, buffer {}", buf.len()),
                ));
            };
            dst.copy_from_slice(scratch.get(..n).unwrap_or_default());
            return Ok(n);
        }
    }

    fn local_addr(&self) -> Result<String, Error> {
        Ok(self.local.to_string())
    }
}

export_transport! {
    transport: Template,
    datagram: Group,
}
