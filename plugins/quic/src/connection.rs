//! One connection: a single bidirectional QUIC stream carrying frames of
//! `u32` big-endian length + payload, under a size limit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use haifu_transport_abi::{Error, StreamConnection, Timeout};
use quinn::{ConnectionError, ReadError, RecvStream, SendStream, VarInt, WriteError};
use tokio::runtime::Runtime;

/// Application close code: the peer's identity was denied.
pub(crate) const CLOSE_DENIED: u32 = 403;
/// Application close code: a frame exceeded the receiver's limit.
pub(crate) const CLOSE_FRAME_TOO_LARGE: u32 = 413;
/// Application close code: normal close.
pub(crate) const CLOSE_DONE: u32 = 0;

/// Runs `f` with an optional deadline.
pub(crate) async fn with_timeout<T>(
    t: Timeout,
    f: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match t {
        None => f.await,
        Some(d) => tokio::time::timeout(d, f)
            .await
            .unwrap_or_else(|_| Err(Error::timeout())),
    }
}

fn is_crypto(code: u64) -> bool {
    (0x100..=0x1ff).contains(&code)
}

/// Maps a connection-level error, telling refusals apart from other ends.
pub(crate) fn conn_error(e: &ConnectionError) -> Error {
    match e {
        ConnectionError::ApplicationClosed(c) if c.error_code == VarInt::from_u32(CLOSE_DENIED) => {
            Error::denied(format!("peer closed the connection: identity denied ({e})"))
        }
        ConnectionError::ConnectionClosed(c) if is_crypto(u64::from(c.error_code)) => {
            Error::denied(format!("handshake refused by the peer: {e}"))
        }
        ConnectionError::TransportError(t) if is_crypto(u64::from(t.code)) => {
            Error::denied(format!("peer's certificate refused: {e}"))
        }
        ConnectionError::ApplicationClosed(_)
        | ConnectionError::LocallyClosed
        | ConnectionError::Reset => Error::closed(format!("connection closed: {e}")),
        ConnectionError::TimedOut => Error::closed("connection timed out: peer unreachable"),
        _ => Error::io(format!("connection failed: {e}")),
    }
}

fn read_error(e: ReadError) -> Error {
    match e {
        ReadError::ConnectionLost(c) => conn_error(&c),
        ReadError::Reset(code) => Error::closed(format!("peer reset the stream (code {code})")),
        other => Error::io(format!("read: {other}")),
    }
}

fn write_error(e: WriteError) -> Error {
    match e {
        WriteError::ConnectionLost(c) => conn_error(&c),
        WriteError::Stopped(code) => Error::closed(format!("peer stopped reading (code {code})")),
        other => Error::io(format!("write: {other}")),
    }
}

struct SendState {
    stream: SendStream,
    /// A frame was cut by a timeout; the stream can no longer be framed.
    broken: bool,
}

/// Reading state kept across calls, so a timeout in the middle of a frame
/// loses nothing: the next `recv` continues where this one stopped.
struct RecvState {
    stream: RecvStream,
    header: [u8; 4],
    header_got: usize,
    body: Vec<u8>,
    body_got: usize,
    in_body: bool,
}

/// Who is at the other end, as its verified certificate says.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The certificate's common name.
    pub identity: String,
    /// The haifu role its extended key usage grants, or empty.
    pub role: &'static str,
}

/// A connection handed to the host.
pub(crate) struct QuicConnection {
    rt: Arc<Runtime>,
    conn: quinn::Connection,
    send: tokio::sync::Mutex<SendState>,
    recv: tokio::sync::Mutex<RecvState>,
    peer: Peer,
    max_frame: usize,
    close_timeout: Duration,
}

impl std::fmt::Debug for QuicConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicConnection")
            .field("peer", &self.peer)
            .field("remote", &self.conn.remote_address())
            .finish()
    }
}

impl QuicConnection {
    /// Wraps an established connection whose hello exchange is done.
    pub(crate) fn new(
        rt: Arc<Runtime>,
        conn: quinn::Connection,
        send: SendStream,
        recv: RecvStream,
        peer: Peer,
        max_frame: usize,
        close_timeout: Duration,
    ) -> Self {
        Self {
            rt,
            conn,
            send: tokio::sync::Mutex::new(SendState {
                stream: send,
                broken: false,
            }),
            recv: tokio::sync::Mutex::new(RecvState {
                stream: recv,
                header: [0; 4],
                header_got: 0,
                body: Vec::new(),
                body_got: 0,
                in_body: false,
            }),
            peer,
            max_frame,
            close_timeout,
        }
    }
}

