//! Every message of the control plane, as plain values.
//!
//! One message fills one transport frame: a one-byte tag, then the fields in
//! the order they are declared here. Tags are listed in [`tag`]; a tag is
//! never reused or renumbered, and a field is never added to an existing
//! tag: a new message gets a new tag (gated by a feature) instead.

use std::fmt;
use std::net::IpAddr;

use haifu_core::{ArtifactName, Digest, Version};
use jiff::Timestamp;

use crate::handshake::{Hello, HelloRefused, Welcome};

/// The one-byte tag of each message. Stable forever.
pub mod tag {
    /// [`Message::Hello`](crate::Message::Hello).
    pub const HELLO: u8 = 0x01;
    /// [`Message::Welcome`](crate::Message::Welcome).
    pub const WELCOME: u8 = 0x02;
    /// [`Message::HelloRefused`](crate::Message::HelloRefused).
    pub const HELLO_REFUSED: u8 = 0x03;
    /// [`Message::RegisterRelay`](crate::Message::RegisterRelay).
    pub const REGISTER_RELAY: u8 = 0x10;
    /// [`Message::RegisterClient`](crate::Message::RegisterClient).
    pub const REGISTER_CLIENT: u8 = 0x11;
    /// [`Message::Registered`](crate::Message::Registered).
    pub const REGISTERED: u8 = 0x12;
    /// [`Message::DenyList`](crate::Message::DenyList).
    pub const DENY_LIST: u8 = 0x13;
    /// [`Message::RegisterRelay`](crate::Message::RegisterRelay) naming its
    /// broadcast plugin (feature `transport-names`).
    pub const REGISTER_RELAY_TRANSPORT: u8 = 0x14;
    /// [`Message::RegisterClient`](crate::Message::RegisterClient) naming
    /// its broadcast plugin (feature `transport-names`).
    pub const REGISTER_CLIENT_TRANSPORT: u8 = 0x15;
    /// [`Message::ClientLabels`](crate::Message::ClientLabels) (feature
    /// `labels`).
    pub const CLIENT_LABELS: u8 = 0x16;
    /// [`Message::InstallFailed`](crate::Message::InstallFailed) (feature
    /// `failure-reports`).
    pub const INSTALL_FAILED: u8 = 0x17;
    /// [`Message::FailureAck`](crate::Message::FailureAck) (feature
    /// `failure-reports`).
    pub const FAILURE_ACK: u8 = 0x18;
    /// [`Message::Instruction`](crate::Message::Instruction) of a staged
    /// run, with the clients behind the relay admitted so far (feature
    /// `stages`).
    pub const INSTRUCTION_STAGED: u8 = 0x19;
    /// [`Message::Instruction`](crate::Message::Instruction).
    pub const INSTRUCTION: u8 = 0x20;
    /// [`Message::StartRound`](crate::Message::StartRound).
    pub const START_ROUND: u8 = 0x21;
    /// [`Message::StopRounds`](crate::Message::StopRounds).
    pub const STOP_ROUNDS: u8 = 0x22;
    /// [`Message::SessionKey`](crate::Message::SessionKey).
    pub const SESSION_KEY: u8 = 0x23;
    /// [`Message::RoundDone`](crate::Message::RoundDone).
    pub const ROUND_DONE: u8 = 0x24;
    /// [`Message::StartRound`](crate::Message::StartRound) with a
    /// [`RoundBudget`](crate::RoundBudget) (feature `feedback-repair`).
    pub const START_ROUND_BUDGET: u8 = 0x25;
    /// [`Message::RoundDone`](crate::Message::RoundDone) with
    /// [`RoundListeners`](crate::RoundListeners) (feature `feedback-repair`).
    pub const ROUND_DONE_LISTENERS: u8 = 0x26;
    /// [`Message::Feedback`](crate::Message::Feedback).
    pub const FEEDBACK: u8 = 0x27;
    /// [`Message::Feedback`](crate::Message::Feedback) with the newest
    /// symbol id heard of each block (feature `feedback-newest`).
    pub const FEEDBACK_NEWEST: u8 = 0x28;
    /// [`Message::Completion`](crate::Message::Completion).
    pub const COMPLETION: u8 = 0x30;
    /// [`Message::CompletionAck`](crate::Message::CompletionAck).
    pub const COMPLETION_ACK: u8 = 0x31;
    /// [`Message::DeltaRequest`](crate::Message::DeltaRequest).
    pub const DELTA_REQUEST: u8 = 0x40;
    /// [`Message::DeltaResponse`](crate::Message::DeltaResponse).
    pub const DELTA_RESPONSE: u8 = 0x41;
    /// [`Message::ArtifactFetch`](crate::Message::ArtifactFetch).
    pub const ARTIFACT_FETCH: u8 = 0x42;
    /// [`Message::ArtifactHeader`](crate::Message::ArtifactHeader).
    pub const ARTIFACT_HEADER: u8 = 0x43;
    /// [`Message::DataChunk`](crate::Message::DataChunk).
    pub const DATA_CHUNK: u8 = 0x44;
    /// [`Message::DeltaRequest`](crate::Message::DeltaRequest) resuming a
    /// cut transfer (`resume_at` > 0; `delta-resume`).
    pub const DELTA_REQUEST_RESUME: u8 = 0x45;
    /// [`Message::Error`](crate::Message::Error).
    pub const ERROR: u8 = 0x50;
    /// [`Message::Rollback`](crate::Message::Rollback) (feature `rollback`).
    pub const ROLLBACK: u8 = 0x60;
    /// [`Message::RollbackReport`](crate::Message::RollbackReport) (feature
    /// `rollback`).
    pub const ROLLBACK_REPORT: u8 = 0x61;
    /// [`Message::RollbackAck`](crate::Message::RollbackAck) (feature
    /// `rollback`).
    pub const ROLLBACK_ACK: u8 = 0x62;
    /// [`Message::Ping`](crate::Message::Ping).
    pub const PING: u8 = 0x51;
    /// [`Message::Pong`](crate::Message::Pong).
    pub const PONG: u8 = 0x52;
}

