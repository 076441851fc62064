//! Finding, loading and checking plugin libraries. Together with the call
//! wrappers in `datagram.rs` and `stream.rs`, this is the only `unsafe` in
//! the engine.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use haifu_transport_abi::{
    ABI_VERSION, ENTRY_SYMBOL, ENTRY_SYMBOL_NAME, EntryFn, ErrorBuf, Handle, PluginVTable,
    SHAPE_DATAGRAM, SHAPE_STREAM, SHAPES_KNOWN, Status, status,
};
use libloading::Library;

use crate::error::{DirError, ErrorKind, LoadError, TableFault, TransportError};
use crate::probe::Stage;
use crate::trust::Refusal;

/// The environment variable naming the plugins folder.
pub const PLUGINS_ENV: &str = "HAIFU_PLUGINS";

/// Libraries are never unloaded: a plugin's threads may outlive its last
/// object by a moment, and code from an unmapped library must never run.
/// Keeping them here for the life of the process makes that structural.
fn registry() -> &'static Mutex<Vec<Arc<Library>>> {
    static LIBS: OnceLock<Mutex<Vec<Arc<Library>>>> = OnceLock::new();
    LIBS.get_or_init(|| Mutex::new(Vec::new()))
}

/// The shapes a plugin offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shapes {
    /// Datagram groups.
    pub datagram: bool,
    /// Peer streams.
    pub stream: bool,
}

impl Shapes {
    fn from_bits(bits: u32) -> Self {
        Self {
            datagram: bits & SHAPE_DATAGRAM != 0,
            stream: bits & SHAPE_STREAM != 0,
        }
    }

    /// The shape names: `datagram`, `stream`.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.datagram {
            v.push("datagram");
        }
        if self.stream {
            v.push("stream");
        }
        v
    }
}

/// What the loader learnt about a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Declared name, e.g. `quic`.
    pub name: String,
    /// Declared version.
    pub version: String,
    /// The table's ABI version (equal to the host's once loaded).
    pub abi_version: u32,
    /// Offered shapes.
    pub shapes: Shapes,
    /// The library file.
    pub path: PathBuf,
}

pub(crate) struct PluginInner {
    pub(crate) vt: &'static PluginVTable,
    pub(crate) instance: Handle,
    pub(crate) info: PluginInfo,
    _lib: Arc<Library>,
}

// SAFETY: the spec requires a plugin instance handle to be usable from any
// thread; the table is immutable static data.
unsafe impl Send for PluginInner {}
// SAFETY: as above.
unsafe impl Sync for PluginInner {}

impl Drop for PluginInner {
    fn drop(&mut self) {
        // Every group, endpoint and connection holds a `Plugin`, so this runs
        // after all of them are closed, as the spec requires.
        if let Some(shutdown) = self.vt.shutdown {
            // SAFETY: the instance is live and all its objects are closed.
            unsafe { shutdown(self.instance) };
        }
    }
}

impl std::fmt::Debug for PluginInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("info", &self.info).finish()
    }
}

/// A loaded, initialised plugin. Cheap to clone; the instance is shut down
/// when the last clone and the last object opened through it are dropped.
/// The library itself stays mapped for the life of the process.
///
/// Method families: [`info`](Self::info) for identity;
/// [`open_group`](Self::open_group) for the datagram shape;
/// [`open_endpoint`](Self::open_endpoint) for the stream shape;
/// [`with_config`](Self::with_config) for the operator's section.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<PluginInner>,
    /// The operator's `key=value` pairs, added after the engine's to every
    /// `*_open` through this handle.
    operator: Arc<[(String, String)]>,
}

/// The key of each `key=value` line of `config` (blank and `#` lines
/// skipped).
fn config_keys(config: &str) -> impl Iterator<Item = &str> {
    config.lines().filter_map(|l| {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            return None;
        }
        Some(l.split_once('=').map_or(l, |(k, _)| k).trim())
    })
}

