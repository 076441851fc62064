//! The versioned handshake: each side's [`Hello`], the answer
//! ([`Welcome`] or [`HelloRefused`]), and the negotiation rule.
//!
//! The rule, in full:
//! - each hello names the range of protocol versions its sender speaks,
//!   `min_version..=protocol_version`;
//! - the answerer picks the highest version both ranges hold; if none, it
//!   refuses with [`RefusalCode::VersionMismatch`] and names its own range;
//! - the features in common are the intersection of both lists, sorted and
//!   without repeats; a feature one side does not know is simply not in
//!   common (unknown features are ignored, never an error);
//! - the answerer also checks the peer's role against the roles it serves.
//!
//! The encoding of [`Hello`], [`Welcome`] and [`HelloRefused`] is frozen
//! across every protocol version: it is what two versions use to find out
//! they differ.

use std::collections::BTreeSet;

use crate::error::{DecodeError, EncodeError};
use crate::limits::{MAX_FEATURE_LEN, MAX_FEATURES, MAX_ID_LEN, MAX_REASON_LEN};
use crate::wire::{Reader, Writer};

/// The highest protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The lowest protocol version this crate speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// The four bytes every hello starts with, after its tag: `HAIF`.
pub const MAGIC: [u8; 4] = *b"HAIF";

/// Features this crate knows. A feature gates a message or behaviour added
/// after version 1, so that adding one never needs a new version.
pub mod features {
    /// Chunked transfers ([`DataChunk`](crate::DataChunk)) for artifacts and
    /// deltas.
    pub const CHUNKED_TRANSFER: &str = "chunked-transfer";
    /// Delta requests and responses.
    pub const DELTA: &str = "delta";
    /// Deltas made by the bsdiff method (container version 2): a client
    /// without it is sent a patch-from delta or the full copy instead.
    pub const DELTA_BSDIFF: &str = "delta-bsdiff";
    /// Rounds with feedback repair: clients send
    /// [`Feedback`](crate::Feedback), masters send a
    /// [`RoundBudget`](crate::RoundBudget), relays answer with
    /// [`RoundListeners`](crate::RoundListeners).
    pub const FEEDBACK_REPAIR: &str = "feedback-repair";
    /// Feedback says the newest symbol id heard of each block
    /// ([`Feedback::newest`](crate::Feedback::newest), tag `0x28`), so the
    /// relay can order repairs from a report at once, even during a
    /// block's first pass, instead of waiting for it to catch up.
    pub const FEEDBACK_NEWEST: &str = "feedback-newest";
    /// Registrations name the sender's broadcast transport plugin
    /// ([`RegisterRelay::broadcast`](crate::RegisterRelay::broadcast),
    /// [`RegisterClient::broadcast`](crate::RegisterClient::broadcast)), so
    /// the master can hold a run to its workflow's `transports:`.
    pub const TRANSPORT_NAMES: &str = "transport-names";
    /// A straggler whose delta or full copy was cut asks for the rest
    /// ([`DeltaRequest::resume_at`](crate::DeltaRequest::resume_at), tag
    /// `0x45`) and keeps the bytes it already has.
    pub const DELTA_RESUME: &str = "delta-resume";
    /// An operator's rollback order reaches a client through its relay,
    /// and the client's report comes back the same way
    /// ([`Rollback`](crate::Rollback),
    /// [`RollbackReport`](crate::RollbackReport),
    /// [`RollbackAck`](crate::RollbackAck), tags `0x60`-`0x62`).
    pub const ROLLBACK: &str = "rollback";
    /// A client tells the master its config's labels through its relay
    /// ([`ClientLabels`](crate::ClientLabels), tag `0x16`), so stages and
    /// rollbacks can name clients by label. A client without it has none.
    pub const LABELS: &str = "labels";
    /// A client reports a version that failed after install (its
    /// post-install or health command, or a rollback of its own) through
    /// its relay, and the master acks it once durable or says it was
    /// readmitted ([`InstallFailed`](crate::InstallFailed),
    /// [`FailureAck`](crate::FailureAck), tags `0x17`-`0x18`).
    pub const FAILURE_REPORTS: &str = "failure-reports";
    /// A staged run's instruction lists the relay's clients admitted so
    /// far ([`Instruction::admitted`](crate::Instruction::admitted), tag
    /// `0x19`); the relay hands the session key to those only. A relay
    /// without it is never instructed for a staged run.
    pub const STAGES: &str = "stages";
    /// Every feature this crate implements, sorted.
    pub const ALL: &[&str] = &[
        CHUNKED_TRANSFER,
        DELTA,
        DELTA_BSDIFF,
        DELTA_RESUME,
        FAILURE_REPORTS,
        FEEDBACK_NEWEST,
        FEEDBACK_REPAIR,
        LABELS,
        ROLLBACK,
        STAGES,
        TRANSPORT_NAMES,
    ];
}

/// What a peer is in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The master: owns runs, the ledger and the store.
    Master,
    /// A relay: broadcasts to its own clients.
    Relay,
    /// A client: receives, installs, completes.
    Client,
}