/// Which artifact, exactly: name, version and the sha3-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactRef {
    /// The artifact's name.
    pub name: ArtifactName,
    /// Its version.
    pub version: Version,
    /// The sha3-256 of its uncompressed bytes.
    pub digest: Digest,
}

/// A multicast group and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Group {
    /// The group address (IPv4 or IPv6).
    pub addr: IpAddr,
    /// The UDP port.
    pub port: u16,
}

/// The 32-byte per-session key that authenticates carousel datagrams.
///
/// Its `Debug` shows no byte of it, so it never reaches a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret(pub [u8; 32]);

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(..)")
    }
}

/// relay → master: a relay announces itself after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRelay {
    /// The relay's name.
    pub relay: String,
    /// How many clients it serves.
    pub clients: u32,
    /// The multicast group it broadcasts to.
    pub group: Group,
    /// The transport plugin it broadcasts with (`multicast`), for a master
    /// with `transports-names`; a relay without the feature says nothing
    /// and is taken to use the master's default.
    pub broadcast: Option<String>,
}

/// client → relay → master: a client announces itself; this is also its
/// version report, sent on every start and reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterClient {
    /// The client's id.
    pub client: String,
    /// The relay it belongs to.
    pub relay: String,
    /// What it has installed, if anything.
    pub installed: Option<ArtifactRef>,
    /// The transport plugin it receives broadcasts with, for a peer with
    /// `transport-names`.
    pub broadcast: Option<String>,
}

/// client → relay → master: the labels of the client's config (`site:
/// store-12`), after its registration and on every reconnect; the whole
/// set, replacing the last one (feature `labels`). A relay forwards only a
/// client's own, and the master holds each pair to
/// `haifu_core::check_labels` before it records any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLabels {
    /// The client's id.
    pub client: String,
    /// Its labels, sorted by key, at most
    /// [`MAX_LABELS`](haifu_core::MAX_LABELS).
    pub labels: haifu_core::Labels,
}

/// The answer to a registration: the version the peer should have, if the
/// master knows of one (a client behind it asks for a delta).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The current version, or none.
    pub target: Option<ArtifactRef>,
}

/// master → relay: the identities cut off (the whole list, replacing the
/// last one). A relay refuses them at the handshake and drops their live
/// connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyList {
    /// Client identities, at most [`MAX_DENIED`](crate::limits::MAX_DENIED).
    pub identities: Vec<String>,
}

