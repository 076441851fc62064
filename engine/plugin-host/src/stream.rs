//! Safe wrappers over the peer-stream shape.

use std::sync::Mutex;
use std::time::Duration;

use haifu_transport_abi::raw::TextFn;
use haifu_transport_abi::{Handle, timeout_to_ms};

use crate::error::{ErrorKind, TransportError};
use crate::loader::Plugin;

/// An endpoint that listens and/or connects. All methods may be called from
/// several threads at once. Dropping it stops accepting; connections already
/// made stay open until dropped.
#[derive(Debug)]
pub struct Endpoint {
    plugin: Plugin,
    handle: Handle,
}

// SAFETY: the spec requires endpoint handles to be usable from any thread
// and their functions to be safe to call concurrently.
unsafe impl Send for Endpoint {}
// SAFETY: as above.
unsafe impl Sync for Endpoint {}

/// A connection to a verified peer carrying whole messages both ways.
/// `send` may run concurrently with `recv`; concurrent `recv`s are
/// serialised here, as the ABI requires. Dropping it flushes and closes.
#[derive(Debug)]
pub struct Connection {
    plugin: Plugin,
    handle: Handle,
    peer: String,
    /// The role the peer's credentials grant; empty when none (or the
    /// plugin predates `conn_peer_role`).
    role: String,
    recv_lock: Mutex<()>,
}

// SAFETY: the spec requires connection handles to be usable from any
// thread, with send concurrent to recv; recv is serialised by `recv_lock`.
unsafe impl Send for Connection {}
// SAFETY: as above.
unsafe impl Sync for Connection {}

/// Reads a text result through the "buffer, then retry with the size
/// needed" protocol of `TextFn`.
pub(crate) fn read_text(
    plugin: &Plugin,
    op: &'static str,
    f: TextFn,
    handle: Handle,
) -> Result<String, TransportError> {
    let mut cap = 256usize;
    for _ in 0..2 {
        let mut buf = vec![0u8; cap];
        let mut len = 0usize;
        // SAFETY: live handle; `buf` and `len` valid for the call.
        let r = plugin.call(op, |err| unsafe {
            f(handle, buf.as_mut_ptr(), buf.len(), &mut len, err)
        });
        match r {
            Ok(()) => {
                buf.truncate(len.min(cap));
                return String::from_utf8(buf).map_err(|_| {
                    plugin.error(op, ErrorKind::Internal, "plugin returned non-utf-8 text")
                });
            }
            Err(e) if e.kind == ErrorKind::BufferTooSmall && len > cap && len <= 1 << 20 => {
                cap = len;
            }
            Err(e) => return Err(e),
        }
    }
    Err(plugin.error(
        op,
        ErrorKind::Internal,
        "plugin kept asking for a larger buffer",
    ))
}

impl Plugin {
    /// Opens a peer-stream endpoint. `config` is the plugin's `key=value`
    /// text (for QUIC: `listen=`, `ca=`, `cert=`, `key=`, ...).
    pub fn open_endpoint(&self, config: &str) -> Result<Endpoint, TransportError> {
        let handle = self.open_handle("endpoint_open", self.inner.vt.endpoint_open, config)?;
        Ok(Endpoint {
            plugin: self.clone(),
            handle,
        })
    }
}

impl Endpoint {
    /// The plugin this endpoint belongs to.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The local address as text, e.g. `127.0.0.1:4433`.
    pub fn local_addr(&self) -> Result<String, TransportError> {
        let op = "endpoint_local_addr";
        let f = self
            .plugin
            .func(op, self.plugin.inner.vt.endpoint_local_addr)?;
        read_text(&self.plugin, op, f, self.handle)
    }

    /// One raw `endpoint_local_addr` call with a buffer of `cap` bytes: the
    /// status, the `out_len` the plugin set and the bytes it wrote (for the
    /// conformance checks of small buffers).
    pub(crate) fn local_addr_raw(
        &self,
        cap: usize,
    ) -> (Result<(), TransportError>, usize, Vec<u8>) {
        let op = "endpoint_local_addr";
        let f = match self
            .plugin
            .func(op, self.plugin.inner.vt.endpoint_local_addr)
        {
            Ok(f) => f,
            Err(e) => return (Err(e), 0, Vec::new()),
        };
        let mut buf = vec![0u8; cap];
        let mut len = 0usize;
        // SAFETY: live handle; `buf` (cap bytes, or dangling and unused when
        // cap is 0) and `len` valid for the call.
        let r = self.plugin.call(op, |err| unsafe {
            f(self.handle, buf.as_mut_ptr(), cap, &mut len, err)
        });
        (r, len, buf)
    }

    /// Waits for the next verified incoming connection. `None` waits without
    /// limit; a timeout is an error of kind [`ErrorKind::Timeout`].
    pub fn accept(&self, timeout: Option<Duration>) -> Result<Connection, TransportError> {
        let f = self
            .plugin
            .func("endpoint_accept", self.plugin.inner.vt.endpoint_accept)?;
        let mut conn: Handle = std::ptr::null_mut();
        // SAFETY: live handle; out pointer valid for the call.
        self.plugin.call("endpoint_accept", |err| unsafe {
            f(self.handle, timeout_to_ms(timeout), &mut conn, err)
        })?;
        self.wrap("endpoint_accept", conn)
    }

