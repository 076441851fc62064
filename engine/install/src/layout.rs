//! The on-disk layout: names of things under the root, the durable
//! primitives (fsync of files and folders, atomic symlink switch) and reading
//! a version folder back.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use haifu_core::{Digest, Manifest};

use crate::error::{InstallError, IoContext, Result};

/// Folder of complete versions.
pub(crate) const VERSIONS: &str = "versions";
/// Folder of in-progress files; emptied on open.
pub(crate) const STAGING: &str = "staging";
/// The link to the running version.
pub(crate) const CURRENT: &str = "current";
/// The link to the version kept for rollback.
pub(crate) const PREVIOUS: &str = "previous";
/// The artifact's file name inside a version folder.
pub(crate) const ARTIFACT: &str = "artifact";
/// The manifest's file name inside a version folder.
pub(crate) const MANIFEST: &str = "manifest.json";
/// Hex characters of the digest in a version folder's name.
const DIGEST_PREFIX: usize = 16;

/// A version as found on disk: what `current` or `previous` points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// Artifact name, from the manifest.
    pub name: String,
    /// Version, from the manifest.
    pub version: String,
    /// sha3-256 of the artifact, from the manifest.
    pub digest: Digest,
    /// The version folder, `<root>/versions/<name>-<version>-<digest prefix>`.
    pub dir: PathBuf,
    /// The artifact file inside it.
    pub path: PathBuf,
    /// The manifest as the master signed it (verified when installed).
    pub manifest: Manifest,
}

/// The folder name of a version: `<name>-<version>-<first 16 hex of sha3>`.
/// Name and version are validated by [`Manifest::verify`] to hold only
/// characters safe in a file name.
pub(crate) fn version_dir_name(manifest: &Manifest) -> String {
    let hex = manifest.body.sha3_256.to_hex();
    format!(
        "{}-{}-{}",
        manifest.body.name,
        manifest.body.version,
        &hex[..DIGEST_PREFIX]
    )
}

/// Makes the entries of folder `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .at(dir, "sync folder")
}

/// Creates `dir` if missing; refuses a non-folder in its place.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(InstallError::Corrupt {
            path: dir.to_owned(),
            reason: "expected a folder, found something else".into(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(dir).at(dir, "create folder")
        }
        Err(e) => Err(e).at(dir, "inspect"),
    }
}

/// Removes a file, link or folder tree at `path`; missing is fine.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at(path, "inspect"),
    };
    let res = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match res {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other.at(path, "remove"),
    }
}

/// What a link under the root holds.
#[derive(Debug)]
pub(crate) enum Link {
    /// No such entry.
    Missing,
    /// A symlink whose target is a readable, consistent version folder.
    Valid(Box<Installed>),
    /// A symlink to something that is not a usable version (dangling, no
    /// manifest, bad manifest, wrong size); the reason says which.
    Broken(String),
}

/// Reads the link `root/<name>`. A non-symlink in its place is an error,
/// since removing it could destroy someone's data.
pub(crate) fn read_link(root: &Path, name: &str) -> Result<Link> {
    let link = root.join(name);
    let target = match fs::symlink_metadata(&link) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Link::Missing),
        Err(e) => return Err(e).at(&link, "inspect"),
        Ok(m) if !m.file_type().is_symlink() => {
            return Err(InstallError::Corrupt {
                path: link,
                reason: "expected a symlink to a version folder, found something else".into(),
            });
        }
        Ok(_) => fs::read_link(&link).at(&link, "read symlink")?,
    };
    let dir = root.join(&target);
    match read_version(&dir) {
        Ok(v) => Ok(Link::Valid(Box::new(v))),
        Err(reason) => Ok(Link::Broken(format!(
            "points at {}, which {reason}",
            target.display()
        ))),
    }
}

/// Why a version folder is not a usable version; reads after the folder's
/// name ("versions/x, which is not a folder").
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotAVersion {
    /// The folder cannot be read.
    #[error("cannot be read: {0}")]
    Unreadable(#[source] std::io::Error),
    /// A file or link where a folder should be.
    #[error("is not a folder")]
    NotAFolder,
    /// Its manifest is missing or unreadable.
    #[error("has no readable {}: {}", MANIFEST, .0)]
    NoManifest(#[source] std::io::Error),
    /// Its manifest does not parse.
    #[error("has a bad {}: {}", MANIFEST, .0)]
    BadManifest(#[source] haifu_core::ManifestError),
    /// The manifest is for another version than the folder's name.
    #[error("holds a manifest for {0}")]
    OtherVersion(String),
    /// The artifact is missing or unreadable.
    #[error("has no readable {}: {}", ARTIFACT, .0)]
    NoArtifact(#[source] std::io::Error),
    /// The artifact is not the manifest's size.
    #[error(
        "has an {} of {size} bytes where the manifest says {expected}",
        ARTIFACT
    )]
    WrongSize {
        /// Its size on disk.
        size: u64,
        /// The manifest's.
        expected: u64,
    },
}

/// Reads a version folder; `Err` says why it is not a usable version.
pub(crate) fn read_version(dir: &Path) -> std::result::Result<Installed, NotAVersion> {
    let meta = fs::symlink_metadata(dir).map_err(NotAVersion::Unreadable)?;
    if !meta.is_dir() {
        return Err(NotAVersion::NotAFolder);
    }
    let manifest_path = dir.join(MANIFEST);
    let bytes = fs::read(&manifest_path).map_err(NotAVersion::NoManifest)?;
    let manifest = Manifest::from_json(&bytes).map_err(NotAVersion::BadManifest)?;
    let expected_name = version_dir_name(&manifest);
    if dir.file_name().and_then(|n| n.to_str()) != Some(expected_name.as_str()) {
        return Err(NotAVersion::OtherVersion(expected_name));
    }
    let path = dir.join(ARTIFACT);
    let size = fs::symlink_metadata(&path)
        .map_err(NotAVersion::NoArtifact)?
        .len();
    if size != manifest.body.size {
        return Err(NotAVersion::WrongSize {
            size,
            expected: manifest.body.size,
        });
    }
    Ok(Installed {
        name: manifest.body.name.clone(),
        version: manifest.body.version.clone(),
        digest: manifest.body.sha3_256,
        dir: dir.to_owned(),
        path,
        manifest,
    })
}

/// Points `root/<name>` at `versions/<dir_name>` atomically: a new symlink
/// under `<name>.tmp`, renamed over `<name>`, then the root folder synced.
/// A crash leaves either the old link or the new one, plus at most a stray
/// `<name>.tmp` that [`crate::InstallRoot::open`] removes.
pub(crate) fn switch_link(root: &Path, name: &str, dir_name: &str) -> Result<()> {
    let tmp = root.join(format!("{name}.tmp"));
    remove_any(&tmp)?;
    let target = Path::new(VERSIONS).join(dir_name);
    std::os::unix::fs::symlink(&target, &tmp).at(&tmp, "create symlink")?;
    let link = root.join(name);
    fs::rename(&tmp, &link).at(&link, "replace symlink")?;
    sync_dir(root)
}

/// The folder name a link's valid target has.
pub(crate) fn dir_name_of(v: &Installed) -> Option<String> {
    v.dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
}
