//! `haifu gate`: may a client use a service?

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Answers from the ledger's facts (the client's version and state, the \
version the service appeared in) through the restriction policy: --policy, else the restrict \
policy of the newest run's workflow, else the built-in default (allow when the client's version \
is at least the service's). Exit status 0 when allowed, 3 when denied."
)]
pub(crate) struct Args {
    /// Client id.
    #[arg(long)]
    client: String,
    /// Service name (declare services with `haifu service set`).
    #[arg(long)]
    service: String,
    /// A restriction policy script to use.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Print {"allow": bool, "reason": "…"}.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let ledger = home.ledger_existing()?;
    let path = match args.policy {
        Some(p) => Some(p),
        None => haifu_runtime::gate::RestrictSource::newest(&ledger)?.script,
    };
    let policies = haifu_runtime::gate::restrict_policies(path).map_err(|errors| {
        let n = errors.len();
        for e in errors {
            eprintln!("{e}");
        }
        anyhow::anyhow!("{n} policy error(s)")
    })?;
    let answer = haifu_runtime::gate::decide(
        &ledger,
        &policies,
        &args.client,
        &args.service,
        jiff::Timestamp::now(),
    )?;
    if let Some(f) = &answer.fallback {
        tracing::warn!("{f}");
    }
    if args.json {
        output::json(&answer)?;
    } else {
        println!(
            "{}: {}",
            if answer.allow { "allow" } else { "deny" },
            answer.reason
        );
    }
    Ok(if answer.allow {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
