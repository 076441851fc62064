//! `haifu plugins`: the transport plugins haifu finds, and what failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Plugin N is the file libhaifu_transport_N.so; only files named so are \
listed, and no other file in the folder is opened. A folder that group or others may write, or \
that someone other than root or you owns, is refused; such a plugin file is listed with the \
reason and not loaded. A plugin that fails to load (not a library, no entry symbol, another ABI \
version, a name other than its file's, an init that fails or panics) is listed with its error; \
the others still load. Exit status 1 when any failed."
)]
pub(crate) struct Args {
    /// Plugins folder [default: lib/haifu/plugins under the binary's prefix
    /// if it exists (/usr/lib/haifu/plugins for /usr/bin/haifu), else the
    /// binary's folder].
    #[arg(long, env = "HAIFU_PLUGINS", value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let dir = haifu_plugin_host::plugin_dir(args.plugins.as_deref());
    let listing = haifu_plugin_host::list_plugins(&dir)?;
    if args.json {
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