impl StreamConnection for QuicConnection {
    fn peer_identity(&self) -> &str {
        &self.peer.identity
    }

    fn peer_role(&self) -> &str {
        self.peer.role
    }

    fn send(&self, message: &[u8], timeout: Timeout) -> Result<(), Error> {
        if message.len() > self.max_frame {
            return Err(Error::too_large(format!(
                "message of {} bytes, limit {}",
                message.len(),
                self.max_frame
            )));
        }
        let header = u32::try_from(message.len())
            .map_err(|_| Error::too_large("message over 4 GiB"))?
            .to_be_bytes();
        self.rt.block_on(async {
            let mut guard = self.send.lock().await;
            let s = &mut *guard;
            if s.broken {
                return Err(Error::closed("an earlier send timed out mid-message"));
            }
            let total = 4 + message.len();
            let mut written = 0usize;
            let write = async {
                while written < total {
                    let chunk = if written < 4 {
                        &header[written..]
                    } else {
                        &message[written - 4..]
                    };
                    written += s.stream.write(chunk).await.map_err(write_error)?;
                }
                Ok(())
            };
            let r = with_timeout(timeout, write).await;
            if r.as_ref()
                .is_err_and(|e| e.status() == haifu_transport_abi::status::TIMEOUT)
                && written > 0
            {
                // Half a frame is on the wire: the peer can never resync.
                s.broken = true;
                let _ = s.stream.reset(VarInt::from_u32(1));
            }
            r
        })
    }

    fn recv(&self, timeout: Timeout) -> Result<Vec<u8>, Error> {
        self.rt.block_on(async {
            let mut guard = self.recv.lock().await;
            let st = &mut *guard;
            let read = async {
                while !st.in_body {
                    let got = st.header_got;
                    match st
                        .stream
                        .read(&mut st.header[got..])
                        .await
                        .map_err(read_error)?
                    {
                        None if st.header_got == 0 => {
                            return Err(Error::closed("peer finished sending"));
                        }
                        None => return Err(Error::io("stream ended inside a frame header")),
                        Some(n) => st.header_got += n,
                    }
                    if st.header_got == 4 {
                        let n = u32::from_be_bytes(st.header) as usize;
                        if n > self.max_frame {
                            self.conn
                                .close(VarInt::from_u32(CLOSE_FRAME_TOO_LARGE), b"frame too large");
                            return Err(Error::too_large(format!(
                                "peer sent a frame of {n} bytes, limit {}",
                                self.max_frame
                            )));
                        }
                        st.body = vec![0; n];
                        st.body_got = 0;
                        st.in_body = true;
                    }
                }
                while st.body_got < st.body.len() {
                    let got = st.body_got;
                    match st
                        .stream
                        .read(&mut st.body[got..])
                        .await
                        .map_err(read_error)?
                    {
                        None => return Err(Error::io("stream ended inside a frame")),
                        Some(n) => st.body_got += n,
                    }
                }
                st.in_body = false;
                st.header_got = 0;
                Ok(std::mem::take(&mut st.body))
            };
            with_timeout(timeout, read).await
        })
    }

    fn close(self) {
        let Self {
            rt,
            conn,
            send,
            recv,
            close_timeout,
            ..
        } = self;
        rt.block_on(async {
            let mut s = send.into_inner();
            let mut r = recv.into_inner();
            // Graceful: finish our side, then wait (bounded) until the peer
            // finished its side too, so it had the chance to read what we
            // sent; closing at once would let it drop unread data.
            let _ = s.stream.finish();
            let drain = async {
                let mut scratch = vec![0u8; 64 * 1024];
                while let Ok(Some(_)) = r.stream.read(&mut scratch).await {}
            };
            let _ = tokio::time::timeout(close_timeout, drain).await;
            conn.close(VarInt::from_u32(CLOSE_DONE), b"closed");
        });
    }
}
