//! One control connection after its handshake: whole protocol messages
//! both ways over a QUIC plugin connection, with the keep/drop rules of
//! `PROTOCOL.md` and counters for everything refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haifu_plugin_host::{Connection, Endpoint, TransportError};
use haifu_protocol::{
    DecodeError, ErrorCode, ErrorMessage, Handshake, Hello, Message, Role, Session,
};

/// How long a send may wait for flow control before the peer is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the handshake may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of refused input, shared by every connection of a daemon.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames that did not decode (the peer was kept).
    pub malformed: AtomicU64,
    /// Frames with an unknown tag (the peer was kept).
    pub unknown: AtomicU64,
    /// Valid messages not allowed from this peer or now.
    pub unexpected: AtomicU64,
    /// Peers dropped for what they sent (too large, bad hello, bad magic).
    pub dropped: AtomicU64,
    /// Carousel datagrams rejected (forged, foreign, malformed).
    pub rejected_datagrams: AtomicU64,
    /// Claims refused: a peer speaking for someone it may not, or naming
    /// a round, run or artifact it has no part in.
    pub refused: AtomicU64,
}

impl Counters {
    /// Adds one to `c`.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot for logs and tests.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "malformed": self.malformed.load(Ordering::Relaxed),
            "unknown": self.unknown.load(Ordering::Relaxed),
            "unexpected": self.unexpected.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "rejected_datagrams": self.rejected_datagrams.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
        })
    }
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The transport failed or the peer closed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The peer broke the protocol in a way that drops it.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl LinkError {
    /// Whether the link ended because the peer went away (not worth a
    /// warning).
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Transport(e) if e.kind == haifu_plugin_host::ErrorKind::Closed)
    }
}

/// A connection after its handshake.
#[derive(Debug)]
pub struct Link {
    conn: Connection,
    session: Session,
    send_lock: Mutex<()>,
    counters: Arc<Counters>,
    /// The highest nonce a `Pong` came back with.
    pong: AtomicU64,
}

impl Link {
    /// The verified peer: its certificate's CN, which its hello repeated.
    pub fn peer(&self) -> &str {
        &self.session.peer_identity
    }

    /// The negotiated session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Sends one message (whole; concurrent senders are serialised), as
    /// the peer's features can take it ([`Message::for_peer`]): nothing at
    /// all for one it cannot use.
    pub fn send(&self, msg: &Message) -> Result<(), LinkError> {
        let Some(msg) = msg.for_peer(|f| self.session.has(f)) else {
            return Ok(());
        };
        let bytes = msg
            .encode()
            .map_err(|e| LinkError::Protocol(format!("cannot encode {:#04x}: {e}", msg.tag())))?;
        let _one = self.send_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.conn.send(&bytes, Some(SEND_TIMEOUT))?;
        Ok(())
    }

    /// Asks the peer to answer `nonce` (see [`Link::answered`]).
    pub fn ping(&self, nonce: u64) -> Result<(), LinkError> {
        self.send(&Message::Ping { nonce })
    }

    /// Whether the peer answered a ping of `nonce` or a later one: it is
    /// alive, and what it sent before the answer has been read (a barrier,
    /// as the reader takes the peer's messages in the order they come).
    pub fn answered(&self, nonce: u64) -> bool {
        self.pong.load(Ordering::SeqCst) >= nonce
    }

