//! The Rust side of the ABI: traits a plugin implements, and generic
//! `extern "C"` glue that [`export_transport!`](crate::export_transport)
//! puts into the table.
//!
//! Every glue function checks its pointers, converts the host's bytes into
//! Rust types, runs the trait method inside [`guard`] (which catches panics)
//! and writes the error message into the host's buffer. This module and the
//! host's loader are the only places with `unsafe`.

#![allow(unsafe_code)]
// The safety contract of every glue function is the one of the table entry
// it fills (see `SPEC.md`): valid pointers and live handles.
#![allow(clippy::missing_safety_doc)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::Duration;

use crate::raw::{
    ABI_VERSION, BATCH_MAX, Bytes, ErrorBuf, Handle, PluginVTable, SHAPE_DATAGRAM, SHAPE_STREAM,
    Status, TIMEOUT_INFINITE, status,
};
use crate::{Config, Error};

/// How long a blocking call may wait; `None` waits without limit.
pub type Timeout = Option<Duration>;

/// The plugin instance, created once per load by `init`. Groups and
/// endpoints get a reference to it. It owns whatever the plugin shares
/// between objects (a runtime, counters); it must not rely on the host's
/// threads or runtime.
pub trait Transport: Sized + Send + Sync + 'static {
    /// Short name the engine refers to the plugin by, e.g. `multicast`.
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str;
    /// Creates the instance from the host's configuration (often empty).
    fn init(config: &Config) -> Result<Self, Error>;
}

/// The datagram-group shape: a joined group that can send and receive.
pub trait DatagramGroup: Sized + Send + Sync + 'static {
    /// The plugin instance type.
    type Transport: Transport;
    /// Joins (or prepares to send to) the group described by `config`.
    fn open(transport: &Self::Transport, config: &Config) -> Result<Self, Error>;
    /// Sends one datagram to the group, waiting as the pacing requires.
    /// May be called from several threads at once.
    fn send(&self, datagram: &[u8]) -> Result<(), Error>;
    /// Receives one datagram into `buf`, returning its length; a datagram
    /// larger than `buf` is an error with [`status::BUFFER_TOO_SMALL`].
    fn recv(&self, buf: &mut [u8], timeout: Timeout) -> Result<usize, Error>;
    /// The local address the group is bound to, e.g. `0.0.0.0:47000` (the
    /// port the kernel chose when the configuration asked for port 0). The
    /// default reports [`status::UNSUPPORTED`], which the host reads as
    /// "not offered".
    fn local_addr(&self) -> Result<String, Error> {
        Err(Error::unsupported("this group does not report its address"))
    }
    /// Sends the first datagrams of `datagrams` in order, each as
    /// [`send`](Self::send) would (paced; one over the limit refused with
    /// [`status::TOO_LARGE`], never cut), and returns how many went out:
    /// at least 1, at most `datagrams.len()`. Fewer than all is not an
    /// error (a full socket buffer, the pacing allowing only some now): the
    /// host calls again with the rest. Return an error only when the first
    /// datagram failed; when a later one fails, return the count before it
    /// and the host meets the error on its next call.
    ///
    /// The default reports [`status::UNSUPPORTED`]: the host then calls
    /// [`send`](Self::send) once per datagram.
    fn send_batch(&self, datagrams: &[&[u8]]) -> Result<usize, Error> {
        let _ = datagrams;
        Err(Error::unsupported("this group sends one datagram per call"))
    }
    /// Receives up to `lens.len()` datagrams: waits up to `timeout` for the
    /// first (an error with [`status::TIMEOUT`] when none came, nothing
    /// consumed), then takes only those already queued, without waiting.
    /// Datagram `i` goes to `slots[i * stride..][..stride]` and its length
    /// to `lens[i]`; `slots.len()` is `stride * lens.len()`. A datagram
    /// longer than `stride` is dropped and reported with its real length
    /// (greater than `stride`; `stride + 1` if unknown) and nothing valid
    /// in its slot. Returns how many slots were filled, at least 1.
    ///
    /// The default reports [`status::UNSUPPORTED`]: the host then calls
    /// [`recv`](Self::recv) once per datagram.
    fn recv_batch(
        &self,
        slots: &mut [u8],
        stride: usize,
        lens: &mut [usize],
        timeout: Timeout,
    ) -> Result<usize, Error> {
        let _ = (slots, stride, lens, timeout);
        Err(Error::unsupported(
            "this group receives one datagram per call",
        ))
    }
}

