//! `haifu ca`: the fleet's certificate authority.

use std::process::ExitCode;

use anyhow::Result;
use haifu_plugin_host::pki;

use crate::home::Home;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create the fleet CA under `<home>/ca` (refuses to overwrite one).
    Init {
        /// The CA's common name.
        #[arg(long, default_value = pki::DEFAULT_CA_NAME)]
        name: String,
    },
    /// Issue a certificate for a master, relay or client; its identity is NAME.
    Issue {
        /// Identity: lowercase letters, digits, '-' and '.'.
        name: String,
    },
}

pub fn run(home: &Home, cmd: Command) -> Result<ExitCode> {
    let root = home.ensure_root()?;
    match cmd {
        Command::Init { name } => {
            let files = pki::init_ca(root, &name)?;
            println!("created fleet CA {:?}", name);
            println!("  certificate {}", files.cert.display());
            println!("  key         {} (keep it secret)", files.key.display());
        }
        Command::Issue { name } => {
            let c = pki::issue(root, &name)?;
            println!("issued {}", c.name);
            println!("  certificate {}", c.cert.display());
            println!("  key         {}", c.key.display());
            println!("  CA          {}", c.ca_cert.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
