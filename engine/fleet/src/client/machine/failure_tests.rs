//! The client core's failures in memory: kept before sent, resent until
//! acked and after a restart, the failed version held back until a
//! readmission.

#![allow(clippy::unwrap_used)]

use haifu_core::Digest;
use haifu_protocol::FailureAck;
use haifu_protocol::FailureKind;

use super::tests::{core, key, receives, session, t, version};
use super::*;

fn failure(run: u64, d: u8) -> KeptFailure {
    KeptFailure::new(
        run,
        Digest::from_bytes([d; 32]),
        FailureKind::PostInstall,
        "exited with exit status: 3; last output: schema is newer",
        t(1),
    )
}

fn reports(e: &[Effect]) -> Vec<&haifu_protocol::InstallFailed> {
    e.iter()
        .filter_map(|e| match e {
            Effect::ToRelay(Message::InstallFailed(f)) => Some(f),
            _ => None,
        })
        .collect()
}

fn ack(run: u64, d: u8, readmitted: bool) -> Event {
    Event::FromRelay(Message::FailureAck(FailureAck {
        run,
        client: "c0".into(),
        digest: Digest::from_bytes([d; 32]),
        readmitted,
    }))
}

/// The record the core last asked the shell to keep.
fn kept(e: &[Effect]) -> Option<FailureState> {
    e.iter().rev().find_map(|e| match e {
        Effect::KeepFailures(f) => Some(f.clone()),
        _ => None,
    })
}

#[test]
fn a_failure_is_kept_before_it_is_sent_and_resent_until_acknowledged() {
    let mut c = core(Some(version("1.1.0", 1)), None);
    c.handle(t(0), Event::RelayUp);
    let e = c.handle(
        t(1),
        Event::InstallFailed {
            failure: failure(2, 2),
            installed: Some(version("1.1.0", 1)),
        },
    );
    let keep = e
        .iter()
        .position(|e| matches!(e, Effect::KeepFailures(_)))
        .unwrap();
    let send = e
        .iter()
        .position(|e| matches!(e, Effect::ToRelay(Message::InstallFailed(_))))
        .unwrap();
    assert!(keep < send, "on disk before sent: {e:?}");
    let sent = reports(&e);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].run, sent[0].kind), (2, FailureKind::PostInstall));
    assert!(sent[0].reason.starts_with("exited with exit status: 3"));
    // Resent every RESEND, not more often.
    assert!(reports(&c.handle(t(2), Event::Tick)).is_empty());
    assert_eq!(reports(&c.handle(t(3), Event::Tick)).len(), 1);
    // An ack for another digest or client changes nothing.
    assert!(c.handle(t(4), ack(2, 9, false)).is_empty());
    let other = Event::FromRelay(Message::FailureAck(FailureAck {
        run: 2,
        client: "c1".into(),
        digest: Digest::from_bytes([2; 32]),
        readmitted: false,
    }));
    assert!(c.handle(t(4), other).is_empty());
    let e = c.handle(t(4), ack(2, 2, false));
    let state = kept(&e).unwrap();
    assert!(state.failures[0].acked, "the ack is kept: {e:?}");
    assert!(reports(&c.handle(t(10), Event::Tick)).is_empty());
}

#[test]
fn a_failure_not_yet_acknowledged_is_resent_after_a_restart() {
    let mut c = core(Some(version("1.1.0", 1)), None);
    c.handle(t(0), Event::RelayUp);
    let e = c.handle(
        t(1),
        Event::InstallFailed {
            failure: failure(2, 2),
            installed: Some(version("1.1.0", 1)),
        },
    );
    let on_disk = kept(&e).unwrap();
    // Killed here: the ack never came. A new core from what is on disk.
    drop(c);
    let mut c = core(Some(version("1.1.0", 1)), None).with_failures(on_disk);
    let e = c.handle(t(5), Event::RelayUp);
    assert_eq!(reports(&e).len(), 1, "resent on connect: {e:?}");
    assert!(
        matches!(e[0], Effect::ToRelay(Message::InstallFailed(_))),
        "before the version report: {e:?}"
    );
    // And the version that failed is still not taken from that run.
    assert!(!receives(&c.handle(
        t(6),
        Event::FromRelay(session(2, "app", "1.2.0", 2, &key()))
    )));
}

