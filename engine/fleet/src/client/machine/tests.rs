//! The client core in memory: admission and the outbox.

#![allow(clippy::unwrap_used)]

use haifu_core::Digest;
use haifu_core::ManifestBody;
use haifu_core::SigningKey;
use haifu_protocol::Group;
use haifu_protocol::SessionSecret;

use super::*;

pub(super) fn key() -> SigningKey {
    SigningKey::from_seed([4; 32])
}

pub(super) fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

pub(super) fn version(v: &str, d: u8) -> ArtifactRef {
    ArtifactRef {
        name: "app".parse().unwrap(),
        version: v.parse().unwrap(),
        digest: Digest::from_bytes([d; 32]),
    }
}

pub(super) fn session(run: u64, name: &str, v: &str, d: u8, signer: &SigningKey) -> Message {
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

pub(super) fn core(installed: Option<ArtifactRef>, pending: Option<Pending>) -> ClientCore {
    ClientCore::new(
        "c0".into(),
        "r0".into(),
        "app".into(),
        key().public_key(),
        installed,
        pending,
    )
}

pub(super) fn pending(run: u64, d: u8) -> Pending {
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

pub(super) fn receives(e: &[Effect]) -> bool {
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
    // The version switched to is kept too (`fallback`), nothing is sent.
    assert!(
        matches!(e[..], [Effect::KeepSwitched(Some(_)), Effect::Persist(_)]),
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
            Effect::ToRelay(Message::RegisterClient(_)),
            Effect::ToRelay(Message::ClientLabels(_))
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

pub(super) fn order(n: u64, client: &str, through_run: u64) -> Message {
    Message::Rollback(haifu_protocol::Rollback {
        order: n,
        client: client.into(),
        artifact: "app".parse().unwrap(),
        to: Some("1.1.0".parse().unwrap()),
        through_run,
    })
}

fn reports(e: &[Effect]) -> Vec<&haifu_protocol::RollbackReport> {
    e.iter()
        .filter_map(|e| match e {
            Effect::ToRelay(Message::RollbackReport(r)) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn a_rollback_order_is_carried_out_once_kept_reported_and_forgotten_on_its_ack() {
    let mut c = core(Some(version("1.2.0", 2)), None);
    c.handle(t(0), Event::RelayUp);
    // Another client's order is not this one's business.
    assert!(
        c.handle(t(1), Event::FromRelay(order(3, "c9", 1)))
            .is_empty()
    );
    let e = c.handle(t(1), Event::FromRelay(order(3, "c0", 1)));
    let Some(Effect::RollBack { intent, to, .. }) = e.first() else {
        panic!("{e:?}");
    };
    assert_eq!(to.as_deref(), Some("1.1.0"));
    assert_eq!(intent.last_order, 3);
    assert_eq!(intent.hold.as_ref().unwrap().from, "1.2.0");
    // The same order again while the switch runs: nothing more.
    assert!(
        c.handle(t(1), Event::FromRelay(order(3, "c0", 1)))
            .is_empty()
    );
    let e = c.handle(t(2), Event::RolledBack(Ok(version("1.1.0", 1))));
    assert!(matches!(&e[0], Effect::KeepRollbacks(s) if s.reports.len() == 1 && s.hold.is_some()));
    let r = reports(&e);
    assert_eq!(r.len(), 1);
    assert!(
        matches!(&r[0].outcome, haifu_protocol::RollbackOutcome::Done { version, .. } if version.to_string() == "1.1.0")
    );
    // Its version report follows: it runs 1.1.0 now.
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::ToRelay(Message::RegisterClient(r))
        if r.installed.as_ref().is_some_and(|i| i.version.to_string() == "1.1.0")))
    );
    // Resent on a tick until acked, and for a repeated order, never
    // carried out twice.
    assert_eq!(reports(&c.handle(t(5), Event::Tick)).len(), 1);
    let e = c.handle(t(5), Event::FromRelay(order(3, "c0", 1)));
    assert!(!e.iter().any(|e| matches!(e, Effect::RollBack { .. })));
    assert_eq!(reports(&e).len(), 1);
    let ack = |order, client: &str| {
        Event::FromRelay(Message::RollbackAck(haifu_protocol::RollbackAck {
            order,
            client: client.into(),
        }))
    };
    assert!(c.handle(t(6), ack(4, "c0")).is_empty(), "not its order");
    let e = c.handle(t(6), ack(3, "c0"));
    assert!(matches!(&e[0], Effect::KeepRollbacks(s) if s.reports.is_empty()));
    assert!(reports(&c.handle(t(10), Event::Tick)).is_empty());
}

#[test]
fn after_a_rollback_the_run_it_undid_does_not_move_the_client_forward_but_a_later_one_does() {
    let mut c = core(Some(version("1.2.0", 2)), None);
    c.handle(t(0), Event::RelayUp);
    c.handle(t(1), Event::FromRelay(order(3, "c0", 2)));
    c.handle(t(2), Event::RolledBack(Ok(version("1.1.0", 1))));
    // Run 2 (1.2.0) is still on air: held back, not received.
    let e = c.handle(
        t(3),
        Event::FromRelay(session(2, "app", "1.2.0", 2, &key())),
    );
    assert!(
        !e.iter().any(|e| matches!(e, Effect::Receive { .. })),
        "{e:?}"
    );
    // Nor fetched from the master as a straggler.
    assert!(!c.wants(&version("1.2.0", 2)));
    // Run 3 moves it forward, and its install lifts the hold.
    let e = c.handle(
        t(4),
        Event::FromRelay(session(3, "app", "1.3.0", 3, &key())),
    );
    assert!(
        e.iter().any(|e| matches!(e, Effect::Receive { .. })),
        "{e:?}"
    );
    assert!(c.wants(&version("1.3.0", 3)));
    let e = c.handle(
        t(5),
        Event::Installed {
            installed: version("1.3.0", 3),
            pending: pending(3, 3),
        },
    );
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::KeepRollbacks(s) if s.hold.is_none()))
    );
}

#[test]
fn a_refused_rollback_changes_nothing_and_says_why() {
    let mut c = core(Some(version("1.2.0", 2)), None);
    c.handle(t(0), Event::RelayUp);
    c.handle(t(1), Event::FromRelay(order(3, "c0", 1)));
    let why = haifu_install::InstallError::RollbackRefused {
        path: "previous".into(),
        reason: "the kept previous version is 1.0.0, not 1.1.0".into(),
    };
    let e = c.handle(t(2), Event::RolledBack(Err(why.into())));
    let why = "previous: the kept previous version is 1.0.0, not 1.1.0";
    let r = reports(&e);
    assert!(
        matches!(&r[0].outcome, haifu_protocol::RollbackOutcome::Refused { reason } if *reason == why)
    );
    assert!(matches!(&e[0], Effect::KeepRollbacks(s) if s.hold.is_none()));
    // Not held back: run 2 of 1.3.0 moves it forward as usual.
    let e = c.handle(
        t(4),
        Event::FromRelay(session(2, "app", "1.3.0", 3, &key())),
    );
    assert!(
        e.iter().any(|e| matches!(e, Effect::Receive { .. })),
        "{e:?}"
    );
}

#[test]
fn a_rollback_order_waits_for_the_completion_before_it() {
    let mut c = core(Some(version("1.2.0", 2)), Some(pending(2, 2)));
    c.handle(t(0), Event::RelayUp);
    let e = c.handle(t(1), Event::FromRelay(order(3, "c0", 2)));
    assert!(!e.iter().any(|e| matches!(e, Effect::RollBack { .. })));
    let ack = Event::FromRelay(Message::CompletionAck(CompletionAck {
        run: 2,
        client: "c0".into(),
        digest: Digest::from_bytes([2; 32]),
    }));
    let e = c.handle(t(2), ack);
    assert!(
        e.iter().any(|e| matches!(e, Effect::RollBack { .. })),
        "{e:?}"
    );
}

#[test]
fn the_configs_labels_follow_the_version_report_on_every_connect() {
    let labels: haifu_core::Labels = [("ring".to_owned(), "canary".to_owned())].into();
    let mut c = core(None, None).with_labels(labels.clone());
    for _ in 0..2 {
        let e = c.handle(t(0), Event::RelayUp);
        assert!(
            matches!(&e[..], [
                Effect::ToRelay(Message::RegisterClient(_)),
                Effect::ToRelay(Message::ClientLabels(l)),
            ] if l.labels == labels && l.client == "c0"),
            "{e:?}"
        );
        c.handle(t(1), Event::RelayDown);
    }
    let e = core(None, None).handle(t(0), Event::RelayUp);
    assert!(
        matches!(&e[..], [_, Effect::ToRelay(Message::ClientLabels(l))] if l.labels.is_empty()),
        "an empty set clears the master's: {e:?}"
    );
}
