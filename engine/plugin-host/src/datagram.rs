//! Safe wrapper over the datagram-group shape.
//!
//! The batched calls (`group_send_batch`, `group_recv_batch`, SPEC §5.8–5.10)
//! are optional: [`DatagramGroup::send_batch`] and
//! [`DatagramGroup::recv_batch`] use them when the plugin offers them and do
//! the same work one datagram at a time when it does not, so callers never
//! care. Every count and length a plugin reports is checked against what
//! the host passed before anything is read with it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use haifu_transport_abi::{BATCH_MAX, Bytes, Handle, timeout_to_ms};

use crate::ErrorKind;
use crate::error::TransportError;
use crate::loader::Plugin;

/// A joined datagram group. Every call may be made from several threads at
/// once; each blocks at most as long as pacing or the timeout requires.
/// Dropping it leaves the group.
#[derive(Debug)]
pub struct DatagramGroup {
    plugin: Plugin,
    handle: Handle,
    /// The plugin answered `UNSUPPORTED` to a batched call on this group:
    /// one datagram per call from then on, without asking again.
    no_send_batch: AtomicBool,
    no_recv_batch: AtomicBool,
}

/// Reusable buffers for [`DatagramGroup::recv_batch`]: `capacity` slots of
/// `stride` bytes, and what the last call put in them.
#[derive(Debug, Clone)]
pub struct RecvBatch {
    buf: Vec<u8>,
    stride: usize,
    lens: Vec<usize>,
    count: usize,
}

impl RecvBatch {
    /// Room for `capacity` datagrams (1 to [`BATCH_MAX`]) of up to `stride`
    /// bytes each (at least 1; 65,536 fits any UDP datagram, a little over
    /// the largest the caller expects is enough).
    pub fn new(capacity: usize, stride: usize) -> Self {
        let capacity = capacity.clamp(1, BATCH_MAX);
        let stride = stride.max(1);
        Self {
            buf: vec![0; capacity * stride],
            stride,
            lens: vec![0; capacity],
            count: 0,
        }
    }

    /// The most datagrams one call receives.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// The largest datagram a slot holds.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Slots the last call filled: datagrams and the too-large ones
    /// dropped.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the last call filled nothing (or there was none).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The datagrams the last call received, in the order they came.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.lens[..self.count]
            .iter()
            .zip(self.buf.chunks_exact(self.stride))
            .filter(|(len, _)| **len <= self.stride)
            .map(|(len, slot)| &slot[..*len])
    }

    /// How many datagrams the last call dropped for being longer than
    /// [`RecvBatch::stride`].
    pub fn too_large(&self) -> usize {
        self.lens[..self.count]
            .iter()
            .filter(|len| **len > self.stride)
            .count()
    }
}

// SAFETY: the spec requires group handles to be usable from any thread and
// group_send/group_recv to be safe to call concurrently.
unsafe impl Send for DatagramGroup {}
// SAFETY: as above.
unsafe impl Sync for DatagramGroup {}

impl Plugin {
    /// Opens (joins) a datagram group. `config` is the plugin's `key=value`
    /// text, e.g. `group=239.255.0.1:5000\ninterface=127.0.0.1`.
    pub fn open_group(&self, config: &str) -> Result<DatagramGroup, TransportError> {
        let handle = self.open_handle("group_open", self.inner.vt.group_open, config)?;
        Ok(DatagramGroup {
            plugin: self.clone(),
            handle,
            no_send_batch: AtomicBool::new(false),
            no_recv_batch: AtomicBool::new(false),
        })
    }
}

impl DatagramGroup {
    /// The plugin this group belongs to.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Sends one datagram to the group, paced as configured.
    pub fn send(&self, datagram: &[u8]) -> Result<(), TransportError> {
        let send = self
            .plugin
            .func("group_send", self.plugin.inner.vt.group_send)?;
        // SAFETY: live handle; `datagram` valid for the call.
        self.plugin.call("group_send", |err| unsafe {
            send(self.handle, datagram.as_ptr(), datagram.len(), err)
        })
    }