/// master → relay: broadcast this artifact in rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The run.
    pub run: u64,
    /// The artifact.
    pub artifact: ArtifactRef,
    /// Its size in bytes.
    pub size: u64,
    /// The signed manifest, as the master stored it (opaque JSON bytes).
    pub manifest: Vec<u8>,
    /// When the first round starts.
    pub start: Timestamp,
    /// How many rounds at most.
    pub rounds: u32,
    /// The broadcast rate, bits per second.
    pub rate_bps: u64,
    /// The carousel session id.
    pub session_id: u32,
    /// The carousel session key.
    pub session_key: SessionSecret,
    /// For a staged run, the clients behind this relay admitted so far:
    /// the only ones the relay hands the session key to (sent only to
    /// relays with the `stages` feature, tag `0x19`; at most
    /// [`MAX_ADMITTED`](crate::limits::MAX_ADMITTED)). `None`: an
    /// unstaged run, every client of the relay receives it.
    pub admitted: Option<Vec<String>>,
}

/// master → relay: start round `round` of `run` at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRound {
    /// The run.
    pub run: u64,
    /// The round, from 1.
    pub round: u32,
    /// When to start.
    pub at: Timestamp,
    /// How the round spends its bytes and time with feedback repair (sent
    /// only to relays with the `feedback-repair` feature; without it a
    /// relay sends one blind pass).
    pub budget: Option<RoundBudget>,
}

/// How a round with feedback repair spends its bytes and time: the
/// master's broadcast policy decides, the relay carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundBudget {
    /// Repair symbols sent with each block's first pass, per mille of its
    /// source symbols.
    pub proactive_permille: u32,
    /// Most bytes the round may send, per mille of the artifact's size.
    pub bytes_permille: u32,
    /// Longest the round may last, in milliseconds.
    pub time_ms: u64,
    /// A listener silent this long (ms) no longer holds the round.
    pub silence_ms: u32,
    /// The loss rate assumed for a listener until its own is measured, per
    /// mille.
    pub assumed_loss_permille: u32,
}

/// client → relay: what the client holds of the blocks it has not decoded
/// yet, a few times a second while it listens to a round, and once more
/// when it has decoded everything (feature `feedback-repair`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// The run.
    pub run: u64,
    /// The carousel session.
    pub session_id: u32,
    /// Authentic datagrams of the session heard so far.
    pub heard: u64,
    /// Every block decoded.
    pub done: bool,
    /// Every block below this index is decoded.
    pub done_below: u32,
    /// The blocks below this index not listed in `held` are decoded.
    pub horizon: u32,
    /// `(block index, symbols held)` of the undecoded blocks in
    /// `done_below..horizon`, increasing; at most
    /// [`MAX_FEEDBACK_BLOCKS`](crate::limits::MAX_FEEDBACK_BLOCKS).
    pub held: Vec<(u32, u32)>,
    /// For each entry of `held`, in the same order, the highest symbol id
    /// heard of that block (`None`: none heard yet); empty when the client
    /// does not say (a client or relay without `feedback-newest`). With it
    /// the relay knows which symbols a report cannot reflect yet, so it
    /// need not wait before acting on one.
    pub newest: Vec<Option<u32>>,
}

impl Feedback {
    /// `newest` is either empty or one entry per `held` block.
    pub fn newest_fits(&self) -> bool {
        self.newest.is_empty() || self.newest.len() == self.held.len()
    }
}

/// What a relay knows of its listeners at the end of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundListeners {
    /// Clients that reported during the round.
    pub listening: u32,
    /// Of those, the ones that decoded everything: their completions
    /// follow as soon as they have installed.
    pub decoded: u32,
    /// Of the others, the ones that fell silent.
    pub silent: u32,
    /// Bytes of repairs ordered by feedback (included in `bytes`).
    pub repair_bytes: u64,
    /// The highest loss rate measured among listeners, per mille.
    pub max_loss_permille: u32,
    /// Why the round ended: 0 every listener decoded, 1 the byte budget,
    /// 2 the time budget, 3 a blind round's one pass.
    pub ended: u8,
}

/// master → relay: broadcast no more rounds of `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRounds {
    /// The run.
    pub run: u64,
}

/// relay → master: round `round` of `run` has been sent in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundDone {
    /// The run.
    pub run: u64,
    /// The round, from 1.
    pub round: u32,
    /// Datagrams sent in the round.
    pub datagrams: u64,
    /// Bytes sent in the round, carousel headers and tags included.
    pub bytes: u64,
    /// How long the round took, in milliseconds.
    pub elapsed_ms: u64,
    /// The listeners' outcome, for a master with `feedback-repair`.
    pub listeners: Option<RoundListeners>,
}

