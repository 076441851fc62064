//! Broadcast rounds: how many a run may have.

/// The most broadcast rounds one run may have. A workflow asking for more
/// is refused at validation; a round number above it, wherever it comes
/// from (a peer, or a ledger written by an older master), names no round
/// and is never used to size anything.
pub const MAX_ROUNDS: u32 = 100;

/// The index (0 for round 1) of a round that can exist, or `None` for 0 and
/// for anything above [`MAX_ROUNDS`].
pub fn round_index(round: u32) -> Option<usize> {
    (1..=MAX_ROUNDS)
        .contains(&round)
        .then(|| round as usize - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rounds_that_can_exist_have_an_index() {
        assert_eq!(round_index(1), Some(0));
        assert_eq!(round_index(MAX_ROUNDS), Some(MAX_ROUNDS as usize - 1));
        assert_eq!(round_index(0), None);
        assert_eq!(round_index(MAX_ROUNDS + 1), None);
        assert_eq!(round_index(u32::MAX), None);
    }
}
