//! Registering a version (steps 100-101): store, sign, record.
//!
//! Shared by `haifu register` and the `register` step of a run, so both give
//! the same guarantees: a refused file never reaches the store, the same
//! content twice changes nothing, and the ledger row only appears once the
//! object is complete on disk.

use std::fs;
use std::path::Path;

use haifu_carousel::{BlockHasher, CarouselConfig, ReceivePlan};
use haifu_core::{
    ArtifactName, CarouselLayout, Compression, MANIFEST_FORMAT, MAX_BLOCK_HASHES, Manifest,
    ManifestBody, SigningKey, Version,
};
use haifu_ledger::{Ledger, LedgerError, Recorded};
use haifu_store::{Store, StoreError};

/// Why a registration was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The file cannot be read.
    #[error("cannot read {}: {detail}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        detail: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger failed or refused (a conflicting version).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What [`register_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The manifest on record.
    pub manifest: Manifest,
    /// Whether this call created it (false: it was already registered).
    pub new: bool,
}

/// Registers `path` as `name` `version`. `progress(phase, done, total)`
/// reports bytes read, with `phase` "storing" or "checking".
pub fn register_file(
    ledger: &mut Ledger,
    store: &Store,
    key: &SigningKey,
    name: &ArtifactName,
    version: &Version,
    path: &Path,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Registered, RegisterError> {
    let meta = fs::metadata(path).map_err(|e| RegisterError::File {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(RegisterError::File {
            path: path.to_owned(),
            detail: "not a regular file".into(),
        });
    }
    let total = meta.len();

    if let Some(on_record) = ledger.manifest(name.as_str(), &version.to_string())? {
        // Compare before writing anything: a conflicting file must leave the
        // store untouched.
        let (digest, _) = Store::hash_file(path, &mut |n| progress("checking", n, total))?;
        if digest != on_record.body.sha3_256 {
            return Err(LedgerError::Conflict {
                name: name.to_string(),
                version: version.to_string(),
                existing: on_record.body.sha3_256.to_hex(),
                offered: digest.to_hex(),
            }
            .into());
        }
        if let Err(e) = store.verify(&digest) {
            tracing::warn!(error = %e, "stored copy is damaged or missing; storing it again");
            store.put_file(path, &mut |n| progress("storing", n, total))?;
        }
        tracing::info!(%name, %version, "already registered with the same content");
        return Ok(Registered {
            manifest: on_record,
            new: false,
        });
    }

    // The per-block hashes are computed from the same reads as the digest,
    // on a thread of their own; an artifact with more blocks than a
    // manifest carries gets the layout alone (whole-file digest only).
    let mut layout = crate::session::registration_layout();
    let plan = ReceivePlan::for_config(total, &CarouselConfig::default()).ok();
    let mut hasher = plan
        .as_ref()
        .filter(|p| p.block_count() <= MAX_BLOCK_HASHES as u64)
        .and_then(|p| BlockHasher::new(p).ok());
    let put = match hasher.as_mut() {
        Some(h) => {
            store.put_file_observed(path, &mut |n| progress("storing", n, total), &mut |bytes| {
                h.update(bytes)
            })?
        }
        None => store.put_file(path, &mut |n| progress("storing", n, total))?,
    };
    if let Some(h) = hasher {
        // Fails only if the file changed size while being read.
        let hashes = h.finish().map_err(|e| RegisterError::File {
            path: path.to_owned(),
            detail: format!("changed while being read: {e}"),
        })?;
        layout.block_hashes = CarouselLayout::encode_block_hashes(&hashes);
    } else {
        tracing::warn!(
            %name,
            %version,
            size = put.size,
            max_blocks = MAX_BLOCK_HASHES,
            "too many source blocks for per-block hashes; clients check the whole-file digest only"
        );
    }
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
        carousel: Some(layout),
    };
    let manifest = Manifest::sign(body, key);
    Ok(match ledger.record_version(&manifest)? {
        Recorded::New => {
            tracing::info!(%name, %version, digest = %put.digest, size = put.size, "registered");
            Registered {
                manifest,
                new: true,
            }
        }
        // Another registration of the same content won the race.
        Recorded::Existing(m) => Registered {
            manifest: *m,
            new: false,
        },
    })
}
