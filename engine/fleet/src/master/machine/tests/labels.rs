//! Labels a client tells of itself, checked before anything is written.

use super::*;

fn labels(client: &str, pairs: &[(&str, &str)]) -> Message {
    Message::ClientLabels(haifu_protocol::ClientLabels {
        client: client.into(),
        labels: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
}

/// A client speaks only for itself; a relay forwards only for a client
/// registered behind it; a pair outside the rules refuses the whole set.
/// Nothing refused reaches the ledger.
#[test]
fn labels_are_taken_only_for_the_client_speaking_and_only_when_they_are_well_formed() {
    let mut w = World::new();
    let e = w.msg(RELAY, labels("c0", &[("ring", "canary")]));
    assert_eq!(error(&e), None);
    let batch = writes(&e);
    assert_eq!(batch[0].labels.len(), 1);
    assert_eq!(batch[0].labels[0].client, "c0");
    assert_eq!(batch[0].labels[0].labels["ring"], "canary");
    w.on(secs(101), Event::Committed);

    let e = w.msg(CLIENT, labels("c1", &[("ring", "canary")]));
    let (code, why) = error(&e).unwrap();
    assert_eq!(code, ErrorCode::Unexpected);
    assert!(why.contains("may speak only for itself"), "{why}");
    assert!(writes(&e).is_empty());

    let e = w.msg(OTHER_RELAY, labels("c0", &[("ring", "canary")]));
    let (_, why) = error(&e).unwrap();
    assert!(why.contains("registered behind relay \"r0\""), "{why}");
    assert!(writes(&e).is_empty());

    let e = w.msg(RELAY, labels("c1", &[("ring", "two words")]));
    let (_, why) = error(&e).unwrap();
    assert!(
        why.starts_with("labels of client \"c1\": label value"),
        "{why}"
    );
    assert!(writes(&e).is_empty());
    assert_eq!(w.refused(), 3);

    let e = w.msg(CLIENT, labels("c0", &[("site", "s1")]));
    assert_eq!(error(&e), None, "its own connection speaks for itself");
    assert_eq!(writes(&e)[0].labels[0].labels["site"], "s1");
}
