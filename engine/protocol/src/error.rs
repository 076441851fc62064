//! What can go wrong reading or writing a frame, and what the daemon does
//! about it.

use crate::message::ErrorCode;

/// Why a received frame could not be decoded.
///
/// The daemon counts every one, answers with [`Message::Error`](crate::Message::Error)
/// where [`DecodeError::code`] says so, and keeps or drops the peer as
/// [`DecodeError::keeps_peer`] says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is larger than the connection's `max_frame`.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame is empty: not even a tag.
    #[error("empty frame")]
    Empty,
    /// The tag names no message this side knows.
    #[error("unknown message tag 0x{tag:02x}")]
    UnknownMessage {
        /// The tag read.
        tag: u8,
    },
    /// The frame ended inside a field.
    #[error("frame ends inside field {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A length exceeds the field's bound.
    #[error("field {field} is {len} long, more than the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The length claimed.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A field holds a value outside its domain.
    #[error("field {field} is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Bytes remain after the message.
    #[error("{count} bytes after the end of the message")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A hello that does not start with the protocol's magic: the peer does
    /// not speak this protocol at all.
    #[error("not a haifu hello (bad magic)")]
    BadMagic,
}

impl DecodeError {
    /// Whether the connection survives this error.
    ///
    /// Frames are delimited by the transport, so one bad frame never
    /// desynchronises the stream: a malformed or unknown message is counted,
    /// answered with an error and skipped, and the peer stays (`true`). An
    /// unknown tag in particular is what a newer peer sends when it uses a
    /// message this side predates.
    ///
    /// The peer is dropped (`false`) when it breaks the framing contract
    /// (a frame past `max_frame`: it ignores the limit it was given) or is
    /// not speaking this protocol at all (bad magic).
    ///
    /// Before the handshake completes every error drops the peer, whatever
    /// this says: there is no session to keep (see `PROTOCOL.md`).
    pub fn keeps_peer(&self) -> bool {
        match self {
            Self::FrameTooLarge { .. } | Self::BadMagic => false,
            Self::Empty
            | Self::UnknownMessage { .. }
            | Self::Truncated { .. }
            | Self::TooLong { .. }
            | Self::Invalid { .. }
            | Self::TrailingBytes { .. } => true,
        }
    }

    /// The code to answer with in a [`Message::Error`](crate::Message::Error).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownMessage { .. } => ErrorCode::UnknownMessage,
            Self::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::Malformed,
        }
    }
}

/// Why a message could not be encoded: a field is longer than the peer
/// would accept, so sending it would only earn a refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field is longer than its bound.
    #[error("field {field} is {len} long, more than the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The encoded message exceeds the connection's `max_frame`.
    #[error("message of {len} bytes exceeds the frame limit of {max} bytes")]
    FrameTooLarge {
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field holds a value the peer would refuse.
    #[error("field {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