/// The peer-stream shape: an endpoint that listens and/or connects.
pub trait StreamEndpoint: Sized + Send + Sync + 'static {
    /// The plugin instance type.
    type Transport: Transport;
    /// The connections this endpoint makes.
    type Connection: StreamConnection;
    /// Opens the endpoint described by `config`.
    fn open(transport: &Self::Transport, config: &Config) -> Result<Self, Error>;
    /// The local address as text, e.g. `127.0.0.1:4433`.
    fn local_addr(&self) -> Result<String, Error>;
    /// Waits for the next incoming connection whose peer passed
    /// verification. Refused peers never show up here.
    fn accept(&self, timeout: Timeout) -> Result<Self::Connection, Error>;
    /// Connects to `addr`, expecting the peer to prove `server_name`.
    fn connect(
        &self,
        addr: &str,
        server_name: &str,
        timeout: Timeout,
    ) -> Result<Self::Connection, Error>;
    /// Replaces the list of refused identities; takes effect for new
    /// handshakes at once and SHOULD close live connections of newly denied
    /// identities.
    fn set_denied(&self, identities: &[&str]) -> Result<(), Error>;
}

/// One connection to a verified peer, carrying framed messages both ways.
pub trait StreamConnection: Sized + Send + Sync + 'static {
    /// The peer's verified identity (for certificate transports: the
    /// certificate's common name).
    fn peer_identity(&self) -> &str;
    /// The role the peer's verified credentials grant (`master`, `relay`
    /// or `client`), or `""` when they grant none. The default grants none:
    /// a host that needs roles then refuses the peer.
    fn peer_role(&self) -> &str {
        ""
    }
    /// Sends one message. May run concurrently with `recv`.
    fn send(&self, message: &[u8], timeout: Timeout) -> Result<(), Error>;
    /// Receives one whole message. The host never calls it concurrently
    /// with itself on one connection.
    fn recv(&self, timeout: Timeout) -> Result<Vec<u8>, Error>;
    /// Flushes what was sent and closes. The default just drops.
    fn close(self) {}
}

/// Converts an ABI `timeout_ms` into a [`Timeout`].
pub fn timeout_from_ms(ms: u64) -> Timeout {
    if ms == TIMEOUT_INFINITE {
        None
    } else {
        Some(Duration::from_millis(ms))
    }
}

/// Converts a [`Timeout`] into an ABI `timeout_ms` (host side).
pub fn timeout_to_ms(timeout: Timeout) -> u64 {
    match timeout {
        None => TIMEOUT_INFINITE,
        Some(d) => u64::try_from(d.as_millis())
            .unwrap_or(TIMEOUT_INFINITE - 1)
            .min(TIMEOUT_INFINITE - 1),
    }
}

/// Writes `message` into the host's error buffer, truncated at a UTF-8
/// boundary. A null `err` or a null/zero-sized buffer drops the message.
///
/// # Safety
/// `err` is null or points to a valid [`ErrorBuf`] whose `ptr` is null or
/// valid for `cap` writable bytes.
pub unsafe fn write_error(err: *mut ErrorBuf, message: &str) {
    if err.is_null() {
        return;
    }
    // SAFETY: non-null and valid by the caller's contract.
    let e = unsafe { &mut *err };
    if e.ptr.is_null() || e.cap == 0 {
        e.len = 0;
        return;
    }
    let mut n = message.len().min(e.cap);
    while !message.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: `ptr` is valid for `cap >= n` bytes; the regions cannot overlap
    // because `message` is owned by the plugin.
    unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), e.ptr, n) };
    e.len = n;
}

