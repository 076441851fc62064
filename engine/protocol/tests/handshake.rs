#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Version negotiation and feature agreement, both sides.

use haifu_protocol::*;

fn hello(role: Role, min: u16, max: u16, features: &[&str]) -> Hello {
    Hello {
        protocol_version: max,
        min_version: min,
        role,
        identity: format!("{role:?}").to_lowercase(),
        features: features.iter().map(|f| (*f).to_owned()).collect(),
    }
}

#[test]
fn the_highest_common_version_wins() {
    assert_eq!(negotiate_version((1, 1), (1, 1)), Some(1));
    assert_eq!(negotiate_version((1, 3), (2, 5)), Some(3));
    assert_eq!(negotiate_version((2, 5), (1, 3)), Some(3));
    assert_eq!(negotiate_version((1, 9), (4, 4)), Some(4));
    assert_eq!(negotiate_version((1, 2), (3, 4)), None);
    assert_eq!(negotiate_version((3, 4), (1, 2)), None);
    // A confused range (min above max) agrees on nothing.
    assert_eq!(negotiate_version((1, 5), (4, 2)), None);
}

#[test]
fn unknown_features_are_ignored_and_the_common_ones_sorted() {
    let ours = vec!["delta".to_owned(), "chunked-transfer".to_owned()];
    let theirs = vec![
        "zstd-dict".to_owned(),
        "delta".to_owned(),
        "delta".to_owned(),
        "chunked-transfer".to_owned(),
    ];
    assert_eq!(
        common_features(&ours, &theirs),
        vec!["chunked-transfer".to_owned(), "delta".to_owned()]
    );
}

#[test]
fn both_sides_agree_after_a_handshake() {
    let master = Handshake::new(Hello::new(Role::Master, "master"), &[Role::Relay]);
    let relay = Handshake::new(
        hello(Role::Relay, 1, 4, &["delta", "future-thing"]),
        &[Role::Master],
    );
    let (welcome, at_master) = master.answer(relay.hello()).unwrap();
    // The welcome crosses the wire.
    let frame = Message::Welcome(welcome).encode().unwrap();
    let at_relay = relay.complete(&Message::decode(&frame).unwrap()).unwrap();
    assert_eq!(at_master.version, 1);
    assert_eq!(at_relay.version, 1);
    assert_eq!(at_master.features, at_relay.features);
    assert!(at_relay.has(features::DELTA));
    assert!(!at_relay.has(features::CHUNKED_TRANSFER));
    assert!(!at_relay.has("future-thing"));
    assert_eq!(at_master.peer_role, Role::Relay);
    assert_eq!(at_relay.peer_role, Role::Master);
    assert_eq!(at_relay.peer_identity, "master");
}

#[test]
fn no_common_version_is_refused_with_our_range() {
    let master = Handshake::new(Hello::new(Role::Master, "master"), &[Role::Relay]);
    let relay = Handshake::new(hello(Role::Relay, 2, 3, &[]), &[Role::Master]);
    let refused = master.answer(relay.hello()).unwrap_err();
    assert_eq!(refused.code, RefusalCode::VersionMismatch);
    assert_eq!(
        (refused.min_version, refused.max_version),
        (MIN_PROTOCOL_VERSION, PROTOCOL_VERSION)
    );
    let err = relay.complete(&Message::HelloRefused(refused)).unwrap_err();
    assert!(matches!(
        err,
        HandshakeError::Refused {
            code: RefusalCode::VersionMismatch,
            ..
        }
    ));
}

#[test]
fn a_role_not_served_is_refused() {
    let relay = Handshake::new(Hello::new(Role::Relay, "relay-east"), &[Role::Client]);
    let refused = relay
        .answer(&Hello::new(Role::Relay, "relay-west"))
        .unwrap_err();
    assert_eq!(refused.code, RefusalCode::RoleNotServed);
    assert_eq!(refused.reason, "a relay does not serve a relay");
}

#[test]
fn a_welcome_outside_our_range_is_refused() {
    let client = Handshake::new(Hello::new(Role::Client, "pos-1"), &[]);
    let welcome = Welcome {
        version: PROTOCOL_VERSION + 1,
        features: vec![],
        role: Role::Relay,
        identity: "relay".into(),
    };
    assert!(matches!(
        client.complete(&Message::Welcome(welcome)),
        Err(HandshakeError::BadVersion { .. })
    ));
    assert!(matches!(
        client.complete(&Message::Ping { nonce: 1 }),
        Err(HandshakeError::Unexpected { tag: 0x51 })
    ));
}

#[test]
fn a_welcome_cannot_switch_on_a_feature_we_lack() {
    let client = Handshake::new(hello(Role::Client, 1, 1, &["delta"]), &[]);
    let welcome = Welcome {
        version: 1,
        features: vec!["delta".into(), "chunked-transfer".into()],
        role: Role::Relay,
        identity: "relay".into(),
    };
    let session = client.complete(&Message::Welcome(welcome)).unwrap();
    assert!(session.has("delta"));
    assert!(!session.has("chunked-transfer"));
}

#[test]
fn messages_name_the_feature_they_need() {
    assert_eq!(
        Message::DataChunk(DataChunk {
            transfer: 0,
            offset: 0,
            bytes: vec![],
            last: true
        })
        .required_feature(),
        Some(features::CHUNKED_TRANSFER)
    );
    assert_eq!(Message::Ping { nonce: 0 }.required_feature(), None);
}

#[test]
fn the_session_key_never_reaches_a_log_line() {
    let shown = format!("{:?}", SessionSecret([0xab; 32]));
    assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
}
