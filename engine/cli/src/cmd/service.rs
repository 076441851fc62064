//! `haifu service`: the services the gate knows.

use std::process::ExitCode;

use anyhow::Result;
use haifu_core::{ArtifactName, Version};

use crate::home::Home;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Declare that a service appeared in a version of an artifact.
    Set {
        /// Service name, as the operator's servers ask the gate.
        name: String,
        /// The artifact that provides it.
        #[arg(long)]
        artifact: String,
        /// The first version that has it.
        #[arg(long)]
        since: String,
    },
}

pub fn run(home: &Home, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Set {
            name,
            artifact,
            since,
        } => {
            if name.trim().is_empty() {
                anyhow::bail!("service name is empty");
            }
            let artifact: ArtifactName = artifact.parse()?;
            let since: Version = since.parse()?;
            home.ledger()?
                .set_service(&name, artifact.as_str(), &since.to_string())?;
            println!("service {name}: {artifact} since {since}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
