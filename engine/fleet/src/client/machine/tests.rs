//! The client core in memory: admission and the outbox.

#![allow(clippy::unwrap_used)]

use haifu_core::Digest;
use haifu_core::ManifestBody;
use haifu_core::SigningKey;
use haifu_protocol::Group;
use haifu_protocol::SessionSecret;

use super::*;

fn key() -> SigningKey {
    SigningKey::from_seed([4; 32])
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn version(v: &str, d: u8) -> ArtifactRef {
    ArtifactRef {
        name: "app".parse().unwrap(),
        version: v.parse().unwrap(),
        digest: Digest::from_bytes([d; 32]),
    }
}

fn session(run: u64, name: &str, v: &str, d: u8, signer: &SigningKey) -> Message {
    let body = ManifestBody {
        format: haifu_core::MANIFEST_FORMAT_V1,
        name: name.into(),
        version: v.into(),
        size: 10,
        sha3_256: Digest::from_bytes([d; 32]),
        created_at: t(0),
        compression: haifu_core::Compression::Zstd,
        stored_size: 10,
        carousel: None,
    };
    let manifest = Manifest::sign(body, signer).to_json().into_bytes();
    Message::SessionKey(SessionKey {
        run,
        session_id: 1,
        key: SessionSecret([1; 32]),
        group: Group {
            addr: "239.1.1.1".parse().unwrap(),
            port: 5000,
        },
        manifest,
    })
}

fn core(installed: Option<ArtifactRef>, pending: Option<Pending>) -> ClientCore {
    ClientCore::new(
        "c0".into(),
        "r0".into(),
        "app".into(),
        key().public_key(),
        installed,
        pending,
    )
}

fn pending(run: u64, d: u8) -> Pending {
    Pending {
        run,
        digest: Digest::from_bytes([d; 32]).to_hex(),
        round: 0,
        at: t(5).to_string(),
        delta: false,
    }
}

fn completions(e: &[Effect]) -> usize {
    e.iter()
        .filter(|e| matches!(e, Effect::ToRelay(Message::Completion(_))))
        .count()
}

fn receives(e: &[Effect]) -> bool {
    e.iter().any(|e| matches!(e, Effect::Receive { .. }))
}

#[test]
fn only_a_newer_signed_version_of_this_artifact_is_received_once() {
    let mut c = core(Some(version("1.1.0", 1)), None);
    let other_key = SigningKey::from_seed([5; 32]);
    assert!(!receives(&c.handle(
        t(0),
        Event::FromRelay(session(1, "app", "1.2.0", 2, &other_key))
    )));
    assert!(!receives(&c.handle(
        t(0),
        Event::FromRelay(session(1, "other", "1.2.0", 2, &key()))
    )));
    // Older: refused, and counted once however often it is offered.
    let refused = |e: &[Effect]| e.iter().any(|e| matches!(e, Effect::RefusedOlder));
    let e = c.handle(
        t(0),
        Event::FromRelay(session(1, "app", "1.0.0", 3, &key())),
    );
    assert!(!receives(&e) && refused(&e), "older: {e:?}");
    let e = c.handle(
        t(0),
        Event::FromRelay(session(1, "app", "1.0.0", 3, &key())),
    );
    assert!(!receives(&e) && !refused(&e), "counted once: {e:?}");
    // Already installed: no receiving, the version report says so.
    let e = c.handle(
        t(0),
        Event::FromRelay(session(1, "app", "1.1.0", 1, &key())),
    );
    assert!(!receives(&e));
    assert!(matches!(
        e[..],
        [Effect::ToRelay(Message::RegisterClient(_))]
    ));
    assert!(receives(&c.handle(
        t(0),
        Event::FromRelay(session(2, "app", "1.2.0", 2, &key()))
    )));
    // The same session again while receiving: nothing new.
    assert!(!receives(&c.handle(
        t(1),
        Event::FromRelay(session(2, "app", "1.2.0", 2, &key()))
    )));
    c.handle(t(2), Event::ReceiverEnded { run: 2 });
    assert!(receives(&c.handle(
        t(3),
        Event::FromRelay(session(2, "app", "1.2.0", 2, &key()))
    )));
}

#[test]
fn a_completion_is_sent_only_once_on_disk_and_again_until_acknowledged() {
    let mut c = core(Some(version("1.1.0", 1)), None);
    c.handle(t(0), Event::RelayUp);
    let e = c.handle(
        t(1),
        Event::Installed {
            installed: version("1.2.0", 2),
            pending: pending(2, 2),
        },
    );
    assert!(
        matches!(e[..], [Effect::Persist(_)]),
        "written before sent: {e:?}"
    );
    assert_eq!(completions(&e), 0);
    assert_eq!(completions(&c.handle(t(1), Event::Persisted)), 1);
    // Resent every RESEND, not more often.
    assert_eq!(completions(&c.handle(t(2), Event::Tick)), 0);
    assert_eq!(completions(&c.handle(t(3), Event::Tick)), 1);
    // An ack for another digest or run changes nothing.
    let ack = |run, d| {
        Event::FromRelay(Message::CompletionAck(CompletionAck {
            run,
            client: "c0".into(),
            digest: Digest::from_bytes([d; 32]),
        }))
    };
    assert!(c.handle(t(4), ack(2, 9)).is_empty());
    assert!(c.handle(t(4), ack(3, 2)).is_empty());
    assert!(matches!(c.handle(t(4), ack(2, 2))[..], [Effect::Forget]));
    assert_eq!(completions(&c.handle(t(10), Event::Tick)), 0);
    assert!(!c.has_pending());
}

#[test]
fn a_pending_completion_survives_a_restart_and_goes_first_on_connect() {
    let mut c = core(Some(version("1.2.0", 2)), Some(pending(2, 2)));
    let e = c.handle(t(0), Event::RelayUp);
    assert!(matches!(
        e[..],
        [
            Effect::ToRelay(Message::Completion(_)),
            Effect::ToRelay(Message::RegisterClient(_))
        ]
    ));
    // And while it waits, the run's session is not taken for "already
    // installed".
    assert!(
        c.handle(
            t(1),
            Event::FromRelay(session(2, "app", "1.2.0", 2, &key()))
        )
        .is_empty()
    );
    // Nothing is sent while the relay is away.
    c.handle(t(1), Event::RelayDown);
    assert_eq!(completions(&c.handle(t(9), Event::Tick)), 0);
}

#[test]
fn a_completion_that_could_not_be_written_is_never_sent() {
    let mut c = core(None, None);
    c.handle(t(0), Event::RelayUp);
    c.handle(
        t(1),
        Event::Installed {
            installed: version("1.2.0", 2),
            pending: pending(2, 2),
        },
    );
    assert!(c.handle(t(1), Event::PersistFailed).is_empty());
    assert_eq!(completions(&c.handle(t(9), Event::Tick)), 0);
}

#[test]
fn the_straggler_path_wants_only_a_newer_version_of_this_artifact() {
    let c = core(Some(version("1.2.0", 2)), None);
    assert!(c.wants(&version("1.3.0", 3)));
    assert!(!c.wants(&version("1.2.0", 2)));
    assert!(!c.wants(&version("1.1.0", 1)), "versions only move forward");
    let mut other = version("2.0.0", 4);
    other.name = "tool".parse().unwrap();
    assert!(!c.wants(&other));
    assert!(core(None, None).wants(&version("0.1.0", 1)));
}

#[test]
fn a_session_for_the_installed_version_is_answered_with_one_report_not_a_loop() {
    // The relay answers every report with the session again: found by
    // the fleet simulation (seed 2), a client and its relay ping-ponged
    // report and session forever, each report a ledger write.
    let mut c = core(Some(version("1.1.0", 1)), None);
    c.handle(t(0), Event::RelayUp);
    let offer = || Event::FromRelay(session(1, "app", "1.1.0", 1, &key()));
    assert_eq!(c.handle(t(1), offer()).len(), 1);
    for i in 2..10 {
        assert!(c.handle(t(i), offer()).is_empty());
    }
}