#[test]
fn a_failed_version_is_not_installed_again_until_the_master_readmits_the_client() {
    let mut c = core(Some(version("1.1.0", 1)), None);
    c.handle(t(0), Event::RelayUp);
    c.handle(
        t(1),
        Event::InstallFailed {
            failure: failure(2, 2),
            installed: Some(version("1.1.0", 1)),
        },
    );
    let failed = session(2, "app", "1.2.0", 2, &key());
    assert!(!receives(&c.handle(t(2), Event::FromRelay(failed.clone()))));
    // Nor from the master.
    assert!(!c.wants(&version("1.2.0", 2)));
    assert!(c.wants(&version("1.2.1", 3)), "another version is taken");
    // A readmission before the master has the failure is not about it.
    assert!(c.handle(t(3), ack(2, 2, true)).is_empty());
    c.handle(t(3), ack(2, 2, false));
    // Held, the client asks with its version report every ASK_READMISSION.
    let asks = |e: &[Effect]| {
        e.iter()
            .filter(|e| matches!(e, Effect::ToRelay(Message::RegisterClient(_))))
            .count()
    };
    assert_eq!(asks(&c.handle(t(4), Event::Tick)), 1);
    assert_eq!(asks(&c.handle(t(10), Event::Tick)), 0);
    assert_eq!(asks(&c.handle(t(19), Event::Tick)), 1);
    assert!(!receives(
        &c.handle(t(20), Event::FromRelay(failed.clone()))
    ));
    // Readmitted: forgotten on disk, the report goes so the relay offers
    // the session again, and it is taken.
    let e = c.handle(t(21), ack(2, 2, true));
    assert!(kept(&e).unwrap().failures.is_empty(), "{e:?}");
    assert_eq!(asks(&e), 1);
    assert!(receives(&c.handle(t(22), Event::FromRelay(failed))));
    assert!(c.wants(&version("1.2.0", 2)));
}

#[test]
fn a_failure_from_the_masters_copy_is_filed_under_the_run_the_ack_names() {
    let mut c = core(Some(version("1.1.0", 1)), None);
    c.handle(t(0), Event::RelayUp);
    c.handle(
        t(1),
        Event::InstallFailed {
            failure: failure(0, 2),
            installed: Some(version("1.1.0", 1)),
        },
    );
    // Run 0 until acked: held in every run.
    assert!(!receives(&c.handle(
        t(2),
        Event::FromRelay(session(9, "app", "1.2.0", 2, &key()))
    )));
    let e = c.handle(t(3), ack(7, 2, false));
    assert_eq!(kept(&e).unwrap().failures[0].run, 7);
    // Run 7 and older held; a later run of the same version is the
    // operator's new decision and is taken.
    assert!(!receives(&c.handle(
        t(4),
        Event::FromRelay(session(7, "app", "1.2.0", 2, &key()))
    )));
    assert!(receives(&c.handle(
        t(5),
        Event::FromRelay(session(8, "app", "1.2.0", 2, &key()))
    )));
    // Installed from that later run: the failure is over, and the master's
    // copy of that version is no longer refused.
    let e = c.handle(
        t(6),
        Event::Installed {
            installed: version("1.2.0", 2),
            pending: super::super::outbox::Pending {
                run: 8,
                digest: Digest::from_bytes([2; 32]).to_hex(),
                round: 1,
                at: t(6).to_string(),
                delta: false,
            },
        },
    );
    assert!(kept(&e).unwrap().failures.is_empty(), "{e:?}");
}

#[test]
fn a_long_reason_is_cut_to_what_the_protocol_carries_on_a_character_boundary() {
    let long = "é".repeat(haifu_protocol::limits::MAX_REASON_LEN);
    let f = KeptFailure::new(
        1,
        Digest::from_bytes([2; 32]),
        FailureKind::Health,
        &long,
        t(0),
    );
    assert!(f.reason.len() <= haifu_protocol::limits::MAX_REASON_LEN);
    assert!(f.reason.len() >= haifu_protocol::limits::MAX_REASON_LEN - 1);
    assert!(f.message("c0").unwrap().encode().is_ok());
}