    /// Receives the next valid message, or `None` if `timeout` passed.
    /// Frames that do not decode are counted and answered with an `Error`,
    /// and the peer kept or dropped as the protocol says. A `Ping` is
    /// answered here and a `Pong` taken here (both give `None`), so no
    /// daemon handles them itself.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Message>, LinkError> {
        let decoded = match self.conn.recv_with(Some(timeout), Message::decode) {
            Ok(d) => d,
            Err(e) if e.is_timeout() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match decoded {
            Ok(Message::Ping { nonce }) => {
                // Best effort: a peer that went away shows at the next read.
                let _ = self.send(&Message::Pong { nonce });
                Ok(None)
            }
            Ok(Message::Pong { nonce }) => {
                self.pong.fetch_max(nonce, Ordering::SeqCst);
                Ok(None)
            }
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                self.refuse_frame(&e)?;
                Ok(None)
            }
        }
    }

    fn refuse_frame(&self, e: &DecodeError) -> Result<(), LinkError> {
        let keep = e.keeps_peer();
        Counters::bump(match e {
            DecodeError::UnknownMessage { .. } => &self.counters.unknown,
            _ if keep => &self.counters.malformed,
            _ => &self.counters.dropped,
        });
        tracing::warn!(peer = self.peer(), error = %e, kept = keep, "refused a frame");
        let reply = Message::Error(ErrorMessage {
            code: e.code(),
            about: 0,
            reason: e.to_string(),
        });
        // The answer is best effort: the peer may already be gone.
        let _ = self.send(&reply);
        if keep {
            Ok(())
        } else {
            Err(LinkError::Protocol(e.to_string()))
        }
    }

    /// Answers a valid message this side does not accept now or from this
    /// peer: counted, `Error` code 4, the peer kept.
    pub fn unexpected(&self, msg: &Message) {
        Counters::bump(&self.counters.unexpected);
        tracing::warn!(
            peer = self.peer(),
            tag = format_args!("{:#04x}", msg.tag()),
            "unexpected message"
        );
        let _ = self.send(&Message::Error(ErrorMessage {
            code: ErrorCode::Unexpected,
            about: 0,
            reason: format!("message {:#04x} is not expected here", msg.tag()),
        }));
    }

    /// Answers a message with an error about `about`.
    pub fn error(&self, code: ErrorCode, about: u64, reason: impl Into<String>) {
        let _ = self.send(&Message::Error(ErrorMessage {
            code,
            about,
            reason: reason.into(),
        }));
    }
}

/// Connects with `connect` until it succeeds or `shutdown` is set. After
/// the first failure it waits about 100 ms, then about twice as long after
/// each next one, at most [`crate::common::RECONNECT_MAX`]; each wait is
/// jittered ([`jittered`]) so that the relays of a restarted master, or the
/// clients of a restarted relay, do not all knock at once. `peer` names the
/// other side in the log line of each failure. A client is ready (its
/// set-up done) once it reaches for its relay: this calls
/// [`crate::Shutdown::ready`].
pub fn connect_with_backoff(
    shutdown: &crate::common::Shutdown,
    peer: &str,
    mut connect: impl FnMut() -> Result<Link, LinkError>,
) -> Option<Link> {
    shutdown.ready();
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_set() {
        match connect() {
            Ok(l) => return Some(l),
            Err(e) => {
                tracing::warn!("cannot reach the {peer}: {e}");
                let mut r = [0u8; 4];
                // No randomness (never seen on Linux) only loses the jitter.
                let _ = getrandom::fill(&mut r);
                shutdown.sleep(jittered(backoff, u32::from_le_bytes(r)));
                backoff = (backoff * 2).min(crate::common::RECONNECT_MAX);
            }
        }
    }
    None
}

/// A reconnect wait: `backoff` capped at [`crate::common::RECONNECT_MAX`],
/// then spread over its upper half by `random` ("equal jitter": never
/// less than half the wait, so a peer that is down is not hammered, and
/// never more than the cap, so a peer that is back is found within it).
pub fn jittered(backoff: Duration, random: u32) -> Duration {
    let wait = backoff.min(crate::common::RECONNECT_MAX);
    let half = wait / 2;
    half + half.mul_f64(f64::from(random) / f64::from(u32::MAX))
}

/// Connects to `addr` as `identity` in `role`, expecting the peer to be
/// `server_name`, and runs the handshake.
pub fn connect(
    endpoint: &Endpoint,
    addr: &str,
    server_name: &str,
    role: Role,
    identity: &str,
    counters: Arc<Counters>,
) -> Result<Link, LinkError> {
    let conn = endpoint.connect(addr, server_name, Some(HELLO_TIMEOUT))?;
    let hs = Handshake::new(Hello::new(role, identity), &[]);
    let hello = Message::Hello(hs.hello().clone())
        .encode()
        .map_err(|e| LinkError::Protocol(e.to_string()))?;
    conn.send(&hello, Some(HELLO_TIMEOUT))?;
    let answer = conn
        .recv_with(Some(HELLO_TIMEOUT), Message::decode)?
        .map_err(|e| LinkError::Protocol(format!("handshake answer: {e}")))?;
    let session = hs
        .complete(&answer)
        .map_err(|e| LinkError::Protocol(e.to_string()))?;
    if session.peer_identity != conn.peer_identity() {
        return Err(LinkError::Protocol(format!(
            "peer says it is {:?} but its certificate names {:?}",
            session.peer_identity,
            conn.peer_identity()
        )));
    }
    // Only a master or a relay answers connections, and only in the role
    // its certificate grants.
    let answers = matches!(session.peer_role, Role::Master | Role::Relay);
    if !answers || conn.peer_role() != Some(session.peer_role.as_str()) {
        return Err(LinkError::Protocol(format!(
            "{:?} answers as the {} but its certificate grants {}",
            session.peer_identity,
            session.peer_role.as_str(),
            conn.peer_role().unwrap_or("no role")
        )));
    }
    Ok(Link {
        conn,
        session,
        send_lock: Mutex::new(()),
        pong: AtomicU64::new(0),
        counters,
    })
}

