//! `haifu service`: the services the gate knows.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use haifu_core::{ArtifactName, ServiceName, Version};

use crate::home::Home;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Declare that a service appeared in a version of an artifact.
    Set {
        /// Service name, as the operator's servers ask the gate: letters,
        /// digits, '.', '_' and '-', starting with a letter or digit.
        name: String,
        /// The artifact that provides it (must be registered).
        #[arg(long)]
        artifact: String,
        /// The first version that has it.
        #[arg(long)]
        since: String,
    },
}

pub(crate) fn run(home: &Home, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Set {
            name,
            artifact,
            since,
        } => {
            let name: ServiceName = name.parse()?;
            let artifact: ArtifactName = artifact.parse()?;
            let since: Version = since.parse()?;
            // A service of an artifact the ledger does not know would make
            // the gate compare against nothing; it is most likely a typo.
            // With no ledger yet, nothing is registered: nothing is created.
            let mut ledger = home
                .ledger_existing()
                .map_err(|_| not_registered(&artifact))?;
            if ledger.versions(Some(artifact.as_str()))?.is_empty() {
                return Err(not_registered(&artifact));
            }
            ledger.set_service(name.as_str(), artifact.as_str(), &since.to_string())?;
            println!("service {name}: {artifact} since {since}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn not_registered(artifact: &ArtifactName) -> anyhow::Error {
    anyhow!("artifact {artifact} is not registered (register a version first)")
}
