//! ed25519 keys: the master signs manifests, clients pin its public key.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::Signer;

/// The master's secret signing key. Its bytes never leave this type except
/// through [`SigningKey::to_seed`], which the key file writer uses.
pub struct SigningKey(ed25519_dalek::SigningKey);

/// A public key, shown and parsed as 64 lower-case hex characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

/// A key or signature that could not be read or did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not 64 hex characters, or not a valid curve point.
    #[error("{0:?} is not an ed25519 public key (expected 64 hex characters)")]
    BadPublicKey(String),
    /// Not 128 hex characters.
    #[error("{0:?} is not an ed25519 signature (expected 128 hex characters)")]
    BadSignature(String),
    /// Well-formed, but not made by this key over these bytes.
    #[error("signature does not verify against public key {0}")]
    Mismatch(String),
}

impl SigningKey {
    /// The key derived from a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The 32-byte secret seed, for writing the key file.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `msg`; the signature is 64 bytes.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "SigningKey(public {})", self.public_key())
    }
}

impl PublicKey {
    /// Checks a hex signature over `msg`, using strict verification (no
    /// malleable signatures, no small-order keys).
    pub fn verify_hex(&self, msg: &[u8], signature_hex: &str) -> Result<(), KeyError> {
        let mut sig = [0u8; 64];
        if signature_hex.len() != 128 || hex::decode_to_slice(signature_hex, &mut sig).is_err() {
            return Err(KeyError::BadSignature(signature_hex.to_owned()));
        }
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        self.0
            .verify_strict(msg, &sig)
            .map_err(|_| KeyError::Mismatch(self.to_string()))
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || KeyError::BadPublicKey(s.trim().to_owned());
        let s = s.trim();
        let mut raw = [0u8; 32];
        if s.len() != 64 {
            return Err(bad());
        }
        hex::decode_to_slice(s, &mut raw).map_err(|_| bad())?;
        ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map(Self)
            .map_err(|_| bad())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let k = SigningKey::from_seed([7; 32]);
        let sig = hex::encode(k.sign(b"hello"));
        k.public_key().verify_hex(b"hello", &sig).unwrap();
        assert!(matches!(
            k.public_key().verify_hex(b"hellO", &sig),
            Err(KeyError::Mismatch(_))
        ));
        assert!(matches!(
            k.public_key().verify_hex(b"hello", "00"),
            Err(KeyError::BadSignature(_))
        ));
    }

    #[test]
    fn public_key_hex_round_trip() {
        let p = SigningKey::from_seed([1; 32]).public_key();
        assert_eq!(p.to_string().parse::<PublicKey>().unwrap(), p);
        assert!("xyz".parse::<PublicKey>().is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = SigningKey::from_seed([9; 32]);
        let shown = format!("{k:?}");
        assert!(!shown.contains(&hex::encode([9u8; 32])));
    }
}
