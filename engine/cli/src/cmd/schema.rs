//! `haifu schema`: the JSON Schema of a workflow or of a daemon's config.

use std::process::ExitCode;

use anyhow::Result;
use haifu_fleet::config;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints a JSON Schema (draft 2020-12) on stdout, made from the same \
definitions the parser reads, so an editor checks and completes the keys haifu accepts. The \
repository keeps them under workflows/, examples/schemas/ and policies/tests/; a YAML file names its schema on \
a comment line the YAML language server reads:

  # yaml-language-server: $schema=../schemas/master.schema.json

The schema knows the keys, their types, defaults and bounds; what only the file's meaning can \
tell (a date, a version, a certificate name, the order of steps) is checked by `haifu check` \
and by the daemon at start.

Example: haifu schema master > examples/schemas/master.schema.json"
)]
pub(crate) struct Args {
    /// Which file's schema.
    #[arg(value_enum)]
    of: Of,
}

/// The files haifu reads that have a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Of {
    /// A workflow (`haifu check`, `haifu run`).
    Workflow,
    /// `haifu master --config`.
    Master,
    /// `haifu relay --config`.
    Relay,
    /// `haifu client --config`.
    Client,
    /// A policy's cases (`haifu policy test POLICY.rhai CASES.yaml`).
    PolicyCases,
}

/// The schema of `of`, as printed (pretty JSON).
pub(crate) fn text(of: Of) -> Result<String> {
    let value = match of {
        Of::Workflow => haifu_spec::schema(),
        Of::Master => config::schema::<config::MasterConfig>("haifu master config"),
        Of::Relay => config::schema::<config::RelayConfig>("haifu relay config"),
        Of::Client => config::schema::<config::ClientConfig>("haifu client config"),
        Of::PolicyCases => haifu_policy::cases::schema(),
    };
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    print!("{}", text(args.of)?);
    Ok(ExitCode::SUCCESS)
}
