//! Who may say what to the master: the checks on every claim a relay or a
//! client makes, as plain functions of what the master knows (no I/O), so
//! each rule is tested in memory.
//!
//! The rules (`SECURITY.md` has the threat model):
//! - a peer's role is its certificate's (checked at the handshake, `link`);
//! - a relay speaks only for the clients registered behind it: the first
//!   relay to report a client binds it, and another relay's word about that
//!   client is refused until the operator moves it (`haifu fleet move`);
//! - a client speaks only for itself;
//! - numbers are the master's own: a completion is filed under a round this
//!   master started (the client's clock only picks among them), a relay's
//!   round report must name a round on air and bytes a round can carry.

use jiff::Timestamp;

/// A round carries the artifact about 1.1 to 2.3 times (repair symbols and
/// proactive margin); no honest relay reports more than this many times the
/// artifact for one round.
pub(crate) const MAX_ROUND_BYTES_PER_ARTIFACT_BYTE: u64 = 16;

/// Slack for tiny artifacts, whose rounds are mostly headers.
const ROUND_BYTES_SLACK: u64 = 1 << 20;

/// The most clients one relay may register: each is a ledger row and an
/// entry in the master's memory, so a rogue relay inventing ids must hit a
/// bound. Far above any segment's size.
pub(crate) const MAX_CLIENTS_PER_RELAY: usize = 100_000;

/// Why a claim was refused (sent back to the peer and logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// A relay reported a client that another relay has behind it.
    #[error("client {client:?} is registered behind relay {bound:?}, not {relay:?}")]
    NotBehind {
        /// The client spoken for.
        client: String,
        /// The relay it is registered behind.
        bound: String,
        /// The relay that spoke.
        relay: String,
    },
    /// A client spoke for another client.
    #[error("client {peer:?} may speak only for itself, not for {client:?}")]
    NotItself {
        /// The certificate's identity.
        peer: String,
        /// The client named.
        client: String,
    },
    /// A relay spoke for a client the run does not list behind it.
    #[error("run {run} does not list client {client:?} behind relay {relay:?}")]
    NotInRun {
        /// The run.
        run: u64,
        /// The client.
        client: String,
        /// The relay that spoke.
        relay: String,
    },
    /// A completion by broadcast for a run that started no round.
    #[error("run {run} has started no round")]
    NoRound {
        /// The run.
        run: u64,
    },
    /// A relay's round report for a round not on air.
    #[error("round {round} of run {run} is not on air")]
    NotOnAir {
        /// The run.
        run: u64,
        /// The round named.
        round: u32,
    },
    /// A relay's round report with more bytes than a round can carry.
    #[error("{bytes} bytes in one round of a {size}-byte artifact")]
    ImplausibleBytes {
        /// Bytes claimed.
        bytes: u64,
        /// The artifact's size.
        size: u64,
    },
    /// A relay asked for an artifact that is not its run's.
    #[error("relay {relay:?} has no run to fetch that artifact for")]
    NotInstructed {
        /// The relay.
        relay: String,
    },
    /// A client id that no certificate can carry.
    #[error("client id {client:?} is not a valid identity")]
    BadClientId {
        /// The id, cut to 80 characters.
        client: String,
    },
    /// A client of a staged run that its stages have not admitted: it was
    /// never handed the session key, so it cannot have decoded a round.
    #[error(
        "client {client:?} is not admitted to staged run {run}: it cannot have decoded its rounds"
    )]
    NotAdmitted {
        /// The run.
        run: u64,
        /// The client.
        client: String,
    },
    /// A relay registering more clients than any segment has.
    #[error("relay {relay:?} already has {MAX_CLIENTS_PER_RELAY} clients")]
    TooManyClients {
        /// The relay.
        relay: String,
    },
    /// A rollback report for an order this master did not send that client.
    #[error("no rollback order {order} is waiting for client {client:?}")]
    NoSuchOrder {
        /// The order named.
        order: u64,
        /// The client named.
        client: String,
    },
    /// A client's labels outside the label rules.
    #[error("labels of client {client:?}: {source}")]
    BadLabels {
        /// The client, cut to 80 characters.
        client: String,
        /// Which pair and why.
        #[source]
        source: haifu_core::LabelError,
    },
    /// A relay that the master's `relays:` list does not name.
    #[error("relay {relay:?} is not one of this master's relays")]
    UnknownRelay {
        /// The relay.
        relay: String,
    },
}

