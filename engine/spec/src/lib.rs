//! haifu workflow specs: YAML to a validated plan.
//!
//! A workflow is a YAML file (see `workflows/README.md`). This crate reads it
//! in stages, the way `haifu check` needs:
//!
//! 1. [`parse`]: text → [`RawSpec`], the shape (known keys, YAML types,
//!    required keys), every value with its line and column;
//! 2. [`validate`]: [`RawSpec`] → [`Plan`], pure (bar jiff's read-only
//!    time-zone database): dates, durations,
//!    versions, names, rounds, the step order, cross-checks;
//! 3. file checks, read-only: the artifact and policy files exist, and the
//!    policies compile (through `haifu-policy`).
//!
//! [`schema`] is the workflow's JSON Schema, made from the same table of
//! keys stage 1 reads with (`haifu schema workflow`).
//!
//! [`load_and_validate`] runs all three and returns every error, each
//! printed on one line as `FILE:LINE:COLUMN: message`. [`check_text`] runs
//! stages 1-2 on text in memory.
//!
//! The steps are a closed set, one module each under [`steps`]: its spec,
//! its pure validation, and its progress machine (time is an argument).
//!
//! It does not open plugins, touch the ledger, run policies or keep time:
//! that is the `build` stage and the runtime's work.

#![forbid(unsafe_code)]

mod error;
mod fields;
mod files;
mod plan;
mod pos;
mod quantity;
mod raw;
mod schema;
mod shape;
mod stages;
pub mod steps;
mod suggest;
mod timing;
mod transports;
mod validate;

pub use haifu_yaml::{ShapeError, check_shape};

use std::path::Path;

pub use error::{Diagnostic, ErrorKind, Severity, SpecError, SpecWarning};
pub use plan::{Artifact, Plan, Policies, Schedule, Targets, Transports};
pub use pos::{Pos, Spanned};
pub use raw::{
    Parsed, RawArtifact, RawPolicies, RawSchedule, RawSpec, RawTargets, RawTransports, parse,
};
pub use schema::schema;
pub use stages::{FailureLimit, MAX_STAGES, RawGate, RawLabel, RawStage, Stage, StageGate};
pub use steps::{Step, StepKind};
pub use timing::Window;
pub use transports::{PluginInventory, PluginState, check_transports};
pub use validate::validate;

/// The largest workflow file read, in bytes. A workflow is a few kB; the
/// cap keeps a mistaken path (`/dev/zero`, a log) from being read whole.
pub const MAX_WORKFLOW_BYTES: u64 = 1 << 20;

/// Stages 1 and 2 on `text` (the contents of `file`): no I/O beyond jiff's
/// read-only time-zone database (for `schedule.time_zone`).
///
/// # Errors
/// Every error found, in file order.
pub fn check_text(file: &Path, text: &str) -> Result<Plan, Vec<SpecError>> {
    let Parsed { raw, mut errors } = parse(file, text);
    let Some(raw) = raw else {
        return Err(errors);
    };
    match validate(&raw) {
        Ok(plan) if errors.is_empty() => Ok(plan),
        Ok(_) => Err(errors),
        Err(more) => {
            merge(&mut errors, more);
            Err(errors)
        }
    }
}

/// What `haifu check WORKFLOW` runs: reads the workflow, validates it, checks
/// that the artifact and policy files exist (relative to the workflow's
/// folder) and that the policies compile. Reads files; writes nothing.
///
/// On success the plan's [`Plan::warnings`] include missing policy entry
/// points.
///
/// # Errors
/// Every error found: the workflow's in file order, then those of the files
/// it names (a policy syntax error names the script's own line and column).
pub fn load_and_validate(path: &Path) -> Result<Plan, Vec<SpecError>> {
    let text = match haifu_policy::input::read_text(path, MAX_WORKFLOW_BYTES, "workflow files") {
        Ok(t) => t,
        Err(e) => {
            return Err(vec![SpecError {
                file: path.to_path_buf(),
                pos: Pos { line: 1, column: 1 },
                kind: ErrorKind::Invalid {
                    key: "workflow".into(),
                    message: format!("cannot read: {e}"),
                },
            }]);
        }
    };
    let Parsed { raw, mut errors } = parse(path, &text);
    let Some(raw) = raw else {
        return Err(errors);
    };
    let validated = validate(&raw);
    let mut cx = fields::Cx::new(path.to_path_buf());
    files::check(&files::named(&raw), &mut cx);
    match validated {
        Ok(mut plan) if errors.is_empty() && cx.errors.is_empty() => {
            plan.warnings.extend(cx.warnings);
            Ok(plan)
        }
        Ok(_) => {
            errors.extend(cx.errors);
            Err(errors)
        }
        Err(more) => {
            merge(&mut errors, more);
            errors.extend(cx.errors);
            Err(errors)
        }
    }
}

/// Adds stage-2 errors to stage-1 errors, in file order.
fn merge(errors: &mut Vec<SpecError>, more: Vec<SpecError>) {
    errors.extend(more);
    errors.sort_by_key(|e| e.pos);
    errors.dedup();
}
