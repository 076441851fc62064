//! [`Message::encode`] and [`Message::decode`]: the field order of every
//! message, written once for each direction.
//!
//! Why a hand-written encoding and not serde with a binary format: the wire
//! format is a contract between daemons of different releases, pinned by
//! golden files. Written out here it is visible in one screen per message,
//! cannot shift when a dependency changes its format or its serde derive, and
//! every length is checked against its own bound before anything is
//! allocated (a generic deserializer only knows one global limit). The cost,
//! about 300 lines, is paid once.
//!
//! Conventions: integers big-endian and fixed width; strings a u16 length
//! then UTF-8; byte strings a u32 length then the bytes; options a 0/1
//! marker then the value; digests 32 raw bytes; times i64 seconds then i32
//! nanoseconds. Decoding accepts exactly one spelling of each value, so
//! every frame that decodes re-encodes to the same bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{DecodeError, EncodeError};
use crate::failure::{FailureAck, FailureKind, InstallFailed};
use crate::handshake::{Hello, HelloRefused, Welcome};
use crate::limits::{
    Limits, MAX_CHUNK_LEN, MAX_FEEDBACK_BLOCKS, MAX_ID_LEN, MAX_MANIFEST_LEN, MAX_PLUGIN_NAME_LEN,
    MAX_REASON_LEN,
};
use crate::message::{
    ArtifactFetch, ArtifactHeader, ArtifactRef, ClientLabels, Completion, CompletionAck, DataChunk,
    DeltaBody, DeltaRequest, DeltaResponse, DenyList, ErrorCode, ErrorMessage, Feedback, Group,
    Instruction, Message, RegisterClient, RegisterRelay, Registered, Rollback, RollbackAck,
    RollbackOutcome, RollbackReport, RoundBudget, RoundDone, RoundListeners, SessionKey,
    SessionSecret, StartRound, StopRounds, Via, tag,
};
use crate::wire::{Reader, Writer};

/// `Feedback::newest` on the wire for a block none of whose symbols was
/// heard: symbol ids are 24 bits, so it is never a real one.
const NOTHING_HEARD: u32 = u32::MAX;

