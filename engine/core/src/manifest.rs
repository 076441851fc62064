//! The signed manifest: what a master vouches for when it registers a version.
//!
//! The signature covers a fixed byte string: the domain tag
//! `haifu-manifest-v1\n` followed by the compact JSON of [`ManifestBody`]
//! with its fields in declaration order. Serialising a struct (never a map)
//! keeps those bytes deterministic, so a verifier rebuilds them from the
//! parsed fields; fields added to the JSON later are simply not covered.
//!
//! Formats: 1 (before per-block hashes) has no `carousel` field and its
//! JSON, hence its signed bytes, are exactly what older builds wrote, so
//! ledgers registered then still verify. 2 adds the signed [`CarouselLayout`]:
//! the broadcast layout chosen at registration and a hash of every source
//! block, so a client can hold each datagram to the layout and throw away a
//! block that decodes wrong instead of the whole artifact. A format-2
//! manifest must carry it and a format-1 one must not, so stripping it from
//! a signed manifest breaks the signature rather than downgrading checks.
//!
//! Size: the manifest travels inline in protocol messages bounded at 64 KiB
//! (`haifu_protocol::MAX_MANIFEST_LEN`). The block hashes are 16 bytes each
//! (32 hex characters) and at most [`MAX_BLOCK_HASHES`] are carried: 57,600
//! characters, which leaves room for the longest names. At the default
//! layout (blocks of 3,972 × 1,408 bytes) that covers artifacts up to about
//! 9.4 GiB; a larger artifact is registered with the layout and an empty
//! list, and is checked by its whole-file digest only.

use serde::{Deserialize, Serialize};

use crate::{ArtifactName, Digest, KeyError, PublicKey, SigningKey, Version};

/// The manifest format this build writes.
pub const MANIFEST_FORMAT: u32 = 2;
/// The format before per-block hashes; still verified and received.
pub const MANIFEST_FORMAT_V1: u32 = 1;
/// Most block hashes a manifest carries (see the module documentation).
pub const MAX_BLOCK_HASHES: usize = 1800;
/// Bytes of one block hash (sha3-256 truncated).
pub const BLOCK_HASH_LEN: usize = 16;

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
    /// Format 2: how the artifact is broadcast and each block's hash.
    /// Absent in format 1, so format-1 JSON and signatures are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carousel: Option<CarouselLayout>,
}

/// The broadcast layout fixed at registration, and the source blocks'
/// hashes, signed with the rest of the manifest (format 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarouselLayout {
    /// Payload bytes per symbol.
    pub symbol_size: u16,
    /// Objects are `2^object_shift` bytes except the last.
    pub object_shift: u8,
    /// The sender's target source symbols per block.
    pub block_symbols: u32,
    /// sha3-256 of each source block's bytes, first 16 bytes, in artifact
    /// order (object by object, block by block), as one lower-case hex
    /// string; empty when the artifact has more than [`MAX_BLOCK_HASHES`]
    /// blocks.
    pub block_hashes: String,
}

impl CarouselLayout {
    /// The block hashes as bytes (empty if the manifest carries none).
    pub fn block_hashes(&self) -> Result<Vec<[u8; BLOCK_HASH_LEN]>, ManifestError> {
        let bad = |why: &str| ManifestError::Field(format!("block_hashes: {why}"));
        let hex_len = 2 * BLOCK_HASH_LEN;
        if !self.block_hashes.len().is_multiple_of(hex_len) {
            return Err(bad("length is not a whole number of hashes"));
        }
        if self.block_hashes.len() / hex_len > MAX_BLOCK_HASHES {
            return Err(bad("more hashes than a manifest may carry"));
        }
        let bytes = hex::decode(&self.block_hashes).map_err(|e| bad(&e.to_string()))?;
        Ok(bytes
            .chunks_exact(BLOCK_HASH_LEN)
            .map(|c| {
                let mut h = [0u8; BLOCK_HASH_LEN];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }

    /// Encodes `hashes` for the manifest; more than [`MAX_BLOCK_HASHES`]
    /// gives an empty list (whole-file digest only).
    pub fn encode_block_hashes(hashes: &[[u8; BLOCK_HASH_LEN]]) -> String {
        if hashes.len() > MAX_BLOCK_HASHES {
            return String::new();
        }
        hex::encode(hashes.concat())
    }
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
    #[error(
        "manifest format {found} is not supported (this haifu reads formats {MANIFEST_FORMAT_V1} and {MANIFEST_FORMAT})"
    )]
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
        match (self.format, &self.carousel) {
            (MANIFEST_FORMAT_V1, None) => {}
            (MANIFEST_FORMAT, Some(c)) => {
                c.block_hashes()?;
            }
            (MANIFEST_FORMAT_V1 | MANIFEST_FORMAT, _) => {
                return Err(ManifestError::Field(format!(
                    "format {} {} a carousel layout",
                    self.format,
                    if self.carousel.is_some() {
                        "may not carry"
                    } else {
                        "must carry"
                    }
                )));
            }
            (found, _) => return Err(ManifestError::Format { found }),
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
            carousel: Some(CarouselLayout {
                symbol_size: 1408,
                object_shift: 26,
                block_symbols: 4000,
                block_hashes: "ab".repeat(2 * BLOCK_HASH_LEN),
            }),
        }
    }

