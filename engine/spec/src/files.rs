//! Stage 3, read-only: the files a workflow names exist, and its policy
//! scripts compile. This is the only stage that touches the file system, and
//! it only reads. It runs even when stages 1-2 found errors, so one
//! `haifu check` shows everything.

use std::io::ErrorKind as IoKind;
use std::path::PathBuf;

use haifu_policy::{PolicyError, Role};

use crate::error::{ErrorKind, SpecError};
use crate::fields::Cx;
use crate::plan::resolve;
use crate::pos::{Pos, Spanned};
use crate::raw::RawSpec;

/// A file named by the workflow: the artifact (`None`) or a policy.
pub(crate) type Named = (Option<Role>, Spanned<PathBuf>);

/// The files `raw` names, resolved against its folder.
pub(crate) fn named(raw: &RawSpec) -> Vec<Named> {
    let mut out = Vec::new();
    if let Some(p) = raw.artifact.as_ref().and_then(|a| a.path.as_ref()) {
        out.push((None, Spanned::new(resolve(&raw.file, &p.value), p.pos)));
    }
    let policies = &raw.policies;
    for (role, p) in [
        (Role::Retry, &policies.retry),
        (Role::Restrict, &policies.restrict),
        (Role::Disconnect, &policies.disconnect),
        (Role::Broadcast, &policies.broadcast),
        (Role::Advance, &policies.advance),
    ] {
        if let Some(p) = p {
            out.push((
                Some(role),
                Spanned::new(resolve(&raw.file, &p.value), p.pos),
            ));
        }
    }
    out
}

/// Checks each named file; policy entry points missing become warnings.
pub(crate) fn check(named: &[Named], cx: &mut Cx) {
    let mut syntax_reported: Vec<PathBuf> = Vec::new();
    for (role, path) in named {
        let Some(role) = *role else {
            if !path.value.is_file() {
                cx.error(
                    path.pos,
                    ErrorKind::MissingFile {
                        what: "artifact".into(),
                        path: path.value.clone(),
                    },
                );
            }
            continue;
        };
        match haifu_policy::check_script(role, &path.value) {
            Ok(None) => {}
            Ok(Some(warning)) => cx.warn(path.pos, warning.to_string()),
            Err(PolicyError::Read { source, .. }) if source.kind() == IoKind::NotFound => cx.error(
                path.pos,
                ErrorKind::MissingFile {
                    what: format!("{role} policy"),
                    path: path.value.clone(),
                },
            ),
            Err(PolicyError::Syntax {
                path: script,
                line,
                column,
                message,
            }) => {
                // A script named for two roles is broken once.
                if syntax_reported.contains(&script) {
                    continue;
                }
                syntax_reported.push(script.clone());
                cx.errors.push(SpecError {
                    file: script,
                    pos: Pos { line, column },
                    kind: ErrorKind::PolicySyntax {
                        role: role.key(),
                        message,
                        named_at: format!("{}:{}", cx.file.display(), path.pos),
                    },
                });
            }
            Err(other) => cx.invalid(path.pos, &format!("policies.{role}"), other.to_string()),
        }
    }
}