/// Runs `f`, catching any panic, and turns the outcome into a status code
/// with the error message (or the panic message) written to `err`.
///
/// Every exported function of a plugin MUST run its body through this (or
/// an equivalent `catch_unwind`): since Rust 1.81 a panic that reaches an
/// `extern "C"` boundary aborts the whole host process.
///
/// # Safety
/// `err` as for [`write_error`].
pub unsafe fn guard(err: *mut ErrorBuf, f: impl FnOnce() -> Result<(), Error>) -> Status {
    let outcome = catch_unwind(AssertUnwindSafe(f));
    let e = match outcome {
        Ok(Ok(())) => return status::OK,
        Ok(Err(e)) => e,
        Err(payload) => Error::new(
            status::PANIC,
            format!("plugin panicked: {}", panic_message(&*payload)),
        ),
    };
    // SAFETY: forwarded from the caller.
    unsafe { write_error(err, e.message()) };
    e.status()
}

/// Like [`guard`] for functions without a result (the `*_close` family):
/// a panic is swallowed, since there is nobody to report it to.
pub fn guard_void(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Borrows `len` bytes at `ptr`, rejecting a null pointer with a non-zero
/// length.
///
/// # Safety
/// If non-null, `ptr` is valid for `len` bytes for `'a`.
pub unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::invalid("null data pointer with non-zero length"));
    }
    // SAFETY: by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows `len` bytes at `ptr` as UTF-8 text.
///
/// # Safety
/// As for [`bytes`].
pub unsafe fn text<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a str, Error> {
    // SAFETY: forwarded.
    let b = unsafe { bytes(ptr, len) }?;
    std::str::from_utf8(b).map_err(|e| Error::invalid(format!("{what} is not utf-8: {e}")))
}

/// Writes `s` into the host's output buffer, setting `out_len` to its
/// length; if `cap` is too small, writes nothing and reports
/// [`status::BUFFER_TOO_SMALL`] with `out_len` set to the size needed.
///
/// # Safety
/// `buf` is valid for `cap` writable bytes (or null with `cap == 0`);
/// `out_len` is null or valid.
pub unsafe fn write_text(
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    s: &str,
) -> Result<(), Error> {
    if out_len.is_null() {
        return Err(Error::invalid("null out_len pointer"));
    }
    // SAFETY: non-null, valid by contract.
    unsafe { *out_len = s.len() };
    if s.len() > cap || (buf.is_null() && !s.is_empty()) {
        return Err(Error::new(
            status::BUFFER_TOO_SMALL,
            format!("buffer of {cap} bytes, {} needed", s.len()),
        ));
    }
    // SAFETY: `buf` is valid for `cap >= s.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), buf, s.len()) };
    Ok(())
}

/// Borrows the object behind a handle.
///
/// # Safety
/// `h` is null or a handle this glue produced for a `T` and not yet closed.
unsafe fn object<'a, T>(h: Handle) -> Result<&'a T, Error> {
    if h.is_null() {
        return Err(Error::invalid("null handle"));
    }
    // SAFETY: by contract.
    Ok(unsafe { &*h.cast::<T>() })
}

/// Stores `value` behind `out` as a new handle.
///
/// # Safety
/// `out` is null or valid for a write.
unsafe fn emit<T>(out: *mut Handle, value: T) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::invalid("null output handle pointer"));
    }
    // SAFETY: non-null, valid by contract.
    unsafe { *out = Box::into_raw(Box::new(value)).cast::<c_void>() };
    Ok(())
}

/// Frees an object behind a handle.
///
/// # Safety
/// `h` is null or a live handle for a `T`; it is not used afterwards.
unsafe fn take<T>(h: Handle) -> Option<T> {
    if h.is_null() {
        return None;
    }
    // SAFETY: by contract.
    Some(*unsafe { Box::from_raw(h.cast::<T>()) })
}

/// A connection and the last message handed to the host, which stays
/// valid until the next `conn_recv` or `conn_close`.
struct ConnSlot<C> {
    conn: C,
    last: Mutex<Vec<u8>>,
}

/// Glue for `init`.
pub unsafe extern "C" fn init<T: Transport>(
    config: *const u8,
    config_len: usize,
    out: *mut Handle,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let config = Config::parse(bytes(config, config_len)?)?;
            emit(out, T::init(&config)?)
        })
    }
}

/// Glue for `shutdown`.
pub unsafe extern "C" fn shutdown<T: Transport>(plugin: Handle) {
    // SAFETY: the host passes the handle from `init` once, after closing all objects.
    guard_void(|| drop(unsafe { take::<T>(plugin) }));
}

