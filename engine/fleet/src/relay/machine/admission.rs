//! Who of the relay's clients may hold a run's session key: every client
//! of an unstaged run; of a staged run (feature `stages`) only those the
//! master's instruction admits. A client not admitted never gets the key,
//! so it cannot authenticate or decode the round's datagrams and ignores
//! the broadcast; it keeps none of its symbols for a later stage.

use std::collections::BTreeSet;

use haifu_protocol::Instruction;

use super::ConnId;
use super::RelayCore;

impl RelayCore {
    /// Whether `client` may be handed the session key of `session`.
    pub(super) fn admitted(session: &Instruction, client: &str) -> bool {
        session
            .admitted
            .as_ref()
            .is_none_or(|a| a.iter().any(|c| c == client))
    }

    /// The connected clients to hand the key of `next` as it arrives: all
    /// of them for an unstaged run; for a staged one, those admitted, and
    /// of a session already held (a later stage, or the master's instruction
    /// again), only those admitted now and not before.
    pub(super) fn keys_due(&self, next: &Instruction) -> Vec<ConnId> {
        let before: BTreeSet<&str> = match (&self.session, &next.admitted) {
            (Some(s), Some(_)) if s.run == next.run && s.session_id == next.session_id => {
                match &s.admitted {
                    Some(a) => a.iter().map(String::as_str).collect(),
                    // Unstaged before: every client already has it.
                    None => return Vec::new(),
                }
            }
            _ => BTreeSet::new(),
        };
        let mut due: Vec<ConnId> = self
            .clients
            .iter()
            .filter(|(id, _)| Self::admitted(next, id) && !before.contains(id.as_str()))
            .map(|(_, &conn)| conn)
            .collect();
        due.sort_unstable();
        if let Some(a) = &next.admitted {
            tracing::info!(
                run = next.run,
                admitted = a.len(),
                keys = due.len(),
                "staged run: session key only for admitted clients"
            );
        }
        due
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use haifu_protocol::Message;

    use super::super::Effect;
    use super::super::Event;
    use super::super::tests::{client, core, instruction, master, registration};
    use super::*;

    fn staged(run: u64, admitted: &[&str]) -> Message {
        Message::Instruction(Instruction {
            admitted: Some(admitted.iter().map(|c| (*c).to_owned()).collect()),
            ..instruction(run)
        })
    }

    /// The connections handed a session key by `e`.
    fn keyed(e: &[Effect]) -> Vec<ConnId> {
        e.iter()
            .filter_map(|e| match e {
                Effect::ToClient {
                    conn,
                    msg: Message::SessionKey(_),
                } => Some(*conn),
                _ => None,
            })
            .collect()
    }

    /// Connection `conn` of client `id`, registered; the effects of its
    /// registration.
    fn connect(c: &mut RelayCore, conn: ConnId, id: &str) -> Vec<Effect> {
        c.handle(Event::ClientUp {
            conn,
            client: id.into(),
        });
        client(c, conn, Message::RegisterClient(registration(id)))
    }

    #[test]
    fn a_staged_run_hands_the_key_only_to_admitted_clients_connected() {
        let mut c = core();
        connect(&mut c, 1, "a1");
        connect(&mut c, 2, "b1");
        let e = master(&mut c, staged(1, &["a1"]), true);
        assert_eq!(keyed(&e), vec![1], "b1 is not admitted: no key");
    }

    #[test]
    fn a_staged_run_with_nobody_admitted_yet_hands_no_key() {
        let mut c = core();
        connect(&mut c, 1, "a1");
        let e = master(&mut c, staged(1, &[]), true);
        assert!(keyed(&e).is_empty());
        // Its registration tells it of no target either.
        let e = connect(&mut c, 2, "a2");
        assert!(keyed(&e).is_empty());
        assert!(e.iter().any(|e| matches!(
            e,
            Effect::ToClient {
                msg: Message::Registered(r),
                ..
            } if r.target.is_none()
        )));
    }

    #[test]
    fn a_new_admission_hands_the_key_to_those_newly_admitted_that_are_connected() {
        let mut c = core();
        connect(&mut c, 1, "a1");
        connect(&mut c, 2, "b1");
        connect(&mut c, 3, "b2");
        assert_eq!(keyed(&master(&mut c, staged(1, &["a1"]), true)), vec![1]);
        // Stage 2 admits b1 and b2; b3 is admitted but not connected.
        let e = master(&mut c, staged(1, &["a1", "b1", "b2", "b3"]), true);
        assert_eq!(keyed(&e), vec![2, 3], "a1 has it already");
        // The same list again (the master reconnected): nobody new.
        let e = master(&mut c, staged(1, &["a1", "b1", "b2", "b3"]), true);
        assert!(keyed(&e).is_empty());
    }

    #[test]
    fn a_client_admitted_earlier_gets_the_key_when_it_connects() {
        let mut c = core();
        master(&mut c, staged(1, &["a1"]), true);
        assert_eq!(keyed(&connect(&mut c, 7, "a1")), vec![7]);
        assert!(keyed(&connect(&mut c, 8, "b1")).is_empty());
        // Admitted later, it gets the key at once; a reconnect gets it again.
        assert_eq!(
            keyed(&master(&mut c, staged(1, &["a1", "b1"]), true)),
            vec![8]
        );
        c.handle(Event::ClientDown { conn: 8 });
        assert_eq!(keyed(&connect(&mut c, 9, "b1")), vec![9]);
    }

    #[test]
    fn a_new_staged_run_starts_from_its_own_list() {
        let mut c = core();
        connect(&mut c, 1, "a1");
        connect(&mut c, 2, "b1");
        master(&mut c, staged(1, &["a1", "b1"]), true);
        // Run 2 admits only b1: a1 had run 1's key, not run 2's.
        let e = master(&mut c, staged(2, &["b1"]), true);
        assert_eq!(keyed(&e), vec![2]);
    }

    #[test]
    fn an_unstaged_run_hands_the_key_to_every_client() {
        let mut c = core();
        connect(&mut c, 1, "a1");
        connect(&mut c, 2, "b1");
        let e = master(&mut c, Message::Instruction(instruction(1)), true);
        assert_eq!(keyed(&e), vec![1, 2]);
    }
}
