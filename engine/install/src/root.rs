//! [`InstallRoot`]: the committed states and the moves between them.

use std::fmt;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use haifu_core::Digest;

use crate::error::{InstallError, IoContext, Result};
use crate::layout::{
    self, ARTIFACT, CURRENT, Installed, Link, MANIFEST, PREVIOUS, STAGING, VERSIONS,
};
use crate::post_install::PostInstall;
use crate::staging::{Staging, Verified};

/// A point inside [`InstallRoot::install`] or [`InstallRoot::rollback`],
/// reported to the observer set with [`InstallRoot::on_step`] right after it
/// is durable on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallStep {
    /// The complete version folder is in `versions/` (not yet current).
    VersionWritten,
    /// The post-install command succeeded (or there was none).
    PostInstallDone,
    /// `previous` now points at the version that was current.
    PreviousSwitched,
    /// `current` now points at the new version.
    CurrentSwitched,
    /// Versions other than current and previous were removed.
    Collected,
}

type Observer = Box<dyn Fn(InstallStep) + Send + Sync>;

/// A client's installation folder.
///
/// Layout:
///
/// ```text
/// <root>/versions/<name>-<version>-<16 hex of sha3>/artifact
/// <root>/versions/<name>-<version>-<16 hex of sha3>/manifest.json
/// <root>/current  -> versions/...   the running version
/// <root>/previous -> versions/...   the one before, kept for rollback
/// <root>/staging/                   files being received; emptied on open
/// ```
///
/// Call order: [`InstallRoot::open`] once when the client starts (it repairs
/// whatever a crash left), [`InstallRoot::installed`] to report the version,
/// then for each new version [`InstallRoot::stage`] → write the bytes →
/// [`Staging::verify`] → [`InstallRoot::install`]; only after `install`
/// returns `Ok` may the completion message be sent. [`InstallRoot::rollback`]
/// swaps back; [`InstallRoot::base_for_delta`] names the file a delta
/// applies against.
///
/// One process owns a root at a time (the client daemon); two processes
/// installing into the same root concurrently are not supported.
pub struct InstallRoot {
    root: PathBuf,
    versions: PathBuf,
    staging: PathBuf,
    observer: Option<Observer>,
}