impl Plugin {
    /// The same plugin, adding the operator's pairs (a daemon config's
    /// section for it) after the engine's keys in every `group_open` and
    /// `endpoint_open`. A pair whose key the engine also sets in a call
    /// makes that call fail with `InvalidArgument` naming the key, before
    /// the plugin sees it; a key or value holding a newline or `=` in the
    /// key is refused the same way.
    #[must_use]
    pub fn with_config(&self, pairs: Vec<(String, String)>) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            operator: pairs.into(),
        }
    }

    /// The operator's pairs given to [`with_config`](Self::with_config).
    pub fn operator_config(&self) -> &[(String, String)] {
        &self.operator
    }

    /// `config` followed by the operator's pairs, or why they clash.
    fn merged(&self, op: &'static str, config: &str) -> Result<String, TransportError> {
        if self.operator.is_empty() {
            return Ok(config.to_owned());
        }
        let mut out = config.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        for (k, v) in self.operator.iter() {
            if k.trim().is_empty() || k.contains(['\n', '\r', '=']) || v.contains(['\n', '\r']) {
                return Err(self.error(
                    op,
                    ErrorKind::InvalidArgument,
                    format!("operator key {k:?}: keys and values are one line, keys hold no '='"),
                ));
            }
            if config_keys(config).any(|e| e == k.trim()) {
                return Err(self.error(
                    op,
                    ErrorKind::InvalidArgument,
                    format!("operator key {k:?} is one the engine sets for this call"),
                ));
            }
            out.push_str(&format!("{}={}\n", k.trim(), v.trim()));
        }
        Ok(out)
    }

    /// Name, version, ABI version, shapes and path.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// The declared name.
    pub fn name(&self) -> &str {
        &self.inner.info.name
    }

    /// Calls into the plugin with a fresh error buffer and converts the
    /// status.
    pub(crate) fn call(
        &self,
        op: &'static str,
        f: impl FnOnce(*mut ErrorBuf) -> Status,
    ) -> Result<(), TransportError> {
        let mut storage = [0u8; 512];
        let mut eb = ErrorBuf {
            ptr: storage.as_mut_ptr(),
            cap: storage.len(),
            len: 0,
        };
        let st = f(&mut eb);
        if st == status::OK {
            return Ok(());
        }
        let message =
            plugin_message(&storage, eb.len).unwrap_or_else(|| status::name(st).to_owned());
        Err(self.error(op, ErrorKind::from_status(st), message))
    }

    pub(crate) fn error(
        &self,
        op: &'static str,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> TransportError {
        TransportError {
            plugin: self.inner.info.name.clone(),
            op,
            kind,
            message: message.into(),
        }
    }

    /// Calls an `*_open` entry point with `config` and returns the new
    /// object's handle, refusing a success that comes with a null handle.
    pub(crate) fn open_handle(
        &self,
        op: &'static str,
        f: Option<haifu_transport_abi::raw::OpenFn>,
        config: &str,
    ) -> Result<Handle, TransportError> {
        let open = self.func(op, f)?;
        let config = self.merged(op, config)?;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: live instance; config and out pointers valid for the call.
        self.call(op, |err| unsafe {
            open(
                self.inner.instance,
                config.as_ptr(),
                config.len(),
                &mut handle,
                err,
            )
        })?;
        if handle.is_null() {
            return Err(self.error(
                op,
                ErrorKind::Internal,
                "plugin returned success but a null handle",
            ));
        }
        Ok(handle)
    }

    /// The function pointer of `op`, or an "unsupported" error when the
    /// plugin does not offer the shape.
    pub(crate) fn func<F: Copy>(
        &self,
        op: &'static str,
        f: Option<F>,
    ) -> Result<F, TransportError> {
        f.ok_or_else(|| {
            self.error(
                op,
                ErrorKind::Unsupported,
                "the plugin does not offer this shape",
            )
        })
    }
}

