//! The socket code of the multicast plugin, free of the ABI so that the
//! benchmark can link the very same code directly and measure what the
//! plugin boundary costs.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, MultiHeaders};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Where the group's traffic goes in and out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interface {
    /// Let the kernel choose (the route to the group).
    Any,
    /// An IPv4 interface address.
    V4(Ipv4Addr),
    /// An interface index (IPv6, or IPv4 by index).
    Index(u32),
}

/// Everything needed to open a group socket pair.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Group address and port.
    pub group: SocketAddr,
    /// Interface for joining and sending.
    pub interface: Interface,
    /// Multicast TTL (IPv4) or hop limit (IPv6).
    pub ttl: u32,
    /// Whether this host's own datagrams are looped back to its members.
    pub loopback: bool,
    /// Pacing rate in bits per second; 0 sends as fast as the socket takes.
    pub rate_bps: u64,
    /// Whether to join the group and receive (false: send-only).
    pub join: bool,
    /// Requested SO_RCVBUF in bytes (the kernel may cap it).
    pub recv_buffer: usize,
    /// Requested SO_SNDBUF in bytes.
    pub send_buffer: usize,
}

/// Token-bucket-like pacing: each datagram books `len * 8 / rate` seconds;
/// a sender that fell behind may catch up by at most `MAX_BURST`.
#[derive(Debug)]
struct Pacer {
    rate_bps: u64,
    next: Instant,
}

const MAX_BURST: Duration = Duration::from_millis(2);

impl Pacer {
    /// Books a datagram and returns when it may leave.
    fn book(&mut self, len: usize) -> Instant {
        let now = Instant::now();
        if self.next + MAX_BURST < now {
            self.next = now - MAX_BURST;
        }
        let at = self.next;
        let bits = (len as u128) * 8;
        let nanos = bits * 1_000_000_000 / u128::from(self.rate_bps.max(1));
        self.next += Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        at
    }

    /// Books the first datagrams of a batch: the first, and the others
    /// whose turn comes within `MAX_BURST` of it, so a batch never bursts
    /// more than a single sender that fell behind may. Returns when they
    /// may leave and how many were booked (at least one).
    fn book_batch(&mut self, lens: &[&[u8]]) -> (Instant, usize) {
        let Some((first, rest)) = lens.split_first() else {
            return (Instant::now(), 0);
        };
        let at = self.book(first.len());
        let mut n = 1;
        for d in rest {
            if self.next > at + MAX_BURST {
                break;
            }
            self.book(d.len());
            n += 1;
        }
        (at, n)
    }
}

fn wait_until(at: Instant) {
    loop {
        let now = Instant::now();
        if now >= at {
            return;
        }
        let left = at - now;
        if left > Duration::from_micros(1500) {
            std::thread::sleep(left - Duration::from_millis(1));
        } else {
            std::thread::yield_now();
        }
    }
}

/// A joined group: a receiving socket bound to the group (when `join`) and
/// a sending socket connected to it.
#[derive(Debug)]
pub(crate) struct McastSocket {
    recv: Option<UdpSocket>,
    send: UdpSocket,
    pacer: Option<Mutex<Pacer>>,
    /// The receive timeout last set, in µs + 1 (0: never set), to skip the
    /// setsockopt when it does not change.
    timeout_us: AtomicU64,
}