/// Glue for `group_open`.
pub unsafe extern "C" fn group_open<G: DatagramGroup>(
    plugin: Handle,
    config: *const u8,
    config_len: usize,
    out: *mut Handle,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let t = object::<G::Transport>(plugin)?;
            let config = Config::parse(bytes(config, config_len)?)?;
            emit(out, G::open(t, &config)?)
        })
    }
}

/// Glue for `group_send`.
pub unsafe extern "C" fn group_send<G: DatagramGroup>(
    group: Handle,
    data: *const u8,
    len: usize,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe { guard(err, || object::<G>(group)?.send(bytes(data, len)?)) }
}

/// Glue for `group_recv`.
pub unsafe extern "C" fn group_recv<G: DatagramGroup>(
    group: Handle,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    timeout_ms: u64,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let g = object::<G>(group)?;
            if out_len.is_null() || (buf.is_null() && cap > 0) {
                return Err(Error::invalid("null receive buffer or length pointer"));
            }
            let slice: &mut [u8] = if cap == 0 {
                &mut []
            } else {
                std::slice::from_raw_parts_mut(buf, cap)
            };
            let n = g.recv(slice, timeout_from_ms(timeout_ms))?;
            *out_len = n.min(cap);
            Ok(())
        })
    }
}

/// Glue for `group_send_batch`.
pub unsafe extern "C" fn group_send_batch<G: DatagramGroup>(
    group: Handle,
    datagrams: *const Bytes,
    count: usize,
    out_sent: *mut usize,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let g = object::<G>(group)?;
            if out_sent.is_null() || (datagrams.is_null() && count > 0) {
                return Err(Error::invalid("null datagram array or count pointer"));
            }
            *out_sent = 0;
            // The host passes at most BATCH_MAX; more is sent in part, which
            // the short count reports.
            let count = count.min(BATCH_MAX);
            if count == 0 {
                return Ok(());
            }
            let items = std::slice::from_raw_parts(datagrams, count);
            let mut slices = Vec::with_capacity(count);
            for (i, b) in items.iter().enumerate() {
                match bytes(b.ptr, b.len) {
                    Ok(s) => slices.push(s),
                    // Send those before it; the host meets this error
                    // when it calls again from here.
                    Err(_) if i > 0 => break,
                    Err(e) => return Err(e),
                }
            }
            let sent = g.send_batch(&slices)?;
            if sent == 0 {
                return Err(Error::internal(
                    "send_batch reported success but sent nothing",
                ));
            }
            *out_sent = sent.min(slices.len());
            Ok(())
        })
    }
}

/// Glue for `group_recv_batch`.
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn group_recv_batch<G: DatagramGroup>(
    group: Handle,
    buf: *mut u8,
    stride: usize,
    max_count: usize,
    out_lens: *mut usize,
    out_count: *mut usize,
    timeout_ms: u64,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let g = object::<G>(group)?;
            if out_count.is_null() || out_lens.is_null() || buf.is_null() {
                return Err(Error::invalid("null buffer, lengths or count pointer"));
            }
            *out_count = 0;
            if stride == 0 || max_count == 0 {
                return Err(Error::invalid("a batch needs a stride and a count above 0"));
            }
            let max_count = max_count.min(BATCH_MAX);
            let total = stride
                .checked_mul(max_count)
                .ok_or_else(|| Error::invalid("stride × count overflows"))?;
            let slots = std::slice::from_raw_parts_mut(buf, total);
            let lens = std::slice::from_raw_parts_mut(out_lens, max_count);
            let n = g.recv_batch(slots, stride, lens, timeout_from_ms(timeout_ms))?;
            if n == 0 {
                return Err(Error::internal(
                    "recv_batch reported success but received nothing",
                ));
            }
            *out_count = n.min(max_count);
            Ok(())
        })
    }
}

/// Glue for `group_local_addr`.
pub unsafe extern "C" fn group_local_addr<G: DatagramGroup>(
    group: Handle,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let addr = object::<G>(group)?.local_addr()?;
            write_text(buf, cap, out_len, &addr)
        })
    }
}

