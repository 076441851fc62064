//! The signed manifest: what a master vouches for when it registers a version.
//!
//! The signature covers a fixed byte string: the domain tag
//! `haifu-manifest-v1\n` followed by the compact JSON of [`ManifestBody`]
//! with its fields in declaration order. Serialising a struct (never a map)
//! keeps those bytes deterministic, so a verifier rebuilds them from the
//! parsed fields; fields added to the JSON later are simply not covered.

use serde::{Deserialize, Serialize};

use crate::{ArtifactName, Digest, KeyError, PublicKey, SigningKey, Version};

/// The manifest format this build writes and understands.
pub const MANIFEST_FORMAT: u32 = 1;

/// Separates manifest signatures from any other use of the master key.
const DOMAIN_TAG: &[u8] = b"haifu-manifest-v1\n";

/// How the store keeps an artifact at rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A zstd frame of the whole artifact.
    Zstd,
}

/// The signed part of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestBody {
    /// [`MANIFEST_FORMAT`] when written.
    pub format: u32,
    /// Artifact name.
    pub name: String,
    /// Semver version.
    pub version: String,
    /// Size of the artifact in bytes, uncompressed.
    pub size: u64,
    /// sha3-256 of the uncompressed bytes; also the store key.
    pub sha3_256: Digest,
    /// When the master registered it (RFC 3339, UTC).
    pub created_at: jiff::Timestamp,
    /// How the bytes are kept at rest.
    pub compression: Compression,
    /// Size of the compressed object in the store.
    pub stored_size: u64,
}

/// A manifest with the master's public key and signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The signed fields.
    #[serde(flatten)]
    pub body: ManifestBody,
    /// The key that signed it.
    pub public_key: PublicKey,
    /// ed25519 signature, 128 lower-case hex characters.
    pub signature: String,
}

/// A manifest that cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The JSON does not parse as a manifest.
    #[error("manifest is not valid: {0}")]
    Malformed(String),
    /// A format this build does not know.
    #[error("manifest format {found} is not supported (this haifu reads format {MANIFEST_FORMAT})")]
    Format {
        /// The format found.
        found: u32,
    },
    /// Signed by a key other than the pinned one.
    #[error("manifest is signed by key {found}, not by the pinned master key {pinned}")]
    WrongKey {
        /// The key named in the manifest (hex).
        found: String,
        /// The key the verifier trusts (hex).
        pinned: String,
    },
    /// The signature does not match the fields.
    #[error("manifest signature is invalid: {0}")]
    Signature(#[from] KeyError),
    /// Name or version fields that are not valid.
    #[error("manifest field is invalid: {0}")]
    Field(String),
    /// The bytes do not match what the manifest promises.
    #[error("content does not match the manifest: {0}")]
    Content(String),
}

impl ManifestBody {
    /// The exact bytes the signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = DOMAIN_TAG.to_vec();
        // Serialising a plain struct of strings, numbers and a timestamp
        // cannot fail; fall back to an empty body rather than panic.
        out.extend(serde_json::to_vec(self).unwrap_or_default());
        out
    }

    fn check_fields(&self) -> Result<(), ManifestError> {
        if self.format != MANIFEST_FORMAT {
            return Err(ManifestError::Format { found: self.format });
        }
        self.name
            .parse::<ArtifactName>()
            .map_err(|e| ManifestError::Field(e.to_string()))?;
        self.version
            .parse::<Version>()
            .map_err(|e| ManifestError::Field(e.to_string()))?;
        Ok(())
    }
}

impl Manifest {
    /// Signs `body` with the master key.
    pub fn sign(body: ManifestBody, key: &SigningKey) -> Self {
        let signature = hex::encode(key.sign(&body.signing_bytes()));
        Self {
            body,
            public_key: key.public_key(),
            signature,
        }
    }

