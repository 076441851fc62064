//! The no-I/O heart of haifu's broadcast: a RaptorQ (RFC 6330) carousel.
//!
//! What it does:
//! - lays an artifact out as fixed-size objects of RaptorQ source blocks of
//!   about 4,000 symbols of 1,408 bytes ([`layout`]);
//! - turns each object into the authenticated datagrams of any round, with
//!   fresh repair symbols every round so that rounds add up ([`Sender`]);
//! - defines the versioned datagram format and its HMAC-SHA256 tag, and
//!   rejects anything forged, foreign or malformed with a typed reason
//!   ([`parse_datagram`], [`DatagramError`]);
//! - gathers symbols in any order from any round and hands out decoded blocks
//!   with their byte offsets ([`Receiver`]), holding every datagram to the
//!   layout and per-block hashes of the signed manifest ([`ReceivePlan`]):
//!   a datagram of another shape is refused, a block that decodes wrong is
//!   discarded and gathered again; hashes the artifact in order if asked
//!   ([`ArtifactHasher`]);
//! - computes the per-block hashes at registration ([`BlockHasher`]);
//! - decides, during a round, which symbol goes out next from the
//!   listeners' reports of what they still need, and when the round is
//!   over ([`RepairRound`], fed by [`Receiver::report`]);
//! - computes when the next datagrams may be sent at a bit rate of link
//!   bytes, keeping up after a stall within a bound ([`Pacer`]);
//! - gives a loss simulator the carousel's numbers, and computes how likely
//!   one round is to be enough at a given loss ([`loss`]).
//!
//! What it does not do: sockets, threads, files, clocks, key generation or
//! manifest checks. Time is an argument, bytes come in and go out as slices
//! and vectors; the relay and client daemons own all I/O.

#![forbid(unsafe_code)]

pub mod datagram;
mod gather;
pub mod hasher;
pub mod layout;
pub mod loss;
pub mod pacing;
pub mod plan;
pub mod receiver;
pub mod repair;
pub mod sender;

pub use datagram::{
    CarouselKey, DatagramError, HEADER_LEN, KEY_LEN, MAX_DATAGRAM_LEN, OVERHEAD_LEN, Symbol,
    SymbolHeader, TAG_LEN, parse_datagram,
};
pub use hasher::ArtifactHasher;
pub use layout::{
    CarouselConfig, DEFAULT_REPAIR_OVERHEAD, LayoutError, ObjectLayout, SYMBOL_SIZE, SessionShape,
};
pub use pacing::{LinkOverhead, Pacer, PacerConfig, PacingError};
pub use plan::{BLOCK_HASH_LEN, BlockHash, BlockHasher, ReceivePlan, block_count, block_hash};
pub use receiver::{Accepted, DecodedBlock, ObjectProgress, Progress, ReceiveError, Receiver};
pub use repair::{EndReason, Next, Outcome, RepairParams, RepairRound, Report, SymbolRef};
pub use sender::{EncodeError, ObjectEncoder, RoundDatagrams, Sender};
