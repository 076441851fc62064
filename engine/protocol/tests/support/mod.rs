//! Shared by the integration tests: a tiny deterministic PRNG, a generator
//! for every message, and one fixed instance of each for the golden files.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use haifu_core::Digest;
use haifu_protocol::*;
use jiff::Timestamp;

/// SplitMix64: tiny, deterministic, good enough to spread test values.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    pub(crate) fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }

    pub(crate) fn u32(&mut self) -> u32 {
        self.next() as u32
    }

    pub(crate) fn u16(&mut self) -> u16 {
        self.next() as u16
    }

    pub(crate) fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max as u64 + 1) as usize;
        (0..n).map(|_| self.next() as u8).collect()
    }

    pub(crate) fn arr32(&mut self) -> [u8; 32] {
        let mut a = [0u8; 32];
        for b in &mut a {
            *b = self.next() as u8;
        }
        a
    }

    /// Any UTF-8 string of at most `max` bytes, multi-byte characters included.
    pub(crate) fn string(&mut self, max: usize) -> String {
        const ALPHABET: &[&str] = &["a", "Z", "0", "-", " ", "é", "日", "🦀", "\u{0}"];
        let mut s = String::new();
        let target = self.below(max as u64 + 1) as usize;
        loop {
            let piece = ALPHABET[self.below(ALPHABET.len() as u64) as usize];
            if s.len() + piece.len() > target {
                return s;
            }
            s.push_str(piece);
        }
    }

    pub(crate) fn name(&mut self) -> haifu_core::ArtifactName {
        const CHARS: &[u8] = b"abcxyz0189._-";
        let n = 1 + self.below(127) as usize;
        let mut s = String::from("p");
        for _ in 1..n {
            s.push(CHARS[self.below(CHARS.len() as u64) as usize] as char);
        }
        s.parse().unwrap()
    }

    pub(crate) fn version(&mut self) -> haifu_core::Version {
        let mut s = format!(
            "{}.{}.{}",
            self.below(100),
            self.below(100),
            self.below(1000)
        );
        if self.bool() {
            s.push_str("-rc.1");
        }
        if self.bool() {
            s.push_str("+build.7");
        }
        s.parse().unwrap()
    }

    pub(crate) fn digest(&mut self) -> Digest {
        Digest::from_bytes(self.arr32())
    }

    pub(crate) fn time(&mut self) -> Timestamp {
        let lo = Timestamp::MIN.as_second();
        let hi = Timestamp::MAX.as_second();
        let span = (hi - lo) as u64;
        let secs = lo + self.below(span) as i64;
        let nanos = self.below(1_000_000_000) as i32;
        let nanos = if secs < 0 { -nanos } else { nanos };
        Timestamp::new(secs, nanos).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    pub(crate) fn artifact(&mut self) -> ArtifactRef {
        ArtifactRef {
            name: self.name(),
            version: self.version(),
            digest: self.digest(),
        }
    }

    pub(crate) fn group(&mut self) -> Group {
        let addr = if self.bool() {
            IpAddr::V4(Ipv4Addr::from(self.u32()))
        } else {
            IpAddr::V6(Ipv6Addr::from(
                u128::from(self.next()) << 64 | u128::from(self.next()),
            ))
        };
        Group {
            addr,
            port: self.u16(),
        }
    }

    pub(crate) fn role(&mut self) -> Role {
        [Role::Master, Role::Relay, Role::Client][self.below(3) as usize]
    }

    pub(crate) fn features(&mut self) -> Vec<String> {
        let n = self.below(limits::MAX_FEATURES as u64 + 1) as usize;
        (0..n)
            .map(|_| self.string(limits::MAX_FEATURE_LEN))
            .collect()
    }
}

/// How many kinds of message [`random_message`] draws from.
pub(crate) const KINDS: u64 = 29;

/// Tags: `StartRound`, `RoundDone`, `RegisterRelay`, `RegisterClient`,
/// `DeltaRequest`, `Instruction` and `Feedback` each have a second one
/// (with a budget, with listeners, with the broadcast plugin's name,
/// resuming a cut transfer, a staged run's admitted clients, with the
/// newest symbol ids heard).
pub(crate) const TAGS: u64 = KINDS + 7;