/// The message a plugin wrote into an error buffer over `storage`, with
/// the length it claims: `None` when it wrote none or claims more than the
/// buffer holds (nothing it wrote is then trusted). Invalid UTF-8 is
/// replaced, control characters (a newline, an escape) become spaces, so
/// the message stays one printable line.
pub(crate) fn plugin_message(storage: &[u8], claimed: usize) -> Option<String> {
    let bytes = storage.get(..claimed)?;
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// An error raised by the host itself rather than a plugin.
pub(crate) fn host_error(message: &str) -> TransportError {
    TransportError {
        plugin: String::new(),
        op: "host",
        kind: ErrorKind::Internal,
        message: message.to_owned(),
    }
}

/// Reads a `Bytes` field of a table as UTF-8.
///
/// # Safety
/// `b.ptr` is valid for `b.len` bytes (a plugin's static string).
unsafe fn table_str(
    b: haifu_transport_abi::Bytes,
    field: &'static str,
) -> Result<String, TableFault> {
    const LIMIT: usize = 256;
    if b.len == 0 {
        return Ok(String::new());
    }
    if b.ptr.is_null() {
        return Err(TableFault::NullString { field });
    }
    if b.len > LIMIT {
        return Err(TableFault::LongString {
            field,
            len: b.len,
            limit: LIMIT,
        });
    }
    // SAFETY: by the caller's contract.
    let bytes = unsafe { std::slice::from_raw_parts(b.ptr, b.len) };
    String::from_utf8(bytes.to_vec()).map_err(|_| TableFault::NotUtf8 { field })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// Checks everything in the table except the version and size, which the
/// caller checked before the table could be read as a whole.
fn check_table(vt: &PluginVTable) -> Result<(String, String, Shapes), TableFault> {
    // SAFETY: name and version point at the plugin's static strings.
    let name = unsafe { table_str(vt.name, "name") }?;
    // SAFETY: as above.
    let version = unsafe { table_str(vt.version, "version") }?;
    if !valid_name(&name) {
        return Err(TableFault::BadName(name));
    }
    if vt.shapes & !SHAPES_KNOWN != 0 {
        return Err(TableFault::UnknownShapes(vt.shapes & !SHAPES_KNOWN));
    }
    if vt.shapes == 0 {
        return Err(TableFault::NoShape);
    }
    let mut missing = Vec::new();
    let mut need = |present: bool, f: &'static str| {
        if !present {
            missing.push(f);
        }
    };
    need(vt.init.is_some(), "init");
    need(vt.shutdown.is_some(), "shutdown");
    if vt.shapes & SHAPE_DATAGRAM != 0 {
        need(vt.group_open.is_some(), "group_open");
        need(vt.group_send.is_some(), "group_send");
        need(vt.group_recv.is_some(), "group_recv");
        need(vt.group_close.is_some(), "group_close");
    }
    if vt.shapes & SHAPE_STREAM != 0 {
        need(vt.endpoint_open.is_some(), "endpoint_open");
        need(vt.endpoint_local_addr.is_some(), "endpoint_local_addr");
        need(vt.endpoint_accept.is_some(), "endpoint_accept");
        need(vt.endpoint_connect.is_some(), "endpoint_connect");
        need(vt.endpoint_set_denied.is_some(), "endpoint_set_denied");
        need(vt.endpoint_close.is_some(), "endpoint_close");
        need(vt.conn_peer_identity.is_some(), "conn_peer_identity");
        need(vt.conn_send.is_some(), "conn_send");
        need(vt.conn_recv.is_some(), "conn_recv");
        need(vt.conn_close.is_some(), "conn_close");
    }
    if !missing.is_empty() {
        return Err(TableFault::MissingFunctions(missing));
    }
    Ok((name, version, Shapes::from_bits(vt.shapes)))
}

/// What the file of plugin `name` is called: the cargo cdylib name of
/// `haifu-transport-<name>`, i.e. `libhaifu_transport_<name>.so` on Linux
/// (`-` in the name becomes `_`; `.dylib` on macOS). The one naming rule:
/// daemons open exactly these files, and `haifu plugins` lists only files
/// named this way.
pub fn plugin_file_name(name: &str) -> String {
    format!(
        "{}{FILE_STEM_PREFIX}{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// Every plugin file's stem starts with this, after the platform's prefix.
const FILE_STEM_PREFIX: &str = "haifu_transport_";

/// The plugin name part of a file name that follows [`plugin_file_name`]
/// (`quic` for `libhaifu_transport_quic.so`, `init_fails` for
/// `libhaifu_transport_init_fails.so`); `None` for any other name.
pub fn plugin_name_of_file(file_name: &str) -> Option<&str> {
    let name = file_name
        .strip_prefix(std::env::consts::DLL_PREFIX)?
        .strip_prefix(FILE_STEM_PREFIX)?
        .strip_suffix(std::env::consts::DLL_SUFFIX)?;
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    ok.then_some(name)
}

/// Loads one plugin file, checks its table and initialises it with an
/// empty configuration.
///
/// The file and its folder (and a link's target and its folder) must first
/// pass the ownership and mode checks (see [`Untrusted`](crate::Untrusted));
/// a file that fails is never opened. The file name is not checked:
/// this is the loader for a path the caller chose; [`load_named`] and
/// [`load_dir`] apply the naming rule.
///
/// Never panics and never crashes on a bad file that follows the C calling
/// convention: every failure is a [`LoadError`] naming the file. (A library
/// whose load-time constructors crash, or whose entry function is not what
/// the symbol claims, cannot be defended against in-process.)
pub fn load(path: &Path) -> Result<Plugin, LoadError> {
    load_expecting(path, None)
}

/// [`load`], refusing (before `init`) a plugin whose declared name, with
/// `-` as `_`, is not `expected`; probed first in a child process when a
/// [`Prober`](crate::probe::Prober) is registered.
fn load_expecting(path: &Path, expected: Option<&str>) -> Result<Plugin, LoadError> {
    let real = check_and_probe(path)?;
    load_real(path, &real, expected, &mut |_| {})
}

/// The trust checks of a plugin file and its folder: the file to load
/// (a link's checked target), or why it must not be opened.
pub(crate) fn trusted(path: &Path) -> Result<PathBuf, LoadError> {
    let refused = |r| match r {
        Refusal::Io(source) => LoadError::Stat {
            path: path.to_path_buf(),
            source,
        },
        Refusal::Untrusted(reason) => LoadError::Untrusted {
            path: path.to_path_buf(),
            reason,
        },
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::trust::check_dir(dir).map_err(refused)?;
    }
    crate::trust::check_file(path).map_err(refused)
}

/// The trust checks of `path`, then the probe in a child process if a
/// prober is registered: the file to load, or why it must not be opened.
fn check_and_probe(path: &Path) -> Result<PathBuf, LoadError> {
    let real = trusted(path)?;
    if let Some(prober) = crate::probe::prober() {
        prober
            .probe(path)
            .map(drop)
            .map_err(|fault| LoadError::Probe {
                path: path.to_path_buf(),
                fault,
            })?;
    }
    Ok(real)
}

/// What the probe child runs: the trust checks and the load, announcing
/// each stage through `stage` before entering it; never probes.
pub(crate) fn load_staged(
    path: &Path,
    expected: Option<&str>,
    stage: &mut dyn FnMut(Stage),
) -> Result<Plugin, LoadError> {
    let real = trusted(path)?;
    load_real(path, &real, expected, stage)
}

/// Opens `real` (the checked target of `path`), reads its table and
/// initialises it.
fn load_real(
    path: &Path,
    real: &Path,
    expected: Option<&str>,
    stage: &mut dyn FnMut(Stage),
) -> Result<Plugin, LoadError> {
    let path = path.to_path_buf();
    stage(Stage::Open);
    // SAFETY: loading a library runs its initialisers. The file and its
    // folder are writable only by root or this user (checked just above),
    // so its code is the operator's own.
    let lib = unsafe { Library::new(real) }.map_err(|source| LoadError::Open {
        path: path.clone(),
        source,
    })?;
    // SAFETY: the symbol's type is fixed by the ABI.
    let entry: EntryFn = unsafe { lib.get::<EntryFn>(ENTRY_SYMBOL) }
        .map(|s| *s)
        .map_err(|source| LoadError::Symbol {
            path: path.clone(),
            symbol: ENTRY_SYMBOL_NAME,
            source,
        })?;
    let lib = Arc::new(lib);
    if let Ok(mut libs) = registry().lock() {
        libs.push(Arc::clone(&lib));
    }

    stage(Stage::Entry);
    let ptr = entry();
    stage(Stage::Table);
    if ptr.is_null() {
        return Err(LoadError::BadPointer {
            path,
            what: "a null",
        });
    }
    if ptr
        .cast::<u8>()
        .align_offset(std::mem::align_of::<PluginVTable>())
        != 0
    {
        return Err(LoadError::BadPointer {
            path,
            what: "a misaligned",
        });
    }
    // Every ABI version begins with `abi_version: u32` then `struct_size:
    // usize`, so these two reads are valid whatever version the plugin has.
    // SAFETY: non-null, aligned, and the plugin promises a static table.
    let abi_version = unsafe { ptr.cast::<u32>().read() };
    if abi_version != ABI_VERSION {
        return Err(LoadError::AbiMismatch {
            path,
            plugin: abi_version,
            host: ABI_VERSION,
        });
    }
    // SAFETY: as above; `struct_size` sits at offset `size_of::<usize>()`.
    let struct_size = unsafe {
        ptr.cast::<u8>()
            .add(std::mem::size_of::<usize>())
            .cast::<usize>()
            .read()
    };
    // A table from an older build of ABI 1 may lack the fields appended
    // since; it is copied into a zeroed table of the host's size, so those
    // read as null (absent) and nothing beyond the plugin's table is read.
    let need = haifu_transport_abi::BASE_TABLE_SIZE;
    if struct_size < need {
        return Err(LoadError::TableTooSmall {
            path,
            plugin: struct_size,
            host: need,
        });
    }
    let known = struct_size.min(std::mem::size_of::<PluginVTable>());
    // SAFETY: all-zero bytes are a valid table (null pointers, `None`
    // functions, zero integers).
    let mut copy: Box<PluginVTable> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: the plugin promises `struct_size` readable bytes of a static
    // table; we read at most that many and at most our table's size.
    unsafe {
        std::ptr::copy_nonoverlapping(
            ptr.cast::<u8>(),
            std::ptr::from_mut::<PluginVTable>(&mut copy).cast::<u8>(),
            known,
        );
    }
    // Plugins are never unloaded, so neither is their table.
    let vt: &'static PluginVTable = Box::leak(copy);
    let (name, version, shapes) = check_table(vt).map_err(|reason| LoadError::BadTable {
        path: path.clone(),
        reason,
    })?;
    if let Some(expected) = expected
        && name.replace('-', "_") != expected
    {
        return Err(LoadError::NameMismatch {
            path,
            declared: name,
            expected: expected.to_owned(),
        });
    }

    stage(Stage::Init);
    let mut storage = [0u8; 1024];
    let mut eb = ErrorBuf {
        ptr: storage.as_mut_ptr(),
        cap: storage.len(),
        len: 0,
    };
    let mut instance: Handle = std::ptr::null_mut::<c_void>();
    let st = match vt.init {
        // SAFETY: empty configuration; out pointers valid for the call.
        Some(init) => unsafe { init(std::ptr::null(), 0, &mut instance, &mut eb) },
        None => status::INTERNAL,
    };
    if st != status::OK || instance.is_null() {
        let message = plugin_message(&storage, eb.len).unwrap_or_else(|| {
            if st == status::OK {
                "init returned success but no instance".to_owned()
            } else {
                format!("init returned status {st} ({})", status::name(st))
            }
        });
        return Err(LoadError::Init {
            path,
            name,
            status: st,
            message,
        });
    }
    tracing::debug!(plugin = %name, version = %version, path = %path.display(), "transport plugin loaded");
    Ok(Plugin {
        operator: Arc::new([]),
        inner: Arc::new(PluginInner {
            vt,
            instance,
            info: PluginInfo {
                name,
                version,
                abi_version,
                shapes,
                path,
            },
            _lib: lib,
        }),
    })
}

/// The plugins of one folder: those that loaded, and the files that did not.
#[derive(Debug, Default)]
pub struct PluginSet {
    /// The folder that was scanned.
    pub dir: PathBuf,
    /// Loaded plugins, in file-name order.
    pub loaded: Vec<Plugin>,
    /// Files that failed, in file-name order.
    pub failed: Vec<LoadError>,
}

impl PluginSet {
    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.loaded.iter().find(|p| p.name() == name)
    }
}

/// The candidate plugin files of a folder: the entries whose names follow
/// [`plugin_file_name`], sorted. Other files (other libraries, build
/// leftovers, a README) are not candidates and are never opened. Whether a
/// candidate is a regular file is checked when it is loaded, so a folder
/// or FIFO under a plugin's name is reported, not skipped.
pub fn candidates(dir: &Path) -> Result<Vec<PathBuf>, DirError> {
    let err = |source| DirError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let named = entry
            .file_name()
            .to_str()
            .and_then(plugin_name_of_file)
            .is_some();
        if named {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Refuses a plugins folder that someone other than root or this user
/// could write to.
pub(crate) fn check_folder(dir: &Path) -> Result<(), DirError> {
    crate::trust::check_dir(dir).map_err(|r| match r {
        Refusal::Io(source) => DirError::Read {
            path: dir.to_path_buf(),
            source,
        },
        Refusal::Untrusted(reason) => DirError::Untrusted {
            path: dir.to_path_buf(),
            reason,
        },
    })
}

/// Loads every candidate file of `dir` (what `haifu plugins` lists). A bad
/// file never stops the others; the result lists both. Errors if the folder
/// cannot be read or is not trusted.
pub fn load_dir(dir: &Path) -> Result<PluginSet, DirError> {
    check_folder(dir)?;
    let mut set = PluginSet {
        dir: dir.to_path_buf(),
        ..PluginSet::default()
    };
    let files = candidates(dir)?
        .into_iter()
        .map(|path| {
            let expected = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(plugin_name_of_file)
                .map(str::to_owned);
            (path, expected)
        })
        .collect();
    for (path, loaded) in load_many(files) {
        set.add(path, loaded);
    }
    Ok(set)
}

/// Loads `(file, expected name)` pairs in order. The trust checks and the
/// probes run side by side, so several hanging plugins cost one time limit,
/// not one each; the loads themselves run one after the other.
fn load_many(files: Vec<(PathBuf, Option<String>)>) -> Vec<(PathBuf, Result<Plugin, LoadError>)> {
    let checked: Vec<Result<PathBuf, LoadError>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|(path, _)| s.spawn(|| check_and_probe(path)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    files
        .into_iter()
        .zip(checked)
        .map(|((path, expected), real)| {
            let loaded =
                real.and_then(|real| load_real(&path, &real, expected.as_deref(), &mut |_| {}));
            (path, loaded)
        })
        .collect()
}

/// Loads the plugins `names` from `dir`, each from its
/// [`plugin_file_name`] and nothing else: what a daemon does. A name whose
/// file is missing is simply absent from the set; one whose file fails is
/// in [`PluginSet::failed`]. Errors if the folder is not trusted.
pub fn load_named(dir: &Path, names: &[&str]) -> Result<PluginSet, DirError> {
    check_folder(dir)?;
    let mut set = PluginSet {
        dir: dir.to_path_buf(),
        ..PluginSet::default()
    };
    let mut files = Vec::new();
    for name in names {
        let file = plugin_file_name(name);
        // A name outside the rule (a '/', say) names no plugin file; it
        // must never become a path elsewhere.
        if plugin_name_of_file(&file).is_none() {
            continue;
        }
        let path = dir.join(file);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        files.push((path, Some(name.replace('-', "_"))));
    }
    for (path, loaded) in load_many(files) {
        set.add(path, loaded);
    }
    Ok(set)
}

impl PluginSet {
    fn add(&mut self, path: PathBuf, loaded: Result<Plugin, LoadError>) {
        match loaded {
            Ok(p) => {
                if let Some(first) = self.get(p.name()).map(|f| f.info().path.clone()) {
                    self.failed.push(LoadError::Duplicate {
                        path,
                        name: p.name().to_owned(),
                        first,
                    });
                } else {
                    self.loaded.push(p);
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "transport plugin not loaded");
                self.failed.push(e);
            }
        }
    }

    /// Why the file of plugin `name` failed, if it did.
    pub fn failure_of(&self, name: &str) -> Option<&LoadError> {
        let file = plugin_file_name(name);
        self.failed
            .iter()
            .find(|e| e.path().file_name().and_then(|n| n.to_str()) == Some(file.as_str()))
    }
}

/// The plugins folder: `cli` if given, else `$HAIFU_PLUGINS` if set and
/// non-empty, else [`installed_plugin_dir`] of the running binary.
pub fn plugin_dir(cli: Option<&Path>) -> PathBuf {
    if let Some(dir) = cli {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os(PLUGINS_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .map(|exe| installed_plugin_dir(&exe))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the plugins of the binary `exe` are: `lib/haifu/plugins` under its
/// prefix when that folder exists (`/usr/lib/haifu/plugins` for
/// `/usr/bin/haifu`, as the .deb installs them), else the binary's own
/// folder (where `cargo build` puts the plugin libraries beside `haifu`).
pub fn installed_plugin_dir(exe: &Path) -> PathBuf {
    let bin = exe.parent().unwrap_or(Path::new("."));
    match bin.parent() {
        Some(prefix) if prefix.join(INSTALLED_PLUGINS).is_dir() => prefix.join(INSTALLED_PLUGINS),
        _ => bin.to_path_buf(),
    }
}

/// The plugins folder under an installation prefix.
const INSTALLED_PLUGINS: &str = "lib/haifu/plugins";

#[cfg(test)]
mod folder {
    use super::*;

    #[test]
    fn an_installed_binary_finds_its_plugins_under_its_prefix() {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("usr/bin/haifu");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        // cargo's layout: nothing under the prefix, the binary's folder.
        assert_eq!(installed_plugin_dir(&exe), d.path().join("usr/bin"));
        // The .deb's: /usr/bin/haifu and /usr/lib/haifu/plugins.
        std::fs::create_dir_all(d.path().join("usr/lib/haifu/plugins")).unwrap();
        assert_eq!(
            installed_plugin_dir(&exe),
            d.path().join("usr/lib/haifu/plugins")
        );
    }
}
