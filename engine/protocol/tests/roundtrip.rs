#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every message, drawn at random over its whole domain, decodes back to
//! itself, and its encoding is the only one its decoding accepts.

mod support;

use haifu_protocol::{Limits, Message, limits};
use support::{KINDS, Rng, TAGS, random_message, samples};

#[test]
fn every_kind_round_trips() {
    let mut rng = Rng::new(0x4841_4946_5500_0001);
    let mut tags = std::collections::BTreeSet::new();
    for i in 0..4_000u64 {
        let msg = random_message(&mut rng, i % KINDS);
        tags.insert(msg.tag());
        let bytes = msg.encode().unwrap();
        let back = Message::decode(&bytes).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
        assert_eq!(back, msg);
        assert_eq!(back.encode().unwrap(), bytes, "encoding is deterministic");
    }
    assert_eq!(tags.len() as u64, TAGS, "every tag was drawn");
}

#[test]
fn the_samples_cover_every_tag() {
    let tags: std::collections::BTreeSet<u8> = samples().iter().map(|(_, m)| m.tag()).collect();
    assert_eq!(tags.len() as u64, TAGS);
}

#[test]
fn a_full_chunk_fits_the_default_frame() {
    let msg = Message::DataChunk(haifu_protocol::DataChunk {
        transfer: u64::MAX,
        offset: u64::MAX,
        bytes: vec![0xff; limits::MAX_CHUNK_LEN],
        last: true,
    });
    let bytes = msg.encode().unwrap();
    assert!(bytes.len() <= limits::DEFAULT_MAX_FRAME);
    assert_eq!(Message::decode(&bytes).unwrap(), msg);
}

#[test]
fn split_chunks_fit_a_small_frame() {
    let limits = Limits::new(limits::MIN_MAX_FRAME);
    let payload = vec![7u8; 300_000];
    let chunks = haifu_protocol::chunk::split(5, &payload, limits.max_chunk());
    let mut r = haifu_protocol::Reassembly::new(5, payload.len() as u64, 1 << 20).unwrap();
    let mut out = None;
    for c in chunks {
        let frame = Message::DataChunk(c).encode_with(&limits).unwrap();
        let Message::DataChunk(c) = Message::decode_with(&frame, &limits).unwrap() else {
            panic!("not a chunk");
        };
        out = r.push(&c).unwrap();
    }
    assert_eq!(out.unwrap(), payload);
}

#[test]
fn fields_past_their_limit_are_refused_when_encoding() {
    let msg = Message::Error(haifu_protocol::ErrorMessage {
        code: haifu_protocol::ErrorCode::Busy,
        about: 0,
        reason: "x".repeat(limits::MAX_REASON_LEN + 1),
    });
    assert!(matches!(
        msg.encode(),
        Err(haifu_protocol::EncodeError::TooLong {
            field: "reason",
            ..
        })
    ));
}

/// A registration names its broadcast plugin only to a peer with
/// `transport-names`; to an older peer it goes under the old tag.
#[test]
fn a_registration_names_its_broadcast_plugin_only_to_a_peer_that_knows_the_feature() {
    use haifu_protocol::{RegisterRelay, features, tag};
    let msg = Message::RegisterRelay(RegisterRelay {
        relay: "relay-east".into(),
        clients: 3,
        group: haifu_protocol::Group {
            addr: "239.1.1.1".parse().unwrap(),
            port: 5000,
        },
        broadcast: Some("udp-peers".into()),
    });
    assert_eq!(msg.required_feature(), Some(features::TRANSPORT_NAMES));
    let new = msg.for_peer(|f| f == features::TRANSPORT_NAMES).unwrap();
    assert_eq!(new.tag(), tag::REGISTER_RELAY_TRANSPORT);
    let old = msg.for_peer(|_| false).unwrap();
    assert_eq!(old.tag(), tag::REGISTER_RELAY);
    let Message::RegisterRelay(r) = old.as_ref() else {
        panic!("not a registration");
    };
    assert_eq!(r.broadcast, None);
}