impl Message {
    /// Encodes under the default [`Limits`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.encode_with(&Limits::default())
    }

    /// Encodes, refusing anything the peer would refuse under `limits`.
    pub fn encode_with(&self, limits: &Limits) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.u8(self.tag());
        self.write_body(&mut w)?;
        let out = w.finish();
        if out.len() > limits.max_frame() {
            return Err(EncodeError::FrameTooLarge {
                len: out.len(),
                max: limits.max_frame(),
            });
        }
        Ok(out)
    }

    /// Decodes one frame under the default [`Limits`].
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(frame, &Limits::default())
    }

    /// Decodes one frame; never panics, never allocates more than the
    /// field's bound, and never more in total than the frame's own length.
    pub fn decode_with(frame: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        if frame.len() > limits.max_frame() {
            return Err(DecodeError::FrameTooLarge {
                len: frame.len(),
                max: limits.max_frame(),
            });
        }
        let mut r = Reader::new(frame);
        let t = r.u8("tag").map_err(|_| DecodeError::Empty)?;
        let msg = Self::read_body(t, &mut r)?;
        r.finish()?;
        Ok(msg)
    }

    fn write_body(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Self::Hello(m) => m.write(w)?,
            Self::Welcome(m) => m.write(w)?,
            Self::HelloRefused(m) => m.write(w)?,
            Self::RegisterRelay(m) => {
                w.str("relay", &m.relay, MAX_ID_LEN)?;
                w.u32(m.clients);
                write_group(w, &m.group);
                if let Some(b) = &m.broadcast {
                    write_plugin_name(w, b)?;
                }
            }
            Self::DenyList(m) => {
                w.count("identities", m.identities.len(), crate::limits::MAX_DENIED)?;
                for id in &m.identities {
                    w.str("identity", id, MAX_ID_LEN)?;
                }
            }
            Self::RegisterClient(m) => {
                w.str("client", &m.client, MAX_ID_LEN)?;
                w.str("relay", &m.relay, MAX_ID_LEN)?;
                write_opt_artifact(w, m.installed.as_ref())?;
                if let Some(b) = &m.broadcast {
                    write_plugin_name(w, b)?;
                }
            }
            Self::ClientLabels(m) => {
                w.str("client", &m.client, MAX_ID_LEN)?;
                w.count("labels", m.labels.len(), haifu_core::MAX_LABELS)?;
                for (k, v) in &m.labels {
                    w.str("label key", k, haifu_core::MAX_LABEL_KEY_LEN)?;
                    w.str("label value", v, haifu_core::MAX_LABEL_VALUE_LEN)?;
                }
            }
            Self::Registered(m) => write_opt_artifact(w, m.target.as_ref())?,
            Self::Instruction(m) => {
                w.u64(m.run);
                write_artifact(w, &m.artifact)?;
                w.u64(m.size);
                w.bytes("manifest", &m.manifest, MAX_MANIFEST_LEN)?;
                w.time(&m.start);
                w.u32(m.rounds);
                w.u64(m.rate_bps);
                w.u32(m.session_id);
                w.raw32(&m.session_key.0);
                if let Some(admitted) = &m.admitted {
                    write_admitted(w, admitted)?;
                }
            }
            Self::StartRound(m) => {
                w.u64(m.run);
                w.u32(m.round);
                w.time(&m.at);
                if let Some(b) = &m.budget {
                    w.u32(b.proactive_permille);
                    w.u32(b.bytes_permille);
                    w.u64(b.time_ms);
                    w.u32(b.silence_ms);
                    w.u32(b.assumed_loss_permille);
                }
            }
            Self::Feedback(m) => {
                w.u64(m.run);
                w.u32(m.session_id);
                w.u64(m.heard);
                w.bool(m.done);
                w.u32(m.done_below);
                w.u32(m.horizon);
                w.count("held", m.held.len(), MAX_FEEDBACK_BLOCKS)?;
                if m.newest.is_empty() {
                    for &(block, held) in &m.held {
                        w.u32(block);
                        w.u32(held);
                    }
                } else {
                    if !m.newest_fits() || m.newest.contains(&Some(NOTHING_HEARD)) {
                        return Err(EncodeError::Invalid {
                            field: "newest",
                            reason: "not one entry per held block",
                        });
                    }
                    for (&(block, held), newest) in m.held.iter().zip(&m.newest) {
                        w.u32(block);
                        w.u32(held);
                        w.u32(newest.unwrap_or(NOTHING_HEARD));
                    }
                }
            }
            Self::StopRounds(m) => w.u64(m.run),
            Self::RoundDone(m) => {
                w.u64(m.run);
                w.u32(m.round);
                w.u64(m.datagrams);
                w.u64(m.bytes);
                w.u64(m.elapsed_ms);
                if let Some(l) = &m.listeners {
                    w.u32(l.listening);
                    w.u32(l.decoded);
                    w.u32(l.silent);
                    w.u64(l.repair_bytes);
                    w.u32(l.max_loss_permille);
                    w.u8(l.ended);
                }
            }
            Self::SessionKey(m) => {
                w.u64(m.run);
                w.u32(m.session_id);
                w.raw32(&m.key.0);
                write_group(w, &m.group);
                w.bytes("manifest", &m.manifest, MAX_MANIFEST_LEN)?;
            }
            Self::Completion(m) => {
                w.u64(m.run);
                w.str("client", &m.client, MAX_ID_LEN)?;
                match m.via {
                    Via::Round(n) => {
                        w.u8(1);
                        w.u32(n);
                    }
                    Via::Delta => w.u8(2),
                }
                w.digest(&m.digest);
                w.time(&m.at);
            }
            Self::CompletionAck(m) => {
                w.u64(m.run);
                w.str("client", &m.client, MAX_ID_LEN)?;
                w.digest(&m.digest);
            }
            Self::InstallFailed(m) => {
                w.u64(m.run);
                w.str("client", &m.client, MAX_ID_LEN)?;
                w.digest(&m.digest);
                w.u8(m.kind.to_wire());
                w.str("reason", &m.reason, MAX_REASON_LEN)?;
                w.time(&m.at);
            }
            Self::FailureAck(m) => {
                w.u64(m.run);
                w.str("client", &m.client, MAX_ID_LEN)?;
                w.digest(&m.digest);
                w.bool(m.readmitted);
            }
            Self::DeltaRequest(m) => {
                w.u64(m.transfer);
                w.str("client", &m.client, MAX_ID_LEN)?;
                w.name("name", &m.name)?;
                w.digest(&m.from);
                w.digest(&m.to);
                // Tag 0x45 (`delta-resume`) carries it; 0x40 means 0.
                if m.resume_at > 0 {
                    w.u64(m.resume_at);
                }
            }
            Self::DeltaResponse(m) => {
                w.u64(m.transfer);
                w.digest(&m.to);
                match &m.body {
                    DeltaBody::Delta { size, manifest } => {
                        w.u8(1);
                        w.u64(*size);
                        w.bytes("manifest", manifest, MAX_MANIFEST_LEN)?;
                    }
                    DeltaBody::Full { size, manifest } => {
                        w.u8(2);
                        w.u64(*size);
                        w.bytes("manifest", manifest, MAX_MANIFEST_LEN)?;
                    }
                    DeltaBody::Refused { reason } => {
                        w.u8(3);
                        w.str("reason", reason, MAX_REASON_LEN)?;
                    }
                }
            }
            Self::ArtifactFetch(m) => {
                w.u64(m.transfer);
                w.u64(m.run);
                write_artifact(w, &m.artifact)?;
            }
            Self::ArtifactHeader(m) => {
                w.u64(m.transfer);
                w.u64(m.size);
                w.bytes("manifest", &m.manifest, MAX_MANIFEST_LEN)?;
            }
            Self::DataChunk(m) => {
                w.u64(m.transfer);
                w.u64(m.offset);
                w.bytes("bytes", &m.bytes, MAX_CHUNK_LEN)?;
                w.bool(m.last);
            }
            Self::Rollback(m) => {
                w.u64(m.order);
                w.str("client", &m.client, MAX_ID_LEN)?;
                w.name("artifact", &m.artifact)?;
                match &m.to {
                    None => w.u8(0),
                    Some(v) => {
                        w.u8(1);
                        w.version("to", v)?;
                    }
                }
                w.u64(m.through_run);
            }
            Self::RollbackReport(m) => {
                w.u64(m.order);
                w.str("client", &m.client, MAX_ID_LEN)?;
                match &m.outcome {
                    RollbackOutcome::Done { version, digest } => {
                        w.u8(1);
                        w.version("version", version)?;
                        w.digest(digest);
                    }
                    RollbackOutcome::Refused { reason } => {
                        w.u8(2);
                        w.str("reason", reason, MAX_REASON_LEN)?;
                    }
                }
                w.time(&m.at);
            }
            Self::RollbackAck(m) => {
                w.u64(m.order);
                w.str("client", &m.client, MAX_ID_LEN)?;
            }
            Self::Error(m) => {
                w.u16(m.code.to_wire());
                w.u64(m.about);
                w.str("reason", &m.reason, MAX_REASON_LEN)?;
            }
            Self::Ping { nonce } | Self::Pong { nonce } => w.u64(*nonce),
        }
        Ok(())
    }

    fn read_body(t: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match t {
            tag::HELLO => Self::Hello(Hello::read(r)?),
            tag::WELCOME => Self::Welcome(Welcome::read(r)?),
            tag::HELLO_REFUSED => Self::HelloRefused(HelloRefused::read(r)?),
            tag::REGISTER_RELAY | tag::REGISTER_RELAY_TRANSPORT => {
                Self::RegisterRelay(RegisterRelay {
                    relay: r.str("relay", MAX_ID_LEN)?,
                    clients: r.u32("clients")?,
                    group: read_group(r)?,
                    broadcast: if t == tag::REGISTER_RELAY_TRANSPORT {
                        Some(read_plugin_name(r)?)
                    } else {
                        None
                    },
                })
            }
            tag::DENY_LIST => {
                let n = r.count("identities", crate::limits::MAX_DENIED)?;
                let mut identities = Vec::with_capacity(n);
                for _ in 0..n {
                    identities.push(r.str("identity", MAX_ID_LEN)?);
                }
                Self::DenyList(DenyList { identities })
            }
            tag::CLIENT_LABELS => {
                let client = r.str("client", MAX_ID_LEN)?;
                let n = r.count("labels", haifu_core::MAX_LABELS)?;
                let mut labels = haifu_core::Labels::new();
                for _ in 0..n {
                    let k = r.str("label key", haifu_core::MAX_LABEL_KEY_LEN)?;
                    let v = r.str("label value", haifu_core::MAX_LABEL_VALUE_LEN)?;
                    // One spelling: keys strictly ascending, as a sorted
                    // map writes them.
                    if labels.last_key_value().is_some_and(|(last, _)| *last >= k) {
                        return Err(DecodeError::Invalid {
                            field: "labels",
                            reason: "keys must be strictly ascending",
                        });
                    }
                    labels.insert(k, v);
                }
                Self::ClientLabels(ClientLabels { client, labels })
            }
            tag::REGISTER_CLIENT | tag::REGISTER_CLIENT_TRANSPORT => {
                Self::RegisterClient(RegisterClient {
                    client: r.str("client", MAX_ID_LEN)?,
                    relay: r.str("relay", MAX_ID_LEN)?,
                    installed: read_opt_artifact(r, "installed")?,
                    broadcast: if t == tag::REGISTER_CLIENT_TRANSPORT {
                        Some(read_plugin_name(r)?)
                    } else {
                        None
                    },
                })
            }
            tag::REGISTERED => Self::Registered(Registered {
                target: read_opt_artifact(r, "target")?,
            }),
            tag::INSTRUCTION | tag::INSTRUCTION_STAGED => Self::Instruction(Instruction {
                run: r.u64("run")?,
                artifact: read_artifact(r)?,
                size: r.u64("size")?,
                manifest: r.bytes("manifest", MAX_MANIFEST_LEN)?,
                start: r.time("start")?,
                rounds: r.u32("rounds")?,
                rate_bps: r.u64("rate_bps")?,
                session_id: r.u32("session_id")?,
                session_key: SessionSecret(r.raw32("session_key")?),
                admitted: if t == tag::INSTRUCTION_STAGED {
                    Some(read_admitted(r)?)
                } else {
                    None
                },
            }),
            tag::START_ROUND | tag::START_ROUND_BUDGET => Self::StartRound(StartRound {
                run: r.u64("run")?,
                round: r.u32("round")?,
                at: r.time("at")?,
                budget: if t == tag::START_ROUND_BUDGET {
                    Some(RoundBudget {
                        proactive_permille: r.u32("proactive_permille")?,
                        bytes_permille: r.u32("bytes_permille")?,
                        time_ms: r.u64("time_ms")?,
                        silence_ms: r.u32("silence_ms")?,
                        assumed_loss_permille: r.u32("assumed_loss_permille")?,
                    })
                } else {
                    None
                },
            }),
            tag::FEEDBACK | tag::FEEDBACK_NEWEST => {
                let run = r.u64("run")?;
                let session_id = r.u32("session_id")?;
                let heard = r.u64("heard")?;
                let done = r.bool("done")?;
                let done_below = r.u32("done_below")?;
                let horizon = r.u32("horizon")?;
                let n = r.count("held", MAX_FEEDBACK_BLOCKS)?;
                let with_newest = t == tag::FEEDBACK_NEWEST;
                let mut held = Vec::with_capacity(n);
                let mut newest = Vec::with_capacity(if with_newest { n } else { 0 });
                for _ in 0..n {
                    held.push((r.u32("block")?, r.u32("symbols")?));
                    if with_newest {
                        let esi = r.u32("newest")?;
                        newest.push((esi != NOTHING_HEARD).then_some(esi));
                    }
                }
                Self::Feedback(Feedback {
                    run,
                    session_id,
                    heard,
                    done,
                    done_below,
                    horizon,
                    held,
                    newest,
                })
            }
            tag::STOP_ROUNDS => Self::StopRounds(StopRounds { run: r.u64("run")? }),
            tag::ROUND_DONE | tag::ROUND_DONE_LISTENERS => Self::RoundDone(RoundDone {
                run: r.u64("run")?,
                round: r.u32("round")?,
                datagrams: r.u64("datagrams")?,
                bytes: r.u64("bytes")?,
                elapsed_ms: r.u64("elapsed_ms")?,
                listeners: if t == tag::ROUND_DONE_LISTENERS {
                    Some(RoundListeners {
                        listening: r.u32("listening")?,
                        decoded: r.u32("decoded")?,
                        silent: r.u32("silent")?,
                        repair_bytes: r.u64("repair_bytes")?,
                        max_loss_permille: r.u32("max_loss_permille")?,
                        ended: r.u8("ended")?,
                    })
                } else {
                    None
                },
            }),
            tag::SESSION_KEY => Self::SessionKey(SessionKey {
                run: r.u64("run")?,
                session_id: r.u32("session_id")?,
                key: SessionSecret(r.raw32("key")?),
                group: read_group(r)?,
                manifest: r.bytes("manifest", MAX_MANIFEST_LEN)?,
            }),
            tag::COMPLETION => Self::Completion(Completion {
                run: r.u64("run")?,
                client: r.str("client", MAX_ID_LEN)?,
                via: match r.u8("via")? {
                    1 => Via::Round(r.u32("round")?),
                    2 => Via::Delta,
                    _ => {
                        return Err(DecodeError::Invalid {
                            field: "via",
                            reason: "must be 1 (round) or 2 (delta)",
                        });
                    }
                },
                digest: r.digest("digest")?,
                at: r.time("at")?,
            }),
            tag::COMPLETION_ACK => Self::CompletionAck(CompletionAck {
                run: r.u64("run")?,
                client: r.str("client", MAX_ID_LEN)?,
                digest: r.digest("digest")?,
            }),
            tag::INSTALL_FAILED => Self::InstallFailed(InstallFailed {
                run: r.u64("run")?,
                client: r.str("client", MAX_ID_LEN)?,
                digest: r.digest("digest")?,
                kind: FailureKind::from_wire(r.u8("kind")?).ok_or(DecodeError::Invalid {
                    field: "kind",
                    reason: "must be 1 (post-install), 2 (health) or 3 (rolled-back)",
                })?,
                reason: r.str("reason", MAX_REASON_LEN)?,
                at: r.time("at")?,
            }),
            tag::FAILURE_ACK => Self::FailureAck(FailureAck {
                run: r.u64("run")?,
                client: r.str("client", MAX_ID_LEN)?,
                digest: r.digest("digest")?,
                readmitted: r.bool("readmitted")?,
            }),
            t @ (tag::DELTA_REQUEST | tag::DELTA_REQUEST_RESUME) => {
                Self::DeltaRequest(DeltaRequest {
                    transfer: r.u64("transfer")?,
                    client: r.str("client", MAX_ID_LEN)?,
                    name: r.name("name")?,
                    from: r.digest("from")?,
                    to: r.digest("to")?,
                    resume_at: if t == tag::DELTA_REQUEST_RESUME {
                        r.u64("resume_at")?
                    } else {
                        0
                    },
                })
            }
            tag::DELTA_RESPONSE => Self::DeltaResponse(DeltaResponse {
                transfer: r.u64("transfer")?,
                to: r.digest("to")?,
                body: match r.u8("body")? {
                    1 => DeltaBody::Delta {
                        size: r.u64("size")?,
                        manifest: r.bytes("manifest", MAX_MANIFEST_LEN)?,
                    },
                    2 => DeltaBody::Full {
                        size: r.u64("size")?,
                        manifest: r.bytes("manifest", MAX_MANIFEST_LEN)?,
                    },
                    3 => DeltaBody::Refused {
                        reason: r.str("reason", MAX_REASON_LEN)?,
                    },
                    _ => {
                        return Err(DecodeError::Invalid {
                            field: "body",
                            reason: "must be 1 (delta), 2 (full) or 3 (refused)",
                        });
                    }
                },
            }),
            tag::ARTIFACT_FETCH => Self::ArtifactFetch(ArtifactFetch {
                transfer: r.u64("transfer")?,
                run: r.u64("run")?,
                artifact: read_artifact(r)?,
            }),
            tag::ARTIFACT_HEADER => Self::ArtifactHeader(ArtifactHeader {
                transfer: r.u64("transfer")?,
                size: r.u64("size")?,
                manifest: r.bytes("manifest", MAX_MANIFEST_LEN)?,
            }),
            tag::DATA_CHUNK => Self::DataChunk(DataChunk {
                transfer: r.u64("transfer")?,
                offset: r.u64("offset")?,
                bytes: r.bytes("bytes", MAX_CHUNK_LEN)?,
                last: r.bool("last")?,
            }),
            tag::ROLLBACK => Self::Rollback(Rollback {
                order: r.u64("order")?,
                client: r.str("client", MAX_ID_LEN)?,
                artifact: r.name("artifact")?,
                to: if r.present("to")? {
                    Some(r.version("to")?)
                } else {
                    None
                },
                through_run: r.u64("through_run")?,
            }),
            tag::ROLLBACK_REPORT => Self::RollbackReport(RollbackReport {
                order: r.u64("order")?,
                client: r.str("client", MAX_ID_LEN)?,
                outcome: match r.u8("outcome")? {
                    1 => RollbackOutcome::Done {
                        version: r.version("version")?,
                        digest: r.digest("digest")?,
                    },
                    2 => RollbackOutcome::Refused {
                        reason: r.str("reason", MAX_REASON_LEN)?,
                    },
                    _ => {
                        return Err(DecodeError::Invalid {
                            field: "outcome",
                            reason: "must be 1 (done) or 2 (refused)",
                        });
                    }
                },
                at: r.time("at")?,
            }),
            tag::ROLLBACK_ACK => Self::RollbackAck(RollbackAck {
                order: r.u64("order")?,
                client: r.str("client", MAX_ID_LEN)?,
            }),
            tag::ERROR => Self::Error(ErrorMessage {
                code: ErrorCode::from_wire(r.u16("code")?),
                about: r.u64("about")?,
                reason: r.str("reason", MAX_REASON_LEN)?,
            }),
            tag::PING => Self::Ping {
                nonce: r.u64("nonce")?,
            },
            tag::PONG => Self::Pong {
                nonce: r.u64("nonce")?,
            },
            other => return Err(DecodeError::UnknownMessage { tag: other }),
        })
    }
}