/// A random message of kind `kind` (0..KINDS), with every field drawn over
/// its whole domain, lengths up to their limits.
pub(crate) fn random_message(rng: &mut Rng, kind: u64) -> Message {
    use limits::*;
    // Manifests and chunks are kept well under their limits most of the
    // time so the test stays fast; every tenth one goes to the limit.
    let big = rng.below(10) == 0;
    let manifest_max = if big { MAX_MANIFEST_LEN } else { 300 };
    let chunk_max = if big { MAX_CHUNK_LEN } else { 300 };
    match kind {
        0 => Message::Hello(Hello {
            protocol_version: rng.u16(),
            min_version: rng.u16(),
            role: rng.role(),
            identity: rng.string(MAX_ID_LEN),
            features: rng.features(),
        }),
        1 => Message::Welcome(Welcome {
            version: rng.u16(),
            features: rng.features(),
            role: rng.role(),
            identity: rng.string(MAX_ID_LEN),
        }),
        2 => Message::HelloRefused(HelloRefused {
            code: match rng.below(5) {
                0 => RefusalCode::VersionMismatch,
                1 => RefusalCode::RoleNotServed,
                2 => RefusalCode::Denied,
                3 => RefusalCode::Unavailable,
                _ => RefusalCode::Other(5 + rng.below(60000) as u16),
            },
            reason: rng.string(MAX_REASON_LEN),
            min_version: rng.u16(),
            max_version: rng.u16(),
        }),
        3 => Message::RegisterRelay(RegisterRelay {
            relay: rng.string(MAX_ID_LEN),
            clients: rng.u32(),
            group: rng.group(),
            broadcast: rng.bool().then(|| "multicast".to_owned()),
        }),
        4 => Message::RegisterClient(RegisterClient {
            client: rng.string(MAX_ID_LEN),
            relay: rng.string(MAX_ID_LEN),
            installed: rng.bool().then(|| rng.artifact()),
            broadcast: rng.bool().then(|| "udp-peers".to_owned()),
        }),
        5 => Message::Registered(Registered {
            target: rng.bool().then(|| rng.artifact()),
        }),
        6 => Message::Instruction(Instruction {
            run: rng.next(),
            artifact: rng.artifact(),
            size: rng.next(),
            manifest: rng.bytes(manifest_max),
            start: rng.time(),
            rounds: rng.u32(),
            rate_bps: rng.next(),
            session_id: rng.u32(),
            session_key: SessionSecret(rng.arr32()),
            admitted: rng
                .bool()
                .then(|| (0..rng.below(20)).map(|_| rng.string(MAX_ID_LEN)).collect()),
        }),
        7 => Message::StartRound(StartRound {
            run: rng.next(),
            round: rng.u32(),
            at: rng.time(),
            budget: rng.bool().then(|| RoundBudget {
                proactive_permille: rng.u32(),
                bytes_permille: rng.u32(),
                time_ms: rng.next(),
                silence_ms: rng.u32(),
                assumed_loss_permille: rng.u32(),
            }),
        }),
        8 => Message::StopRounds(StopRounds { run: rng.next() }),
        9 => Message::SessionKey(SessionKey {
            run: rng.next(),
            session_id: rng.u32(),
            key: SessionSecret(rng.arr32()),
            group: rng.group(),
            manifest: rng.bytes(manifest_max),
        }),
        10 => Message::Completion(Completion {
            run: rng.next(),
            client: rng.string(MAX_ID_LEN),
            via: if rng.bool() {
                Via::Round(rng.u32())
            } else {
                Via::Delta
            },
            digest: rng.digest(),
            at: rng.time(),
        }),
        11 => Message::CompletionAck(CompletionAck {
            run: rng.next(),
            client: rng.string(MAX_ID_LEN),
            digest: rng.digest(),
        }),
        12 => Message::DeltaRequest(DeltaRequest {
            transfer: rng.next(),
            client: rng.string(MAX_ID_LEN),
            name: rng.name(),
            from: rng.digest(),
            to: rng.digest(),
            resume_at: if rng.below(2) == 0 { 0 } else { rng.next() },
        }),
        13 => Message::DeltaResponse(DeltaResponse {
            transfer: rng.next(),
            to: rng.digest(),
            body: match rng.below(3) {
                0 => DeltaBody::Delta {
                    size: rng.next(),
                    manifest: rng.bytes(manifest_max),
                },
                1 => DeltaBody::Full {
                    size: rng.next(),
                    manifest: rng.bytes(manifest_max),
                },
                _ => DeltaBody::Refused {
                    reason: rng.string(MAX_REASON_LEN),
                },
            },
        }),
        14 => Message::ArtifactFetch(ArtifactFetch {
            transfer: rng.next(),
            run: rng.next(),
            artifact: rng.artifact(),
        }),
        15 => Message::ArtifactHeader(ArtifactHeader {
            transfer: rng.next(),
            size: rng.next(),
            manifest: rng.bytes(manifest_max),
        }),
        16 => Message::DataChunk(DataChunk {
            transfer: rng.next(),
            offset: rng.next(),
            bytes: rng.bytes(chunk_max),
            last: rng.bool(),
        }),
        17 => Message::Error(ErrorMessage {
            code: match rng.below(11) {
                0 => ErrorCode::Malformed,
                1 => ErrorCode::UnknownMessage,
                2 => ErrorCode::FrameTooLarge,
                3 => ErrorCode::Unexpected,
                4 => ErrorCode::FeatureNotNegotiated,
                5 => ErrorCode::UnknownRun,
                6 => ErrorCode::UnknownArtifact,
                7 => ErrorCode::TransferFailed,
                8 => ErrorCode::Busy,
                9 => ErrorCode::Internal,
                _ => ErrorCode::Other(11 + rng.below(60000) as u16),
            },
            about: rng.next(),
            reason: rng.string(MAX_REASON_LEN),
        }),
        18 => Message::Ping { nonce: rng.next() },
        20 => Message::DenyList(DenyList {
            identities: (0..rng.below(20)).map(|_| rng.string(MAX_ID_LEN)).collect(),
        }),
        19 => Message::RoundDone(RoundDone {
            run: rng.next(),
            round: rng.u32(),
            datagrams: rng.next(),
            bytes: rng.next(),
            elapsed_ms: rng.next(),
            listeners: rng.bool().then(|| RoundListeners {
                listening: rng.u32(),
                decoded: rng.u32(),
                silent: rng.u32(),
                repair_bytes: rng.next(),
                max_loss_permille: rng.u32(),
                ended: rng.u32() as u8,
            }),
        }),
        21 => {
            let held: Vec<(u32, u32)> = (0..if big {
                MAX_FEEDBACK_BLOCKS as u64
            } else {
                rng.below(50)
            })
                .map(|_| (rng.u32(), rng.u32()))
                .collect();
            // Newest ids below 2^24 (what symbol ids are) or none heard.
            let newest = if rng.bool() {
                held.iter()
                    .map(|_| rng.bool().then(|| rng.u32() >> 8))
                    .collect()
            } else {
                Vec::new()
            };
            Message::Feedback(Feedback {
                run: rng.next(),
                session_id: rng.u32(),
                heard: rng.next(),
                done: rng.bool(),
                done_below: rng.u32(),
                horizon: rng.u32(),
                held,
                newest,
            })
        }
        23 => {
            let a = rng.artifact();
            Message::Rollback(Rollback {
                order: rng.next(),
                client: rng.string(MAX_ID_LEN),
                artifact: a.name,
                to: rng.bool().then_some(a.version),
                through_run: rng.next(),
            })
        }
        24 => Message::RollbackReport(RollbackReport {
            order: rng.next(),
            client: rng.string(MAX_ID_LEN),
            outcome: if rng.bool() {
                let a = rng.artifact();
                RollbackOutcome::Done {
                    version: a.version,
                    digest: a.digest,
                }
            } else {
                RollbackOutcome::Refused {
                    reason: rng.string(MAX_REASON_LEN),
                }
            },
            at: rng.time(),
        }),
        25 => Message::RollbackAck(RollbackAck {
            order: rng.next(),
            client: rng.string(MAX_ID_LEN),
        }),
        26 => Message::ClientLabels(ClientLabels {
            client: rng.string(MAX_ID_LEN),
            labels: (0..rng.below(haifu_core::MAX_LABELS as u64 + 1))
                .map(|_| {
                    (
                        rng.string(haifu_core::MAX_LABEL_KEY_LEN),
                        rng.string(haifu_core::MAX_LABEL_VALUE_LEN),
                    )
                })
                .collect(),
        }),
        27 => Message::InstallFailed(InstallFailed {
            run: rng.next(),
            client: rng.string(MAX_ID_LEN),
            digest: rng.digest(),
            kind: FailureKind::ALL[rng.below(3) as usize],
            reason: rng.string(MAX_REASON_LEN),
            at: rng.time(),
        }),
        28 => Message::FailureAck(FailureAck {
            run: rng.next(),
            client: rng.string(MAX_ID_LEN),
            digest: rng.digest(),
            readmitted: rng.bool(),
        }),
        _ => Message::Pong { nonce: rng.next() },
    }
}

