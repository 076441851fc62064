//! Time, behind one trait: the real clock waits, the virtual one jumps.
//!
//! Every decision in a run takes `now` from a [`Clock`], so tests and the
//! simulator run days of schedule in milliseconds, and the real master waits
//! for `schedule.start` and the policy's gaps with the same code.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// A source of the current time that can wait until a later one.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
    /// Returns once `now() >= at` (at once if it already is).
    fn sleep_until(&self, at: Timestamp);
    /// The longest a run driven on this clock sleeps before it looks in
    /// the ledger for an operator's order (pause, resume, abort): a
    /// second of real time, so the master notices one within about a
    /// second. `None` on a clock that jumps, where no order can arrive
    /// inside a sleep.
    fn order_poll(&self) -> Option<jiff::SignedDuration> {
        Some(jiff::SignedDuration::from_secs(1))
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, at: Timestamp) {
        loop {
            let left = at.duration_since(Timestamp::now());
            if left.is_negative() || left.is_zero() {
                return;
            }
            // Wake at least once a minute, so a changed system clock is
            // noticed, and never sleep a negative or absurd span.
            let secs = left.as_secs_f64().min(60.0);
            std::thread::sleep(Duration::from_secs_f64(secs.max(0.001)));
        }
    }
}

/// A clock that only moves when asked to: `sleep_until` jumps to the instant.
#[derive(Debug)]
pub struct VirtualClock {
    now: Mutex<Timestamp>,
}

impl VirtualClock {
    /// A virtual clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward to `at` (never backwards).
    pub fn advance_to(&self, at: Timestamp) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if at > *now {
            *now = at;
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep_until(&self, at: Timestamp) {
        self.advance_to(at);
    }

    fn order_poll(&self) -> Option<jiff::SignedDuration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_jumps_forward_only() {
        let t0: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let c = VirtualClock::new(t0);
        let t1: Timestamp = "2026-12-04T00:00:00Z".parse().unwrap();
        c.sleep_until(t1);
        assert_eq!(c.now(), t1);
        c.sleep_until(t0);
        assert_eq!(c.now(), t1);
    }

    #[test]
    fn system_clock_does_not_wait_for_the_past() {
        let c = SystemClock;
        let before = std::time::Instant::now();
        c.sleep_until(Timestamp::UNIX_EPOCH);
        assert!(before.elapsed() < Duration::from_secs(1));
    }
}