    /// A manifest signed by the build before block hashes (format 1),
    /// generated with that build's code: ledgers hold such manifests.
    const SIGNED_BY_FORMAT_1_BUILD: &str = r#"{"format":1,"name":"pos-app","version":"2.4.0","size":1234,"sha3_256":"0303030303030303030303030303030303030303030303030303030303030303","created_at":"2026-11-27T12:00:00Z","compression":"zstd","stored_size":99,"public_key":"6e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80505bf1","signature":"e84b689690ae47d17c28c910d974b90b07c48f6cd34c767f89a8f404f24a49d1d2c1196ca356e6d1db64f5436ac6e62c21004d88262e597633a7c9bf04a57208"}"#;

    #[test]
    fn format_1_manifest_from_before_block_hashes_still_verifies() {
        let key = SigningKey::from_seed([5; 32]);
        let m = Manifest::from_json(SIGNED_BY_FORMAT_1_BUILD.as_bytes()).unwrap();
        assert_eq!(m.body.format, MANIFEST_FORMAT_V1);
        assert_eq!(m.body.carousel, None);
        m.verify(&key.public_key()).unwrap();
        // Written back byte for byte: no new field appears in format 1.
        assert_eq!(m.to_json(), SIGNED_BY_FORMAT_1_BUILD);
        // And signing the same format-1 body today gives the same bytes.
        let again = Manifest::sign(m.body.clone(), &key);
        assert_eq!(again.to_json(), SIGNED_BY_FORMAT_1_BUILD);
    }

    #[test]
    fn format_2_signs_the_layout_and_block_hashes() {
        let key = SigningKey::from_seed([5; 32]);
        let m = Manifest::sign(body(), &key);
        let json = m.to_json();
        assert!(
            json.contains("\"carousel\":{\"symbol_size\":1408"),
            "{json}"
        );
        let back = Manifest::from_json(json.as_bytes()).unwrap();
        back.verify(&key.public_key()).unwrap();
        let hashes = back.body.carousel.as_ref().unwrap().block_hashes().unwrap();
        assert_eq!(hashes, vec![[0xab; BLOCK_HASH_LEN]; 2]);
        // A changed block hash breaks the signature.
        let mut tampered = m.clone();
        tampered.body.carousel.as_mut().unwrap().block_hashes = "cd".repeat(32);
        assert!(matches!(
            tampered.verify(&key.public_key()),
            Err(ManifestError::Signature(_))
        ));
        // Stripping the layout, or claiming format 1 without it, is refused
        // before the signature: checks cannot be downgraded.
        let mut stripped = m.clone();
        stripped.body.carousel = None;
        assert!(matches!(
            stripped.verify(&key.public_key()),
            Err(ManifestError::Field(_))
        ));
        let mut downgraded = stripped;
        downgraded.body.format = MANIFEST_FORMAT_V1;
        assert!(matches!(
            downgraded.verify(&key.public_key()),
            Err(ManifestError::Signature(_))
        ));
        // A format-1 body with a layout is not a manifest any build wrote.
        let mut b = body();
        b.format = MANIFEST_FORMAT_V1;
        assert!(matches!(
            Manifest::sign(b, &key).verify(&key.public_key()),
            Err(ManifestError::Field(_))
        ));
    }

    #[test]
    fn malformed_block_hashes_are_refused() {
        let key = SigningKey::from_seed([5; 32]);
        for bad in [
            "abc",
            "zz".repeat(16).as_str(),
            &"00".repeat(16 * (MAX_BLOCK_HASHES + 1)),
        ] {
            let mut b = body();
            b.carousel.as_mut().unwrap().block_hashes = bad.to_string();
            let e = Manifest::sign(b, &key)
                .verify(&key.public_key())
                .unwrap_err();
            assert!(e.to_string().contains("block_hashes"), "{e}");
        }
    }

    #[test]
    fn the_largest_manifest_fits_the_protocol_bound() {
        // haifu_protocol::MAX_MANIFEST_LEN (core cannot depend on protocol).
        const MAX_MANIFEST_LEN: usize = 64 * 1024;
        let key = SigningKey::from_seed([5; 32]);
        let mut b = body();
        b.name = "a".repeat(128);
        b.version = format!("1.0.0-{}", "a".repeat(122));
        b.size = u64::MAX;
        b.stored_size = u64::MAX;
        b.carousel = Some(CarouselLayout {
            symbol_size: u16::MAX,
            object_shift: u8::MAX,
            block_symbols: u32::MAX,
            block_hashes: CarouselLayout::encode_block_hashes(&vec![[0xff; 16]; MAX_BLOCK_HASHES]),
        });
        let len = Manifest::sign(b, &key).to_json().len();
        assert!(len < MAX_MANIFEST_LEN, "{len} bytes");
        assert!(
            CarouselLayout::encode_block_hashes(&vec![[0; 16]; MAX_BLOCK_HASHES + 1]).is_empty()
        );
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