impl Role {
    /// The role's name, as certificates grant it (`haifu ca issue --role`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Relay => "relay",
            Self::Client => "client",
        }
    }

    pub(crate) fn to_wire(self) -> u8 {
        match self {
            Self::Master => 1,
            Self::Relay => 2,
            Self::Client => 3,
        }
    }

    pub(crate) fn from_wire(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(Self::Master),
            2 => Ok(Self::Relay),
            3 => Ok(Self::Client),
            _ => Err(DecodeError::Invalid {
                field: "role",
                reason: "unknown role",
            }),
        }
    }
}

/// The first frame each side sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The highest protocol version the sender speaks.
    pub protocol_version: u16,
    /// The lowest protocol version the sender still speaks.
    pub min_version: u16,
    /// What the sender is.
    pub role: Role,
    /// Who the sender says it is (relay name, client id, master name); the
    /// QUIC certificate is what proves it.
    pub identity: String,
    /// The features the sender implements.
    pub features: Vec<String>,
}

impl Hello {
    /// A hello for this crate's versions and every feature it implements.
    pub fn new(role: Role, identity: impl Into<String>) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            min_version: MIN_PROTOCOL_VERSION,
            role,
            identity: identity.into(),
            features: features::ALL.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    pub(crate) fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        for b in MAGIC {
            w.u8(b);
        }
        w.u16(self.protocol_version);
        w.u16(self.min_version);
        w.u8(self.role.to_wire());
        w.str("identity", &self.identity, MAX_ID_LEN)?;
        write_features(w, &self.features)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut magic = [0u8; 4];
        for b in &mut magic {
            *b = r.u8("magic")?;
        }
        if magic != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        Ok(Self {
            protocol_version: r.u16("protocol_version")?,
            min_version: r.u16("min_version")?,
            role: Role::from_wire(r.u8("role")?)?,
            identity: r.str("identity", MAX_ID_LEN)?,
            features: read_features(r)?,
        })
    }
}

fn write_features(w: &mut Writer, features: &[String]) -> Result<(), EncodeError> {
    w.count("features", features.len(), MAX_FEATURES)?;
    for f in features {
        w.str("feature", f, MAX_FEATURE_LEN)?;
    }
    Ok(())
}

fn read_features(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let n = r.count("features", MAX_FEATURES)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.str("feature", MAX_FEATURE_LEN)?);
    }
    Ok(out)
}

/// The answer to an acceptable hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The version both sides now speak.
    pub version: u16,
    /// The features both sides implement, sorted, no repeats.
    pub features: Vec<String>,
    /// What the answerer is.
    pub role: Role,
    /// Who the answerer says it is.
    pub identity: String,
}

impl Welcome {
    pub(crate) fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.u16(self.version);
        w.u8(self.role.to_wire());
        w.str("identity", &self.identity, MAX_ID_LEN)?;
        write_features(w, &self.features)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            version: r.u16("version")?,
            role: Role::from_wire(r.u8("role")?)?,
            identity: r.str("identity", MAX_ID_LEN)?,
            features: read_features(r)?,
        })
    }
}

/// Why a hello was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    /// No protocol version in common.
    VersionMismatch,
    /// The answerer does not serve peers of this role.
    RoleNotServed,
    /// The identity is deny-listed or unknown (e.g. a disconnected client).
    Denied,
    /// The answerer is shutting down or overloaded; try again later.
    Unavailable,
    /// A code this side does not know (sent by a newer peer).
    Other(u16),
}

impl RefusalCode {
    fn to_wire(self) -> u16 {
        match self {
            Self::VersionMismatch => 1,
            Self::RoleNotServed => 2,
            Self::Denied => 3,
            Self::Unavailable => 4,
            Self::Other(c) => c,
        }
    }

    fn from_wire(c: u16) -> Self {
        match c {
            1 => Self::VersionMismatch,
            2 => Self::RoleNotServed,
            3 => Self::Denied,
            4 => Self::Unavailable,
            c => Self::Other(c),
        }
    }
}

/// The answer to a hello that cannot be accepted; the answerer closes the
/// connection after sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloRefused {
    /// Why, as a code.
    pub code: RefusalCode,
    /// Why, for a person.
    pub reason: String,
    /// The answerer's lowest version.
    pub min_version: u16,
    /// The answerer's highest version.
    pub max_version: u16,
}

impl HelloRefused {
    pub(crate) fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.u16(self.code.to_wire());
        w.str("reason", &self.reason, MAX_REASON_LEN)?;
        w.u16(self.min_version);
        w.u16(self.max_version);
        Ok(())
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            code: RefusalCode::from_wire(r.u16("code")?),
            reason: r.str("reason", MAX_REASON_LEN)?,
            min_version: r.u16("min_version")?,
            max_version: r.u16("max_version")?,
        })
    }
}