/// relay → client: what a client needs to receive a run's broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    /// The run.
    pub run: u64,
    /// The carousel session id.
    pub session_id: u32,
    /// The carousel session key.
    pub key: SessionSecret,
    /// Where the broadcast goes.
    pub group: Group,
    /// The signed manifest (opaque JSON bytes).
    pub manifest: Vec<u8>,
}

/// How a client got the version it completed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// In broadcast round n (from 1).
    Round(u32),
    /// By a delta (or full artifact) over unicast.
    Delta,
}

/// client → relay → master: installed, checked, post-install done.
///
/// Its idempotency key is `(run, client)` ([`Completion::idempotency_key`]):
/// a client completes a run once, so the master records the first and acks
/// every resend without counting it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The run.
    pub run: u64,
    /// The client.
    pub client: String,
    /// How the artifact arrived.
    pub via: Via,
    /// The sha3-256 of what is now installed.
    pub digest: Digest,
    /// By the client's clock: when it finished decoding (round), so the
    /// master can file it under the round on air then; when the install
    /// finished (delta).
    pub at: Timestamp,
}

impl Completion {
    /// The key the master deduplicates resends by.
    pub fn idempotency_key(&self) -> (u64, &str) {
        (self.run, &self.client)
    }
}

/// master → relay → client: the completion with this key is durable in the
/// master's ledger. Never sent before it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionAck {
    /// The run.
    pub run: u64,
    /// The client.
    pub client: String,
    /// The digest recorded.
    pub digest: Digest,
}

/// client → master: send me what turns `from` into `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRequest {
    /// Chosen by the client; the response and its chunks carry it.
    pub transfer: u64,
    /// The client.
    pub client: String,
    /// The artifact.
    pub name: ArtifactName,
    /// What the client has installed.
    pub from: Digest,
    /// What it wants.
    pub to: Digest,
    /// How many bytes of the payload the client already holds from an
    /// earlier transfer of the same `from → to` that was cut (0: none).
    /// The master sends the rest only when its payload is as long; a
    /// first chunk at offset 0 means "from the start". Sent only to a peer
    /// with `delta-resume` (tag `0x45`); 0 otherwise.
    pub resume_at: u64,
}

/// What the master sends for a delta request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaBody {
    /// A zstd patch against `from`, of `size` bytes, in chunks.
    Delta {
        /// The patch's size in bytes.
        size: u64,
        /// The target's signed manifest.
        manifest: Vec<u8>,
    },
    /// The compressed full artifact, of `size` bytes, in chunks.
    Full {
        /// The payload's size in bytes.
        size: u64,
        /// The target's signed manifest.
        manifest: Vec<u8>,
    },
    /// Nothing: why.
    Refused {
        /// Why.
        reason: String,
    },
}

/// master → client: the answer to a [`DeltaRequest`]; the payload follows
/// as [`DataChunk`]s with the same transfer id, unless refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaResponse {
    /// The request's transfer id.
    pub transfer: u64,
    /// The target digest.
    pub to: Digest,
    /// What follows.
    pub body: DeltaBody,
}

/// master → relay → client: an operator's order to go back to the version
/// the client keeps before its current one (`haifu rollback`; feature
/// `rollback`). The only way a client's version moves back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// The order's id in the master's ledger; the report and ack carry it.
    pub order: u64,
    /// The client ordered back.
    pub client: String,
    /// The artifact to roll back.
    pub artifact: ArtifactName,
    /// The version to go back to: the kept previous version must be this
    /// one (`None`: whatever the client keeps).
    pub to: Option<Version>,
    /// The newest run the master had when the order was given: a run of
    /// this id or older does not move the client forward again.
    pub through_run: u64,
}

/// What a client did with a [`Rollback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// `current` is now this version, durably.
    Done {
        /// The version now current.
        version: Version,
        /// Its sha3-256.
        digest: Digest,
    },
    /// Nothing changed: why (no kept previous version, not the one asked
    /// for, another artifact).
    Refused {
        /// Why, for a person.
        reason: String,
    },
}

