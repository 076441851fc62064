//! The fleet PKI behind `haifu ca init` and `haifu ca issue NAME`.
//!
//! Layout under the haifu home:
//!
//! ```text
//! <home>/ca/ca.crt        fleet CA certificate (PEM), 0644
//! <home>/ca/ca.key        fleet CA private key (PEM, PKCS#8), 0600
//! <home>/certs/NAME.crt   leaf certificate for NAME, signed by the CA, 0644
//! <home>/certs/NAME.key   its private key, 0600
//! ```
//!
//! A leaf's identity is its common name, which is also its DNS subject
//! alternative name, so the same certificate serves as a TLS client
//! (relay or client connecting) and server (master or relay listening).
//! Its role (master, relay or client) is an extended key usage under
//! haifu's OID arc ([`ROLE_ARC`]): the daemons accept a peer only in the
//! role its certificate grants, so a terminal's certificate cannot act as
//! a relay.
//!
//! Keys are ECDSA P-256. Every file goes through the store's atomic,
//! never-replacing write (`haifu_store::write_new`), so a crash never leaves
//! half a key and existing files are never overwritten.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The CA's common name when the operator gives none.
pub const DEFAULT_CA_NAME: &str = "haifu fleet CA";
/// How long the CA certificate is valid.
pub const CA_VALID_DAYS: i64 = 20 * 365;
/// How long a leaf certificate is valid.
pub const LEAF_VALID_DAYS: i64 = 5 * 365;

/// haifu's OID arc, `2.25.4633265079750916938`: a UUID-based OID (ITU-T
/// X.667) chosen at random for haifu. The role of a certificate is the
/// extended key usage `<arc>.1` (master), `<arc>.2` (relay) or `<arc>.3`
/// (client). The quic plugin reads the same numbers (it cannot depend on
/// this crate); `tests/quic.rs` checks that the two agree.
pub const ROLE_ARC: [u64; 3] = [2, 25, 4_633_265_079_750_916_938];

/// What a certificate lets its holder be in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertRole {
    /// The master: the only one that instructs relays.
    Master,
    /// A relay: speaks for the clients registered behind it.
    Relay,
    /// A client: speaks for itself only.
    Client,
}

impl CertRole {
    /// Every role, in OID order.
    pub const ALL: [CertRole; 3] = [CertRole::Master, CertRole::Relay, CertRole::Client];

    /// The role's name, as the quic plugin reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Relay => "relay",
            Self::Client => "client",
        }
    }

    /// The role's extended-key-usage OID.
    pub fn oid(self) -> Vec<u64> {
        let last = match self {
            Self::Master => 1,
            Self::Relay => 2,
            Self::Client => 3,
        };
        let mut oid = ROLE_ARC.to_vec();
        oid.push(last);
        oid
    }
}

impl std::fmt::Display for CertRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CertRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (master, relay or client)"))
    }
}

/// A PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// `ca init` on a home that already has a CA.
    #[error("a fleet CA already exists at {}", path.display())]
    CaExists {
        /// The existing CA certificate or key.
        path: PathBuf,
    },
    /// `ca issue` before `ca init`.
    #[error("no fleet CA at {} (run `haifu ca init` first)", path.display())]
    NoCa {
        /// Where the CA was looked for.
        path: PathBuf,
    },
    /// `ca issue NAME` for a name that already has a certificate.
    #[error("a certificate for {name:?} already exists at {}", path.display())]
    CertExists {
        /// The name.
        name: String,
        /// The existing file.
        path: PathBuf,
    },
    /// The name cannot be a certificate identity.
    #[error("invalid identity {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("{}: {what}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a key or certificate failed (or it appeared meanwhile).
    #[error("{}: cannot write", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: haifu_store::StoreError,
    },
    /// Generating or parsing a key or certificate failed.
    #[error("{what}")]
    Cert {
        /// What was being done, with the file where there is one.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
}

/// Paths of the fleet CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// `<home>/ca/ca.crt`.
    pub cert: PathBuf,
    /// `<home>/ca/ca.key`.
    pub key: PathBuf,
}

/// Paths of an issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The identity (common name).
    pub name: String,
    /// `<home>/certs/NAME.crt`.
    pub cert: PathBuf,
    /// `<home>/certs/NAME.key`.
    pub key: PathBuf,
    /// The CA certificate that signed it (`<home>/ca/ca.crt`).
    pub ca_cert: PathBuf,
}

/// Where the fleet CA of `home` lives.
pub fn ca_files(home: &Path) -> CaFiles {
    let dir = home.join("ca");
    CaFiles {
        cert: dir.join("ca.crt"),
        key: dir.join("ca.key"),
    }
}

/// Where the certificate of `name` lives (whether or not it exists).
pub fn cert_files(home: &Path, name: &str) -> IssuedCert {
    let dir = home.join("certs");
    IssuedCert {
        name: name.to_owned(),
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        ca_cert: ca_files(home).cert,
    }
}