/// The threat: a peer names a "plugin" that is a log line, a path or a
/// wall of bytes. Only 1–64 bytes of `[A-Za-z0-9_-]` decode; the rest is
/// refused as invalid, never a panic, and nothing like it is sent.
#[test]
fn a_broadcast_plugin_name_that_is_no_plugin_name_is_refused_both_ways() {
    use haifu_protocol::{DecodeError, RegisterClient, tag};
    let good = Message::RegisterClient(RegisterClient {
        client: "c1".into(),
        relay: "r1".into(),
        installed: None,
        broadcast: Some("udp_peers-2".into()),
    });
    let bytes = good.encode().unwrap();
    assert_eq!(bytes[0], tag::REGISTER_CLIENT_TRANSPORT);
    assert_eq!(Message::decode(&bytes).unwrap(), good);
    for bad in ["", "../quic", "multicast\nERROR forged", &"a".repeat(65)] {
        let msg = Message::RegisterClient(RegisterClient {
            client: "c1".into(),
            relay: "r1".into(),
            installed: None,
            broadcast: Some(bad.to_owned()),
        });
        assert!(msg.encode().is_err(), "{bad:?} was encoded");
        // Written by hand, as a hostile peer would.
        let mut frame = vec![
            tag::REGISTER_CLIENT_TRANSPORT,
            0,
            2,
            b'c',
            b'1',
            0,
            2,
            b'r',
            b'1',
            0,
        ];
        frame.extend_from_slice(&(bad.len() as u16).to_be_bytes());
        frame.extend_from_slice(bad.as_bytes());
        let err = Message::decode(&frame).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Invalid {
                    field: "broadcast",
                    ..
                } | DecodeError::TooLong { .. }
            ),
            "{bad:?}: {err:?}"
        );
    }
}

/// A peer without `labels` is sent no labels at all (an old master or
/// relay keeps working, its clients have none); a frame whose keys are
/// out of order or over the bounds is refused before it sizes anything.
#[test]
fn labels_go_only_to_a_peer_with_the_feature_and_decode_in_one_spelling() {
    use haifu_protocol::{ClientLabels, DecodeError, features};
    let msg = Message::ClientLabels(ClientLabels {
        client: "c1".into(),
        labels: [
            ("ring".to_owned(), "canary".to_owned()),
            ("site".to_owned(), "s1".to_owned()),
        ]
        .into(),
    });
    assert_eq!(msg.required_feature(), Some(features::LABELS));
    assert!(msg.for_peer(|_| false).is_none());
    assert!(msg.for_peer(|f| f == features::LABELS).is_some());
    let frame = msg.encode().unwrap();
    assert_eq!(Message::decode(&frame).unwrap(), msg);
    // Swap the two pairs: the same labels, another spelling.
    let (head, pairs) = frame.split_at(frame.len() - (2 + 4 + 2 + 6) - (2 + 4 + 2 + 2));
    let (first, second) = pairs.split_at(2 + 4 + 2 + 6);
    let swapped = [head, second, first].concat();
    assert!(matches!(
        Message::decode(&swapped),
        Err(DecodeError::Invalid {
            field: "labels",
            ..
        })
    ));
    // A count over the bound: refused by its count.
    let mut many = frame[..head.len()].to_vec();
    let at = many.len() - 2;
    many[at..].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(Message::decode(&many).is_err());
}

fn staged_instruction(admitted: Option<Vec<String>>) -> Message {
    use haifu_protocol::Instruction;
    let unstaged = samples()
        .into_iter()
        .find_map(|(name, m)| match m {
            Message::Instruction(i) if name == "instruction" => Some(i),
            _ => None,
        })
        .unwrap();
    Message::Instruction(Instruction {
        admitted,
        ..unstaged
    })
}

/// The threat: a relay that cannot tell a staged run hands every client the
/// key, so clients outside the stage install. A staged instruction is
/// never sent to a peer without `stages` (not even stripped of its list),
/// and an unstaged one is sent as before.
#[test]
fn a_staged_instruction_goes_only_to_a_relay_with_the_stages_feature() {
    use haifu_protocol::{features, tag};
    let staged = staged_instruction(Some(vec!["c1".into()]));
    assert_eq!(staged.tag(), tag::INSTRUCTION_STAGED);
    assert_eq!(staged.required_feature(), Some(features::STAGES));
    assert!(staged.for_peer(|f| f != features::STAGES).is_none());
    assert_eq!(*staged.for_peer(|f| f == features::STAGES).unwrap(), staged);
    // Staged with nobody admitted yet is still staged: the relay withholds
    // the key from everyone.
    let none_yet = staged_instruction(Some(Vec::new()));
    assert_eq!(none_yet.tag(), tag::INSTRUCTION_STAGED);
    assert_eq!(
        Message::decode(&none_yet.encode().unwrap()).unwrap(),
        none_yet
    );
    let unstaged = staged_instruction(None);
    assert_eq!(unstaged.tag(), tag::INSTRUCTION);
    assert_eq!(unstaged.required_feature(), None);
    assert!(unstaged.for_peer(|_| false).is_some());
}

