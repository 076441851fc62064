#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A failure report's bounds: its reason is at most 1 KiB and its kind one
//! of three, refused at both ends before anything is sized by them.

use haifu_core::Digest;
use haifu_protocol::limits::MAX_REASON_LEN;
use haifu_protocol::{DecodeError, EncodeError, FailureKind, InstallFailed, Message};

fn report(reason: String) -> Message {
    Message::InstallFailed(InstallFailed {
        run: 7,
        client: "pos-0042".into(),
        digest: Digest::from_bytes([7; 32]),
        kind: FailureKind::Health,
        reason,
        at: "2025-03-01T09:30:00Z".parse().unwrap(),
    })
}

/// Where the kind byte sits in a report from "pos-0042": tag, run,
/// client (u16 length + 8 bytes), digest.
const KIND_AT: usize = 1 + 8 + 2 + 8 + 32;

#[test]
fn a_reason_over_one_kib_is_refused_when_encoding_and_decoding() {
    let at_bound = report("x".repeat(MAX_REASON_LEN));
    let frame = at_bound.encode().unwrap();
    assert_eq!(Message::decode(&frame).unwrap(), at_bound);

    let over = report("x".repeat(MAX_REASON_LEN + 1));
    assert!(matches!(
        over.encode(),
        Err(EncodeError::TooLong {
            field: "reason",
            ..
        })
    ));

    // A peer that writes it anyway: the length is refused before the
    // bytes are taken.
    let mut forged = frame.clone();
    let len = u16::try_from(MAX_REASON_LEN + 1).unwrap().to_be_bytes();
    forged[KIND_AT + 1..KIND_AT + 3].copy_from_slice(&len);
    forged.insert(KIND_AT + 3, b'x');
    let err = Message::decode(&forged).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLong {
                field: "reason",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_kind_outside_the_three_is_refused() {
    let frame = report("exited with exit status: 1".into())
        .encode()
        .unwrap();
    for (byte, kind) in [(1u8, "post-install"), (2, "health"), (3, "rolled-back")] {
        let mut f = frame.clone();
        f[KIND_AT] = byte;
        match Message::decode(&f).unwrap() {
            Message::InstallFailed(m) => assert_eq!(m.kind.as_str(), kind),
            other => panic!("{other:?}"),
        }
    }
    for byte in [0u8, 4, 0xff] {
        let mut f = frame.clone();
        f[KIND_AT] = byte;
        let err = Message::decode(&f).unwrap_err();
        assert!(
            matches!(err, DecodeError::Invalid { field: "kind", .. }),
            "{byte}: {err:?}"
        );
    }
}

#[test]
fn no_failure_message_reaches_a_peer_without_the_feature() {
    let msg = report("exited with exit status: 1".into());
    assert_eq!(msg.required_feature(), Some("failure-reports"));
    assert!(msg.for_peer(|_| false).is_none());
    assert!(msg.for_peer(|f| f == "failure-reports").is_some());
}