impl fmt::Debug for InstallRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallRoot")
            .field("root", &self.root)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl InstallRoot {
    /// Opens (creating if needed) the install root at `root` and brings it
    /// back to a committed state: empties `staging/`, removes leftover
    /// `current.tmp`/`previous.tmp` links, drops a `previous` that does not
    /// point at a usable version, and if `current` does not point at a
    /// usable version, points it at `previous` when that one is usable
    /// (otherwise removes it, so nothing is reported installed).
    ///
    /// Something this crate never writes, such as a regular file named
    /// `current` or `versions`, is an error rather than deleted.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_owned();
        layout::ensure_dir(&root)?;
        let this = Self {
            versions: root.join(VERSIONS),
            staging: root.join(STAGING),
            root,
            observer: None,
        };
        layout::ensure_dir(&this.versions)?;
        layout::ensure_dir(&this.staging)?;
        this.clean_staging()?;
        for name in [CURRENT, PREVIOUS] {
            layout::remove_any(&this.root.join(format!("{name}.tmp")))?;
        }
        let previous = match layout::read_link(&this.root, PREVIOUS)? {
            Link::Broken(reason) => {
                tracing::warn!(path = %this.root.join(PREVIOUS).display(), "removing previous link: {reason}");
                layout::remove_any(&this.root.join(PREVIOUS))?;
                None
            }
            Link::Valid(v) => Some(v),
            Link::Missing => None,
        };
        if let Link::Broken(reason) = layout::read_link(&this.root, CURRENT)? {
            let link = this.root.join(CURRENT);
            match previous.as_deref().and_then(layout::dir_name_of) {
                Some(prev) => {
                    tracing::warn!(path = %link.display(), "current link {reason}; falling back to previous {prev}");
                    layout::switch_link(&this.root, CURRENT, &prev)?;
                }
                None => {
                    tracing::warn!(path = %link.display(), "removing current link: {reason}; no version is installed");
                    layout::remove_any(&link)?;
                }
            }
        }
        layout::sync_dir(&this.root)?;
        Ok(this)
    }

    /// Calls `observer` after each durable step of an install or rollback
    /// (progress telemetry; tests use it to kill a process at exact points).
    pub fn on_step(&mut self, observer: impl Fn(InstallStep) + Send + Sync + 'static) {
        self.observer = Some(Box::new(observer));
    }

    /// The root folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The version `current` points at, with its manifest; `None` when
    /// nothing is installed. What the client reports on start.
    pub fn installed(&self) -> Result<Option<Installed>> {
        self.link(CURRENT)
    }

    /// The version kept for rollback, if any.
    pub fn previous(&self) -> Result<Option<Installed>> {
        self.link(PREVIOUS)
    }

    /// The installed version's digest and artifact file, the reference a
    /// delta applies against; `None` when nothing is installed.
    pub fn base_for_delta(&self) -> Result<Option<(Digest, PathBuf)>> {
        Ok(self.installed()?.map(|v| (v.digest, v.path)))
    }

    /// Starts receiving an artifact of `expected_len` bytes into a new file
    /// under `staging/`.
    pub fn stage(&self, expected_len: u64) -> Result<Staging> {
        Staging::create(&self.staging, expected_len)
    }

    /// Installs a verified artifact and makes it current.
    ///
    /// In order, each step durable before the next: the artifact and its
    /// `manifest.json` are assembled in `staging/` and synced; the folder is
    /// renamed into `versions/`; the post-install command runs (a failure
    /// stops here, removes the new folder and leaves `current` untouched);
    /// `previous` is pointed at the old current; `current` is switched to the
    /// new version; versions other than current and previous are removed.
    /// A crash at any point leaves the old version current and intact, or
    /// the new one current and complete.
    ///
    /// Installing the version that is already current does nothing and
    /// returns it (the client then says it already has it).
    pub fn install(
        &self,
        verified: Verified,
        post_install: Option<&PostInstall>,
    ) -> Result<Installed> {
        let dir_name = layout::version_dir_name(&verified.manifest);
        let current = match self.installed() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("installing over a broken current link: {e}");
                None
            }
        };
        if let Some(cur) = &current
            && cur.digest == verified.manifest.body.sha3_256
            && layout::dir_name_of(cur).as_deref() == Some(dir_name.as_str())
        {
            tracing::info!(version = %cur.version, dir = %cur.dir.display(), "version already installed");
            return Ok(cur.clone());
        }

        let final_dir = self.versions.join(&dir_name);
        self.write_version_dir(verified, &final_dir)?;
        self.step(InstallStep::VersionWritten);
        let new = layout::read_version(&final_dir).map_err(|reason| InstallError::Corrupt {
            path: final_dir.clone(),
            reason: format!("version folder just written {reason}"),
        })?;

        if let Some(Err(e)) = post_install.map(|cmd| cmd.run(&new, current.as_ref())) {
            tracing::error!("{e}; not switching to {}", new.version);
            let kept_as_previous = matches!(
                self.link_target(PREVIOUS),
                Ok(Some(t)) if t == dir_name
            );
            if !kept_as_previous {
                layout::remove_any(&final_dir)?;
                layout::sync_dir(&self.versions)?;
            }
            return Err(e);
        }
        self.step(InstallStep::PostInstallDone);

        if let Some(cur) = current.as_ref().and_then(layout::dir_name_of) {
            layout::switch_link(&self.root, PREVIOUS, &cur)?;
            self.step(InstallStep::PreviousSwitched);
        }
        layout::switch_link(&self.root, CURRENT, &dir_name)?;
        self.step(InstallStep::CurrentSwitched);
        tracing::info!(name = %new.name, version = %new.version, digest = %new.digest, "installed and switched");
        self.gc()?;
        Ok(new)
    }

    /// Runs `cmd` for the current version, as the post-install command
    /// ran for it (same environment, its folder as working directory, the
    /// previous version as the one it replaced): the client's health
    /// check. Returns the version it ran for (none when nothing is
    /// current); a failure is [`InstallError::PostInstall`] and changes
    /// nothing.
    pub fn check_current(&self, cmd: &PostInstall) -> Result<Option<Installed>> {
        let Some(current) = self.installed()? else {
            return Ok(None);
        };
        let previous = self.previous().ok().flatten();
        cmd.run(&current, previous.as_ref())?;
        Ok(Some(current))
    }

    /// Makes `previous` current again and the current version previous:
    /// the operator's explicit way back, and the only switch to an older
    /// version. Refused, changing nothing, unless `previous` is of
    /// `artifact`, older than the current version, and `to` when given
    /// ([`InstallError::NoPrevious`] when nothing is kept,
    /// [`InstallError::RollbackRefused`] otherwise): so a second rollback
    /// does not roll forward. Both links are durable when it returns.
    pub fn rollback(&self, artifact: &str, to: Option<&str>) -> Result<Installed> {
        let Some(prev) = self.previous()? else {
            return Err(InstallError::NoPrevious {
                path: self.root.join(PREVIOUS),
            });
        };
        let current = self.installed().ok().flatten();
        let refused = |reason: String| InstallError::RollbackRefused {
            path: self.root.join(PREVIOUS),
            reason,
        };
        if prev.name != artifact {
            return Err(refused(format!(
                "the kept version is of {:?}, not {artifact:?}",
                prev.name
            )));
        }
        if let Some(to) = to
            && prev.version != to
        {
            return Err(refused(format!(
                "the kept previous version is {}, not {to}",
                prev.version
            )));
        }
        if let Some(cur) = &current {
            let older = match (
                prev.version.parse::<haifu_core::Version>(),
                cur.version.parse::<haifu_core::Version>(),
            ) {
                (Ok(p), Ok(c)) => p < c,
                _ => false,
            };
            if !older {
                return Err(refused(format!(
                    "the kept version {} is not older than the current {}: a rollback never moves forward",
                    prev.version, cur.version
                )));
            }
        }
        let prev_name = layout::dir_name_of(&prev).unwrap_or_default();
        // `current` first: a crash after it leaves the rolled-back version
        // running, which is what was asked.
        layout::switch_link(&self.root, CURRENT, &prev_name)?;
        self.step(InstallStep::CurrentSwitched);
        if let Some(cur) = current.as_ref().and_then(layout::dir_name_of) {
            layout::switch_link(&self.root, PREVIOUS, &cur)?;
            self.step(InstallStep::PreviousSwitched);
        }
        tracing::info!(version = %prev.version, "rolled back");
        Ok(prev)
    }

    /// Removes every version folder that neither `current` nor `previous`
    /// points at; returns the removed paths.
    pub fn gc(&self) -> Result<Vec<PathBuf>> {
        let keep = [self.link_target(CURRENT)?, self.link_target(PREVIOUS)?];
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.versions).at(&self.versions, "list")? {
            let entry = entry.at(&self.versions, "list")?;
            let name = entry.file_name();
            if keep.iter().flatten().any(|k| k.as_str() == name) {
                continue;
            }
            let path = entry.path();
            layout::remove_any(&path)?;
            tracing::info!(path = %path.display(), "removed old version");
            removed.push(path);
        }
        if !removed.is_empty() {
            layout::sync_dir(&self.versions)?;
        }
        self.step(InstallStep::Collected);
        Ok(removed)
    }

    fn link(&self, name: &str) -> Result<Option<Installed>> {
        match layout::read_link(&self.root, name)? {
            Link::Missing => Ok(None),
            Link::Valid(v) => Ok(Some(*v)),
            Link::Broken(reason) => Err(InstallError::Corrupt {
                path: self.root.join(name),
                reason,
            }),
        }
    }

    /// The folder name under `versions/` a link points at, valid or not.
    fn link_target(&self, name: &str) -> Result<Option<String>> {
        let link = self.root.join(name);
        match fs::read_link(&link) {
            Ok(t) => Ok(t.file_name().and_then(|n| n.to_str()).map(str::to_owned)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == ErrorKind::InvalidInput => Err(InstallError::Corrupt {
                path: link,
                reason: "expected a symlink to a version folder, found something else".into(),
            }),
            Err(e) => Err(e).at(&link, "read symlink"),
        }
    }

    /// Assembles the version folder in `staging/`, then renames it to
    /// `final_dir`, so `versions/` only ever holds complete versions.
    fn write_version_dir(&self, verified: Verified, final_dir: &Path) -> Result<()> {
        let Verified { file, manifest } = verified;
        let build = file.path().with_extension("dir");
        layout::remove_any(&build)?;
        fs::create_dir(&build).at(&build, "create folder")?;
        let artifact = build.join(ARTIFACT);
        file.persist(&artifact)
            .map_err(|e| e.error)
            .at(&artifact, "move staged file")?;
        fs::set_permissions(&artifact, fs::Permissions::from_mode(0o644))
            .at(&artifact, "set permissions")?;
        let manifest_path = build.join(MANIFEST);
        let mut f = fs::File::create(&manifest_path).at(&manifest_path, "create")?;
        f.write_all(manifest.to_json().as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .at(&manifest_path, "write")?;
        layout::sync_dir(&build)?;

        // The same version may already be there (kept as previous, or left
        // by an install that crashed before switching): move it aside, since
        // a folder cannot be renamed over a non-empty one.
        let aside = build.with_extension("old");
        let replaced = match fs::rename(final_dir, &aside) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(e).at(final_dir, "move aside"),
        };
        fs::rename(&build, final_dir).at(final_dir, "move version folder into place")?;
        layout::sync_dir(&self.versions)?;
        layout::sync_dir(&self.staging)?;
        if replaced {
            layout::remove_any(&aside)?;
        }
        Ok(())
    }

    fn clean_staging(&self) -> Result<()> {
        let mut any = false;
        for entry in fs::read_dir(&self.staging).at(&self.staging, "list")? {
            let path = entry.at(&self.staging, "list")?.path();
            tracing::info!(path = %path.display(), "removing abandoned staging entry");
            layout::remove_any(&path)?;
            any = true;
        }
        if any {
            layout::sync_dir(&self.staging)?;
        }
        Ok(())
    }

    fn step(&self, step: InstallStep) {
        if let Some(observer) = &self.observer {
            observer(step);
        }
    }
}
