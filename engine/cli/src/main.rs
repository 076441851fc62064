//! `haifu`: the command-line tool.
//!
//! Arguments are parsed with clap; each subcommand lives in `cmd/` and
//! returns `anyhow::Result`. `main` prints an error as one line on stderr
//! (`haifu: error: …`) and exits 1; clap's own usage errors exit 2.
#![forbid(unsafe_code)]

mod cmd;
mod home;
mod output;
mod progress;
mod systemd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::home::Home;

/// Distribute software to fleets of machines that are not always on.
///
/// haifu registers a version, broadcasts it over multicast in rounds, audits
/// who finished, sends stragglers a binary delta when they boot, and cuts off
/// those that never update.
#[derive(Debug, Parser)]
#[command(
    name = "haifu",
    version,
    propagate_version = false,
    max_term_width = 100
)]
struct Cli {
    /// Folder holding all of haifu's state: the ledger, the artifact store
    /// and the keys.
    #[arg(
        long,
        global = true,
        env = "HAIFU_HOME",
        default_value = ".haifu",
        value_name = "DIR"
    )]
    home: PathBuf,

    /// How log lines on stderr look: `text` for people, `json` for journald
    /// and log shippers (one object per line, with the span fields).
    #[arg(
        long,
        global = true,
        env = "HAIFU_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object per line: timestamp, level, target, fields, spans.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole method on loopback in under a minute: a master, relays and
    /// clients as real processes, rounds, audit, deltas, cut-off, the gate.
    Demo(cmd::demo::Args),
    /// Register a version of an artifact: store it, sign its manifest and
    /// record it in the ledger.
    Register(cmd::register::Args),
    /// List registered versions, newest first.
    Versions(cmd::versions::Args),
    /// Print a registered artifact's signed manifest.
    Manifest(cmd::manifest::Args),
    /// Write a registered artifact to a file, verified against its digest.
    Export(cmd::export::Args),
    /// Check the ledger, the store and every signature against each other.
    Fsck(cmd::fsck::Args),
    /// Manage the master's signing key.
    #[command(subcommand)]
    Keys(cmd::keys::Command),
    /// Validate workflows and their policies without side effects.
    Check(cmd::check::Args),
    /// Dry-run a workflow against a modelled fleet in virtual time.
    Simulate(cmd::simulate::Args),
    /// Start or resume a durable run of a workflow.
    Run(cmd::run::Args),
    /// Show where each run is.
    Status(cmd::status::Args),
    /// Per relay: who was delivered in which round, by delta, who was not.
    Audit(cmd::audit::Args),
    /// Manage the bearer tokens of the master's HTTP API.
    #[command(subcommand)]
    Api(cmd::api::Command),
    /// Ask the service gate whether a client may use a service.
    Gate(cmd::gate::Args),
    /// Declare the services the gate knows.
    #[command(subcommand)]
    Service(cmd::service::Command),
    /// Test a policy script on facts: table-driven cases, or one decision.
    #[command(subcommand)]
    Policy(cmd::policy::Command),
    /// List the transport plugins and any that failed to load; check one
    /// against the transport spec.
    Plugins(cmd::plugins::Args),
    /// Manage the fleet's certificate authority.
    #[command(subcommand)]
    Ca(cmd::ca::Command),
    /// The clients the master knows; lift a cut-off.
    #[command(subcommand)]
    Fleet(cmd::fleet::Command),
    /// Order clients back to the version they keep before their current
    /// one (recorded in the ledger, carried out through their relays,
    /// audited as such).
    Rollback(cmd::rollback::Args),
    /// Run the master daemon: drives live runs, instructs relays, records
    /// completions.
    Master(cmd::daemon::MasterArgs),
    /// Run a relay daemon: fetches artifacts once, broadcasts rounds over
    /// multicast to its clients.
    Relay(cmd::daemon::RelayArgs),
    /// Run a client daemon: receives, verifies, installs, reports.
    Client(cmd::daemon::ClientArgs),
    /// List the metrics the daemons export on `/metrics`.
    #[command(subcommand)]
    Metrics(cmd::metrics::Command),
    /// Print the JSON Schema of a workflow or of a daemon's config, for
    /// editors.
    Schema(cmd::schema::Args),
    /// Print the shell completion script for bash, zsh, fish, ...
    Completions(cmd::completions::CompletionArgs),
    /// Print haifu's man page, or write one per command into a folder.
    Man(cmd::completions::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(
        cli.command,
        Command::Master(_) | Command::Relay(_) | Command::Client(_)
    );
    // `haifu policy` reports fallbacks in its own output; the façade's
    // warning for each would print them twice.
    let policy = matches!(cli.command, Command::Policy(_));
    init_tracing(
        cli.log_format,
        if daemon {
            "info"
        } else if policy {
            "warn,haifu_policy=error"
        } else {
            "warn"
        },
    );
    // Every plugin is loaded in a child haifu first (`haifu plugins
    // probe`), so one that crashes or hangs costs a child, not this process.
    cmd::plugins::register_prober();
    let home = Home::new(cli.home);
    let result = match cli.command {
        Command::Demo(a) => cmd::demo::run(&home, a),
        Command::Register(a) => cmd::register::run(&home, a),
        Command::Versions(a) => cmd::versions::run(&home, a),
        Command::Manifest(a) => cmd::manifest::run(&home, a),
        Command::Export(a) => cmd::export::run(&home, a),
        Command::Fsck(a) => cmd::fsck::run(&home, a),
        Command::Keys(c) => cmd::keys::run(&home, c),
        Command::Check(a) => cmd::check::run(a),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Run(a) => cmd::run::run(&home, a),
        Command::Status(a) => cmd::status::run(&home, a),
        Command::Audit(a) => cmd::audit::run(&home, a),
        Command::Api(c) => cmd::api::run(&home, c),
        Command::Gate(a) => cmd::gate::run(&home, a),
        Command::Service(c) => cmd::service::run(&home, c),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Plugins(a) => cmd::plugins::run(a),
        Command::Ca(c) => cmd::ca::run(&home, c),
        Command::Fleet(c) => cmd::fleet::run(&home, c),
        Command::Rollback(a) => cmd::rollback::run(&home, a),
        Command::Master(a) => cmd::daemon::master(a),
        Command::Relay(a) => cmd::daemon::relay(a),
        Command::Client(a) => cmd::daemon::client(a),
        Command::Metrics(c) => cmd::metrics::run(c),
        Command::Schema(a) => cmd::schema::run(a),
        Command::Completions(a) => cmd::completions::completions(a, Cli::command()),
        Command::Man(a) => cmd::completions::man(a, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("haifu: error: {}", output::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through `tracing`; `RUST_LOG` sets the filter
/// (default: warnings and errors only; the daemons also log `info`).
fn init_tracing(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