/// Checks that `name` can be an identity: 1-63 characters of `a-z`, `0-9`,
/// `-` and `.`, starting and ending with a letter or digit (a DNS name, so
/// TLS can verify it as a server name too).
pub fn validate_name(name: &str) -> Result<(), PkiError> {
    let bad = |reason| {
        Err(PkiError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 63 {
        return bad("must be 1 to 63 characters");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
    {
        return bad("only a-z, 0-9, '-' and '.' are allowed");
    }
    let edge_ok = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(name.bytes().next()) || !edge_ok(name.bytes().last()) {
        return bad("must start and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("must not contain '..'");
    }
    Ok(())
}

/// Creates the fleet CA under `<home>/ca/`. Fails if one exists.
pub fn init_ca(home: &Path, common_name: &str) -> Result<CaFiles, PkiError> {
    let files = ca_files(home);
    for p in [&files.cert, &files.key] {
        if p.exists() {
            return Err(PkiError::CaExists { path: p.clone() });
        }
    }
    let key = KeyPair::generate().map_err(|source| PkiError::Cert {
        what: "cannot generate the CA key".into(),
        source,
    })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALID_DAYS);
    let cert = params.self_signed(&key).map_err(|source| PkiError::Cert {
        what: "cannot self-sign the CA certificate".into(),
        source,
    })?;
    let dir = home.join("ca");
    create_private_dir(&dir)?;
    // Key first: a certificate without its key is useless, the reverse is
    // caught by the existence check above on the next try.
    write_new(&files.key, key.serialize_pem().as_bytes(), true)?;
    write_new(&files.cert, cert.pem().as_bytes(), false)?;
    Ok(files)
}

/// Issues a certificate and key for `name` in `role`, signed by the fleet
/// CA of `home`, under `<home>/certs/`. Fails if `name` already has one.
pub fn issue(home: &Path, name: &str, role: CertRole) -> Result<IssuedCert, PkiError> {
    validate_name(name)?;
    let ca = ca_files(home);
    if !ca.cert.exists() || !ca.key.exists() {
        return Err(PkiError::NoCa { path: ca.cert });
    }
    let out = cert_files(home, name);
    for p in [&out.cert, &out.key] {
        if p.exists() {
            return Err(PkiError::CertExists {
                name: name.to_owned(),
                path: p.clone(),
            });
        }
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| PkiError::Io {
            path: p.to_path_buf(),
            what: "cannot read",
            source,
        })
    };
    let ca_key = KeyPair::from_pem(&read(&ca.key)?).map_err(|source| PkiError::Cert {
        what: format!("{}: cannot parse the CA key", ca.key.display()),
        source,
    })?;
    let issuer =
        Issuer::from_ca_cert_pem(&read(&ca.cert)?, ca_key).map_err(|source| PkiError::Cert {
            what: format!("{}: cannot parse the CA certificate", ca.cert.display()),
            source,
        })?;
    let key = KeyPair::generate().map_err(|source| PkiError::Cert {
        what: format!("cannot generate a key for {name:?}"),
        source,
    })?;
    let mut params =
        CertificateParams::new(vec![name.to_owned()]).map_err(|source| PkiError::Cert {
            what: format!("cannot use {name:?} as a subject alternative name"),
            source,
        })?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::Other(role.oid()),
    ];
    set_validity(&mut params, LEAF_VALID_DAYS);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| PkiError::Cert {
            what: format!("cannot sign the certificate for {name:?}"),
            source,
        })?;
    create_private_dir(&home.join("certs"))?;
    write_new(&out.key, key.serialize_pem().as_bytes(), true)?;
    write_new(&out.cert, cert.pem().as_bytes(), false)?;
    Ok(out)
}

/// Valid from yesterday (clock skew between machines) for `days`.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs() / 86_400).unwrap_or(0));
    let (y, m, d) = civil_from_days(today - 1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_from_days(today + days);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        i32::try_from(y).unwrap_or(9999),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        what: "cannot create folder",
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| PkiError::Io {
                path: dir.to_path_buf(),
                what: "cannot restrict folder permissions",
                source,
            },
        )?;
    }
    Ok(())
}

/// Writes `data` to `path` through the store's atomic, never-replacing
/// write; a key (`private`) is 0600 from the start.
fn write_new(path: &Path, data: &[u8], private: bool) -> Result<(), PkiError> {
    haifu_store::write_new(path, data, private).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(validate_name("store-east").is_ok());
        assert!(validate_name("relay.01").is_ok());
        for bad in ["", "-a", "a-", "A", "a b", "a_b", "a..b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn init_then_issue_writes_files_with_private_keys() {
        let home = tempfile::tempdir().unwrap();
        let ca = init_ca(home.path(), DEFAULT_CA_NAME).unwrap();
        assert!(matches!(
            init_ca(home.path(), DEFAULT_CA_NAME),
            Err(PkiError::CaExists { .. })
        ));
        let leaf = issue(home.path(), "store-east", CertRole::Relay).unwrap();
        assert!(matches!(
            issue(home.path(), "store-east", CertRole::Client),
            Err(PkiError::CertExists { .. })
        ));
        assert_eq!(leaf.ca_cert, ca.cert);
        let pem = std::fs::read_to_string(&leaf.cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&ca.key), 0o600);
            assert_eq!(mode(&leaf.key), 0o600);
            assert_eq!(mode(&leaf.cert), 0o644);
        }
    }

    #[test]
    fn issue_without_ca_says_what_to_run() {
        let home = tempfile::tempdir().unwrap();
        let e = issue(home.path(), "a", CertRole::Client).unwrap_err();
        assert!(e.to_string().contains("haifu ca init"), "{e}");
    }
}
