//! `haifu keys`: the master's signing key.

use std::process::ExitCode;

use anyhow::Result;

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Print the master's public key (made on first use). Clients pin it to
    /// verify manifests.
    Show {
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(home: &Home, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Show { json } => {
            let key = home.master_key()?;
            let public = key.public_key();
            if json {
                output::json(&serde_json::json!({
                    "algorithm": "ed25519",
                    "public_key": public,
                    "path": home.keys_dir().join("master.pub"),
                }))?;
            } else {
                println!("{public}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