/// client → relay → master: what became of a [`Rollback`]; durable on the
/// client before it is sent, resent until acked (like a completion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackReport {
    /// The order's id.
    pub order: u64,
    /// The client.
    pub client: String,
    /// What it did.
    pub outcome: RollbackOutcome,
    /// By the client's clock: when.
    pub at: Timestamp,
}

/// master → relay → client: the report of this order is durable in the
/// master's ledger. Never sent before it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackAck {
    /// The order's id.
    pub order: u64,
    /// The client.
    pub client: String,
}

/// relay → master: send me this run's artifact and manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFetch {
    /// Chosen by the relay; the header and chunks carry it.
    pub transfer: u64,
    /// The run.
    pub run: u64,
    /// The artifact.
    pub artifact: ArtifactRef,
}

/// master → relay: the artifact follows as `size` bytes of [`DataChunk`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactHeader {
    /// The fetch's transfer id.
    pub transfer: u64,
    /// The artifact's size in bytes.
    pub size: u64,
    /// The signed manifest.
    pub manifest: Vec<u8>,
}

/// One piece of a transfer; see [`crate::chunk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChunk {
    /// The transfer.
    pub transfer: u64,
    /// Where these bytes start in the payload.
    pub offset: u64,
    /// The bytes, at most [`MAX_CHUNK_LEN`](crate::limits::MAX_CHUNK_LEN).
    pub bytes: Vec<u8>,
    /// Whether this is the final chunk.
    pub last: bool,
}

/// What an [`ErrorMessage`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A frame could not be decoded.
    Malformed,
    /// A frame's tag is unknown.
    UnknownMessage,
    /// A frame exceeded the limit; the sender closes next.
    FrameTooLarge,
    /// The message is valid but not allowed now or from this role.
    Unexpected,
    /// A message uses a feature not negotiated.
    FeatureNotNegotiated,
    /// The run is unknown.
    UnknownRun,
    /// The artifact or version is unknown.
    UnknownArtifact,
    /// A transfer failed or was cancelled.
    TransferFailed,
    /// The sender cannot serve it now; retry later.
    Busy,
    /// The sender failed internally.
    Internal,
    /// A code this side does not know.
    Other(u16),
}

impl ErrorCode {
    pub(crate) fn to_wire(self) -> u16 {
        match self {
            Self::Malformed => 1,
            Self::UnknownMessage => 2,
            Self::FrameTooLarge => 3,
            Self::Unexpected => 4,
            Self::FeatureNotNegotiated => 5,
            Self::UnknownRun => 6,
            Self::UnknownArtifact => 7,
            Self::TransferFailed => 8,
            Self::Busy => 9,
            Self::Internal => 10,
            Self::Other(c) => c,
        }
    }

    pub(crate) fn from_wire(c: u16) -> Self {
        match c {
            1 => Self::Malformed,
            2 => Self::UnknownMessage,
            3 => Self::FrameTooLarge,
            4 => Self::Unexpected,
            5 => Self::FeatureNotNegotiated,
            6 => Self::UnknownRun,
            7 => Self::UnknownArtifact,
            8 => Self::TransferFailed,
            9 => Self::Busy,
            10 => Self::Internal,
            c => Self::Other(c),
        }
    }
}

/// Either way: something went wrong with a message; the connection stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMessage {
    /// What kind of failure.
    pub code: ErrorCode,
    /// The transfer or run it concerns, if any (0 if none).
    pub about: u64,
    /// For a person.
    pub reason: String,
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The first frame of each side.
    Hello(Hello),
    /// The answer to an acceptable hello.
    Welcome(Welcome),
    /// The answer to a refused hello.
    HelloRefused(HelloRefused),
    /// A relay announces itself.
    RegisterRelay(RegisterRelay),
    /// A client announces itself and reports its version.
    RegisterClient(RegisterClient),
    /// A client's labels.
    ClientLabels(ClientLabels),
    /// The answer to a registration.
    Registered(Registered),
    /// The clients cut off.
    DenyList(DenyList),
    /// Broadcast an artifact in rounds.
    Instruction(Instruction),
    /// Start a round.
    StartRound(StartRound),
    /// Stop a run's rounds.
    StopRounds(StopRounds),
    /// A client's session key.
    SessionKey(SessionKey),
    /// A relay finished a round.
    RoundDone(RoundDone),
    /// A listening client's needs.
    Feedback(Feedback),
    /// A client has installed.
    Completion(Completion),
    /// A completion is durable.
    CompletionAck(CompletionAck),
    /// A client's installed version failed.
    InstallFailed(crate::InstallFailed),
    /// A failure is durable, or its client was readmitted.
    FailureAck(crate::FailureAck),
    /// A client asks for a delta.
    DeltaRequest(DeltaRequest),
    /// The master answers a delta request.
    DeltaResponse(DeltaResponse),
    /// A relay asks for a run's artifact.
    ArtifactFetch(ArtifactFetch),
    /// The master announces the artifact's chunks.
    ArtifactHeader(ArtifactHeader),
    /// A piece of a transfer.
    DataChunk(DataChunk),
    /// An operator's order to roll a client back.
    Rollback(Rollback),
    /// What a client did with a rollback order.
    RollbackReport(RollbackReport),
    /// A rollback report is durable.
    RollbackAck(RollbackAck),
    /// Something went wrong.
    Error(ErrorMessage),
    /// Are you there?
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Here I am.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
}