/// Glue for `group_close`.
pub unsafe extern "C" fn group_close<G: DatagramGroup>(group: Handle) {
    // SAFETY: the host closes each handle once.
    guard_void(|| drop(unsafe { take::<G>(group) }));
}

/// Glue for `endpoint_open`.
pub unsafe extern "C" fn endpoint_open<E: StreamEndpoint>(
    plugin: Handle,
    config: *const u8,
    config_len: usize,
    out: *mut Handle,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let t = object::<E::Transport>(plugin)?;
            let config = Config::parse(bytes(config, config_len)?)?;
            emit(out, E::open(t, &config)?)
        })
    }
}

/// Glue for `endpoint_local_addr`.
pub unsafe extern "C" fn endpoint_local_addr<E: StreamEndpoint>(
    endpoint: Handle,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let addr = object::<E>(endpoint)?.local_addr()?;
            write_text(buf, cap, out_len, &addr)
        })
    }
}

/// Glue for `endpoint_accept`.
pub unsafe extern "C" fn endpoint_accept<E: StreamEndpoint>(
    endpoint: Handle,
    timeout_ms: u64,
    out: *mut Handle,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let conn = object::<E>(endpoint)?.accept(timeout_from_ms(timeout_ms))?;
            emit(
                out,
                ConnSlot {
                    conn,
                    last: Mutex::new(Vec::new()),
                },
            )
        })
    }
}

/// Glue for `endpoint_connect`.
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn endpoint_connect<E: StreamEndpoint>(
    endpoint: Handle,
    addr: *const u8,
    addr_len: usize,
    server_name: *const u8,
    server_name_len: usize,
    timeout_ms: u64,
    out: *mut Handle,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let e = object::<E>(endpoint)?;
            let addr = text(addr, addr_len, "address")?;
            let name = text(server_name, server_name_len, "server name")?;
            let conn = e.connect(addr, name, timeout_from_ms(timeout_ms))?;
            emit(
                out,
                ConnSlot {
                    conn,
                    last: Mutex::new(Vec::new()),
                },
            )
        })
    }
}

/// Glue for `endpoint_set_denied`.
pub unsafe extern "C" fn endpoint_set_denied<E: StreamEndpoint>(
    endpoint: Handle,
    list: *const u8,
    len: usize,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let e = object::<E>(endpoint)?;
            let list = text(list, len, "deny list")?;
            let names: Vec<&str> = list
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            e.set_denied(&names)
        })
    }
}

/// Glue for `endpoint_close`.
pub unsafe extern "C" fn endpoint_close<E: StreamEndpoint>(endpoint: Handle) {
    // SAFETY: the host closes each handle once.
    guard_void(|| drop(unsafe { take::<E>(endpoint) }));
}

/// Glue for `conn_peer_identity`.
pub unsafe extern "C" fn conn_peer_identity<C: StreamConnection>(
    conn: Handle,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let slot = object::<ConnSlot<C>>(conn)?;
            write_text(buf, cap, out_len, slot.conn.peer_identity())
        })
    }
}

/// Glue for `conn_peer_role`.
pub unsafe extern "C" fn conn_peer_role<C: StreamConnection>(
    conn: Handle,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let slot = object::<ConnSlot<C>>(conn)?;
            write_text(buf, cap, out_len, slot.conn.peer_role())
        })
    }
}

/// Glue for `conn_send`.
pub unsafe extern "C" fn conn_send<C: StreamConnection>(
    conn: Handle,
    data: *const u8,
    len: usize,
    timeout_ms: u64,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let slot = object::<ConnSlot<C>>(conn)?;
            slot.conn
                .send(bytes(data, len)?, timeout_from_ms(timeout_ms))
        })
    }
}

