//! `haifu metrics list`: every metric the daemons export on `/metrics`.

use std::process::ExitCode;

use anyhow::Result;
use haifu_fleet::metrics::{self, Daemon};

use crate::output;

/// What `haifu metrics` does.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// List every metric a daemon exports: name, type, daemon and help.
    #[command(
        after_help = "The list is read from the daemons' own registries, so it is \
exactly what a scrape shows (counters end in _total; a histogram also has _bucket, _sum and \
_count series). Turn a daemon's /metrics on with `metrics: 127.0.0.1:9464` in its config \
(an address other than loopback also needs `metrics_public: true`); the master also serves \
/metrics on its API with a read token.

Examples:
  haifu metrics list
  haifu metrics list --daemon relay
  haifu metrics list --json | jq -r '.[].name'"
    )]
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Only this daemon's metrics.
    #[arg(long, value_enum)]
    daemon: Option<Which>,
    /// Print a JSON array of objects (daemon, name, kind, help).
    #[arg(long)]
    json: bool,
}

/// A daemon, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    /// `haifu master`.
    Master,
    /// `haifu relay`.
    Relay,
    /// `haifu client`.
    Client,
}

pub(crate) fn run(c: Command) -> Result<ExitCode> {
    let Command::List(args) = c;
    let daemons: Vec<Daemon> = match args.daemon {
        Some(Which::Master) => vec![Daemon::Master],
        Some(Which::Relay) => vec![Daemon::Relay],
        Some(Which::Client) => vec![Daemon::Client],
        None => Daemon::ALL.to_vec(),
    };
    let all: Vec<metrics::Described> = daemons.into_iter().flat_map(metrics::catalogue).collect();
    if args.json {
        output::json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = all.iter().map(|m| m.name.len()).max().unwrap_or(4);
    println!("{:<width$}  {:<9}  {:<6}  HELP", "NAME", "TYPE", "DAEMON");
    for m in &all {
        println!(
            "{:<width$}  {:<9}  {:<6}  {}",
            m.name,
            m.kind,
            m.daemon.as_str(),
            m.help
        );
    }
    Ok(ExitCode::SUCCESS)
}