fn fixed_digest(b: u8) -> Digest {
    let mut a = [0u8; 32];
    for (i, x) in a.iter_mut().enumerate() {
        *x = b.wrapping_add(i as u8);
    }
    Digest::from_bytes(a)
}

fn pos_app() -> ArtifactRef {
    ArtifactRef {
        name: "pos-app".parse().unwrap(),
        version: "2.4.0".parse().unwrap(),
        digest: fixed_digest(0xa0),
    }
}

fn time() -> Timestamp {
    "2025-03-01T09:30:00.5Z".parse().unwrap()
}

const MANIFEST: &[u8] = br#"{"format":"haifu-manifest/1","name":"pos-app"}"#;

/// One fixed instance of every message, named for its golden file.
pub(crate) fn samples() -> Vec<(&'static str, Message)> {
    let group = Group {
        addr: IpAddr::V4(Ipv4Addr::new(239, 1, 2, 3)),
        port: 4646,
    };
    vec![
        (
            "hello",
            Message::Hello(Hello::new(Role::Relay, "relay-east")),
        ),
        (
            "welcome",
            Message::Welcome(Welcome {
                version: 1,
                features: vec!["chunked-transfer".into(), "delta".into()],
                role: Role::Master,
                identity: "master".into(),
            }),
        ),
        (
            "hello_refused",
            Message::HelloRefused(HelloRefused {
                code: RefusalCode::VersionMismatch,
                reason: "no protocol version in common".into(),
                min_version: 1,
                max_version: 1,
            }),
        ),
        (
            "register_relay",
            Message::RegisterRelay(RegisterRelay {
                relay: "relay-east".into(),
                clients: 250,
                group,
                broadcast: None,
            }),
        ),
        (
            "register_relay_transport",
            Message::RegisterRelay(RegisterRelay {
                relay: "relay-east".into(),
                clients: 250,
                group,
                broadcast: Some("multicast".into()),
            }),
        ),
        (
            "register_client",
            Message::RegisterClient(RegisterClient {
                client: "pos-0042".into(),
                relay: "relay-east".into(),
                installed: Some(pos_app()),
                broadcast: None,
            }),
        ),
        (
            "register_client_transport",
            Message::RegisterClient(RegisterClient {
                client: "pos-0042".into(),
                relay: "relay-east".into(),
                installed: Some(pos_app()),
                broadcast: Some("udp-peers".into()),
            }),
        ),
        (
            "register_client_none",
            Message::RegisterClient(RegisterClient {
                client: "pos-0043".into(),
                relay: "relay-east".into(),
                installed: None,
                broadcast: None,
            }),
        ),
        (
            "registered",
            Message::Registered(Registered {
                target: Some(pos_app()),
            }),
        ),
        (
            "instruction",
            Message::Instruction(Instruction {
                run: 7,
                artifact: pos_app(),
                size: 268_435_456,
                manifest: MANIFEST.to_vec(),
                start: time(),
                rounds: 3,
                rate_bps: 100_000_000,
                session_id: 0xdead_beef,
                session_key: SessionSecret([0x5a; 32]),
                admitted: None,
            }),
        ),
        (
            "instruction_staged",
            Message::Instruction(Instruction {
                run: 7,
                artifact: pos_app(),
                size: 268_435_456,
                manifest: MANIFEST.to_vec(),
                start: time(),
                rounds: 3,
                rate_bps: 100_000_000,
                session_id: 0xdead_beef,
                session_key: SessionSecret([0x5a; 32]),
                admitted: Some(vec!["pos-0042".into(), "pos-0107".into()]),
            }),
        ),
        (
            "start_round",
            Message::StartRound(StartRound {
                run: 7,
                round: 2,
                at: time(),
                budget: None,
            }),
        ),
        (
            "start_round_budget",
            Message::StartRound(StartRound {
                run: 7,
                round: 2,
                at: time(),
                budget: Some(RoundBudget {
                    proactive_permille: 20,
                    bytes_permille: 3000,
                    time_ms: 120_000,
                    silence_ms: 1000,
                    assumed_loss_permille: 50,
                }),
            }),
        ),
        (
            "feedback",
            Message::Feedback(Feedback {
                run: 7,
                session_id: 0xdead_beef,
                heard: 190_000,
                done: false,
                done_below: 3,
                horizon: 6,
                held: vec![(3, 3900), (5, 12)],
                newest: Vec::new(),
            }),
        ),
        (
            "feedback_newest",
            Message::Feedback(Feedback {
                run: 7,
                session_id: 0xdead_beef,
                heard: 190_000,
                done: false,
                done_below: 3,
                horizon: 6,
                held: vec![(3, 3900), (5, 12)],
                newest: vec![Some(4012), None],
            }),
        ),
        ("stop_rounds", Message::StopRounds(StopRounds { run: 7 })),
        (
            "deny_list",
            Message::DenyList(DenyList {
                identities: vec!["pos-0042".into(), "pos-0107".into()],
            }),
        ),
        (
            "round_done",
            Message::RoundDone(RoundDone {
                run: 7,
                round: 2,
                datagrams: 195_000,
                bytes: 280_800_000,
                elapsed_ms: 2_500,
                listeners: None,
            }),
        ),
        (
            "round_done_listeners",
            Message::RoundDone(RoundDone {
                run: 7,
                round: 2,
                datagrams: 195_000,
                bytes: 280_800_000,
                elapsed_ms: 2_500,
                listeners: Some(RoundListeners {
                    listening: 8,
                    decoded: 7,
                    silent: 1,
                    repair_bytes: 4_800_000,
                    max_loss_permille: 52,
                    ended: 0,
                }),
            }),
        ),
        (
            "session_key",
            Message::SessionKey(SessionKey {
                run: 7,
                session_id: 0xdead_beef,
                key: SessionSecret([0x5a; 32]),
                group: Group {
                    addr: IpAddr::V6("ff15::1234".parse().unwrap()),
                    port: 4646,
                },
                manifest: MANIFEST.to_vec(),
            }),
        ),
        (
            "completion",
            Message::Completion(Completion {
                run: 7,
                client: "pos-0042".into(),
                via: Via::Round(2),
                digest: fixed_digest(0xa0),
                at: time(),
            }),
        ),
        (
            "completion_delta",
            Message::Completion(Completion {
                run: 7,
                client: "pos-0043".into(),
                via: Via::Delta,
                digest: fixed_digest(0xa0),
                at: Timestamp::new(-1, -5).unwrap(),
            }),
        ),
        (
            "completion_ack",
            Message::CompletionAck(CompletionAck {
                run: 7,
                client: "pos-0042".into(),
                digest: fixed_digest(0xa0),
            }),
        ),
        (
            "delta_request",
            Message::DeltaRequest(DeltaRequest {
                transfer: 11,
                client: "pos-0043".into(),
                name: "pos-app".parse().unwrap(),
                from: fixed_digest(0x10),
                to: fixed_digest(0xa0),
                resume_at: 0,
            }),
        ),
        (
            "delta_request_resume",
            Message::DeltaRequest(DeltaRequest {
                transfer: 12,
                client: "pos-0043".into(),
                name: "pos-app".parse().unwrap(),
                from: fixed_digest(0x10),
                to: fixed_digest(0xa0),
                resume_at: 1 << 20,
            }),
        ),
        (
            "delta_response_delta",
            Message::DeltaResponse(DeltaResponse {
                transfer: 11,
                to: fixed_digest(0xa0),
                body: DeltaBody::Delta {
                    size: 4096,
                    manifest: MANIFEST.to_vec(),
                },
            }),
        ),
        (
            "delta_response_full",
            Message::DeltaResponse(DeltaResponse {
                transfer: 12,
                to: fixed_digest(0xa0),
                body: DeltaBody::Full {
                    size: 1 << 20,
                    manifest: MANIFEST.to_vec(),
                },
            }),
        ),
        (
            "delta_response_refused",
            Message::DeltaResponse(DeltaResponse {
                transfer: 13,
                to: fixed_digest(0xa0),
                body: DeltaBody::Refused {
                    reason: "busy building the delta, retry later".into(),
                },
            }),
        ),
        (
            "artifact_fetch",
            Message::ArtifactFetch(ArtifactFetch {
                transfer: 3,
                run: 7,
                artifact: pos_app(),
            }),
        ),
        (
            "artifact_header",
            Message::ArtifactHeader(ArtifactHeader {
                transfer: 3,
                size: 10,
                manifest: MANIFEST.to_vec(),
            }),
        ),
        (
            "data_chunk",
            Message::DataChunk(DataChunk {
                transfer: 3,
                offset: 4,
                bytes: b"haifu!".to_vec(),
                last: true,
            }),
        ),
        (
            "error",
            Message::Error(ErrorMessage {
                code: ErrorCode::UnknownRun,
                about: 8,
                reason: "run 8 is unknown".into(),
            }),
        ),
        (
            "rollback",
            Message::Rollback(Rollback {
                order: 3,
                client: "pos-0042".into(),
                artifact: "pos-app".parse().unwrap(),
                to: Some("2.3.0".parse().unwrap()),
                through_run: 7,
            }),
        ),
        (
            "rollback_previous",
            Message::Rollback(Rollback {
                order: 4,
                client: "pos-0042".into(),
                artifact: "pos-app".parse().unwrap(),
                to: None,
                through_run: 7,
            }),
        ),
        (
            "rollback_report_done",
            Message::RollbackReport(RollbackReport {
                order: 3,
                client: "pos-0042".into(),
                outcome: RollbackOutcome::Done {
                    version: "2.3.0".parse().unwrap(),
                    digest: fixed_digest(0x10),
                },
                at: time(),
            }),
        ),
        (
            "rollback_report_refused",
            Message::RollbackReport(RollbackReport {
                order: 4,
                client: "pos-0042".into(),
                outcome: RollbackOutcome::Refused {
                    reason: "no previous version kept".into(),
                },
                at: time(),
            }),
        ),
        (
            "rollback_ack",
            Message::RollbackAck(RollbackAck {
                order: 3,
                client: "pos-0042".into(),
            }),
        ),
        (
            "client_labels",
            Message::ClientLabels(ClientLabels {
                client: "pos-0042".into(),
                labels: [
                    ("ring".to_owned(), "canary".to_owned()),
                    ("site".to_owned(), "store-12".to_owned()),
                ]
                .into(),
            }),
        ),
        (
            "install_failed",
            Message::InstallFailed(InstallFailed {
                run: 7,
                client: "pos-0042".into(),
                digest: fixed_digest(0xa0),
                kind: FailureKind::PostInstall,
                reason: "exited with exit status: 3: migrate: schema is newer".into(),
                at: time(),
            }),
        ),
        (
            "failure_ack",
            Message::FailureAck(FailureAck {
                run: 7,
                client: "pos-0042".into(),
                digest: fixed_digest(0xa0),
                readmitted: true,
            }),
        ),
        ("ping", Message::Ping { nonce: 42 }),
        ("pong", Message::Pong { nonce: 42 }),
    ]
}
