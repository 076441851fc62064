//! `haifu register`: steps 100-101 of the method.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use haifu_core::{ArtifactName, Manifest, Version};
use haifu_runtime::register::register_file;

use crate::home::Home;
use crate::{output, progress};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  haifu register --name pos-app --version 2.4.0 dist/pos-app-2.4.0.tar
  haifu register --name pos-app --version 2.4.0 dist/pos-app-2.4.0.tar --json

Registering the same name, version and content again succeeds and changes
nothing; the same name and version with other content is refused.")]
pub(crate) struct Args {
    /// Artifact name: letters, digits, '.', '_' and '-'.
    #[arg(long)]
    name: String,
    /// Semver version, such as 2.4.0.
    #[arg(long = "version", value_name = "VERSION")]
    version: String,
    /// The artifact file.
    file: PathBuf,
    /// Print the signed manifest as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let name: ArtifactName = args.name.parse()?;
    let version: Version = args.version.parse()?;
    // Refuse a missing, unreadable or special file before creating anything
    // in the home: a failed command leaves nothing behind. Opening it is the
    // only sure test of readability (metadata succeeds on a mode 000 file);
    // the metadata is checked first so a FIFO is refused without blocking.
    let meta = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if !meta.is_file() {
        anyhow::bail!("cannot read {}: not a regular file", args.file.display());
    }
    drop(
        std::fs::File::open(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?,
    );

    let mut ledger = home.ledger()?;
    let store = home.store()?;
    let key = home.master_key()?;
    let bar = progress::bytes_bar(meta.len(), "storing");
    let done = register_file(
        &mut ledger,
        &store,
        &key,
        &name,
        &version,
        &args.file,
        &mut |phase, n, _| {
            bar.set_message(phase.to_owned());
            bar.set_position(n);
        },
    );
    bar.finish_and_clear();
    let done = done?;
    report(&done.manifest, args.json, done.new)
}

fn report(m: &Manifest, json: bool, new: bool) -> Result<ExitCode> {
    if json {
        output::json(m)?;
    } else {
        let b = &m.body;
        let verb = if new {
            "registered"
        } else {
            "already registered (unchanged)"
        };
        println!("{verb} {} {}", b.name, b.version);
        println!("  sha3-256   {}", b.sha3_256);
        println!(
            "  size       {} (stored {}, zstd)",
            output::bytes(b.size),
            output::bytes(b.stored_size)
        );
        println!("  created    {}", b.created_at);
        println!("  signed by  {}", m.public_key);
    }
    Ok(ExitCode::SUCCESS)
}