/// Runs the answering side of the handshake on an accepted connection:
/// reads the peer's hello, checks its role and that the identity it claims
/// is the one its certificate proves, and answers.
pub fn accept(
    conn: Connection,
    local: Hello,
    serves: &[Role],
    counters: Arc<Counters>,
) -> Result<Link, LinkError> {
    let hs = Handshake::new(local, serves);
    let first = conn.recv_with(Some(HELLO_TIMEOUT), Message::decode)?;
    let hello = match first {
        Ok(Message::Hello(h)) => h,
        Ok(other) => {
            Counters::bump(&counters.dropped);
            return Err(LinkError::Protocol(format!(
                "first frame was message {:#04x}, not a hello",
                other.tag()
            )));
        }
        Err(e) => {
            Counters::bump(&counters.dropped);
            return Err(LinkError::Protocol(format!("hello: {e}")));
        }
    };
    let refuse = |reason: String, code| {
        let r = haifu_protocol::HelloRefused {
            code,
            reason: reason.clone(),
            min_version: hs.hello().min_version,
            max_version: hs.hello().protocol_version,
        };
        if let Ok(b) = Message::HelloRefused(r).encode() {
            let _ = conn.send(&b, Some(HELLO_TIMEOUT));
        }
        LinkError::Protocol(reason)
    };
    if hello.identity != conn.peer_identity() {
        Counters::bump(&counters.dropped);
        return Err(refuse(
            format!(
                "hello names {:?} but the certificate names {:?}",
                hello.identity,
                conn.peer_identity()
            ),
            haifu_protocol::RefusalCode::Denied,
        ));
    }
    // The role is the certificate's, never the hello's word: a terminal's
    // certificate cannot act as a relay.
    if conn.peer_role() != Some(hello.role.as_str()) {
        Counters::bump(&counters.dropped);
        return Err(refuse(
            format!(
                "{:?} says it is a {} but its certificate grants {}",
                hello.identity,
                hello.role.as_str(),
                conn.peer_role()
                    .map_or("no role".to_owned(), |r| format!("the {r} role"))
            ),
            haifu_protocol::RefusalCode::Denied,
        ));
    }
    let (welcome, session) = match hs.answer(&hello) {
        Ok(ok) => ok,
        Err(refused) => {
            let reason = refused.reason.clone();
            return Err(refuse(reason, refused.code));
        }
    };
    let bytes = Message::Welcome(welcome)
        .encode()
        .map_err(|e| LinkError::Protocol(e.to_string()))?;
    conn.send(&bytes, Some(HELLO_TIMEOUT))?;
    Ok(Link {
        conn,
        session,
        send_lock: Mutex::new(()),
        pong: AtomicU64::new(0),
        counters,
    })
}

#[cfg(test)]
mod backoff_tests {
    use std::time::Duration;

    use super::jittered;
    use crate::common::RECONNECT_MAX;

    #[test]
    fn reconnect_waits_are_jittered_within_half_and_whole_and_capped() {
        let ms = Duration::from_millis;
        assert_eq!(jittered(ms(200), 0), ms(100));
        assert_eq!(jittered(ms(200), u32::MAX), ms(200));
        let mid = jittered(ms(200), u32::MAX / 2);
        assert!(mid > ms(140) && mid < ms(160), "{mid:?}");
        // However long the backoff grew, the wait stays under the cap, so
        // a peer that is back is found within it.
        for r in [0, 1 << 16, u32::MAX / 3, u32::MAX] {
            let w = jittered(Duration::from_secs(60), r);
            assert!(w >= RECONNECT_MAX / 2 && w <= RECONNECT_MAX, "{w:?}");
        }
        // Two peers with different draws do not knock at the same instant.
        assert_ne!(jittered(ms(800), 1 << 30), jittered(ms(800), 3 << 30));
    }
}