/// The highest version both ranges hold, if any.
pub fn negotiate_version(ours: (u16, u16), theirs: (u16, u16)) -> Option<u16> {
    let low = ours.0.max(theirs.0);
    let high = ours.1.min(theirs.1);
    (low <= high).then_some(high)
}

/// The features in both lists, sorted, without repeats.
pub fn common_features(ours: &[String], theirs: &[String]) -> Vec<String> {
    let ours: BTreeSet<&str> = ours.iter().map(String::as_str).collect();
    let theirs: BTreeSet<&str> = theirs.iter().map(String::as_str).collect();
    ours.intersection(&theirs)
        .map(|f| (*f).to_owned())
        .collect()
}

/// What both sides agreed: the outcome of a handshake, on either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The version spoken.
    pub version: u16,
    /// The features in common.
    pub features: BTreeSet<String>,
    /// The peer's role.
    pub peer_role: Role,
    /// The peer's claimed identity.
    pub peer_identity: String,
}

impl Session {
    /// Whether both sides implement `feature`.
    pub fn has(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }
}

/// Why the initiator could not complete a handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The answerer refused.
    #[error("peer refused the handshake ({code:?}): {reason}")]
    Refused {
        /// Its code.
        code: RefusalCode,
        /// Its reason.
        reason: String,
    },
    /// The answerer chose a version outside our range.
    #[error("peer chose protocol version {version}, outside ours ({min}..={max})")]
    BadVersion {
        /// The version chosen.
        version: u16,
        /// Our lowest.
        min: u16,
        /// Our highest.
        max: u16,
    },
    /// The answer is not a handshake answer.
    #[error("expected a welcome or a refusal, got message tag 0x{tag:02x}")]
    Unexpected {
        /// The tag received.
        tag: u8,
    },
}

/// One side's handshake: no I/O, just the rule.
///
/// Call order: the initiator sends [`Handshake::hello`], the answerer passes
/// the peer's hello to [`Handshake::answer`] and sends the reply it gets; the
/// initiator passes that reply to [`Handshake::complete`]. Both then hold the
/// same version and features.
#[derive(Debug, Clone)]
pub struct Handshake {
    local: Hello,
    serves: Vec<Role>,
}

impl Handshake {
    /// A handshake sending `local`, answering peers whose role is in `serves`.
    pub fn new(local: Hello, serves: &[Role]) -> Self {
        Self {
            local,
            serves: serves.to_vec(),
        }
    }

    /// Our hello.
    pub fn hello(&self) -> &Hello {
        &self.local
    }

    /// The answer to the peer's hello, and the session if it is accepted.
    ///
    /// The caller may still refuse an accepted peer for reasons this crate
    /// cannot see (a deny-listed identity) with [`RefusalCode::Denied`].
    pub fn answer(&self, peer: &Hello) -> Result<(Welcome, Session), HelloRefused> {
        let refuse = |code, reason: String| HelloRefused {
            code,
            reason,
            min_version: self.local.min_version,
            max_version: self.local.protocol_version,
        };
        let Some(version) = negotiate_version(
            (self.local.min_version, self.local.protocol_version),
            (peer.min_version, peer.protocol_version),
        ) else {
            return Err(refuse(
                RefusalCode::VersionMismatch,
                format!(
                    "no protocol version in common: peer speaks {}..={}, we speak {}..={}",
                    peer.min_version,
                    peer.protocol_version,
                    self.local.min_version,
                    self.local.protocol_version
                ),
            ));
        };
        if !self.serves.contains(&peer.role) {
            return Err(refuse(
                RefusalCode::RoleNotServed,
                format!("a {:?} does not serve a {:?}", self.local.role, peer.role).to_lowercase(),
            ));
        }
        let features = common_features(&self.local.features, &peer.features);
        let session = Session {
            version,
            features: features.iter().cloned().collect(),
            peer_role: peer.role,
            peer_identity: peer.identity.clone(),
        };
        let welcome = Welcome {
            version,
            features,
            role: self.local.role,
            identity: self.local.identity.clone(),
        };
        Ok((welcome, session))
    }

    /// The initiator's side: checks the answer and yields the session.
    ///
    /// The features kept are those the answerer lists that we also
    /// implement, so a confused answerer cannot switch on a feature we lack.
    pub fn complete(&self, answer: &crate::Message) -> Result<Session, HandshakeError> {
        match answer {
            crate::Message::Welcome(w) => {
                let (min, max) = (self.local.min_version, self.local.protocol_version);
                if w.version < min || w.version > max {
                    return Err(HandshakeError::BadVersion {
                        version: w.version,
                        min,
                        max,
                    });
                }
                Ok(Session {
                    version: w.version,
                    features: common_features(&self.local.features, &w.features)
                        .into_iter()
                        .collect(),
                    peer_role: w.role,
                    peer_identity: w.identity.clone(),
                })
            }
            crate::Message::HelloRefused(r) => Err(HandshakeError::Refused {
                code: r.code,
                reason: r.reason.clone(),
            }),
            other => Err(HandshakeError::Unexpected { tag: other.tag() }),
        }
    }
}
