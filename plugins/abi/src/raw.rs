//! The raw C ABI: `#[repr(C)]` types, constants and the function table.
//!
//! Everything here has the same layout as `include/haifu_transport.h`. Only
//! pointers to bytes, lengths, opaque handles, integers and `extern "C"`
//! function pointers appear; no Rust type whose layout the compiler may change
//! crosses the boundary.

use std::ffi::c_void;

/// The ABI version this crate describes. The host refuses a table whose
/// `abi_version` differs, naming both numbers.
pub const ABI_VERSION: u32 = 1;

/// The one symbol a plugin exports, NUL-terminated for `dlsym`. It has the C
/// type `const HaifuPluginVTable *haifu_transport_entry(void)`.
pub const ENTRY_SYMBOL: &[u8] = b"haifu_transport_entry\0";

/// The entry symbol's name without the terminating NUL.
pub const ENTRY_SYMBOL_NAME: &str = "haifu_transport_entry";

/// The type of the entry symbol.
pub type EntryFn = extern "C" fn() -> *const PluginVTable;

/// Shape bit: the plugin offers datagram groups (`group_*` functions).
pub const SHAPE_DATAGRAM: u32 = 1;
/// Shape bit: the plugin offers peer streams (`endpoint_*` and `conn_*`).
pub const SHAPE_STREAM: u32 = 2;
/// Every shape bit this ABI version defines.
pub const SHAPES_KNOWN: u32 = SHAPE_DATAGRAM | SHAPE_STREAM;

/// A `timeout_ms` argument meaning "wait without limit".
pub const TIMEOUT_INFINITE: u64 = u64::MAX;

/// The most datagrams a host passes to one `group_send_batch` or
/// `group_recv_batch` call (Linux's `UIO_MAXIOV`, the most `sendmmsg` and
/// `recvmmsg` take), so a plugin may size its per-call arrays by it.
pub const BATCH_MAX: usize = 1024;

/// An opaque object owned by the plugin (plugin instance, group, endpoint,
/// connection). The host never dereferences it.
pub type Handle = *mut c_void;

/// A status code returned by every fallible function. Zero is success; every
/// error is negative and comes with a message in the caller's [`ErrorBuf`].
pub type Status = i32;

/// The status codes of this ABI version.
pub mod status {
    use super::Status;

    /// Success.
    pub const OK: Status = 0;
    /// An error that fits no other code.
    pub const INTERNAL: Status = -1;
    /// A bad argument: malformed configuration, address or pointer.
    pub const INVALID_ARGUMENT: Status = -2;
    /// An operating-system or network error.
    pub const IO: Status = -3;
    /// The timeout passed; nothing was consumed.
    pub const TIMEOUT: Status = -4;
    /// The object or the peer is closed; no more data will come.
    pub const CLOSED: Status = -5;
    /// An identity was refused (handshake rejected, deny-listed, unknown CA).
    pub const DENIED: Status = -6;
    /// A message exceeds the configured size limit.
    pub const TOO_LARGE: Status = -7;
    /// The caller's output buffer is too small; `out_len` holds the size needed.
    pub const BUFFER_TOO_SMALL: Status = -8;
    /// The operation or shape is not offered by this plugin.
    pub const UNSUPPORTED: Status = -9;
    /// The plugin panicked (or threw) inside the call; the panic was caught.
    pub const PANIC: Status = -10;

    /// A short lowercase name for a status code, for messages and logs.
    pub fn name(status: Status) -> &'static str {
        match status {
            OK => "ok",
            INTERNAL => "internal error",
            INVALID_ARGUMENT => "invalid argument",
            IO => "i/o error",
            TIMEOUT => "timed out",
            CLOSED => "closed",
            DENIED => "denied",
            TOO_LARGE => "too large",
            BUFFER_TOO_SMALL => "buffer too small",
            UNSUPPORTED => "unsupported",
            PANIC => "plugin panicked",
            _ => "unknown status",
        }
    }
}

/// A borrowed byte string: `ptr` points at `len` bytes (UTF-8 where the
/// field says so). Used for the static name and version in the table.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Bytes {
    /// First byte; may be null only when `len` is zero.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl Bytes {
    /// A `Bytes` over a static string.
    pub const fn from_static(s: &'static str) -> Self {
        Self {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }
}

