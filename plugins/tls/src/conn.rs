//! One TLS connection: a reader thread turning records into whole
//! messages, and sends encrypted under a lock.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haifu_transport_abi::{Error, StreamConnection, Timeout};

/// The hello each side sends once the handshake is done.
pub(crate) const HELLO: &[u8; 4] = b"HFU1";

/// What the reader thread hands to `recv`.
type Incoming = Result<Vec<u8>, Error>;

/// What the reader thread and the senders share.
#[derive(Debug)]
pub(crate) struct Shared {
    tls: Mutex<rustls::Connection>,
    sock: TcpStream,
    /// Held while encrypting and writing: records leave in order.
    write: Mutex<()>,
    closed: AtomicBool,
}

impl Shared {
    /// Cuts the connection at once (a deny-listed peer): the reader ends,
    /// every call returns `CLOSED`.
    pub(crate) fn cut(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// A verified connection.
#[derive(Debug)]
pub(crate) struct TlsConnection {
    pub(crate) shared: Arc<Shared>,
    inbox: Mutex<Receiver<Incoming>>,
    identity: String,
    role: &'static str,
    max_frame: usize,
    close_timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the plaintext rustls holds into `pending`.
fn drain_plaintext(tls: &mut rustls::Connection, pending: &mut Vec<u8>) -> Result<bool, Error> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.reader().read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => pending.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(Error::closed(format!("connection closed: {e}"))),
        }
    }
}

impl TlsConnection {
    /// Wraps a connection whose handshake and hello are done; `pending`
    /// is plaintext already read past the hello.
    pub(crate) fn start(
        tls: rustls::Connection,
        sock: TcpStream,
        pending: Vec<u8>,
        identity: String,
        role: &'static str,
        max_frame: usize,
        close_timeout: Duration,
    ) -> Result<Self, Error> {
        let mut reader = sock.try_clone()?;
        sock.set_read_timeout(None)?;
        sock.set_nodelay(true)?;
        let shared = Arc::new(Shared {
            tls: Mutex::new(tls),
            sock,
            write: Mutex::new(()),
            closed: AtomicBool::new(false),
        });
        let (tx, rx) = channel();
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("tls-reader".into())
            .spawn(move || read_loop(&s, &mut reader, pending, max_frame, &tx))
            .map_err(|e| Error::io(format!("cannot start the reader thread: {e}")))?;
        Ok(Self {
            shared,
            inbox: Mutex::new(rx),
            identity,
            role,
            max_frame,
            close_timeout,
        })
    }

    /// Encrypts `plain` and writes it, with whatever else rustls holds.
    fn write_plain(&self, plain: &[&[u8]], timeout: Timeout) -> Result<(), Error> {
        let _order = lock(&self.shared.write);
        let mut out = Vec::new();
        {
            let mut tls = lock(&self.shared.tls);
            for p in plain {
                tls.writer().write_all(p)?;
            }
            while tls.wants_write() {
                tls.write_tls(&mut out)?;
            }
        }
        self.shared
            .sock
            .set_write_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))?;
        if let Err(e) = (&self.shared.sock).write_all(&out) {
            // Part of a record may be out: the stream cannot go on.
            self.shared.cut();
            return Err(match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    Error::closed("send timed out part-way; the connection is closed")
                }
                _ => Error::closed(format!("connection closed: {e}")),
            });
        }
        Ok(())
    }
}

/// The reader thread: records in, whole messages out, until the peer
/// closes or the connection fails.
fn read_loop(
    s: &Shared,
    sock: &mut TcpStream,
    mut pending: Vec<u8>,
    max_frame: usize,
    tx: &Sender<Incoming>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut peer_done = false;
    loop {
        // Whole messages out of what has arrived.
        while let Some(head) = pending.get(..4) {
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len > max_frame {
                let _ = tx.send(Err(Error::too_large(format!(
                    "message of {len} bytes, limit {max_frame}"
                ))));
                s.cut();
                return;
            }
            let Some(body) = pending.get(4..4 + len) else {
                break;
            };
            if tx.send(Ok(body.to_vec())).is_err() {
                return;
            }
            pending.drain(..4 + len);
        }
        if peer_done {
            let _ = tx.send(Err(Error::closed("the peer closed the connection")));
            return;
        }
        let n = match sock.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = tx.send(Err(Error::closed("connection closed")));
                return;
            }
            Ok(n) => n,
        };
        let mut tls = lock(&s.tls);
        let mut data = buf.get(..n).unwrap_or_default();
        while !data.is_empty() {
            if tls.read_tls(&mut data).is_err() {
                break;
            }
            match tls.process_new_packets() {
                Ok(state) => {
                    if state.peer_has_closed() {
                        peer_done = true;
                    }
                }
                Err(e) => {
                    drop(tls);
                    let _ = tx.send(Err(Error::closed(format!("connection failed: {e}"))));
                    s.cut();
                    return;
                }
            }
            match drain_plaintext(&mut tls, &mut pending) {
                Ok(true) => peer_done = true,
                Ok(false) => {}
                Err(e) => {
                    drop(tls);
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    }
}

impl StreamConnection for TlsConnection {
    fn peer_identity(&self) -> &str {
        &self.identity
    }

    fn peer_role(&self) -> &str {
        self.role
    }

    fn send(&self, message: &[u8], timeout: Timeout) -> Result<(), Error> {
        if message.len() > self.max_frame {
            return Err(Error::too_large(format!(
                "message of {} bytes, limit {}",
                message.len(),
                self.max_frame
            )));
        }
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(Error::closed("connection closed"));
        }
        let len = u32::try_from(message.len())
            .map_err(|_| Error::too_large("message over 4 GiB"))?
            .to_be_bytes();
        self.write_plain(&[&len, message], timeout)
    }

    fn recv(&self, timeout: Timeout) -> Result<Vec<u8>, Error> {
        let inbox = lock(&self.inbox);
        let closed = || Error::closed("connection closed");
        match timeout {
            None => inbox.recv().map_err(|_| closed())?,
            Some(t) if t.is_zero() => inbox.try_recv().map_err(|e| match e {
                TryRecvError::Empty => Error::timeout(),
                TryRecvError::Disconnected => closed(),
            })?,
            Some(t) => inbox.recv_timeout(t).map_err(|e| match e {
                RecvTimeoutError::Timeout => Error::timeout(),
                RecvTimeoutError::Disconnected => closed(),
            })?,
        }
    }

    fn close(self) {
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            let _order = lock(&self.shared.write);
            let mut out = Vec::new();
            {
                let mut tls = lock(&self.shared.tls);
                tls.send_close_notify();
                while tls.wants_write() {
                    if tls.write_tls(&mut out).is_err() {
                        break;
                    }
                }
            }
            let _ = self.shared.sock.set_write_timeout(Some(self.close_timeout));
            let _ = (&self.shared.sock).write_all(&out);
            let _ = self.shared.sock.shutdown(Shutdown::Write);
            // Wait (bounded) for the peer to finish too, so it reads all.
            let end = Instant::now() + self.close_timeout;
            let inbox = lock(&self.inbox);
            while let Ok(Ok(_)) = inbox.recv_timeout(end.saturating_duration_since(Instant::now()))
            {
            }
        }
        let _ = self.shared.sock.shutdown(Shutdown::Both);
    }
}

impl Drop for TlsConnection {
    fn drop(&mut self) {
        let _ = self.shared.sock.shutdown(Shutdown::Both);
    }
}
