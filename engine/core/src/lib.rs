//! haifu's core: the domain model shared by every other crate.
//!
//! What it does: validates artifact names and versions, defines the
//! [`Digest`] of an artifact (sha3-256 of its uncompressed bytes), and the
//! signed [`Manifest`] a master issues for every registered version, with the
//! signing and verification functions a client calls before it installs
//! anything.
//!
//! What it does not do: any I/O. No files, sockets, clocks or databases: the
//! caller passes bytes, digests and timestamps in, and gets values back.
#![forbid(unsafe_code)]

mod digest;
mod key;
mod label;
mod manifest;
mod name;
mod round;

pub use digest::{Digest, DigestError};
pub use key::{KeyError, PublicKey, SigningKey};
pub use label::{
    LabelError, Labels, MAX_LABEL_KEY_LEN, MAX_LABEL_VALUE_LEN, MAX_LABELS, check_label_key,
    check_label_value, check_labels, matches_all, parse_label,
};
pub use manifest::{
    BLOCK_HASH_LEN, CarouselLayout, Compression, MANIFEST_FORMAT, MANIFEST_FORMAT_V1,
    MAX_BLOCK_HASHES, Manifest, ManifestBody, ManifestError,
};
pub use name::{
    ArtifactName, MAX_VERSION_LEN, NameError, ServiceName, ServiceNameError, Version, VersionError,
    moves_forward,
};
pub use round::{MAX_ROUNDS, round_index};
