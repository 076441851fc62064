//! The client core and a version put back outside haifu: reported once as
//! `rolled-back` naming both versions, kept before sent, held back like
//! any failure; never for a rollback the master ordered, nor for a newer
//! version.

#![allow(clippy::unwrap_used)]

use haifu_protocol::FailureKind;

use super::tests::{core, key, order, pending, receives, session, t, version};
use super::*;

fn failures(e: &[Effect]) -> Vec<&haifu_protocol::InstallFailed> {
    e.iter()
        .filter_map(|e| match e {
            Effect::ToRelay(Message::InstallFailed(f)) => Some(f),
            _ => None,
        })
        .collect()
}

/// The record the core last asked the shell to keep, if it asked.
fn kept_switched(e: &[Effect]) -> Option<Option<Switched>> {
    e.iter().rev().find_map(|e| match e {
        Effect::KeepSwitched(s) => Some(s.clone()),
        _ => None,
    })
}

fn kept_failures(e: &[Effect]) -> Option<FailureState> {
    e.iter().rev().find_map(|e| match e {
        Effect::KeepFailures(f) => Some(f.clone()),
        _ => None,
    })
}

/// A core that installed 1.2.0 (digest 2) over 1.1.0 in run 2, and what
/// it kept on disk of it.
fn switched_to_1_2() -> (ClientCore, Switched) {
    let mut c = core(Some(version("1.1.0", 1)), None);
    let e = c.handle(
        t(1),
        Event::Installed {
            installed: version("1.2.0", 2),
            pending: pending(2, 2),
        },
    );
    let on_disk = kept_switched(&e).unwrap().unwrap();
    assert_eq!((on_disk.run, on_disk.version.as_str()), (2, "1.2.0"));
    (c, on_disk)
}

/// [`switched_to_1_2`], its completion made durable and acknowledged.
fn switched_and_acknowledged() -> (ClientCore, Switched) {
    let (mut c, on_disk) = switched_to_1_2();
    c.handle(t(2), Event::Persisted);
    c.handle(
        t(3),
        Event::FromRelay(Message::CompletionAck(CompletionAck {
            run: 2,
            client: "c0".into(),
            digest: version("1.2.0", 2).digest,
        })),
    );
    (c, on_disk)
}

fn restarted(installed: ArtifactRef, switched: Option<Switched>) -> ClientCore {
    core(Some(installed), None).with_switched(switched)
}

#[test]
fn a_version_put_back_while_the_client_was_away_is_reported_once_naming_both_versions() {
    let (_, on_disk) = switched_to_1_2();
    // The machine's A/B slot booted 1.1.0 again; the client starts.
    let mut c = restarted(version("1.1.0", 1), Some(on_disk));
    let e = c.handle(
        t(10),
        Event::Looked {
            current: Some(version("1.1.0", 1)),
            about: None,
        },
    );
    let kept = kept_failures(&e).unwrap();
    assert_eq!(kept.failures.len(), 1, "{e:?}");
    let f = &kept.failures[0];
    assert_eq!((f.run, f.kind.as_str()), (2, "rolled-back"));
    assert!(
        f.reason.contains("1.2.0") && f.reason.contains("1.1.0"),
        "{}",
        f.reason
    );
    assert_eq!(
        kept_switched(&e),
        Some(None),
        "the record is cleared: {e:?}"
    );
    // Kept before the record is cleared (a crash between the two reports
    // it still, and once: see below).
    let keep = e
        .iter()
        .position(|e| matches!(e, Effect::KeepFailures(_)))
        .unwrap();
    let clear = e
        .iter()
        .position(|e| matches!(e, Effect::KeepSwitched(None)))
        .unwrap();
    assert!(keep < clear, "{e:?}");
    // Sent on connect, with the version report naming 1.1.0.
    let e = c.handle(t(11), Event::RelayUp);
    let sent = failures(&e);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, FailureKind::RolledBack);
    assert_eq!(sent[0].digest, version("1.2.0", 2).digest);
    // Looking again (a later health check, or another start with the
    // record gone) reports nothing new.
    let e = c.handle(
        t(12),
        Event::Looked {
            current: Some(version("1.1.0", 1)),
            about: None,
        },
    );
    assert!(e.is_empty(), "{e:?}");
    let mut again = restarted(version("1.1.0", 1), None).with_failures(kept);
    let e = again.handle(
        t(13),
        Event::Looked {
            current: Some(version("1.1.0", 1)),
            about: None,
        },
    );
    assert!(e.is_empty(), "not on every restart: {e:?}");
    // And the refused version is not taken again from its run.
    assert!(!receives(&c.handle(
        t(14),
        Event::FromRelay(session(2, "app", "1.2.0", 2, &key()))
    )));
    assert!(!c.wants(&version("1.2.0", 2)));
}

#[test]
fn a_crash_between_keeping_the_failure_and_clearing_the_record_reports_it_once() {
    let (_, on_disk) = switched_to_1_2();
    let mut c = restarted(version("1.1.0", 1), Some(on_disk.clone()));
    let looked = || Event::Looked {
        current: Some(version("1.1.0", 1)),
        about: None,
    };
    let e = c.handle(t(10), looked());
    let kept = kept_failures(&e).unwrap();
    // Killed before the record was cleared: both files as they were.
    let mut c = restarted(version("1.1.0", 1), Some(on_disk)).with_failures(kept.clone());
    let e = c.handle(t(20), looked());
    assert!(kept_failures(&e).is_none(), "no second failure: {e:?}");
    assert_eq!(kept_switched(&e), Some(None));
    let e = c.handle(t(21), Event::RelayUp);
    let sent = failures(&e);
    assert_eq!(sent.len(), 1, "the one kept, resent: {e:?}");
    assert_eq!(sent[0].at.to_string(), kept.failures[0].at);
}

