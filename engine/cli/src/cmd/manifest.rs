//! `haifu manifest`: print one signed manifest.

use std::process::ExitCode;

use anyhow::{Result, anyhow};

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Artifact name.
    name: String,
    /// Version.
    version: String,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let m = home
        .ledger_existing()?
        .manifest(&args.name, &args.version)?
        .ok_or_else(|| anyhow!("{} {} is not registered", args.name, args.version))?;
    output::json(&m)?;
    Ok(ExitCode::SUCCESS)
}
