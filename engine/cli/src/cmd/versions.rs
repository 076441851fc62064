//! `haifu versions`: what is registered.

use std::process::ExitCode;

use anyhow::Result;

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only this artifact.
    name: Option<String>,
    /// Print a JSON array of objects.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let rows = home.ledger_existing()?.versions(args.name.as_deref())?;
    if args.json {
        output::json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        match &args.name {
            Some(n) => eprintln!("no versions of {n} are registered"),
            None => eprintln!("nothing is registered yet (try: haifu register --help)"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<14} {:>10} {:>10}  {:<16} CREATED",
        "NAME", "VERSION", "SIZE", "STORED", "SHA3-256"
    );
    for r in rows {
        println!(
            "{:<24} {:<14} {:>10} {:>10}  {:<16} {}",
            r.name,
            r.version,
            output::bytes(r.size),
            output::bytes(r.stored_size),
            &r.sha3_256[..16.min(r.sha3_256.len())],
            r.created_at
        );
    }
    Ok(ExitCode::SUCCESS)
}
