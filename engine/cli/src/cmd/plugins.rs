//! `haifu plugins`: the transport plugins haifu finds, and what failed;
//! `haifu plugins check FILE` runs the conformance checks on one plugin;
//! `haifu plugins probe FILE` (hidden) is the child that loads a plugin
//! before a daemon does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

/// The environment variable that sets the probe's time limit, in
/// milliseconds (default 5,000).
pub(crate) const PROBE_TIMEOUT_ENV: &str = "HAIFU_PLUGIN_PROBE_TIMEOUT_MS";

#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Plugin N is the file libhaifu_transport_N.so; only files named so are \
listed, and no other file in the folder is opened. A folder that group or others may write, or \
that someone other than root or you owns, is refused; such a plugin file is listed with the \
reason and not loaded. Each file is first loaded by a child haifu process with a time limit \
(5 s; HAIFU_PLUGIN_PROBE_TIMEOUT_MS to change): a plugin that crashes, aborts, exits or hangs \
there is listed with what happened (\"killed by SIGSEGV in init\", \"no answer in 5 s in init\") \
and never loaded here. A plugin that fails to load (not a library, no entry symbol, another ABI \
version, a name other than its file's, an init that fails or panics) is listed with its error; \
the others still load. Exit status 1 when any failed."
)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Plugins folder [default: lib/haifu/plugins under the binary's prefix
    /// if it exists (/usr/lib/haifu/plugins for /usr/bin/haifu), else the
    /// binary's folder].
    #[arg(long, env = "HAIFU_PLUGINS", value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Run the conformance checks of SPEC.md on one plugin file: each
    /// rule with ok, FAIL or skip (an optional key or call the plugin does
    /// not offer). Exit status 1 when any rule failed.
    #[command(
        after_help = "The plugin is opened with the keys the engine passes (SPEC.md §5.6, §6.12): datagram groups as two members of a loopback multicast group (group, loopback, join, ttl, interface=127.0.0.1); streams as a listening and a connecting endpoint with certificates of a scratch fleet CA (ca, cert, key, listen). --config adds a key or replaces an engine key; in its value {port} is this member's port and {port_a}, {port_b} the two members' ports, e.g. for a unicast transport: --config 'bind=127.0.0.1:{port}' --config 'peers=127.0.0.1:{port_a},127.0.0.1:{port_b}'."
    )]
    Check {
        /// The plugin file (any name; a file named by the rule must declare
        /// the name its file name says).
        file: PathBuf,
        /// A configuration pair for the plugin, KEY=VALUE; repeat for more.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_pair)]
        config: Vec<(String, String)>,
        /// Print the rules as one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Load FILE, initialise and shut it down, printing each stage on
    /// stdout: the child process a daemon runs before loading a plugin.
    #[command(hide = true)]
    Probe {
        /// The plugin file.
        file: PathBuf,
    },
}

/// Registers this binary as the program that probes plugin files
/// (`haifu plugins probe FILE`), so every plugin is loaded in a child
/// process first. Without a path to this binary, plugins load unprobed.
pub(crate) fn register_prober() {
    let Ok(exe) = std::env::current_exe() else {
        tracing::warn!("cannot find the haifu binary: plugins load without a probe");
        return;
    };
    let timeout = std::env::var(PROBE_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(
            haifu_plugin_host::probe::DEFAULT_TIMEOUT,
            Duration::from_millis,
        );
    haifu_plugin_host::probe::set_prober(
        haifu_plugin_host::probe::Prober::new(exe, ["plugins", "probe"]).with_timeout(timeout),
    );
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    match args.action {
        Some(Action::Probe { file }) => {
            let code = haifu_plugin_host::probe::serve(&file, &mut std::io::stdout().lock());
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Some(Action::Check { file, config, json }) => check(&file, config, json),
        None => list(args.plugins, args.json),
    }
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    let k = k.trim();
    if k.is_empty() || s.contains('\n') {
        return Err(format!("expected KEY=VALUE on one line, got {s:?}"));
    }
    Ok((k.to_owned(), v.trim().to_owned()))
}

fn check(file: &std::path::Path, config: Vec<(String, String)>, json: bool) -> Result<ExitCode> {
    let plugin = haifu_plugin_host::load(file)?;
    let report = haifu_plugin_host::conformance::check(
        &plugin,
        &haifu_plugin_host::conformance::Options { config },
    )?;
    let failed = report.iter().filter(|c| !c.passed).count();
    if json {
        crate::output::json(&report)?;
    } else {
        let i = plugin.info();
        println!(
            "{} {} ({}), {}",
            i.name,
            i.version,
            i.shapes.names().join(", "),
            file.display()
        );
        let width = report.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &report {
            println!(
                "{:<4}  {:<width$}  {}",
                c.verdict(),
                c.name,
                c.detail.replace('\n', " ")
            );
        }
        let skipped = report.iter().filter(|c| c.skipped).count();
        println!(
            "{} rules: {} passed, {skipped} skipped, {failed} failed",
            report.len(),
            report.len() - failed - skipped
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn list(plugins: Option<PathBuf>, json: bool) -> Result<ExitCode> {
    let dir = haifu_plugin_host::plugin_dir(plugins.as_deref());
    let listing = haifu_plugin_host::list_plugins(&dir)?;
    if json {
        crate::output::json(&listing)?;
    } else {
        print!("{}", listing.to_table());
    }
    Ok(if listing.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