/// A hostile master (or a corrupted frame) names more clients than one
/// relay's instruction may list, or an id past its bound: refused whole by
/// the count or the length, before anything is allocated for it; and the
/// encoder refuses to produce either.
#[test]
fn a_staged_instruction_past_its_bounds_is_refused_both_ways() {
    use haifu_protocol::{DecodeError, EncodeError};
    let too_many: Vec<String> = (0..=limits::MAX_ADMITTED)
        .map(|i| format!("c{i}"))
        .collect();
    assert!(matches!(
        staged_instruction(Some(too_many)).encode(),
        Err(EncodeError::TooLong { .. })
    ));
    let long_id = "c".repeat(limits::MAX_ID_LEN + 1);
    assert!(matches!(
        staged_instruction(Some(vec![long_id])).encode(),
        Err(EncodeError::TooLong { .. })
    ));
    // The most a relay's list may hold fits a default frame.
    let most: Vec<String> = (0..limits::MAX_ADMITTED)
        .map(|i| format!("{i:0>128}"))
        .collect();
    let full = staged_instruction(Some(most));
    assert_eq!(Message::decode(&full.encode().unwrap()).unwrap(), full);
    // By hand: one admitted client, then its count raised past the bound.
    let frame = staged_instruction(Some(vec!["c1".into()]))
        .encode()
        .unwrap();
    let count_at = frame.len() - (2 + 2) - 2;
    let mut many = frame.clone();
    many[count_at..count_at + 2].copy_from_slice(
        &u16::try_from(limits::MAX_ADMITTED + 1)
            .unwrap()
            .to_be_bytes(),
    );
    assert!(matches!(
        Message::decode(&many),
        Err(DecodeError::TooLong {
            field: "admitted",
            ..
        })
    ));
    // An id whose length is past its bound.
    let mut long = frame.clone();
    let len_at = frame.len() - (2 + 2);
    long[len_at..len_at + 2]
        .copy_from_slice(&u16::try_from(limits::MAX_ID_LEN + 1).unwrap().to_be_bytes());
    assert!(matches!(
        Message::decode(&long),
        Err(DecodeError::TooLong { .. })
    ));
    // Cut short: an error, never a panic.
    assert!(Message::decode(&frame[..frame.len() - 1]).is_err());
}

/// A relay without `feedback-newest` gets the report it knows (tag 0x27,
/// no newest ids); one with it gets them; a newest list that does not
/// match the held blocks, or holds the wire's "nothing heard" value as an
/// id, is refused at encoding rather than sent ambiguous.
#[test]
fn feedback_newest_goes_only_to_a_relay_with_the_feature() {
    use haifu_protocol::{Feedback, features};
    let msg = Message::Feedback(Feedback {
        run: 1,
        session_id: 2,
        heard: 300,
        done: false,
        done_below: 0,
        horizon: 2,
        held: vec![(0, 250), (1, 3)],
        newest: vec![Some(299), None],
    });
    let both = |f: &str| f == features::FEEDBACK_REPAIR || f == features::FEEDBACK_NEWEST;
    assert_eq!(*msg.for_peer(both).unwrap(), msg);
    let old = msg
        .for_peer(|f| f == features::FEEDBACK_REPAIR)
        .unwrap()
        .into_owned();
    let Message::Feedback(f) = &old else {
        panic!("{old:?}")
    };
    assert!(f.newest.is_empty() && f.held == vec![(0, 250), (1, 3)]);
    assert_eq!(
        old.encode().unwrap()[..].len() + 8,
        msg.encode().unwrap().len()
    );
    assert!(msg.for_peer(|f| f == features::FEEDBACK_NEWEST).is_none());
    for bad in [vec![Some(1)], vec![Some(1), Some(u32::MAX)]] {
        let Message::Feedback(mut f) = msg.clone() else {
            unreachable!()
        };
        f.newest = bad;
        assert!(Message::Feedback(f).encode().is_err());
    }
}