impl Message {
    /// This message's tag.
    pub fn tag(&self) -> u8 {
        match self {
            Self::Hello(_) => tag::HELLO,
            Self::Welcome(_) => tag::WELCOME,
            Self::HelloRefused(_) => tag::HELLO_REFUSED,
            Self::RegisterRelay(m) if m.broadcast.is_some() => tag::REGISTER_RELAY_TRANSPORT,
            Self::RegisterRelay(_) => tag::REGISTER_RELAY,
            Self::RegisterClient(m) if m.broadcast.is_some() => tag::REGISTER_CLIENT_TRANSPORT,
            Self::RegisterClient(_) => tag::REGISTER_CLIENT,
            Self::ClientLabels(_) => tag::CLIENT_LABELS,
            Self::Registered(_) => tag::REGISTERED,
            Self::DenyList(_) => tag::DENY_LIST,
            Self::Instruction(m) if m.admitted.is_some() => tag::INSTRUCTION_STAGED,
            Self::Instruction(_) => tag::INSTRUCTION,
            Self::StartRound(m) if m.budget.is_some() => tag::START_ROUND_BUDGET,
            Self::StartRound(_) => tag::START_ROUND,
            Self::StopRounds(_) => tag::STOP_ROUNDS,
            Self::SessionKey(_) => tag::SESSION_KEY,
            Self::RoundDone(m) if m.listeners.is_some() => tag::ROUND_DONE_LISTENERS,
            Self::RoundDone(_) => tag::ROUND_DONE,
            Self::Feedback(m) if !m.newest.is_empty() => tag::FEEDBACK_NEWEST,
            Self::Feedback(_) => tag::FEEDBACK,
            Self::Completion(_) => tag::COMPLETION,
            Self::CompletionAck(_) => tag::COMPLETION_ACK,
            Self::InstallFailed(_) => tag::INSTALL_FAILED,
            Self::FailureAck(_) => tag::FAILURE_ACK,
            Self::DeltaRequest(m) if m.resume_at > 0 => tag::DELTA_REQUEST_RESUME,
            Self::DeltaRequest(_) => tag::DELTA_REQUEST,
            Self::DeltaResponse(_) => tag::DELTA_RESPONSE,
            Self::ArtifactFetch(_) => tag::ARTIFACT_FETCH,
            Self::ArtifactHeader(_) => tag::ARTIFACT_HEADER,
            Self::DataChunk(_) => tag::DATA_CHUNK,
            Self::Rollback(_) => tag::ROLLBACK,
            Self::RollbackReport(_) => tag::ROLLBACK_REPORT,
            Self::RollbackAck(_) => tag::ROLLBACK_ACK,
            Self::Error(_) => tag::ERROR,
            Self::Ping { .. } => tag::PING,
            Self::Pong { .. } => tag::PONG,
        }
    }

    /// This message as a peer with only the features `has` says yes to can
    /// take it: a `StartRound` without its budget and a `RoundDone`
    /// without its listeners for a peer without `feedback-repair` (it
    /// understands the older tag), and no `Feedback` at all (a relay that
    /// cannot use it); a registration without its broadcast plugin for a
    /// peer without `transport-names`; no rollback message at all for a
    /// peer without `rollback`, no labels for a peer without `labels`, and
    /// no failure report or its ack for a peer without `failure-reports`;
    /// no instruction of a staged run for a peer without `stages` (it
    /// would hand the session key to every client, admitted or not).
    /// Every other message is returned as it is.
    pub fn for_peer(&self, has: impl Fn(&str) -> bool) -> Option<std::borrow::Cow<'_, Message>> {
        use std::borrow::Cow;