    /// Receives one datagram into `buf` and returns its length. `None`
    /// waits without limit. A buffer of 65,536 bytes fits any UDP datagram.
    pub fn recv(&self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, TransportError> {
        let mut len = 0usize;
        self.recv_raw(buf, timeout, &mut len)?;
        Ok(len.min(buf.len()))
    }

    /// `group_recv`, leaving the plugin's `*out_len` in `len` whatever the
    /// outcome (a `BUFFER_TOO_SMALL` answer puts the size needed there).
    fn recv_raw(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        len: &mut usize,
    ) -> Result<(), TransportError> {
        let recv = self
            .plugin
            .func("group_recv", self.plugin.inner.vt.group_recv)?;
        // SAFETY: live handle; `buf` and `len` valid for the call.
        self.plugin.call("group_recv", |err| unsafe {
            recv(
                self.handle,
                buf.as_mut_ptr(),
                buf.len(),
                len,
                timeout_to_ms(timeout),
                err,
            )
        })
    }

    /// Sends the first datagrams of `datagrams` in order, paced as
    /// configured, and returns how many went out: at least 1 for a
    /// non-empty slice, fewer than all when the plugin stopped early (a
    /// full socket buffer, its own pacing, or an error on a later datagram,
    /// which the next call then meets first). Callers loop on the rest:
    ///
    /// ```ignore
    /// let mut rest = &datagrams[..];
    /// while !rest.is_empty() {
    ///     rest = &rest[group.send_batch(rest)?..];
    /// }
    /// ```
    ///
    /// An error means none went out. One call passes at most [`BATCH_MAX`]
    /// datagrams. A plugin without `group_send_batch` gets one `group_send`
    /// per datagram.
    pub fn send_batch(&self, datagrams: &[&[u8]]) -> Result<usize, TransportError> {
        let batch = &datagrams[..datagrams.len().min(BATCH_MAX)];
        if batch.is_empty() {
            return Ok(0);
        }
        let op = "group_send_batch";
        let Some(send) = self.plugin.inner.vt.group_send_batch else {
            return self.send_each(batch);
        };
        if self.no_send_batch.load(Ordering::Relaxed) {
            return self.send_each(batch);
        }
        let items: Vec<Bytes> = batch
            .iter()
            .map(|d| Bytes {
                ptr: d.as_ptr(),
                len: d.len(),
            })
            .collect();
        let mut sent = 0usize;
        // SAFETY: live handle; `items` (and the datagrams it points at) and
        // `sent` valid for the call.
        let outcome = self.plugin.call(op, |err| unsafe {
            send(self.handle, items.as_ptr(), items.len(), &mut sent, err)
        });
        match outcome {
            Ok(()) if (1..=batch.len()).contains(&sent) => Ok(sent),
            Ok(()) => Err(self.plugin.error(
                op,
                ErrorKind::Internal,
                format!(
                    "plugin reported {sent} of {} datagrams sent with success",
                    batch.len()
                ),
            )),
            Err(e) if sent == 0 && e.kind == ErrorKind::Unsupported => {
                tracing::debug!(plugin = %self.plugin.name(), "no batched sends on this group: one datagram per call");
                self.no_send_batch.store(true, Ordering::Relaxed);
                self.send_each(batch)
            }
            Err(e) if sent == 0 => Err(e),
            Err(e) if sent < batch.len() => {
                // Those went out and must not be sent twice; the failing
                // datagram leads the caller's next call, which reports it.
                tracing::debug!(plugin = %self.plugin.name(), sent, error = %e, "batched send stopped early");
                Ok(sent)
            }
            Err(e) => Err(self.plugin.error(
                op,
                e.kind,
                format!(
                    "{} (and reported {sent} of {} datagrams sent)",
                    e.message,
                    batch.len()
                ),
            )),
        }
    }

    /// [`send_batch`](Self::send_batch) one `group_send` at a time.
    fn send_each(&self, batch: &[&[u8]]) -> Result<usize, TransportError> {
        for (i, d) in batch.iter().enumerate() {
            if let Err(e) = self.send(d) {
                if i == 0 {
                    return Err(e);
                }
                tracing::debug!(plugin = %self.plugin.name(), sent = i, error = %e, "send stopped early");
                return Ok(i);
            }
        }
        Ok(batch.len())
    }

    /// Receives into `batch`: waits up to `timeout` for the first datagram
    /// (`None` without limit; an error of kind [`ErrorKind::Timeout`] when
    /// none came), then takes those already queued, without waiting, up to
    /// its capacity. Returns how many slots were filled (at least 1); read
    /// them with [`RecvBatch::datagrams`]. A datagram longer than the
    /// batch's stride is dropped and counted in [`RecvBatch::too_large`],
    /// not an error. A plugin without `group_recv_batch` gets one
    /// `group_recv` per datagram.
    pub fn recv_batch(
        &self,
        batch: &mut RecvBatch,
        timeout: Option<Duration>,
    ) -> Result<usize, TransportError> {
        batch.count = 0;
        let op = "group_recv_batch";
        let Some(recv) = self.plugin.inner.vt.group_recv_batch else {
            return self.recv_each(batch, timeout);
        };
        if self.no_recv_batch.load(Ordering::Relaxed) {
            return self.recv_each(batch, timeout);
        }
        let max = batch.lens.len();
        let mut count = 0usize;
        // SAFETY: live handle; `buf` holds `max` slots of `stride` bytes,
        // `lens` room for `max` lengths, `count` valid, all for the call.
        let outcome = self.plugin.call(op, |err| unsafe {
            recv(
                self.handle,
                batch.buf.as_mut_ptr(),
                batch.stride,
                max,
                batch.lens.as_mut_ptr(),
                &mut count,
                timeout_to_ms(timeout),
                err,
            )
        });
        match outcome {
            Ok(()) if (1..=max).contains(&count) => {
                batch.count = count;
                Ok(count)
            }
            Ok(()) => Err(self.plugin.error(
                op,
                ErrorKind::Internal,
                format!("plugin reported {count} datagrams received into {max} slots"),
            )),
            Err(e) if e.kind == ErrorKind::Unsupported => {
                tracing::debug!(plugin = %self.plugin.name(), "no batched receives on this group: one datagram per call");
                self.no_recv_batch.store(true, Ordering::Relaxed);
                self.recv_each(batch, timeout)
            }
            Err(e) => Err(e),
        }
    }

    /// [`recv_batch`](Self::recv_batch) one `group_recv` at a time: the
    /// first waits up to `timeout`, the others poll.
    fn recv_each(
        &self,
        batch: &mut RecvBatch,
        timeout: Option<Duration>,
    ) -> Result<usize, TransportError> {
        let stride = batch.stride;
        let slots = batch.buf.chunks_exact_mut(stride);
        for (i, (slot, len)) in slots.zip(batch.lens.iter_mut()).enumerate() {
            let wait = if i == 0 {
                timeout
            } else {
                Some(Duration::ZERO)
            };
            let mut got = 0usize;
            match self.recv_raw(slot, wait, &mut got) {
                Ok(()) => *len = got.min(stride),
                // Dropped by the plugin (SPEC 5.3); counted like a batched
                // call reports it.
                Err(e) if e.kind == ErrorKind::BufferTooSmall => *len = got.max(stride + 1),
                Err(e) if i == 0 => return Err(e),
                // A timeout ends the batch; another error recurs on the
                // next call, which reports it.
                Err(_) => break,
            }
            batch.count = i + 1;
        }
        Ok(batch.count)
    }
}

impl DatagramGroup {
    /// Whether [`send_batch`](Self::send_batch) goes through the plugin's
    /// own `group_send_batch`: false when the plugin lacks it or answered
    /// `UNSUPPORTED` on this group (until the first call, true when it is
    /// offered).
    pub fn sends_batches(&self) -> bool {
        self.plugin.inner.vt.group_send_batch.is_some()
            && !self.no_send_batch.load(Ordering::Relaxed)
    }

    /// Whether [`recv_batch`](Self::recv_batch) goes through the plugin's
    /// own `group_recv_batch` (as [`sends_batches`](Self::sends_batches)).
    pub fn receives_batches(&self) -> bool {
        self.plugin.inner.vt.group_recv_batch.is_some()
            && !self.no_recv_batch.load(Ordering::Relaxed)
    }

    /// The local address the group is bound to, as the plugin writes it
    /// (e.g. `0.0.0.0:47000`): `None` when the plugin does not offer
    /// `group_local_addr` (older plugins) or answers `UNSUPPORTED`.
    pub fn local_addr(&self) -> Result<Option<String>, TransportError> {
        let op = "group_local_addr";
        let Some(f) = self.plugin.inner.vt.group_local_addr else {
            return Ok(None);
        };
        match crate::stream::read_text(&self.plugin, op, f, self.handle) {
            Ok(a) => Ok(Some(a)),
            Err(e) if e.kind == crate::ErrorKind::Unsupported => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for DatagramGroup {
    fn drop(&mut self) {
        if let Some(close) = self.plugin.inner.vt.group_close {
            // SAFETY: the handle is live and never used again.
            unsafe { close(self.handle) };
        }
    }
}
