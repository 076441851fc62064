//! The resolved plan: what a valid workflow means, ready for `build`.

use std::path::{Component, Path, PathBuf};

use haifu_policy::{PolicyPaths, Role};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::error::SpecWarning;
use crate::pos::Spanned;
use crate::stages::Stage;
use crate::steps::Step;
use crate::timing::Window;

/// A validated workflow. Paths are resolved against the workflow's folder;
/// positions are kept so later stages can point back at the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The workflow file.
    pub file: PathBuf,
    /// `name`.
    pub name: Spanned<String>,
    /// `description`, if any.
    pub description: Option<String>,
    /// `artifact`.
    pub artifact: Artifact,
    /// `targets`.
    pub targets: Targets,
    /// `schedule`.
    pub schedule: Schedule,
    /// `transports`.
    pub transports: Transports,
    /// `rate`: broadcast pacing in bits per second, if capped.
    pub rate: Option<u64>,
    /// `policies`.
    pub policies: Policies,
    /// `stages`, in order: empty when the workflow has none (every target
    /// installs at once).
    pub stages: Vec<Stage>,
    /// `steps`, in order (the order is valid).
    pub steps: Vec<Step>,
    /// Things that will work but probably not as meant.
    pub warnings: Vec<SpecWarning>,
}

/// What is distributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: semver::Version,
    /// The file, resolved against the workflow's folder.
    pub path: Spanned<PathBuf>,
}

/// To whom.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Targets {
    /// Relays by name.
    pub relays: Vec<String>,
    /// Groups of relays by name.
    pub groups: Vec<String>,
}

/// When.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The first round starts no earlier than this.
    pub start: Timestamp,
    /// Stragglers are cut off at this instant.
    pub deadline: Timestamp,
    /// The site's time zone: `schedule.time_zone`, else the start's offset.
    pub time_zone: TimeZone,
    /// Rounds start only inside this daily window, if set.
    pub window: Option<Window>,
    /// Whether a run paused at the deadline still cuts off its stragglers
    /// then (`schedule.cut_off_while_paused`); otherwise the cut-off waits
    /// for the resume.
    pub cut_off_while_paused: bool,
}

/// Which transport plugins carry the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transports {
    /// Datagram-group plugin for broadcast rounds (e.g. `multicast`).
    pub broadcast: String,
    /// Peer-stream plugin for deltas (e.g. `quic`); required with a `delta`
    /// step.
    pub unicast: Option<String>,
    /// Where `broadcast` is written.
    pub broadcast_at: crate::pos::Pos,
    /// Where `unicast` is written.
    pub unicast_at: Option<crate::pos::Pos>,
}

/// The policy scripts, resolved against the workflow's folder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policies {
    /// `policies.retry`.
    pub retry: Option<Spanned<PathBuf>>,
    /// `policies.restrict`.
    pub restrict: Option<Spanned<PathBuf>>,
    /// `policies.disconnect`.
    pub disconnect: Option<Spanned<PathBuf>>,
    /// `policies.broadcast`.
    pub broadcast: Option<Spanned<PathBuf>>,
    /// `policies.advance`.
    pub advance: Option<Spanned<PathBuf>>,
}

impl Policies {
    /// The script for `role`.
    pub fn get(&self, role: Role) -> Option<&Spanned<PathBuf>> {
        match role {
            Role::Retry => self.retry.as_ref(),
            Role::Restrict => self.restrict.as_ref(),
            Role::Disconnect => self.disconnect.as_ref(),
            Role::Broadcast => self.broadcast.as_ref(),
            Role::Advance => self.advance.as_ref(),
        }
    }

    /// The paths, as [`haifu_policy::PolicySet::load`] takes them.
    pub fn paths(&self) -> PolicyPaths {
        PolicyPaths {
            retry: self.retry.as_ref().map(|p| p.value.clone()),
            restrict: self.restrict.as_ref().map(|p| p.value.clone()),
            disconnect: self.disconnect.as_ref().map(|p| p.value.clone()),
            broadcast: self.broadcast.as_ref().map(|p| p.value.clone()),
            advance: self.advance.as_ref().map(|p| p.value.clone()),
        }
    }
}

/// `relative` resolved against the folder of `workflow`, with `.` and
/// `dir/..` removed lexically, so messages read `policies/retry.rhai` rather
/// than `workflows/../policies/retry.rhai`. (Lexical: a symlinked folder
/// followed by `..` resolves differently on disk; workflows do not do that.)
pub(crate) fn resolve(workflow: &Path, relative: &str) -> PathBuf {
    let joined = match workflow.parent() {
        Some(dir) => dir.join(relative),
        None => PathBuf::from(relative),
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let last_is_normal =
                    matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_is_normal {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_the_workflow_folder() {
        let w = Path::new("workflows/nightly.yaml");
        assert_eq!(
            resolve(w, "../policies/retry.rhai"),
            Path::new("policies/retry.rhai")
        );
        assert_eq!(resolve(w, "./a.tar"), Path::new("workflows/a.tar"));
        assert_eq!(resolve(Path::new("w.yaml"), "../x"), Path::new("../x"));
        assert_eq!(resolve(w, "/abs/x"), Path::new("/abs/x"));
    }
}
