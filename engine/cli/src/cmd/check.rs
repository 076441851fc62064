//! `haifu check`: validate a workflow and its policies, with no side effect.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks the YAML schema, the steps and their order, the schedule, that the \
artifact and policy files exist, that the policies compile, and that the transports name \
plugins of the right shape in the plugins folder the daemons would use (each plugin file is \
loaded by a child process, never by this one). Prints every error as FILE:LINE:COLUMN: message \
and exits 1, or prints warnings and exits 0. Writes nothing.

With --format json, prints one JSON array on stdout for all the files: objects with file, line, \
column, severity (error or warning), message and suggestion (the likely fix of a typo, or \
null); the exit status is the same."
)]
pub(crate) struct Args {
    /// Workflow files.
    #[arg(required = true)]
    workflows: Vec<PathBuf>,
    /// `text` (one line per problem on stderr) or `json` (one array on
    /// stdout, for editors and CI).
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Plugins folder the transports are resolved in [default: the folder
    /// of the haifu binary].
    #[arg(long, env = "HAIFU_PLUGINS", value_name = "DIR")]
    plugins: Option<PathBuf>,
}

/// The plugins of the folder the daemons would use, gathered once.
struct Inventory {
    dir: Option<PathBuf>,
    got: Option<haifu_spec::PluginInventory>,
}

impl Inventory {
    fn get(&mut self) -> &haifu_spec::PluginInventory {
        let dir = haifu_plugin_host::plugin_dir(self.dir.as_deref());
        self.got.get_or_insert_with(|| {
            let plugins = match haifu_plugin_host::probe::inventory(&dir) {
                Ok(entries) => entries
                    .into_iter()
                    .map(|e| {
                        let state = match e.state {
                            Ok(s) => haifu_spec::PluginState::Offers {
                                datagram: s.datagram,
                                stream: s.stream,
                            },
                            Err(why) => haifu_spec::PluginState::Bad(why.0),
                        };
                        (e.name, state)
                    })
                    .collect(),
                Err(e) => {
                    eprintln!("haifu: warning: {}", haifu_plugin_host::error_chain(&e));
                    Vec::new()
                }
            };
            haifu_spec::PluginInventory { dir, plugins }
        })
    }

    /// The workflow's validated plan, or its errors with the transports'.
    fn check(
        &mut self,
        wf: &std::path::Path,
    ) -> Result<haifu_spec::Plan, Vec<haifu_spec::SpecError>> {
        let plan = haifu_spec::load_and_validate(wf)?;
        let errors = haifu_spec::check_transports(wf, &plan, self.get());
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(errors)
        }
    }
}

/// How `haifu check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// FILE:LINE:COLUMN: message, one per line.
    Text,
    /// One JSON array of diagnostics.
    Json,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let mut inventory = Inventory {
        dir: args.plugins.clone(),
        got: None,
    };
    if args.format == Format::Json {
        return run_json(&args.workflows, &mut inventory);
    }
    let mut failed = false;
    for wf in &args.workflows {
        match inventory.check(wf) {
            Ok(plan) => {
                for w in &plan.warnings {
                    eprintln!("{w}");
                }
                let stages = match plan.stages.len() {
                    0 => String::new(),
                    n => format!(", {n} stages"),
                };
                println!(
                    "{}: ok ({} {}, {} steps{stages})",
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

fn run_json(workflows: &[PathBuf], inventory: &mut Inventory) -> Result<ExitCode> {
    let mut all: Vec<haifu_spec::Diagnostic> = Vec::new();
    let mut failed = false;
    for wf in workflows {
        match inventory.check(wf) {
            Ok(plan) => all.extend(plan.warnings.iter().map(haifu_spec::Diagnostic::from)),
            Err(errors) => {
                failed = true;
                all.extend(errors.iter().map(haifu_spec::Diagnostic::from));
            }
        }
    }
    crate::output::json(&all)?;
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
