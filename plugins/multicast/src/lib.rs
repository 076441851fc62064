//! haifu transport plugin: UDP multicast datagram groups.
//!
//! Offers the datagram-group shape of `haifu-transport-abi`. A group is a
//! multicast address and port, joined on one interface; sending is paced to
//! a configured bit rate; receiving waits up to a timeout. Batches go out
//! with one `sendmmsg` and come in with one `recvmmsg` (SPEC 5.8, 5.9). The
//! plugin needs no threads of its own: each call runs on the caller's
//! thread.
//!
//! Configuration (`key=value` lines) for `group_open`:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `group` | required | `239.255.0.1:5000` or `[ff15::1]:5000` |
//! | `interface` | kernel's choice | name (`eth0`, `lo`), IPv4 address, or index |
//! | `ttl` | `1` | TTL / hop limit (1 stays on the segment) |
//! | `loopback` | `true` | this host's members receive its own datagrams |
//! | `rate` | `0` (unpaced) | bits per second, suffixes `k`, `M`, `G` (`100M`) |
//! | `join` | `true` | `false` opens a send-only group |
//! | `recv_buffer` | `8388608` | SO_RCVBUF request, capped by the kernel |
//! | `send_buffer` | `4194304` | SO_SNDBUF request |
//! | `max_datagram` | `65507` | larger sends are refused |
//!
//! It does not fragment, order, retransmit or authenticate: the engine's
//! carousel owns FEC and datagram authentication.

#![deny(unsafe_code)]

mod socket;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use haifu_transport_abi::{
    Config, DatagramGroup, Error, Timeout, Transport, export_transport, status,
};
use socket::{Interface, McastSocket, Options};

/// The plugin instance; stateless.
#[derive(Debug)]
pub struct Multicast;

impl Transport for Multicast {
    const NAME: &'static str = "multicast";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn init(config: &Config) -> Result<Self, Error> {
        config.check_known(&[])?;
        Ok(Self)
    }
}

/// One joined group.
#[derive(Debug)]
pub struct Group {
    socket: McastSocket,
    max_datagram: usize,
    group: SocketAddr,
}

const KNOWN: &[&str] = &[
    "group",
    "interface",
    "ttl",
    "loopback",
    "rate",
    "join",
    "recv_buffer",
    "send_buffer",
    "max_datagram",
];

/// Parses `100M`, `1.5G`, `64k`, `1000000` as bits per second.
fn parse_rate(v: &str) -> Result<u64, Error> {
    let bad = || {
        Error::invalid(format!(
            "configuration: bad rate {v:?} (e.g. 100M, 1G, 500000)"
        ))
    };
    let (num, mult) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1e3),
        Some(b'M') => (&v[..v.len() - 1], 1e6),
        Some(b'G') => (&v[..v.len() - 1], 1e9),
        _ => (v, 1.0),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 || n * mult > 1e12 {
        return Err(bad());
    }
    Ok((n * mult) as u64)
}

/// Resolves `interface=` to an address (IPv4 groups) or index.
fn parse_interface(v: &str, v4: bool) -> Result<Interface, Error> {
    if let Ok(a) = v.parse::<Ipv4Addr>() {
        return Ok(Interface::V4(a));
    }
    if let Ok(i) = v.parse::<u32>() {
        return Ok(Interface::Index(i));
    }
    if v4 {
        let addrs = nix::ifaddrs::getifaddrs()
            .map_err(|e| Error::io(format!("cannot list network interfaces: {e}")))?;
        for a in addrs {
            if a.interface_name == v
                && let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in())
            {
                return Ok(Interface::V4(sin.ip()));
            }
        }
        return Err(Error::invalid(format!(
            "configuration: interface {v:?} does not exist or has no IPv4 address"
        )));
    }
    nix::net::if_::if_nametoindex(v)
        .map(Interface::Index)
        .map_err(|e| Error::invalid(format!("configuration: interface {v:?}: {e}")))
}

fn options(config: &Config) -> Result<(Options, usize), Error> {
    config.check_known(KNOWN)?;
    let group: SocketAddr = config
        .parse_opt("group")?
        .ok_or_else(|| Error::invalid("configuration: missing required key \"group\""))?;
    if !group.ip().is_multicast() {
        return Err(Error::invalid(format!(
            "configuration: group {} is not a multicast address",
            group.ip()
        )));
    }
    if group.port() == 0 {
        return Err(Error::invalid("configuration: group port must not be 0"));
    }
    let interface = match config.get("interface") {
        None | Some("") => Interface::Any,
        Some(v) => parse_interface(v, matches!(group.ip(), IpAddr::V4(_)))?,
    };
    let rate_bps = match config.get("rate") {
        None => 0,
        Some(v) => parse_rate(v)?,
    };
    let max_datagram = config.parse_or("max_datagram", 65_507usize)?;
    let o = Options {
        group,
        interface,
        ttl: config.parse_or("ttl", 1u32)?,
        loopback: config.bool_or("loopback", true)?,
        rate_bps,
        join: config.bool_or("join", true)?,
        recv_buffer: config.parse_or("recv_buffer", 8 << 20)?,
        send_buffer: config.parse_or("send_buffer", 4 << 20)?,
    };
    if o.ttl > 255 {
        return Err(Error::invalid("configuration: ttl must be at most 255"));
    }
    Ok((o, max_datagram))
}