    /// Connects to `addr` (e.g. `127.0.0.1:4433`), expecting the peer to
    /// prove the identity `server_name`.
    pub fn connect(
        &self,
        addr: &str,
        server_name: &str,
        timeout: Option<Duration>,
    ) -> Result<Connection, TransportError> {
        let f = self
            .plugin
            .func("endpoint_connect", self.plugin.inner.vt.endpoint_connect)?;
        let mut conn: Handle = std::ptr::null_mut();
        // SAFETY: live handle; strings and out pointer valid for the call.
        self.plugin.call("endpoint_connect", |err| unsafe {
            f(
                self.handle,
                addr.as_ptr(),
                addr.len(),
                server_name.as_ptr(),
                server_name.len(),
                timeout_to_ms(timeout),
                &mut conn,
                err,
            )
        })?;
        self.wrap("endpoint_connect", conn)
    }

    /// Replaces the deny list: these identities are refused at the
    /// handshake from now on, and their live connections are closed.
    pub fn set_denied<S: AsRef<str>>(&self, identities: &[S]) -> Result<(), TransportError> {
        let op = "endpoint_set_denied";
        let f = self
            .plugin
            .func(op, self.plugin.inner.vt.endpoint_set_denied)?;
        let mut list = String::new();
        for id in identities {
            let id = id.as_ref();
            if id.contains('\n') {
                return Err(self.plugin.error(
                    op,
                    ErrorKind::InvalidArgument,
                    format!("identity {id:?} contains a newline"),
                ));
            }
            list.push_str(id);
            list.push('\n');
        }
        self.plugin
            // SAFETY: live handle; `list` valid for the call.
            .call(op, |err| unsafe {
                f(self.handle, list.as_ptr(), list.len(), err)
            })
    }

    fn wrap(&self, op: &'static str, handle: Handle) -> Result<Connection, TransportError> {
        if handle.is_null() {
            return Err(self.plugin.error(
                op,
                ErrorKind::Internal,
                "plugin returned success but a null handle",
            ));
        }
        let mut conn = Connection {
            plugin: self.plugin.clone(),
            handle,
            peer: String::new(),
            role: String::new(),
            recv_lock: Mutex::new(()),
        };
        // The identity never changes; ask once. On failure `conn` is dropped
        // and so closed.
        let f = self.plugin.func(
            "conn_peer_identity",
            self.plugin.inner.vt.conn_peer_identity,
        )?;
        conn.peer = read_text(&self.plugin, "conn_peer_identity", f, handle)?;
        if let Some(f) = self.plugin.inner.vt.conn_peer_role {
            conn.role = read_text(&self.plugin, "conn_peer_role", f, handle)?;
        }
        Ok(conn)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(close) = self.plugin.inner.vt.endpoint_close {
            // SAFETY: the handle is live and never used again.
            unsafe { close(self.handle) };
        }
    }
}

impl Connection {
    /// The peer's verified identity (for QUIC: its certificate's CN).
    pub fn peer_identity(&self) -> &str {
        &self.peer
    }

    /// The role the peer's verified credentials grant (for QUIC: the haifu
    /// role in its certificate's extended key usage), or `None` when they
    /// grant none or the plugin cannot tell.
    pub fn peer_role(&self) -> Option<&str> {
        (!self.role.is_empty()).then_some(self.role.as_str())
    }

    /// Sends one message.
    pub fn send(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), TransportError> {
        let f = self
            .plugin
            .func("conn_send", self.plugin.inner.vt.conn_send)?;
        // SAFETY: live handle; `message` valid for the call.
        self.plugin.call("conn_send", |err| unsafe {
            f(
                self.handle,
                message.as_ptr(),
                message.len(),
                timeout_to_ms(timeout),
                err,
            )
        })
    }

    /// Receives one message and hands it to `f` without copying.
    pub fn recv_with<R>(
        &self,
        timeout: Option<Duration>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TransportError> {
        let recv = self
            .plugin
            .func("conn_recv", self.plugin.inner.vt.conn_recv)?;
        let _serial = self.recv_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut ptr: *const u8 = std::ptr::null();
        let mut len = 0usize;
        // SAFETY: live handle; out pointers valid for the call.
        self.plugin.call("conn_recv", |err| unsafe {
            recv(self.handle, &mut ptr, &mut len, timeout_to_ms(timeout), err)
        })?;
        if len == 0 {
            return Ok(f(&[]));
        }
        if ptr.is_null() {
            return Err(self.plugin.error(
                "conn_recv",
                ErrorKind::Internal,
                "plugin returned a null message pointer",
            ));
        }
        // SAFETY: the plugin guarantees `len` bytes at `ptr` until the next
        // conn_recv or conn_close, both excluded while `_serial` is held and
        // `self` is borrowed.
        let message = unsafe { std::slice::from_raw_parts(ptr, len) };
        Ok(f(message))
    }

    /// Receives one message.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Vec<u8>, TransportError> {
        self.recv_with(timeout, <[u8]>::to_vec)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(close) = self.plugin.inner.vt.conn_close {
            // SAFETY: the handle is live and never used again.
            unsafe { close(self.handle) };
        }
    }
}
