//! haifu's control-plane protocol: what goes inside one frame between the
//! master, its relays and their clients.
//!
//! What it does:
//! - the versioned handshake ([`Hello`], [`Welcome`], [`HelloRefused`]) with
//!   a feature list, and its rule as a pure helper ([`Handshake`]);
//! - every control message ([`Message`]): registrations and version reports,
//!   the instruction and its rounds, session keys, completions and their
//!   acks, failures after install and theirs, delta requests, artifact fetches, chunked transfers ([`chunk`]),
//!   errors and keepalives;
//! - their compact, deterministic binary encoding ([`Message::encode`],
//!   [`Message::decode`]), where every length read from the wire is bounded
//!   ([`limits`]) and every failure is a typed [`DecodeError`] that says
//!   whether the peer may stay ([`DecodeError::keeps_peer`]).
//!
//! What it does not do: any I/O, framing or clock. The QUIC plugin already
//! delimits frames (a u32 length, then the bytes); this crate turns one
//! frame's bytes into one [`Message`] and back. Deciding what to do with a
//! message (ledger writes, acks, retries) is the daemons' job.
//!
//! The wire format, every tag and field, and the keep/drop rules are written
//! down in `PROTOCOL.md` beside this crate; golden files in `tests/golden`
//! pin each message byte for byte.
#![forbid(unsafe_code)]

pub mod chunk;
mod codec;
mod error;
mod failure;
mod handshake;
pub mod limits;
mod message;
mod wire;

pub use chunk::{ChunkCursor, Reassembly, TransferError};
pub use error::{DecodeError, EncodeError};
pub use failure::{FailureAck, FailureKind, InstallFailed};
pub use handshake::{
    Handshake, HandshakeError, Hello, HelloRefused, MAGIC, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    RefusalCode, Role, Session, Welcome, common_features, features, negotiate_version,
};
pub use limits::Limits;
pub use message::{
    ArtifactFetch, ArtifactHeader, ArtifactRef, ClientLabels, Completion, CompletionAck, DataChunk,
    DeltaBody, DeltaRequest, DeltaResponse, DenyList, ErrorCode, ErrorMessage, Feedback, Group,
    Instruction, Message, RegisterClient, RegisterRelay, Registered, Rollback, RollbackAck,
    RollbackOutcome, RollbackReport, RoundBudget, RoundDone, RoundListeners, SessionKey,
    SessionSecret, StartRound, StopRounds, Via, tag,
};
