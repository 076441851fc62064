//! The listing behind `haifu plugins [--json]`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{DirError, error_chain};
use crate::loader::{PluginSet, load_dir};

/// One file of the plugins folder: a loaded plugin or the reason it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginEntry {
    /// The library file.
    pub path: PathBuf,
    /// `"ok"` or `"error"`.
    pub status: &'static str,
    /// Declared name, when the table could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Declared version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The table's ABI version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abi_version: Option<u32>,
    /// Offered shapes: `datagram`, `stream`.
    pub shapes: Vec<&'static str>,
    /// Why the file failed, with the whole `source()` chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every candidate file of a plugins folder, in file-name order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginListing {
    /// The folder.
    pub dir: PathBuf,
    /// The host's ABI version.
    pub host_abi_version: u32,
    /// One entry per candidate file.
    pub plugins: Vec<PluginEntry>,
}

impl PluginListing {
    /// Builds the listing of an already-loaded set.
    pub fn from_set(set: &PluginSet) -> Self {
        let mut plugins: Vec<PluginEntry> = set
            .loaded
            .iter()
            .map(|p| {
                let i = p.info();
                PluginEntry {
                    path: i.path.clone(),
                    status: "ok",
                    name: Some(i.name.clone()),
                    version: Some(i.version.clone()),
                    abi_version: Some(i.abi_version),
                    shapes: i.shapes.names(),
                    error: None,
                }
            })
            .chain(set.failed.iter().map(|e| {
                let (name, abi_version) = match e {
                    crate::LoadError::AbiMismatch { plugin, .. } => (None, Some(*plugin)),
                    crate::LoadError::Init { name, .. }
                    | crate::LoadError::Duplicate { name, .. } => {
                        (Some(name.clone()), Some(haifu_transport_abi::ABI_VERSION))
                    }
                    _ => (None, None),
                };
                PluginEntry {
                    path: e.path().to_path_buf(),
                    status: "error",
                    name,
                    version: None,
                    abi_version,
                    shapes: Vec::new(),
                    error: Some(error_chain(e)),
                }
            }))
            .collect();
        plugins.sort_by(|a, b| a.path.cmp(&b.path));
        Self {
            dir: set.dir.clone(),
            host_abi_version: haifu_transport_abi::ABI_VERSION,
            plugins,
        }
    }

    /// True when at least one file failed.
    pub fn has_errors(&self) -> bool {
        self.plugins.iter().any(|p| p.error.is_some())
    }

    /// A table for people: one line per file.
    ///
    /// ```text
    /// NAME       VERSION  ABI  SHAPES    PATH
    /// multicast  0.1.0    1    datagram  /opt/haifu/libhaifu_transport_multicast.so
    /// -          -        2    -         /opt/haifu/libold.so: plugin ABI 2, host ABI 1
    /// ```
    pub fn to_table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .plugins
            .iter()
            .map(|p| {
                let path = match &p.error {
                    Some(e) => e.clone(),
                    None => p.path.display().to_string(),
                };
                [
                    p.name.clone().unwrap_or_else(|| "-".into()),
                    p.version.clone().unwrap_or_else(|| "-".into()),
                    p.abi_version.map_or_else(|| "-".into(), |v| v.to_string()),
                    if p.shapes.is_empty() {
                        "-".into()
                    } else {
                        p.shapes.join(",")
                    },
                    path,
                ]
            })
            .collect();
        let header = ["NAME", "VERSION", "ABI", "SHAPES", "PATH OR ERROR"];
        let mut width = header.map(str::len);
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r.iter()).take(4) {
                *w = (*w).max(c.len());
            }
        }
        let mut out = String::new();
        let mut line = |cells: [&str; 5]| {
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                w0 = width[0],
                w1 = width[1],
                w2 = width[2],
                w3 = width[3],
            );
        };
        line(header);
        for r in &rows {
            line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
        }
        if rows.is_empty() {
            let _ = writeln!(
                out,
                "(no plugin files in {}; plugin N is the file {})",
                self.dir.display(),
                crate::loader::plugin_file_name("N")
            );
        }
        out
    }
}

/// Loads every plugin file of `dir` (files named by the naming rule only)
/// and lists them: what `haifu plugins` prints. Errors if the folder cannot
/// be read or is not trusted; a bad or refused file is an entry with
/// `status: "error"` and the reason.
pub fn list_plugins(dir: &Path) -> Result<PluginListing, DirError> {
    Ok(PluginListing::from_set(&load_dir(dir)?))
}