impl DatagramGroup for Group {
    type Transport = Multicast;

    fn open(_: &Multicast, config: &Config) -> Result<Self, Error> {
        let (o, max_datagram) = options(config)?;
        let socket = McastSocket::open(&o)
            .map_err(|e| Error::io(format!("cannot open group {}: {e}", o.group)))?;
        Ok(Self {
            socket,
            max_datagram,
            group: o.group,
        })
    }

    fn send(&self, datagram: &[u8]) -> Result<(), Error> {
        if datagram.len() > self.max_datagram {
            return Err(Error::too_large(format!(
                "datagram of {} bytes, limit {}",
                datagram.len(),
                self.max_datagram
            )));
        }
        self.socket
            .send(datagram)
            .map_err(|e| Error::io(format!("send to {}: {e}", self.group)))
    }

    fn recv(&self, buf: &mut [u8], timeout: Timeout) -> Result<usize, Error> {
        match self.socket.recv(buf, timeout) {
            Ok(n) if n > buf.len() => Err(Error::new(
                status::BUFFER_TOO_SMALL,
                format!("datagram of {n} bytes, buffer {}", buf.len()),
            )),
            Ok(n) => Ok(n),
            Err(e) => Err(self.recv_error(e)),
        }
    }

    fn send_batch(&self, datagrams: &[&[u8]]) -> Result<usize, Error> {
        // Those before the first oversize datagram go now; the host's next
        // call starts with it and gets the refusal.
        let fit = datagrams
            .iter()
            .position(|d| d.len() > self.max_datagram)
            .unwrap_or(datagrams.len());
        if fit == 0 {
            if let Some(d) = datagrams.first() {
                return Err(Error::too_large(format!(
                    "datagram of {} bytes, limit {}",
                    d.len(),
                    self.max_datagram
                )));
            }
            return Ok(0);
        }
        self.socket
            .send_batch(&datagrams[..fit])
            .map_err(|e| Error::io(format!("send to {}: {e}", self.group)))
    }

    fn recv_batch(
        &self,
        slots: &mut [u8],
        stride: usize,
        lens: &mut [usize],
        timeout: Timeout,
    ) -> Result<usize, Error> {
        // Oversize datagrams come back with their real length, above
        // `stride`, as SPEC 5.9 asks; nothing to do here.
        self.socket
            .recv_batch(slots, stride, lens, timeout)
            .map_err(|e| self.recv_error(e))
    }

    fn local_addr(&self) -> Result<String, Error> {
        self.socket
            .local_addr()
            .map(|a| a.to_string())
            .map_err(|e| Error::io(format!("local address of {}: {e}", self.group)))
    }
}

impl Group {
    /// The plugin error for a failed receive.
    fn recv_error(&self, e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::timeout(),
            std::io::ErrorKind::Unsupported => Error::unsupported(e.to_string()),
            _ => Error::io(format!("receive from {}: {e}", self.group)),
        }
    }
}

export_transport! {
    transport: Multicast,
    datagram: Group,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_with_suffixes() {
        assert_eq!(parse_rate("100M").unwrap(), 100_000_000);
        assert_eq!(parse_rate("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate("64k").unwrap(), 64_000);
        assert_eq!(parse_rate("1000").unwrap(), 1000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-1").is_err());
    }

    #[test]
    fn options_reject_unicast_groups_and_typos() {
        let c = Config::parse(b"group=10.0.0.1:5000").unwrap();
        assert!(
            options(&c)
                .unwrap_err()
                .message()
                .contains("not a multicast")
        );
        let c = Config::parse(b"group=239.1.1.1:5000\nttll=2").unwrap();
        assert!(options(&c).unwrap_err().message().contains("ttll"));
        let c = Config::parse(b"group=239.1.1.1:5000\ninterface=lo").unwrap();
        assert_eq!(
            options(&c).unwrap().0.interface,
            Interface::V4(Ipv4Addr::LOCALHOST)
        );
    }
}
