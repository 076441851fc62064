//! Errors of the loader and of calls into a plugin.

use std::fmt::Write as _;
use std::path::PathBuf;

use haifu_transport_abi::{Status, status};

/// Why one plugin file did not load. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `dlopen` failed: not a library, wrong architecture, missing
    /// dependency, unreadable. The detail is in `source()`.
    #[error("{}: cannot load as a library", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// libloading's error; its own `source()` holds the `dlerror` text.
        #[source]
        source: libloading::Error,
    },
    /// The library does not export the entry symbol.
    #[error("{}: does not export {symbol}", path.display())]
    Symbol {
        /// The file.
        path: PathBuf,
        /// The symbol looked for.
        symbol: &'static str,
        /// libloading's error.
        #[source]
        source: libloading::Error,
    },
    /// The entry function returned a null or misaligned table.
    #[error("{}: entry symbol returned {what} table pointer", path.display())]
    BadPointer {
        /// The file.
        path: PathBuf,
        /// "a null" or "a misaligned".
        what: &'static str,
    },
    /// The table's ABI version is not the host's.
    #[error("{}: plugin ABI {plugin}, host ABI {host}", path.display())]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's `abi_version`.
        plugin: u32,
        /// The host's [`haifu_transport_abi::ABI_VERSION`].
        host: u32,
    },
    /// The table is smaller than this ABI version's table.
    #[error("{}: function table is {plugin} bytes, host ABI needs at least {host}", path.display())]
    TableTooSmall {
        /// The file.
        path: PathBuf,
        /// The plugin's `struct_size`.
        plugin: usize,
        /// The smallest table the host accepts (ABI 1 as first released).
        host: usize,
    },
    /// The table breaks a rule of the spec (bad name, missing function).
    #[error("{}: invalid function table: {reason}", path.display())]
    BadTable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: TableFault,
    },
    /// `init` returned an error or panicked.
    #[error("{}: plugin {name:?} failed to initialise: {message}", path.display())]
    Init {
        /// The file.
        path: PathBuf,
        /// The plugin's declared name.
        name: String,
        /// The status code `init` returned.
        status: Status,
        /// The plugin's message.
        message: String,
    },
    /// The file (or its folder, or a link's target) cannot be inspected:
    /// missing, or no permission.
    #[error("{}: cannot read", path.display())]
    Stat {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file, or the folder of a link's target, may be written by
    /// someone other than root or the current user: never opened.
    #[error("{}: refused: {reason}", path.display())]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong with its mode or owner.
        #[source]
        reason: crate::trust::Untrusted,
    },
    /// The plugin declares another name than its file name says
    /// (`libhaifu_transport_<name>.so`); refused before `init` runs.
    #[error("{}: declares plugin name {declared:?}, but the file name is for {expected:?}", path.display())]
    NameMismatch {
        /// The file.
        path: PathBuf,
        /// The name its table declares.
        declared: String,
        /// The name its file name stands for.
        expected: String,
    },
    /// The probe in a child process crashed, exited or hung: the file is
    /// never opened in this process.
    #[error("{}: {fault}", path.display())]
    Probe {
        /// The file.
        path: PathBuf,
        /// What happened to the child.
        fault: crate::probe::ProbeFault,
    },
    /// Another file already provides a plugin of this name.
    #[error("{}: plugin name {name:?} is already taken by {}", path.display(), first.display())]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The name.
        name: String,
        /// The file loaded first.
        first: PathBuf,
    },
}