/// A buffer owned by the caller into which a failing function writes its
/// error message as UTF-8 (truncated to `cap` at a character boundary),
/// setting `len`. The pointer to it may be null: the message is then dropped.
#[repr(C)]
#[derive(Debug)]
pub struct ErrorBuf {
    /// Start of the caller's buffer.
    pub ptr: *mut u8,
    /// Capacity in bytes.
    pub cap: usize,
    /// Bytes written by the plugin.
    pub len: usize,
}

/// Every function of the table is `unsafe` to call: the caller must pass
/// pointers that are valid as `SPEC.md` says and handles that are live.
///
/// `init(config, config_len, out_plugin, err)`: create a plugin instance.
pub type InitFn = unsafe extern "C" fn(*const u8, usize, *mut Handle, *mut ErrorBuf) -> Status;
/// `shutdown(plugin)`: destroy a plugin instance after all its objects closed.
pub type ShutdownFn = unsafe extern "C" fn(Handle);
/// `open(plugin, config, config_len, out_object, err)`: open a group or endpoint.
pub type OpenFn =
    unsafe extern "C" fn(Handle, *const u8, usize, *mut Handle, *mut ErrorBuf) -> Status;
/// `close(object)`: close and free a group, endpoint or connection.
pub type CloseFn = unsafe extern "C" fn(Handle);
/// `group_send(group, data, len, err)`: send one datagram, paced.
pub type GroupSendFn = unsafe extern "C" fn(Handle, *const u8, usize, *mut ErrorBuf) -> Status;
/// `group_recv(group, buf, cap, out_len, timeout_ms, err)`: receive one datagram.
pub type GroupRecvFn =
    unsafe extern "C" fn(Handle, *mut u8, usize, *mut usize, u64, *mut ErrorBuf) -> Status;
/// `group_send_batch(group, datagrams, count, out_sent, err)`: send the first
/// datagrams of an array of `count`, in order, paced; `*out_sent` is how many
/// went out.
pub type GroupSendBatchFn =
    unsafe extern "C" fn(Handle, *const Bytes, usize, *mut usize, *mut ErrorBuf) -> Status;
/// `group_recv_batch(group, buf, stride, max_count, out_lens, out_count,
/// timeout_ms, err)`: receive up to `max_count` datagrams into slots of
/// `stride` bytes, waiting only for the first.
pub type GroupRecvBatchFn = unsafe extern "C" fn(
    Handle,
    *mut u8,
    usize,
    usize,
    *mut usize,
    *mut usize,
    u64,
    *mut ErrorBuf,
) -> Status;
/// `text(object, buf, cap, out_len, err)`: write a UTF-8 string into the caller's buffer.
pub type TextFn = unsafe extern "C" fn(Handle, *mut u8, usize, *mut usize, *mut ErrorBuf) -> Status;
/// `endpoint_accept(endpoint, timeout_ms, out_conn, err)`.
pub type AcceptFn = unsafe extern "C" fn(Handle, u64, *mut Handle, *mut ErrorBuf) -> Status;
/// `endpoint_connect(endpoint, addr, addr_len, server_name, name_len, timeout_ms, out_conn, err)`.
pub type ConnectFn = unsafe extern "C" fn(
    Handle,
    *const u8,
    usize,
    *const u8,
    usize,
    u64,
    *mut Handle,
    *mut ErrorBuf,
) -> Status;
/// `endpoint_set_denied(endpoint, list, len, err)`: replace the deny list
/// (identities separated by `\n`).
pub type SetDeniedFn = unsafe extern "C" fn(Handle, *const u8, usize, *mut ErrorBuf) -> Status;
/// `conn_send(conn, data, len, timeout_ms, err)`: send one framed message.
pub type ConnSendFn = unsafe extern "C" fn(Handle, *const u8, usize, u64, *mut ErrorBuf) -> Status;
/// `conn_recv(conn, out_ptr, out_len, timeout_ms, err)`: receive one framed
/// message; the bytes stay valid until the next `conn_recv` or `conn_close`
/// on the same connection.
pub type ConnRecvFn =
    unsafe extern "C" fn(Handle, *mut *const u8, *mut usize, u64, *mut ErrorBuf) -> Status;