        use crate::handshake::features::{
            DELTA_RESUME, FAILURE_REPORTS, FEEDBACK_NEWEST, FEEDBACK_REPAIR, LABELS, ROLLBACK,
            STAGES, TRANSPORT_NAMES,
        };
        match self {
            Self::Instruction(m) if m.admitted.is_some() && !has(STAGES) => return None,
            Self::Feedback(m)
                if !m.newest.is_empty() && has(FEEDBACK_REPAIR) && !has(FEEDBACK_NEWEST) =>
            {
                return Some(Cow::Owned(Self::Feedback(Feedback {
                    newest: Vec::new(),
                    ..m.clone()
                })));
            }
            Self::Rollback(_) | Self::RollbackReport(_) | Self::RollbackAck(_)
                if !has(ROLLBACK) =>
            {
                return None;
            }
            Self::ClientLabels(_) if !has(LABELS) => return None,
            Self::InstallFailed(_) | Self::FailureAck(_) if !has(FAILURE_REPORTS) => return None,
            Self::DeltaRequest(m) if m.resume_at > 0 && !has(DELTA_RESUME) => {
                return Some(Cow::Owned(Self::DeltaRequest(DeltaRequest {
                    resume_at: 0,
                    ..m.clone()
                })));
            }
            Self::RegisterRelay(m) if m.broadcast.is_some() && !has(TRANSPORT_NAMES) => {
                return Some(Cow::Owned(Self::RegisterRelay(RegisterRelay {
                    broadcast: None,
                    ..m.clone()
                })));
            }
            Self::RegisterClient(m) if m.broadcast.is_some() && !has(TRANSPORT_NAMES) => {
                return Some(Cow::Owned(Self::RegisterClient(RegisterClient {
                    broadcast: None,
                    ..m.clone()
                })));
            }
            _ => {}
        }
        if has(FEEDBACK_REPAIR) {
            return Some(Cow::Borrowed(self));
        }
        match self {
            Self::StartRound(m) if m.budget.is_some() => {
                Some(Cow::Owned(Self::StartRound(StartRound {
                    budget: None,
                    ..m.clone()
                })))
            }
            Self::RoundDone(m) if m.listeners.is_some() => {
                Some(Cow::Owned(Self::RoundDone(RoundDone {
                    listeners: None,
                    ..m.clone()
                })))
            }
            Self::Feedback(_) => None,
            _ => Some(Cow::Borrowed(self)),
        }
    }

    /// The feature a peer must have negotiated before this message may be
    /// sent to it, if any.
    pub fn required_feature(&self) -> Option<&'static str> {
        use crate::handshake::features::{
            CHUNKED_TRANSFER, DELTA, DELTA_RESUME, FAILURE_REPORTS, FEEDBACK_REPAIR, LABELS,
            ROLLBACK, STAGES, TRANSPORT_NAMES,
        };
        match self {
            Self::Instruction(m) if m.admitted.is_some() => Some(STAGES),
            Self::ClientLabels(_) => Some(LABELS),
            Self::InstallFailed(_) | Self::FailureAck(_) => Some(FAILURE_REPORTS),
            Self::Rollback(_) | Self::RollbackReport(_) | Self::RollbackAck(_) => Some(ROLLBACK),
            Self::DeltaRequest(m) if m.resume_at > 0 => Some(DELTA_RESUME),
            Self::RegisterRelay(m) if m.broadcast.is_some() => Some(TRANSPORT_NAMES),
            Self::RegisterClient(m) if m.broadcast.is_some() => Some(TRANSPORT_NAMES),
            Self::Feedback(_) => Some(FEEDBACK_REPAIR),
            Self::StartRound(m) if m.budget.is_some() => Some(FEEDBACK_REPAIR),
            Self::RoundDone(m) if m.listeners.is_some() => Some(FEEDBACK_REPAIR),
            Self::DeltaRequest(_) | Self::DeltaResponse(_) => Some(DELTA),
            Self::ArtifactFetch(_) | Self::ArtifactHeader(_) | Self::DataChunk(_) => {
                Some(CHUNKED_TRANSFER)
            }
            _ => None,
        }
    }
}