/// What is wrong with a plugin's function table (see `SPEC.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableFault {
    /// A string field points nowhere although its length is not zero.
    #[error("{field} is a null pointer")]
    NullString {
        /// `name` or `version`.
        field: &'static str,
    },
    /// A string field is longer than the spec allows.
    #[error("{field} is {len} bytes long (limit {limit})")]
    LongString {
        /// `name` or `version`.
        field: &'static str,
        /// Its declared length.
        len: usize,
        /// The most the spec allows.
        limit: usize,
    },
    /// A string field is not UTF-8.
    #[error("{field} is not utf-8")]
    NotUtf8 {
        /// `name` or `version`.
        field: &'static str,
    },
    /// The name breaks the naming rule.
    #[error("name {0:?} must be 1-64 characters of a-z, 0-9, '-' or '_'")]
    BadName(String),
    /// Shape bits this host does not know.
    #[error("unknown shape bits {0:#x}")]
    UnknownShapes(u32),
    /// No shape at all.
    #[error("declares no shape")]
    NoShape,
    /// Functions the declared shapes need are null.
    #[error("declared shapes need functions that are null: {}", .0.join(", "))]
    MissingFunctions(Vec<&'static str>),
}

impl LoadError {
    /// The file this error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Open { path, .. }
            | Self::Symbol { path, .. }
            | Self::BadPointer { path, .. }
            | Self::AbiMismatch { path, .. }
            | Self::TableTooSmall { path, .. }
            | Self::BadTable { path, .. }
            | Self::Init { path, .. }
            | Self::Stat { path, .. }
            | Self::Untrusted { path, .. }
            | Self::NameMismatch { path, .. }
            | Self::Probe { path, .. }
            | Self::Duplicate { path, .. } => path,
        }
    }
}

/// The message of `e` followed by every `source()` in its chain, joined by
/// `": "`, e.g. `x.so: cannot load as a library: dlopen failed: x.so: invalid
/// ELF header`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        // libloading repeats nothing, but avoid printing a level twice.
        if !out.ends_with(&text) {
            let _ = write!(out, ": {text}");
        }
        next = s.source();
    }
    out
}

/// The plugins folder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The folder could not be read.
    #[error("cannot read plugins folder {}", path.display())]
    Read {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Someone other than root or the current user could put a library in
    /// it: nothing in it is loaded.
    #[error("refusing plugins folder {}: {reason}", path.display())]
    Untrusted {
        /// The folder.
        path: PathBuf,
        /// What is wrong with its mode or owner.
        #[source]
        reason: crate::trust::Untrusted,
    },
}

impl DirError {
    /// The folder this error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Read { path, .. } | Self::Untrusted { path, .. } => path,
        }
    }
}

/// The class of a failed plugin call, from the ABI status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// [`status::INTERNAL`].
    Internal,
    /// [`status::INVALID_ARGUMENT`].
    InvalidArgument,
    /// [`status::IO`].
    Io,
    /// [`status::TIMEOUT`].
    Timeout,
    /// [`status::CLOSED`].
    Closed,
    /// [`status::DENIED`].
    Denied,
    /// [`status::TOO_LARGE`].
    TooLarge,
    /// [`status::BUFFER_TOO_SMALL`].
    BufferTooSmall,
    /// [`status::UNSUPPORTED`].
    Unsupported,
    /// [`status::PANIC`]: the plugin panicked; the panic was caught.
    Panic,
    /// A status this host does not know.
    Unknown(i32),
}

impl ErrorKind {
    /// The kind for a non-zero status code.
    pub fn from_status(st: Status) -> Self {
        match st {
            status::INTERNAL => Self::Internal,
            status::INVALID_ARGUMENT => Self::InvalidArgument,
            status::IO => Self::Io,
            status::TIMEOUT => Self::Timeout,
            status::CLOSED => Self::Closed,
            status::DENIED => Self::Denied,
            status::TOO_LARGE => Self::TooLarge,
            status::BUFFER_TOO_SMALL => Self::BufferTooSmall,
            status::UNSUPPORTED => Self::Unsupported,
            status::PANIC => Self::Panic,
            other => Self::Unknown(other),
        }
    }
}

/// A call into a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin:?}: {op}: {message}")]
pub struct TransportError {
    /// The plugin's name.
    pub plugin: String,
    /// The ABI function, e.g. `group_send`.
    pub op: &'static str,
    /// The class of error.
    pub kind: ErrorKind,
    /// The plugin's message (or the host's, for host-side checks).
    pub message: String,
}

impl TransportError {
    /// True for [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }
}