    /// Parses a manifest from JSON, checking only its shape.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))
    }

    /// One line of compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Verifies the manifest against the master key the caller pinned: the
    /// format, the fields, the key and the signature. A client calls this
    /// before it trusts a single byte of an artifact.
    pub fn verify(&self, pinned: &PublicKey) -> Result<(), ManifestError> {
        self.body.check_fields()?;
        if &self.public_key != pinned {
            return Err(ManifestError::WrongKey {
                found: self.public_key.to_string(),
                pinned: pinned.to_string(),
            });
        }
        pinned.verify_hex(&self.body.signing_bytes(), &self.signature)?;
        Ok(())
    }

    /// Checks that content of `size` bytes hashing to `digest` is what this
    /// manifest describes.
    pub fn verify_content(&self, size: u64, digest: &Digest) -> Result<(), ManifestError> {
        if size != self.body.size {
            return Err(ManifestError::Content(format!(
                "size is {size} bytes, manifest says {}",
                self.body.size
            )));
        }
        if digest != &self.body.sha3_256 {
            return Err(ManifestError::Content(format!(
                "sha3-256 is {digest}, manifest says {}",
                self.body.sha3_256
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> ManifestBody {
        ManifestBody {
            format: MANIFEST_FORMAT,
            name: "pos-app".into(),
            version: "2.4.0".into(),
            size: 1234,
            sha3_256: Digest::from_bytes([3; 32]),
            created_at: "2026-11-27T12:00:00Z".parse().unwrap(),
            compression: Compression::Zstd,
            stored_size: 99,
        }
    }

    #[test]
    fn signed_manifest_verifies_after_a_json_round_trip() {
        let key = SigningKey::from_seed([5; 32]);
        let m = Manifest::sign(body(), &key);
        let json = m.to_json();
        for k in [
            "name",
            "version",
            "size",
            "sha3_256",
            "signature",
            "created_at",
        ] {
            assert!(json.contains(&format!("\"{k}\":")), "{json}");
        }
        let back = Manifest::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, m);
        back.verify(&key.public_key()).unwrap();
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let key = SigningKey::from_seed([5; 32]);
        let m = Manifest::sign(body(), &key);
        let mut tampered = m.clone();
        tampered.body.size += 1;
        assert!(matches!(
            tampered.verify(&key.public_key()),
            Err(ManifestError::Signature(_))
        ));
        let mut tampered = m.clone();
        tampered.body.version = "2.4.1".into();
        assert!(tampered.verify(&key.public_key()).is_err());
    }

    #[test]
    fn another_key_is_refused_by_name() {
        let key = SigningKey::from_seed([5; 32]);
        let other = SigningKey::from_seed([6; 32]);
        let m = Manifest::sign(body(), &other);
        let e = m.verify(&key.public_key()).unwrap_err();
        assert!(matches!(e, ManifestError::WrongKey { .. }), "{e}");
        // Re-labelling the key does not help: the signature no longer matches.
        let mut relabelled = m;
        relabelled.public_key = key.public_key();
        assert!(matches!(
            relabelled.verify(&key.public_key()),
            Err(ManifestError::Signature(_))
        ));
    }

    #[test]
    fn unknown_format_and_bad_fields_are_refused() {
        let key = SigningKey::from_seed([5; 32]);
        let mut b = body();
        b.format = 9;
        let e = Manifest::sign(b, &key)
            .verify(&key.public_key())
            .unwrap_err();
        assert!(e.to_string().contains("format 9"), "{e}");
        let mut b = body();
        b.version = "latest".into();
        assert!(matches!(
            Manifest::sign(b, &key).verify(&key.public_key()),
            Err(ManifestError::Field(_))
        ));
    }

    #[test]
    fn garbage_json_is_malformed_not_a_panic() {
        for j in ["", "{", "[]", "{\"name\":1}", "null"] {
            assert!(matches!(
                Manifest::from_json(j.as_bytes()),
                Err(ManifestError::Malformed(_))
            ));
        }
    }

    #[test]
    fn content_check_names_both_values() {
        let key = SigningKey::from_seed([5; 32]);
        let m = Manifest::sign(body(), &key);
        m.verify_content(1234, &Digest::from_bytes([3; 32]))
            .unwrap();
        let e = m
            .verify_content(1, &Digest::from_bytes([3; 32]))
            .unwrap_err();
        assert!(e.to_string().contains("size is 1 bytes"), "{e}");
    }
}