/// Glue for `conn_recv`.
pub unsafe extern "C" fn conn_recv<C: StreamConnection>(
    conn: Handle,
    out_ptr: *mut *const u8,
    out_len: *mut usize,
    timeout_ms: u64,
    err: *mut ErrorBuf,
) -> Status {
    // SAFETY: the host passes valid pointers per the ABI.
    unsafe {
        guard(err, || {
            let slot = object::<ConnSlot<C>>(conn)?;
            if out_ptr.is_null() || out_len.is_null() {
                return Err(Error::invalid("null output pointer"));
            }
            let message = slot.conn.recv(timeout_from_ms(timeout_ms))?;
            let mut last = slot.last.lock().unwrap_or_else(|p| p.into_inner());
            *last = message;
            // The Vec's heap buffer does not move until the next recv or close.
            *out_ptr = last.as_ptr();
            *out_len = last.len();
            Ok(())
        })
    }
}

/// Glue for `conn_close`.
pub unsafe extern "C" fn conn_close<C: StreamConnection>(conn: Handle) {
    guard_void(|| {
        // SAFETY: the host closes each handle once.
        if let Some(slot) = unsafe { take::<ConnSlot<C>>(conn) } {
            slot.conn.close();
        }
    });
}

/// The table for a plugin instance type, with no shape yet.
pub const fn vtable<T: Transport>() -> PluginVTable {
    PluginVTable {
        abi_version: ABI_VERSION,
        struct_size: std::mem::size_of::<PluginVTable>(),
        name: Bytes::from_static(T::NAME),
        version: Bytes::from_static(T::VERSION),
        init: Some(init::<T>),
        shutdown: Some(shutdown::<T>),
        ..PluginVTable::empty(T::NAME, T::VERSION)
    }
}

/// Adds the datagram-group shape to a table.
pub const fn with_datagram<T: Transport, G: DatagramGroup<Transport = T>>(
    vt: PluginVTable,
) -> PluginVTable {
    PluginVTable {
        shapes: vt.shapes | SHAPE_DATAGRAM,
        group_open: Some(group_open::<G>),
        group_send: Some(group_send::<G>),
        group_recv: Some(group_recv::<G>),
        group_close: Some(group_close::<G>),
        group_local_addr: Some(group_local_addr::<G>),
        group_send_batch: Some(group_send_batch::<G>),
        group_recv_batch: Some(group_recv_batch::<G>),
        ..vt
    }
}

/// Adds the peer-stream shape to a table.
pub const fn with_stream<T: Transport, E: StreamEndpoint<Transport = T>>(
    vt: PluginVTable,
) -> PluginVTable {
    PluginVTable {
        shapes: vt.shapes | SHAPE_STREAM,
        endpoint_open: Some(endpoint_open::<E>),
        endpoint_local_addr: Some(endpoint_local_addr::<E>),
        endpoint_accept: Some(endpoint_accept::<E>),
        endpoint_connect: Some(endpoint_connect::<E>),
        endpoint_set_denied: Some(endpoint_set_denied::<E>),
        endpoint_close: Some(endpoint_close::<E>),
        conn_peer_identity: Some(conn_peer_identity::<E::Connection>),
        conn_send: Some(conn_send::<E::Connection>),
        conn_recv: Some(conn_recv::<E::Connection>),
        conn_close: Some(conn_close::<E::Connection>),
        conn_peer_role: Some(conn_peer_role::<E::Connection>),
        ..vt
    }
}

/// Exports the entry symbol for a Rust plugin.
///
/// ```ignore
/// haifu_transport_abi::export_transport! {
///     transport: MyTransport,
///     datagram: MyGroup,      // optional
///     stream: MyEndpoint,     // optional
/// }
/// ```
///
/// The expansion is one `#[unsafe(no_mangle)] extern "C" fn
/// haifu_transport_entry()` returning a `static` table filled with the
/// panic-guarded glue of this module. It carries `#[allow(unsafe_code)]`, so
/// a plugin crate can keep `#![deny(unsafe_code)]`.
#[macro_export]
macro_rules! export_transport {
    (transport: $t:ty $(, datagram: $g:ty)? $(, stream: $e:ty)? $(,)?) => {
        /// The haifu transport entry symbol.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn haifu_transport_entry() -> *const $crate::PluginVTable {
            static VTABLE: $crate::PluginVTable = {
                let vt = $crate::export::vtable::<$t>();
                $(let vt = $crate::export::with_datagram::<$t, $g>(vt);)?
                $(let vt = $crate::export::with_stream::<$t, $e>(vt);)?
                vt
            };
            &VTABLE
        }
    };
}