/// Whether `relay` may speak for `client`, which is registered behind
/// `bound` (`None`: not yet registered, so this report registers it).
pub(crate) fn relay_speaks_for(
    bound: Option<&str>,
    relay: &str,
    client: &str,
) -> Result<(), Refusal> {
    match bound {
        Some(b) if b != relay => Err(Refusal::NotBehind {
            client: client.to_owned(),
            bound: b.to_owned(),
            relay: relay.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Whether `relay` may complete for `client`, registered behind `bound`:
/// only a client it registered (a client always reports in before it can
/// receive a broadcast, and a relay replays its clients' reports when it
/// reconnects).
pub(crate) fn relay_completes_for(
    bound: Option<&str>,
    relay: &str,
    client: &str,
) -> Result<(), Refusal> {
    match bound {
        Some(b) if b == relay => Ok(()),
        _ => Err(Refusal::NotBehind {
            client: client.to_owned(),
            bound: bound.unwrap_or("no relay").to_owned(),
            relay: relay.to_owned(),
        }),
    }
}

/// Whether `relay`, with `registered` clients behind it, may register a
/// new client `client`: the id must be one a certificate can carry, and
/// the relay must stay under [`MAX_CLIENTS_PER_RELAY`].
pub(crate) fn relay_registers(relay: &str, registered: usize, client: &str) -> Result<(), Refusal> {
    if haifu_plugin_host::pki::validate_name(client).is_err() {
        return Err(Refusal::BadClientId {
            client: client.chars().take(80).collect(),
        });
    }
    if registered >= MAX_CLIENTS_PER_RELAY {
        return Err(Refusal::TooManyClients {
            relay: relay.to_owned(),
        });
    }
    Ok(())
}

/// Whether a client connected as `peer` may speak for `client`.
pub(crate) fn client_speaks_for(peer: &str, client: &str) -> Result<(), Refusal> {
    if peer == client {
        Ok(())
    } else {
        Err(Refusal::NotItself {
            peer: peer.to_owned(),
            client: client.to_owned(),
        })
    }
}

/// Whether the relays allowed by the master's config include `relay`
/// (an empty list allows every relay-role certificate).
pub(crate) fn relay_allowed(allowed: &[String], relay: &str) -> Result<(), Refusal> {
    if allowed.is_empty() || allowed.iter().any(|r| r == relay) {
        Ok(())
    } else {
        Err(Refusal::UnknownRelay {
            relay: relay.to_owned(),
        })
    }
}

/// The round a broadcast completion counts in: the last round this master
/// started at or before `decoded_at` (when the client finished decoding);
/// a clock behind every start counts in the round on air (the last one
/// started), as does one far ahead. Only rounds in `starts` can come out,
/// whatever the client says.
pub(crate) fn completion_round(
    run: u64,
    starts: &[(u32, Timestamp)],
    decoded_at: Timestamp,
) -> Result<u32, Refusal> {
    let on_air = starts
        .iter()
        .filter(|(_, start)| *start <= decoded_at)
        .max_by_key(|(_, start)| *start)
        .or_else(|| starts.iter().max_by_key(|(_, start)| *start))
        .map(|(n, _)| *n);
    on_air.ok_or(Refusal::NoRound { run })
}

/// The rounds started according to a run's snapshot: round `i + 1` began
/// at `starts[i]`.
pub(crate) fn numbered(starts: &[Timestamp]) -> Vec<(u32, Timestamp)> {
    starts
        .iter()
        .take(haifu_core::MAX_ROUNDS as usize)
        .enumerate()
        .map(|(i, t)| (i as u32 + 1, *t))
        .collect()
}

/// Checks a relay's report that it sent `round` with `bytes`, against the
/// rounds the master started and the artifact's size.
pub(crate) fn round_report(
    run: u64,
    round: u32,
    bytes: u64,
    started: &[(u32, Timestamp)],
    size: u64,
) -> Result<(), Refusal> {
    if !started.iter().any(|(n, _)| *n == round) {
        return Err(Refusal::NotOnAir { run, round });
    }
    let most = size
        .saturating_mul(MAX_ROUND_BYTES_PER_ARTIFACT_BYTE)
        .saturating_add(ROUND_BYTES_SLACK);
    if bytes > most {
        return Err(Refusal::ImplausibleBytes { bytes, size });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_relay_speaks_only_for_clients_behind_it() {
        assert!(relay_speaks_for(None, "east", "pos-1").is_ok());
        assert!(relay_speaks_for(Some("east"), "east", "pos-1").is_ok());
        let e = relay_speaks_for(Some("east"), "west", "pos-1").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"client "pos-1" is registered behind relay "east", not "west""#
        );
    }

    #[test]
    fn a_relay_registers_only_valid_ids_and_a_bounded_number() {
        assert!(relay_registers("east", 0, "pos-0001").is_ok());
        assert!(matches!(
            relay_registers("east", 0, &"x".repeat(10_000)),
            Err(Refusal::BadClientId { client }) if client.len() == 80
        ));
        assert!(relay_registers("east", 0, "a\nb").is_err());
        assert!(matches!(
            relay_registers("east", MAX_CLIENTS_PER_RELAY, "pos-0001"),
            Err(Refusal::TooManyClients { .. })
        ));
    }

    #[test]
    fn a_relay_completes_only_for_clients_it_registered() {
        assert!(relay_completes_for(Some("east"), "east", "pos-1").is_ok());
        assert!(relay_completes_for(Some("west"), "east", "pos-1").is_err());
        assert!(relay_completes_for(None, "east", "pos-1").is_err());
    }

    #[test]
    fn a_client_speaks_only_for_itself() {
        assert!(client_speaks_for("pos-1", "pos-1").is_ok());
        assert!(matches!(
            client_speaks_for("pos-1", "pos-2"),
            Err(Refusal::NotItself { .. })
        ));
    }

    #[test]
    fn an_empty_relay_list_allows_every_relay_certificate() {
        assert!(relay_allowed(&[], "east").is_ok());
        let list = vec!["east".to_owned()];
        assert!(relay_allowed(&list, "east").is_ok());
        assert!(relay_allowed(&list, "west").is_err());
    }

    #[test]
    fn a_completion_counts_in_a_round_the_master_started() {
        let starts = vec![
            (1, t("2026-11-28T10:00:00Z")),
            (2, t("2026-11-28T10:00:10Z")),
            (3, t("2026-11-28T10:00:20Z")),
        ];
        // Decoded late in round 1, installed (and reported) during round 2.
        assert_eq!(
            completion_round(7, &starts, t("2026-11-28T10:00:09Z")),
            Ok(1)
        );
        assert_eq!(
            completion_round(7, &starts, t("2026-11-28T10:00:10Z")),
            Ok(2)
        );
        // A clock far ahead or far behind picks among the started rounds:
        // the one on air.
        assert_eq!(
            completion_round(7, &starts, t("2099-01-01T00:00:00Z")),
            Ok(3)
        );
        assert_eq!(
            completion_round(7, &starts, t("1970-01-01T00:00:00Z")),
            Ok(3)
        );
        assert_eq!(
            completion_round(7, &[], t("2026-11-28T10:00:00Z")),
            Err(Refusal::NoRound { run: 7 })
        );
    }

    #[test]
    fn snapshot_starts_are_numbered_and_bounded() {
        let one = t("2026-11-28T10:00:00Z");
        assert_eq!(numbered(&[one, one]), vec![(1, one), (2, one)]);
        let many = vec![one; 1000];
        assert_eq!(numbered(&many).len(), haifu_core::MAX_ROUNDS as usize);
    }

    #[test]
    fn a_round_report_names_a_round_on_air_and_plausible_bytes() {
        let started = vec![(1, t("2026-11-28T10:00:00Z"))];
        let size = 64 << 20;
        assert!(round_report(1, 1, size * 11 / 10, &started, size).is_ok());
        assert_eq!(
            round_report(1, u32::MAX, 10, &started, size),
            Err(Refusal::NotOnAir {
                run: 1,
                round: u32::MAX
            })
        );
        assert!(matches!(
            round_report(1, 1, u64::MAX, &started, size),
            Err(Refusal::ImplausibleBytes { .. })
        ));
    }
}
