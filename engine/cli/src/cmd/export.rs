//! `haifu export`: write a registered artifact back to a file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};

use crate::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Artifact name.
    name: String,
    /// Version.
    version: String,
    /// Where to write it; written atomically, and only if it verifies.
    #[arg(long, short)]
    output: PathBuf,
}

pub fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let m = home
        .ledger()?
        .manifest(&args.name, &args.version)?
        .ok_or_else(|| anyhow!("{} {} is not registered", args.name, args.version))?;
    let n = home.store()?.export(&m.body.sha3_256, &args.output)?;
    eprintln!(
        "wrote {} ({n} bytes, sha3-256 verified)",
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
