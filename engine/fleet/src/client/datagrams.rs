//! Where a receiver's datagrams come from: the multicast group, or (for
//! tests, `testing.drop_datagrams`) the group with a seeded share of its
//! datagrams dropped, as a lossy network would. The receive loop does not
//! know which.

use std::time::Duration;

use haifu_plugin_host::DatagramGroup;
use haifu_plugin_host::TransportError;

/// A seeded loss: each datagram is dropped with probability `rate`.
struct Loss {
    rate: f64,
    state: u64,
}

impl Loss {
    fn drops(&mut self) -> bool {
        // xorshift64: fast, seeded, good enough to decide a coin.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 53) as f64 <= self.rate
    }
}

/// A group's datagrams, maybe with loss injected.
pub(super) struct Datagrams {
    group: DatagramGroup,
    loss: Option<Loss>,
}

impl Datagrams {
    /// `group`'s datagrams, a share `drop_rate` of them dropped (seeded
    /// by `seed`, so a test's run is repeatable).
    pub(super) fn new(group: DatagramGroup, drop_rate: f64, seed: u64) -> Self {
        let loss = (drop_rate > 0.0).then_some(Loss {
            rate: drop_rate,
            // xorshift needs a state that is not zero.
            state: seed.max(1),
        });
        Self { group, loss }
    }

    /// The next datagram kept, into `buf`; its length.
    pub(super) fn recv(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<usize, TransportError> {
        loop {
            let n = self.group.recv(buf, timeout)?;
            if !self.loss.as_mut().is_some_and(Loss::drops) {
                return Ok(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Loss;

    #[test]
    fn a_seeded_loss_drops_about_its_rate_and_repeats() {
        let run = |seed: u64| {
            let mut l = Loss {
                rate: 0.2,
                state: seed,
            };
            (0..10_000).map(|_| l.drops()).collect::<Vec<_>>()
        };
        let dropped = run(7).iter().filter(|d| **d).count();
        assert!((1_700..2_300).contains(&dropped), "{dropped}");
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