fn write_artifact(w: &mut Writer, a: &ArtifactRef) -> Result<(), EncodeError> {
    w.name("name", &a.name)?;
    w.version("version", &a.version)?;
    w.digest(&a.digest);
    Ok(())
}

fn read_artifact(r: &mut Reader<'_>) -> Result<ArtifactRef, DecodeError> {
    Ok(ArtifactRef {
        name: r.name("name")?,
        version: r.version("version")?,
        digest: r.digest("digest")?,
    })
}

fn write_opt_artifact(w: &mut Writer, a: Option<&ArtifactRef>) -> Result<(), EncodeError> {
    match a {
        None => w.u8(0),
        Some(a) => {
            w.u8(1);
            write_artifact(w, a)?;
        }
    }
    Ok(())
}

fn read_opt_artifact(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<ArtifactRef>, DecodeError> {
    if r.present(field)? {
        Ok(Some(read_artifact(r)?))
    } else {
        Ok(None)
    }
}

fn write_group(w: &mut Writer, g: &Group) {
    match g.addr {
        IpAddr::V4(a) => {
            w.u8(4);
            for b in a.octets() {
                w.u8(b);
            }
        }
        IpAddr::V6(a) => {
            w.u8(6);
            for b in a.octets() {
                w.u8(b);
            }
        }
    }
    w.u16(g.port);
}

fn read_group(r: &mut Reader<'_>) -> Result<Group, DecodeError> {
    let addr = match r.u8("group")? {
        4 => {
            let mut o = [0u8; 4];
            for b in &mut o {
                *b = r.u8("group")?;
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        6 => {
            let mut o = [0u8; 16];
            for b in &mut o {
                *b = r.u8("group")?;
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => {
            return Err(DecodeError::Invalid {
                field: "group",
                reason: "address family must be 4 or 6",
            });
        }
    };
    Ok(Group {
        addr,
        port: r.u16("port")?,
    })
}

/// A transport plugin's name: one to [`MAX_PLUGIN_NAME_LEN`] bytes of
/// ASCII letters, digits, `-` and `_` (what a plugin file can be named),
/// so a peer's name is safe to compare and to print.
fn is_plugin_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PLUGIN_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn write_plugin_name(w: &mut Writer, name: &str) -> Result<(), EncodeError> {
    if !is_plugin_name(name) {
        return Err(EncodeError::Invalid {
            field: "broadcast",
            reason: "not a plugin name",
        });
    }
    w.str("broadcast", name, MAX_PLUGIN_NAME_LEN)
}

fn read_plugin_name(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let name = r.str("broadcast", MAX_PLUGIN_NAME_LEN)?;
    if !is_plugin_name(&name) {
        return Err(DecodeError::Invalid {
            field: "broadcast",
            reason: "not a plugin name",
        });
    }
    Ok(name)
}

/// A staged instruction's admitted clients: a count, then each id.
fn write_admitted(w: &mut Writer, admitted: &[String]) -> Result<(), EncodeError> {
    w.count("admitted", admitted.len(), crate::limits::MAX_ADMITTED)?;
    for client in admitted {
        w.str("admitted client", client, MAX_ID_LEN)?;
    }
    Ok(())
}

/// The count is held to [`MAX_ADMITTED`](crate::limits::MAX_ADMITTED)
/// and each id to [`MAX_ID_LEN`] before anything is allocated for it.
fn read_admitted(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let n = r.count("admitted", crate::limits::MAX_ADMITTED)?;
    let mut admitted = Vec::with_capacity(n);
    for _ in 0..n {
        admitted.push(r.str("admitted client", MAX_ID_LEN)?);
    }
    Ok(admitted)
}
