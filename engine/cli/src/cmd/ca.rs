//! `haifu ca`: the fleet's certificate authority.

use std::process::ExitCode;

use anyhow::Result;
use haifu_plugin_host::pki;

use crate::home::Home;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create the fleet CA under `<home>/ca` (refuses to overwrite one).
    Init {
        /// The CA's common name.
        #[arg(long, default_value = pki::DEFAULT_CA_NAME)]
        name: String,
    },
    /// Issue a certificate for a master, relay or client; its identity is NAME.
    ///
    /// The role is written into the certificate (an extended key usage) and
    /// is all a peer may act as: the master accepts only relay-role
    /// certificates as relays, a relay only client-role certificates as its
    /// clients, and clients connect only to a master- or relay-role peer.
    Issue {
        /// Identity: lowercase letters, digits, '-' and '.'.
        name: String,
        /// What the holder is in the fleet: master, relay or client.
        #[arg(long, value_parser = parse_role)]
        role: pki::CertRole,
    },
}

pub(crate) fn run(home: &Home, cmd: Command) -> Result<ExitCode> {
    let root = home.ensure_root()?;
    match cmd {
        Command::Init { name } => {
            let files = pki::init_ca(root, &name)?;
            println!("created fleet CA {:?}", name);
            println!("  certificate {}", files.cert.display());
            println!("  key         {} (keep it secret)", files.key.display());
        }
        Command::Issue { name, role } => {
            let c = pki::issue(root, &name, role)?;
            println!("issued {} ({role})", c.name);
            println!("  certificate {}", c.cert.display());
            println!("  key         {}", c.key.display());
            println!("  CA          {}", c.ca_cert.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_role(s: &str) -> Result<pki::CertRole, String> {
    s.parse()
}
