//! `haifu export`: write a registered artifact back to a file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};

use crate::home::Home;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The file is written atomically (a temporary file in the same folder, \
then renamed) and only once its sha3-256 verified. An existing file is refused unless --force \
is given; a path inside the home (the ledger, the store, the keys) is always refused."
)]
pub(crate) struct Args {
    /// Artifact name.
    name: String,
    /// Version.
    version: String,
    /// Where to write it; written atomically, and only if it verifies.
    #[arg(long, short)]
    output: PathBuf,
    /// Replace OUTPUT if it exists (never a file inside the home).
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
    check_output(home.root(), &args.output, args.force)?;
    let m = home
        .ledger_existing()?
        .manifest(&args.name, &args.version)?
        .ok_or_else(|| anyhow!("{} {} is not registered", args.name, args.version))?;
    let n = home
        .store_existing()?
        .export(&m.body.sha3_256, &args.output, args.force)?;
    eprintln!(
        "wrote {} ({n} bytes, sha3-256 verified)",
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Refuses an output inside the home (whatever `force` says: overwriting
/// the live ledger or a key destroys the master) and an existing one
/// without `force`. The folder is canonicalised, so `..` and symbolic links
/// cannot hide the home; the final name is checked as given, since the
/// rename replaces a link itself, not its target.
fn check_output(home: &Path, output: &Path, force: bool) -> Result<()> {
    let name = output
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file name", output.display()))?;
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = parent.canonicalize().with_context(|| {
        format!(
            "cannot write {}: folder {}",
            output.display(),
            parent.display()
        )
    })?;
    if let Ok(home) = home.canonicalize()
        && folder.join(name).starts_with(&home)
    {
        bail!(
            "refusing to write {}: it is inside the home {} (export outside it)",
            output.display(),
            home.display()
        );
    }
    if !force && std::fs::symlink_metadata(output).is_ok() {
        bail!(
            "{} exists; refusing to overwrite it (use --force to replace it)",
            output.display()
        );
    }
    Ok(())
}
