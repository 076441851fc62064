//! Helpers shared by the integration tests: signed manifests and staging.
#![allow(dead_code)]

use haifu_core::{Compression, Digest, MANIFEST_FORMAT_V1, Manifest, ManifestBody, SigningKey};
use haifu_install::{InstallRoot, Verified};
use sha3::{Digest as _, Sha3_256};

pub(crate) fn key() -> SigningKey {
    SigningKey::from_seed([7; 32])
}

pub(crate) fn sha3(bytes: &[u8]) -> Digest {
    Digest::from_bytes(Sha3_256::digest(bytes).into())
}

pub(crate) fn manifest(version: &str, bytes: &[u8]) -> Manifest {
    Manifest::sign(
        ManifestBody {
            format: MANIFEST_FORMAT_V1,
            name: "pos-app".into(),
            version: version.into(),
            size: bytes.len() as u64,
            sha3_256: sha3(bytes),
            created_at: "2026-11-27T12:00:00Z".parse().unwrap(),
            compression: Compression::Zstd,
            stored_size: bytes.len() as u64,
            carousel: None,
        },
        &key(),
    )
}

/// Content for a version: deterministic, distinct per seed.
pub(crate) fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Stages `bytes` in blocks written back to front, then verifies.
pub(crate) fn stage(root: &InstallRoot, version: &str, bytes: &[u8]) -> Verified {
    let mut s = root.stage(bytes.len() as u64).unwrap();
    let block = 4096;
    let mut offsets: Vec<usize> = (0..bytes.len()).step_by(block).collect();
    offsets.reverse();
    for off in offsets {
        let end = (off + block).min(bytes.len());
        s.write_at(off as u64, &bytes[off..end]).unwrap();
    }
    s.verify(&manifest(version, bytes), &key().public_key())
        .unwrap()
}
