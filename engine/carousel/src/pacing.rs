//! When the next datagram may go out, at a configured bit rate.
//!
//! A generic cell rate algorithm (the virtual-time form of a token bucket):
//! the pacer keeps the theoretical time at which everything sent so far has
//! drained at the configured rate, and lets a datagram out once that time is
//! no more than the burst budget ahead of `now`. Time is an argument: the
//! driver asks [`Pacer::poll_send`] and sleeps until the instant it returns.
//! The virtual time is kept as whole bits since an epoch, so it does not drift
//! however many datagrams are sent.

use std::time::{Duration, Instant};

use thiserror::Error;

/// A pacing configuration that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacingError {
    /// A rate of zero.
    #[error("rate must be at least 1 bit per second")]
    ZeroRate,
}

/// How long `bytes` take on the wire at `rate_bps` bits per second.
pub fn transmit_time(bytes: u64, rate_bps: u64) -> Duration {
    nanos_for_bits(u128::from(bytes) * 8, rate_bps)
}

/// When the `n`-th datagram (from 0) of `datagram_len` bytes may leave,
/// counted from the first, at a steady `rate_bps` with no burst.
pub fn send_offset(n: u64, datagram_len: usize, rate_bps: u64) -> Duration {
    nanos_for_bits(u128::from(n) * datagram_len as u128 * 8, rate_bps)
}

fn nanos_for_bits(bits: u128, rate_bps: u64) -> Duration {
    let nanos = bits * 1_000_000_000 / u128::from(rate_bps.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Paces datagrams to a bit rate, allowing bursts up to a small budget.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate_bps: u64,
    burst: Duration,
    /// Start of the current busy period and bits sent in it.
    epoch: Option<Instant>,
    bits: u128,
}

impl Pacer {
    /// A pacer at `rate_bps` bits per second that lets `burst_bytes` go out
    /// back to back beyond the steady rate (0 for strict spacing).
    pub fn new(rate_bps: u64, burst_bytes: u64) -> Result<Self, PacingError> {
        if rate_bps == 0 {
            return Err(PacingError::ZeroRate);
        }
        Ok(Self {
            rate_bps,
            burst: transmit_time(burst_bytes, rate_bps),
            epoch: None,
            bits: 0,
        })
    }

    /// The configured rate.
    pub fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    /// The theoretical time the bucket drains, if it is busy at `now`.
    fn busy_until(&self, now: Instant) -> Option<Instant> {
        let epoch = self.epoch?;
        let tat = epoch + nanos_for_bits(self.bits, self.rate_bps);
        (tat > now).then_some(tat)
    }

    /// The earliest instant a datagram may be sent, seen from `now`.
    pub fn next_send(&self, now: Instant) -> Instant {
        match self.busy_until(now) {
            Some(tat) => (tat - self.burst).max(now),
            None => now,
        }
    }

    /// Sends a datagram of `bytes` at `now` if the pacer allows it (`Ok`),
    /// otherwise says when to ask again (`Err`).
    pub fn poll_send(&mut self, bytes: usize, now: Instant) -> Result<(), Instant> {
        let at = self.next_send(now);
        if at > now {
            return Err(at);
        }
        if self.busy_until(now).is_none() {
            // Idle: credit does not pile up beyond the burst budget.
            self.epoch = Some(now);
            self.bits = 0;
        }
        self.bits += bytes as u128 * 8;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_gigabit_spaces_1440_byte_datagrams_by_11_52_us() {
        assert_eq!(
            send_offset(1, 1440, 1_000_000_000),
            Duration::from_nanos(11_520)
        );
        assert_eq!(
            send_offset(1_000_000, 1440, 1_000_000_000),
            Duration::from_nanos(11_520_000_000)
        );
        assert_eq!(
            transmit_time(125_000_000, 1_000_000_000),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn strict_pacer_sends_at_the_rate_without_drift() {
        let t0 = Instant::now();
        let mut p = Pacer::new(3_000_000, 0).unwrap(); // not a divisor of 1e9 × bits
        let mut now = t0;
        for _ in 0..10_000 {
            match p.poll_send(1440, now) {
                Ok(()) => {}
                Err(at) => {
                    now = at;
                    p.poll_send(1440, now).unwrap();
                }
            }
        }
        // The 10,000th datagram leaves at the 9,999th slot, to the nanosecond.
        assert_eq!(now - t0, send_offset(9_999, 1440, 3_000_000));
    }

    #[test]
    fn burst_budget_allows_back_to_back_then_paces() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000_000_000, 4 * 1440).unwrap();
        for _ in 0..5 {
            assert_eq!(p.poll_send(1440, t0), Ok(()));
        }
        let at = p.poll_send(1440, t0).unwrap_err();
        assert_eq!(at - t0, Duration::from_nanos(11_520));
        // After a long idle time the credit is the burst budget, no more.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..5 {
            assert_eq!(p.poll_send(1440, later), Ok(()));
        }
        assert!(p.poll_send(1440, later).is_err());
    }

    #[test]
    fn zero_rate_is_refused() {
        assert_eq!(Pacer::new(0, 0).err(), Some(PacingError::ZeroRate));
    }
}