/// The table a plugin's entry symbol returns. It lives for the life of the
/// library (a `static`). Fields are only ever appended in later versions;
/// `struct_size` lets the host see how many the plugin knows.
///
/// The function pointers of a shape the plugin does not offer are null
/// (`None`); those of an offered shape are all non-null.
#[repr(C)]
#[derive(Debug)]
pub struct PluginVTable {
    /// Must equal the host's [`ABI_VERSION`].
    pub abi_version: u32,
    /// `sizeof(HaifuPluginVTable)` as the plugin was compiled.
    pub struct_size: usize,
    /// Short plugin name, UTF-8, e.g. `multicast`; the engine refers to the
    /// plugin by it.
    pub name: Bytes,
    /// Plugin version, UTF-8, e.g. `0.1.0`.
    pub version: Bytes,
    /// Bit set of `SHAPE_*`.
    pub shapes: u32,
    /// Create the plugin instance; called once per load.
    pub init: Option<InitFn>,
    /// Destroy the plugin instance.
    pub shutdown: Option<ShutdownFn>,

    /// Datagram groups: open (join) a group.
    pub group_open: Option<OpenFn>,
    /// Datagram groups: send a datagram to the group.
    pub group_send: Option<GroupSendFn>,
    /// Datagram groups: receive a datagram.
    pub group_recv: Option<GroupRecvFn>,
    /// Datagram groups: leave and free the group.
    pub group_close: Option<CloseFn>,

    /// Peer streams: open an endpoint (listening or connect-only).
    pub endpoint_open: Option<OpenFn>,
    /// Peer streams: the endpoint's local address as text.
    pub endpoint_local_addr: Option<TextFn>,
    /// Peer streams: accept the next verified connection.
    pub endpoint_accept: Option<AcceptFn>,
    /// Peer streams: connect to a peer.
    pub endpoint_connect: Option<ConnectFn>,
    /// Peer streams: replace the list of refused identities.
    pub endpoint_set_denied: Option<SetDeniedFn>,
    /// Peer streams: close and free the endpoint.
    pub endpoint_close: Option<CloseFn>,
    /// Peer streams: the peer's verified identity as text.
    pub conn_peer_identity: Option<TextFn>,
    /// Peer streams: send one message.
    pub conn_send: Option<ConnSendFn>,
    /// Peer streams: receive one message.
    pub conn_recv: Option<ConnRecvFn>,
    /// Peer streams: close (flushing) and free the connection.
    pub conn_close: Option<CloseFn>,

    // Appended in ABI 1 after its first release: a host reads these only
    // when `struct_size` covers them, and treats them as null otherwise
    // (see [`BASE_TABLE_SIZE`]).
    /// Peer streams, optional: the role the peer's credentials grant
    /// (`master`, `relay` or `client`), or empty text when they grant none.
    pub conn_peer_role: Option<TextFn>,
    /// Datagram groups, optional: the local address the group is bound to
    /// (e.g. `0.0.0.0:47000`, the port the kernel chose for port 0), as text.
    pub group_local_addr: Option<TextFn>,
    /// Datagram groups, optional: send several datagrams in one call (one
    /// `sendmmsg`), reporting how many went out.
    pub group_send_batch: Option<GroupSendBatchFn>,
    /// Datagram groups, optional: receive the datagrams already queued, up
    /// to a count, in one call (one `recvmmsg`), waiting only for the first.
    pub group_recv_batch: Option<GroupRecvBatchFn>,
}

/// The size of the table as ABI 1 was first released: the smallest
/// `struct_size` a host accepts. Fields after it were appended later and may
/// be absent from a plugin built against an older header.
pub const BASE_TABLE_SIZE: usize = std::mem::offset_of!(PluginVTable, conn_peer_role);

// SAFETY: the table holds only pointers to immutable static data (name and
// version) and function pointers; nothing in it is ever written after the
// plugin builds it, so sharing it between threads is sound.
#[allow(unsafe_code)]
unsafe impl Sync for PluginVTable {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl Send for PluginVTable {}

impl PluginVTable {
    /// A table with the given identity and no functions: the starting point
    /// of a hand-written table.
    pub const fn empty(name: &'static str, version: &'static str) -> Self {
        Self {
            abi_version: ABI_VERSION,
            struct_size: std::mem::size_of::<PluginVTable>(),
            name: Bytes::from_static(name),
            version: Bytes::from_static(version),
            shapes: 0,
            init: None,
            shutdown: None,
            group_open: None,
            group_send: None,
            group_recv: None,
            group_close: None,
            endpoint_open: None,
            endpoint_local_addr: None,
            endpoint_accept: None,
            endpoint_connect: None,
            endpoint_set_denied: None,
            endpoint_close: None,
            conn_peer_identity: None,
            conn_send: None,
            conn_recv: None,
            conn_close: None,
            conn_peer_role: None,
            group_local_addr: None,
            group_send_batch: None,
            group_recv_batch: None,
        }
    }
}
