//! Where a receiver's datagrams come from: the multicast group, or (for
//! tests, `testing.drop_datagrams`) the group with a seeded share of its
//! datagrams dropped, as a lossy network would. The receive loop does not
//! know which.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Duration;

use haifu_plugin_host::DatagramGroup;
use haifu_plugin_host::RecvBatch;
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

    /// Reads the group into `out` until `reading` is cleared or the
    /// receiving end is gone, counting what waits there in `queued` and
    /// dropping (and saying so) what would take it past `max_queued`.
    ///
    /// Each hand-over wakes the decoder and each receive call wakes this
    /// thread, and on a virtual machine a wake-up costs more than taking a
    /// datagram in. So when a call brings only a few, it waits
    /// [`COALESCE_PAUSE`] and takes what came meanwhile in the same
    /// hand-over: about 9 datagrams per wake-up at 100 Mbit/s instead of
    /// one. The kernel buffer holds that much many times over (the plugin
    /// asks for 8 MiB; even Linux's default 208 KiB holds 1.7 ms at
    /// 1 Gbit/s), and a full call is handed over at once.
    pub(super) fn pump(
        mut self,
        reading: &AtomicBool,
        queued: &AtomicUsize,
        max_queued: usize,
        out: &Sender<Packed>,
    ) {
        let mut batch = RecvBatch::new(RECV_BATCH, 2048);
        let mut overflow = 0u64;
        let mut packed = Packed::with_capacity(RECV_BATCH, 1500);
        // Whether the datagrams in `packed` already waited a pause.
        let mut paused = false;
        while reading.load(Ordering::Relaxed) {
            // Nothing in hand: wait for the first datagram. Something in
            // hand (after a pause): take only what is already there.
            let wait = if packed.len() == 0 {
                Duration::from_millis(200)
            } else {
                Duration::ZERO
            };
            let before = packed.len();
            match self.recv_into(&mut batch, Some(wait), &mut packed) {
                Ok(()) => {}
                Err(e) if e.is_timeout() => {}
                Err(e) => {
                    tracing::warn!("multicast receive: {e}");
                    break;
                }
            }
            let n = packed.len();
            if n == 0 {
                continue;
            }
            if !paused && n - before < COALESCE_BELOW && n < RECV_BATCH {
                std::thread::sleep(COALESCE_PAUSE);
                paused = true;
                continue;
            }
            paused = false;
            let full = std::mem::replace(&mut packed, Packed::with_capacity(RECV_BATCH, 1500));
            if queued.load(Ordering::Relaxed) + n > max_queued {
                overflow += n as u64;
                continue;
            }
            queued.fetch_add(n, Ordering::Relaxed);
            if out.send(full).is_err() {
                break;
            }
        }
        if overflow > 0 {
            tracing::warn!(overflow, "datagrams dropped: the decoder fell behind");
        }
    }

    /// The datagrams that came, up to `batch`'s capacity (waiting up to
    /// `timeout` for the first), appended to `into`: each kept datagram's
    /// bytes to `into.data` and its length to `into.lens`.
    pub(super) fn recv_into(
        &mut self,
        batch: &mut RecvBatch,
        timeout: Option<Duration>,
        into: &mut Packed,
    ) -> Result<(), TransportError> {
        self.group.recv_batch(batch, timeout)?;
        for d in batch.datagrams() {
            if !self.loss.as_mut().is_some_and(Loss::drops) {
                into.push(d);
            }
        }
        Ok(())
    }
}

/// Datagrams one receive call takes at most (recvmmsg).
const RECV_BATCH: usize = 64;

/// A receive call that brings fewer datagrams than this is followed by a
/// [`COALESCE_PAUSE`] before the hand-over.
const COALESCE_BELOW: usize = 16;

/// How long the reader lets datagrams gather in the kernel buffer after a
/// call that brought few.
const COALESCE_PAUSE: Duration = Duration::from_millis(1);

/// Datagrams packed end to end in one buffer: what the reader thread hands
/// the decoder per batch, one allocation for up to a batch of datagrams,
/// read back in order with [`Packed::next_datagram`].
#[derive(Debug, Default)]
pub(super) struct Packed {
    data: Vec<u8>,
    lens: Vec<u16>,
    /// The next datagram to read, and where its bytes start.
    read: usize,
    at: usize,
}

impl Packed {
    /// Room for `count` datagrams of about `len` bytes.
    pub(super) fn with_capacity(count: usize, len: usize) -> Self {
        Self {
            data: Vec::with_capacity(count * len),
            lens: Vec::with_capacity(count),
            ..Self::default()
        }
    }

    fn push(&mut self, datagram: &[u8]) {
        // A UDP datagram is at most 65,535 bytes; the batch's stride is
        // far below that.
        if let Ok(len) = u16::try_from(datagram.len()) {
            self.data.extend_from_slice(datagram);
            self.lens.push(len);
        }
    }

    /// How many datagrams it holds.
    pub(super) fn len(&self) -> usize {
        self.lens.len()
    }

    /// The next datagram not read yet.
    pub(super) fn next_datagram(&mut self) -> Option<&[u8]> {
        let len = usize::from(*self.lens.get(self.read)?);
        let start = self.at;
        self.read += 1;
        self.at += len;
        Some(&self.data[start..start + len])
    }
}

#[cfg(test)]
mod tests {
    use super::Loss;

    #[test]
    fn packed_datagrams_read_back_in_order() {
        let mut p = super::Packed::with_capacity(3, 4);
        assert_eq!(p.len(), 0);
        for d in [&b"one"[..], b"", b"three"] {
            p.push(d);
        }
        assert_eq!(p.len(), 3);
        assert_eq!(p.next_datagram(), Some(&b"one"[..]));
        assert_eq!(p.next_datagram(), Some(&b""[..]));
        assert_eq!(p.next_datagram(), Some(&b"three"[..]));
        assert_eq!(p.next_datagram(), None);
    }

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