#[test]
fn a_rollback_the_master_ordered_is_never_reported() {
    let (mut c, _) = switched_and_acknowledged();
    c.handle(t(4), Event::RelayUp);
    let e = c.handle(t(5), Event::FromRelay(order(1, "c0", 2)));
    let Some(Effect::RollBack { .. }) = e.iter().find(|e| matches!(e, Effect::RollBack { .. }))
    else {
        panic!("the order is carried out: {e:?}");
    };
    let e = c.handle(t(6), Event::RolledBack(Ok(version("1.1.0", 1))));
    assert_eq!(kept_switched(&e), Some(None), "{e:?}");
    let e = c.handle(
        t(7),
        Event::Looked {
            current: Some(version("1.1.0", 1)),
            about: None,
        },
    );
    assert!(
        failures(&e).is_empty() && kept_failures(&e).is_none(),
        "{e:?}"
    );
}

#[test]
fn an_ordered_rollback_stopped_between_its_switch_and_its_report_is_not_reported() {
    let (mut c, on_disk) = switched_and_acknowledged();
    let e = c.handle(t(5), Event::FromRelay(order(1, "c0", 2)));
    let intent = e
        .iter()
        .find_map(|e| match e {
            Effect::RollBack { intent, .. } => Some(intent.clone()),
            _ => None,
        })
        .unwrap();
    // The intent is on disk, the switch happened, then the client died.
    let mut c = restarted(version("1.1.0", 1), Some(on_disk)).with_rollbacks(intent);
    let e = c.handle(
        t(10),
        Event::Looked {
            current: Some(version("1.1.0", 1)),
            about: None,
        },
    );
    assert!(kept_failures(&e).is_none(), "{e:?}");
    assert_eq!(kept_switched(&e), Some(None));
}

#[test]
fn a_newer_version_or_the_same_one_is_not_a_way_back() {
    let (_, on_disk) = switched_to_1_2();
    let mut c = restarted(version("1.2.0", 2), Some(on_disk.clone()));
    let e = c.handle(
        t(10),
        Event::Looked {
            current: Some(version("1.2.0", 2)),
            about: None,
        },
    );
    assert!(e.is_empty(), "{e:?}");
    // Newer (its record lost in a crash): taken as what it switched to.
    let mut c = restarted(version("1.3.0", 3), Some(on_disk.clone()));
    let e = c.handle(
        t(10),
        Event::Looked {
            current: Some(version("1.3.0", 3)),
            about: None,
        },
    );
    assert!(kept_failures(&e).is_none(), "{e:?}");
    assert_eq!(kept_switched(&e).unwrap().unwrap().version, "1.3.0");
    // The same version with other bytes is another version.
    let mut c = restarted(version("1.2.0", 9), Some(on_disk));
    let e = c.handle(
        t(10),
        Event::Looked {
            current: Some(version("1.2.0", 9)),
            about: None,
        },
    );
    assert_eq!(kept_failures(&e).unwrap().failures.len(), 1, "{e:?}");
}

#[test]
fn a_health_check_due_for_a_version_since_replaced_by_this_client_reports_nothing() {
    let (mut c, _) = switched_to_1_2();
    c.handle(
        t(20),
        Event::Installed {
            installed: version("1.3.0", 3),
            pending: pending(3, 3),
        },
    );
    // The check of 1.2.0 was due and read a current from before the
    // install of 1.3.0 finished.
    let e = c.handle(
        t(21),
        Event::Looked {
            current: Some(version("1.1.0", 1)),
            about: Some(version("1.2.0", 2).digest),
        },
    );
    assert!(e.is_empty(), "{e:?}");
    // Due for 1.3.0 and 1.1.0 is current: put back.
    let e = c.handle(
        t(22),
        Event::Looked {
            current: Some(version("1.1.0", 1)),
            about: Some(version("1.3.0", 3).digest),
        },
    );
    assert_eq!(kept_failures(&e).unwrap().failures[0].run, 3, "{e:?}");
}

#[test]
fn a_version_from_the_masters_copy_is_filed_under_the_run_its_completion_ack_names() {
    let mut c = core(Some(version("1.1.0", 1)), None);
    let mut p = pending(0, 2);
    p.delta = true;
    c.handle(
        t(1),
        Event::Installed {
            installed: version("1.2.0", 2),
            pending: p,
        },
    );
    c.handle(t(2), Event::Persisted);
    let e = c.handle(
        t(3),
        Event::MasterAck(CompletionAck {
            run: 7,
            client: "c0".into(),
            digest: version("1.2.0", 2).digest,
        }),
    );
    let on_disk = kept_switched(&e).unwrap().unwrap();
    assert_eq!(on_disk.run, 7);
    let mut c = restarted(version("1.1.0", 1), Some(on_disk));
    let e = c.handle(
        t(10),
        Event::Looked {
            current: None,
            about: None,
        },
    );
    let f = &kept_failures(&e).unwrap().failures[0];
    assert_eq!(f.run, 7);
    assert!(f.reason.contains("found nothing current"), "{}", f.reason);
}
