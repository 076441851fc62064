//! The carousel session a signed manifest prescribes: the layout
//! registration records, and the receive plan and sender both ends build
//! from it. No I/O: the fleet's broadcast (`haifu_fleet::broadcast`) moves
//! the bytes.

use haifu_carousel::{CarouselConfig, CarouselKey, EncodeError, LayoutError, ReceivePlan, Sender};
use haifu_core::{CarouselLayout, MANIFEST_FORMAT_V1, Manifest, ManifestError};

/// Why a manifest's session cannot be laid out.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The carousel refused the layout.
    #[error("carousel: {0}")]
    Encode(#[from] EncodeError),
    /// The manifest's carousel layout or block hashes are unusable.
    #[error("manifest's carousel layout: {0}")]
    Layout(#[from] LayoutError),
    /// The manifest's block hashes do not parse.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// The carousel layout registration records in a format-2 manifest: the
/// one relays send with. `block_hashes` is left empty for the caller.
pub fn registration_layout() -> CarouselLayout {
    let c = CarouselConfig::default();
    CarouselLayout {
        symbol_size: c.symbol_size,
        object_shift: c.object_shift,
        block_symbols: c.block_symbols,
        block_hashes: String::new(),
    }
}

/// The carousel configuration a verified manifest prescribes. Format-1
/// manifests carry none: every relay then sent with the defaults, so those
/// are what such a session is held to.
pub fn carousel_config(manifest: &Manifest) -> CarouselConfig {
    let mut config = CarouselConfig::default();
    if let Some(c) = &manifest.body.carousel {
        config.symbol_size = c.symbol_size;
        config.object_shift = c.object_shift;
        config.block_symbols = c.block_symbols;
    }
    config
}

/// What a client holds a session to: the verified manifest's size and
/// layout, and its block hashes when it carries them. Call only on a
/// manifest that passed [`Manifest::verify`].
pub fn receive_plan(manifest: &Manifest) -> Result<ReceivePlan, SessionError> {
    let plan = ReceivePlan::for_config(manifest.body.size, &carousel_config(manifest))?;
    let hashes = match &manifest.body.carousel {
        Some(c) => c.block_hashes()?,
        None => {
            debug_assert_eq!(manifest.body.format, MANIFEST_FORMAT_V1);
            Vec::new()
        }
    };
    if hashes.is_empty() {
        return Ok(plan);
    }
    Ok(plan.with_block_hashes(hashes)?)
}

/// The sender of a session for a verified manifest, laid out as the
/// manifest says (what the relay should send with, so that clients holding
/// the session to the manifest accept its datagrams).
pub fn sender_for(key: CarouselKey, manifest: &Manifest) -> Result<Sender, SessionError> {
    Ok(Sender::new(
        key,
        manifest.body.size,
        carousel_config(manifest),
    )?)
}
