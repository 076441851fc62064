//! The master's signing key on disk.
//!
//! `master.key` holds the 32-byte secret seed as hex behind a header line,
//! mode 0600 in `keys/` (mode 0700); `master.pub` holds the public key as hex. Both are written
//! atomically, and the secret is published with a hard link, which fails if
//! the file appeared meanwhile: two first uses at once end with one key.
//! A secret key file that group or others may read is refused, naming the
//! `chmod 600` to run.

use std::fs;
use std::io;
use std::path::Path;

use haifu_core::{PublicKey, SigningKey};

use crate::StoreError;
use crate::atomic::{sync_dir, temp_name, write_atomic};

const SECRET_FILE: &str = "master.key";
const PUBLIC_FILE: &str = "master.pub";
const HEADER: &str = "haifu ed25519 secret key v1";

/// Loads the master key from `dir`, creating it (and `dir`) on first use.
pub fn load_or_create_master_key(dir: &Path) -> Result<SigningKey, StoreError> {
    let secret = dir.join(SECRET_FILE);
    match read_secret(&secret) {
        Ok(text) => return parse_secret(&secret, &text),
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    crate::create_private_dir(dir)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| StoreError::Io {
        op: "get randomness for",
        path: secret.clone(),
        source: io::Error::other(e.to_string()),
    })?;
    let key = SigningKey::from_seed(seed);
    let text = format!("{HEADER}\n{}\n", hex::encode(seed));
    let staged = dir.join(format!(".{}", temp_name("key")));
    write_atomic(&staged, text.as_bytes(), true)?;
    let linked = fs::hard_link(&staged, &secret);
    let _ = fs::remove_file(&staged);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            tracing::info!(path = %secret.display(), public_key = %key.public_key(), "created master key");
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let text = read_secret(&secret)?;
            return parse_secret(&secret, &text);
        }
        Err(e) => return Err(StoreError::io("create", &secret)(e)),
    }
    write_atomic(
        &dir.join(PUBLIC_FILE),
        format!("{}\n", key.public_key()).as_bytes(),
        false,
    )?;
    Ok(key)
}

/// Reads a public key file (one line of hex), such as the `master.pub` a
/// client pins.
pub fn read_public_key(path: &Path) -> Result<PublicKey, StoreError> {
    let text = fs::read_to_string(path).map_err(StoreError::io("read", path))?;
    text.trim()
        .parse()
        .map_err(|e: haifu_core::KeyError| StoreError::BadKey {
            path: path.to_owned(),
            detail: e.to_string(),
        })
}

/// A key file is two short lines; anything longer is not one.
const MAX_KEY_FILE: u64 = 4096;

/// Reads the secret key file, refusing it when group or others may read
/// or write it: a key others could read is a key others may have, and
/// signing with it silently would hide that. The mode is checked on the
/// open file, so it is the file that is read.
fn read_secret(path: &Path) -> Result<String, StoreError> {
    use std::io::Read;
    let file = fs::File::open(path).map_err(StoreError::io("read", path))?;
    let meta = file.metadata().map_err(StoreError::io("read", path))?;
    if !meta.is_file() {
        return Err(StoreError::BadKey {
            path: path.to_owned(),
            detail: "not a regular file".into(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::KeyPermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(StoreError::io("read", path))?;
    Ok(text)
}

fn parse_secret(path: &Path, text: &str) -> Result<SigningKey, StoreError> {
    let bad = |detail: &str| StoreError::BadKey {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(bad("first line is not the haifu key header"));
    }
    let hex_seed = lines.next().unwrap_or_default().trim();
    let mut seed = [0u8; 32];
    if hex_seed.len() != 64 || hex::decode_to_slice(hex_seed, &mut seed).is_err() {
        return Err(bad("second line is not 64 hex characters"));
    }
    Ok(SigningKey::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let a = load_or_create_master_key(&keys).unwrap();
        let b = load_or_create_master_key(&keys).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(
            read_public_key(&keys.join(PUBLIC_FILE)).unwrap(),
            a.public_key()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(keys.join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_readable_by_others_is_refused_naming_mode_and_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        load_or_create_master_key(&keys).unwrap();
        let secret = keys.join(SECRET_FILE);
        let dir_mode = fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        for mode in [0o666, 0o640, 0o604] {
            fs::set_permissions(&secret, fs::Permissions::from_mode(mode)).unwrap();
            let e = load_or_create_master_key(&keys).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "master key {0} has mode {mode:04o}: group or others may read it; \
                     if it is still secret, run: chmod 600 {0}",
                    secret.display()
                )
            );
        }
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o400)).unwrap();
        load_or_create_master_key(&keys).unwrap();
    }

    #[test]
    fn damaged_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SECRET_FILE), "junk\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join(SECRET_FILE);
            fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = load_or_create_master_key(dir.path()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("master.key is not valid"), "{msg}");
    }
}