impl McastSocket {
    /// Opens the sockets and joins the group.
    pub(crate) fn open(o: &Options) -> io::Result<Self> {
        let domain = Domain::for_address(o.group);
        let recv = if o.join {
            let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            // Best effort: the kernel caps at rmem_max unless privileged.
            let _ = s.set_recv_buffer_size(o.recv_buffer);
            // Bound to the group address, so only the group's traffic on
            // this port arrives (Linux; elsewhere bind the wildcard).
            let bind_ip = if cfg!(target_os = "linux") {
                o.group.ip()
            } else if o.group.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            };
            s.bind(&SockAddr::from(SocketAddr::new(bind_ip, o.group.port())))?;
            match (o.group.ip(), o.interface) {
                (IpAddr::V4(g), Interface::Any) => {
                    s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)?
                }
                (IpAddr::V4(g), Interface::V4(a)) => s.join_multicast_v4(&g, &a)?,
                (IpAddr::V4(g), Interface::Index(i)) => {
                    s.join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(i))?
                }
                (IpAddr::V6(g), Interface::Index(i)) => s.join_multicast_v6(&g, i)?,
                (IpAddr::V6(g), Interface::Any) => s.join_multicast_v6(&g, 0)?,
                (IpAddr::V6(_), Interface::V4(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an IPv6 group needs an interface name or index",
                    ));
                }
            }
            if o.group.is_ipv4() {
                let _ = s.set_multicast_all_v4(false);
            } else {
                let _ = s.set_multicast_all_v6(false);
            }
            Some(UdpSocket::from(s))
        } else {
            None
        };

        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        let _ = s.set_send_buffer_size(o.send_buffer);
        let local = match (o.group.ip(), o.interface) {
            (IpAddr::V4(_), Interface::V4(a)) => {
                s.set_multicast_if_v4(&a)?;
                IpAddr::V4(a)
            }
            (IpAddr::V4(_), _) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (IpAddr::V6(_), Interface::Index(i)) => {
                s.set_multicast_if_v6(i)?;
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            }
            (IpAddr::V6(_), _) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        if o.group.is_ipv4() {
            s.set_multicast_ttl_v4(o.ttl)?;
            s.set_multicast_loop_v4(o.loopback)?;
        } else {
            s.set_multicast_hops_v6(o.ttl)?;
            s.set_multicast_loop_v6(o.loopback)?;
        }
        s.bind(&SockAddr::from(SocketAddr::new(local, 0)))?;
        s.connect(&SockAddr::from(o.group))?;
        let pacer = (o.rate_bps > 0).then(|| {
            Mutex::new(Pacer {
                rate_bps: o.rate_bps,
                next: Instant::now(),
            })
        });
        Ok(Self {
            recv,
            send: UdpSocket::from(s),
            pacer,
            timeout_us: AtomicU64::new(0),
        })
    }

    /// The receiving socket's bound address (the group's port), or the
    /// sending socket's for a send-only group.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.recv.as_ref().unwrap_or(&self.send).local_addr()
    }

    /// Sends one datagram, after the pacing delay.
    pub(crate) fn send(&self, datagram: &[u8]) -> io::Result<()> {
        if let Some(p) = &self.pacer {
            let at = p
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .book(datagram.len());
            wait_until(at);
        }
        self.send.send(datagram)?;
        Ok(())
    }

    /// Receives one datagram into `buf`, returning the datagram's full
    /// length, which exceeds `buf.len()` when it was truncated. A timeout is
    /// an error of kind `WouldBlock` or `TimedOut`.
    pub(crate) fn recv(&self, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        let sock = self.receiver()?;
        self.set_timeout(sock, timeout)?;
        // MSG_TRUNC makes Linux return the datagram's real length.
        nix::sys::socket::recv(sock.as_raw_fd(), buf, MsgFlags::MSG_TRUNC).map_err(io::Error::from)
    }

    /// The receiving socket, or `Unsupported` for a send-only group.
    fn receiver(&self) -> io::Result<&UdpSocket> {
        self.recv.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "the group was opened with join=false (send only)",
            )
        })
    }

    /// Sets SO_RCVTIMEO to `timeout` unless it already is.
    fn set_timeout(&self, sock: &UdpSocket, timeout: Option<Duration>) -> io::Result<()> {
        // SO_RCVTIMEO treats zero as "no limit"; a zero timeout polls.
        let t = timeout.map(|t| t.max(Duration::from_micros(1)));
        let code = t.map_or(u64::MAX, |t| {
            u64::try_from(t.as_micros()).unwrap_or(u64::MAX - 1) + 1
        });
        if self.timeout_us.swap(code, Ordering::Relaxed) != code {
            sock.set_read_timeout(t)?;
        }
        Ok(())
    }

    /// Sends the first datagrams of `datagrams` with one `sendmmsg`, after
    /// the pacing delay, and returns how many went out (at least one, or an
    /// error). A paced group sends those whose turn comes within a short
    /// burst; the caller sends the rest in its next call.
    pub(crate) fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        let mut batch = &datagrams[..datagrams.len().min(BATCH_MAX)];
        if let Some(p) = &self.pacer {
            let (at, n) = p
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .book_batch(batch);
            batch = &batch[..n];
            wait_until(at);
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|d| [IoSlice::new(d)]).collect();
        // The socket is connected to the group: no address per message.
        let addrs: Vec<Option<()>> = vec![None; batch.len()];
        let mut headers = MultiHeaders::<()>::preallocate(batch.len(), None);
        let sent = nix::sys::socket::sendmmsg(
            self.send.as_raw_fd(),
            &mut headers,
            &iovs,
            &addrs,
            [],
            MsgFlags::empty(),
        )?;
        Ok(sent.count())
    }

    /// Receives up to `lens.len()` datagrams with one `recvmmsg`: waits up
    /// to `timeout` for the first, then takes those already queued.
    /// Datagram `i` lands in `slots[i * stride..][..stride]`, its real
    /// length in `lens[i]` (above `stride` when it did not fit). Returns
    /// how many; a timeout is an error of kind `WouldBlock` or `TimedOut`.
    pub(crate) fn recv_batch(
        &self,
        slots: &mut [u8],
        stride: usize,
        lens: &mut [usize],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let sock = self.receiver()?;
        self.set_timeout(sock, timeout)?;
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = slots
            .chunks_exact_mut(stride.max(1))
            .take(lens.len().min(BATCH_MAX))
            .map(|slot| [IoSliceMut::new(slot)])
            .collect();
        if iovs.is_empty() {
            return Ok(0);
        }
        let mut headers = MultiHeaders::<()>::preallocate(iovs.len(), None);
        // MSG_WAITFORONE: block (up to SO_RCVTIMEO) for the first datagram
        // only; MSG_TRUNC: report each datagram's real length. The
        // syscall's own timeout argument is not used: Linux checks it only
        // after a datagram arrived.
        let got = nix::sys::socket::recvmmsg(
            sock.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE | MsgFlags::MSG_TRUNC,
            None,
        )?;
        let mut n = 0;
        for (len, msg) in lens.iter_mut().zip(got) {
            *len = msg.bytes;
            n += 1;
        }
        Ok(n)
    }
}

/// The most datagrams one `sendmmsg` or `recvmmsg` takes (`UIO_MAXIOV`).
const BATCH_MAX: usize = 1024;
