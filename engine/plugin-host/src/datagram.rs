//! Safe wrapper over the datagram-group shape.

use std::time::Duration;

use haifu_transport_abi::{Handle, timeout_to_ms};

use crate::error::TransportError;
use crate::loader::Plugin;

/// A joined datagram group. `send` and `recv` may be called from several
/// threads at once; every call blocks at most as long as pacing or the
/// timeout requires. Dropping it leaves the group.
#[derive(Debug)]
pub struct DatagramGroup {
    plugin: Plugin,
    handle: Handle,
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
        let recv = self
            .plugin
            .func("group_recv", self.plugin.inner.vt.group_recv)?;
        let mut len = 0usize;
        // SAFETY: live handle; `buf` and `len` valid for the call.
        self.plugin.call("group_recv", |err| unsafe {
            recv(
                self.handle,
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
                timeout_to_ms(timeout),
                err,
            )
        })?;
        Ok(len.min(buf.len()))
    }
}

impl DatagramGroup {
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
