//! `haifu check`: validate a workflow and its policies, with no side effect.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks the YAML schema, the steps and their order, the schedule, that the \
artifact and policy files exist, and that the policies compile. Prints every error as \
FILE:LINE:COLUMN: message and exits 1, or prints warnings and exits 0. Writes nothing."
)]
pub(crate) struct Args {
    /// Workflow files.
    #[arg(required = true)]
    workflows: Vec<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let mut failed = false;
    for wf in &args.workflows {
        match haifu_spec::load_and_validate(wf) {
            Ok(plan) => {
                for w in &plan.warnings {
                    eprintln!("{w}");
                }
                println!(
                    "{}: ok ({} {}, {} steps)",
                    wf.display(),
                    plan.artifact.name,
                    plan.artifact.version,
                    plan.steps.len()
                );
            }
            Err(errors) => {
                failed = true;
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Loads a workflow for a command that acts on it: every error on its own
/// line, then one summary error.
pub(crate) fn load(path: &std::path::Path) -> Result<haifu_spec::Plan> {
    haifu_spec::load_and_validate(path).map_err(|errors| {
        let n = errors.len();
        for e in errors {
            eprintln!("{e}");
        }
        anyhow::anyhow!("{}: {n} error(s); nothing was started", path.display())
    })
}

/// Compiles a plan's policies, each error on its own line.
pub(crate) fn policies(plan: &haifu_spec::Plan) -> Result<haifu_policy::PolicySet> {
    haifu_policy::PolicySet::load(&plan.policies.paths()).map_err(|errors| {
        let n = errors.len();
        for e in errors {
            eprintln!("{e}");
        }
        anyhow::anyhow!(
            "{}: {n} policy error(s); nothing was started",
            plan.file.display()
        )
    })
}
