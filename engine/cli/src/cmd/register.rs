//! `haifu register`: steps 100-101 of the method.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use haifu_core::{ArtifactName, Compression, MANIFEST_FORMAT, Manifest, ManifestBody, Version};
use haifu_ledger::Recorded;
use haifu_store::Store;

use crate::home::Home;
use crate::{output, progress};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  haifu register --name pos-app --version 2.4.0 dist/pos-app-2.4.0.tar
  haifu register --name pos-app --version 2.4.0 dist/pos-app-2.4.0.tar --json

Registering the same name, version and content again succeeds and changes
nothing; the same name and version with other content is refused.")]
pub struct Args {
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

pub fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let name: ArtifactName = args.name.parse()?;
    let version: Version = args.version.parse()?;
    let meta =
        fs::metadata(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    if !meta.is_file() {
        bail!("cannot read {}: not a regular file", args.file.display());
    }

    let mut ledger = home.ledger()?;
    let store = home.store()?;
    let key = home.master_key()?;

    if let Some(on_record) = ledger.manifest(name.as_str(), &version.to_string())? {
        // Compare before writing anything: a conflicting file must leave the
        // store untouched.
        let bar = progress::bytes_bar(meta.len(), "checking");
        let (digest, _) = Store::hash_file(&args.file, &mut |n| bar.set_position(n))?;
        bar.finish_and_clear();
        if digest != on_record.body.sha3_256 {
            bail!(haifu_ledger::LedgerError::Conflict {
                name: name.to_string(),
                version: version.to_string(),
                existing: on_record.body.sha3_256.to_hex(),
                offered: digest.to_hex(),
            });
        }
        if let Err(e) = store.verify(&digest) {
            tracing::warn!(error = %e, "stored copy is damaged or missing; storing it again");
            store.put_file(&args.file, &mut |_| {})?;
        }
        tracing::info!(%name, %version, "already registered with the same content");
        return report(&on_record, args.json, false);
    }

    let bar = progress::bytes_bar(meta.len(), "storing");
    let put = store.put_file(&args.file, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();

    let now = jiff::Timestamp::now();
    let body = ManifestBody {
        format: MANIFEST_FORMAT,
        name: name.to_string(),
        version: version.to_string(),
        size: put.size,
        sha3_256: put.digest,
        created_at: jiff::Timestamp::from_second(now.as_second()).unwrap_or(now),
        compression: Compression::Zstd,
        stored_size: put.stored_size,
    };
    let manifest = Manifest::sign(body, &key);
    match ledger.record_version(&manifest)? {
        Recorded::New => report(&manifest, args.json, true),
        // Another registration of the same content won the race.
        Recorded::Existing(m) => report(&m, args.json, false),
    }
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
