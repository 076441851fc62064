//! Artifact names and versions, validated once at the edge.

use std::fmt;
use std::str::FromStr;

/// The longest artifact name accepted.
const MAX_NAME_LEN: usize = 128;

/// The longest version accepted, in bytes. Equal to the wire protocol's
/// `MAX_ID_LEN` (engine/protocol/src/limits.rs), so that every registered
/// version can be carried in an `Instruction`; a test there asserts they
/// agree.
pub const MAX_VERSION_LEN: usize = 128;

/// The name of an artifact, e.g. `pos-app`.
///
/// Letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most
/// 128 characters: the name ends up in file names, URLs and log lines, so it
/// is kept to characters that need no quoting anywhere.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactName(String);

/// Why a name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    #[error("artifact name is empty")]
    Empty,
    /// The name is longer than allowed.
    #[error("artifact name {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    /// The name holds a character outside the allowed set.
    #[error(
        "artifact name {0:?} may only hold letters, digits, '.', '_' and '-', and must start with a letter or digit"
    )]
    BadCharacter(String),
}

impl ArtifactName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ArtifactName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s.to_owned()));
        }
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !(first_ok && rest_ok) {
            return Err(NameError::BadCharacter(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for ArtifactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ArtifactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The name of a service the gate answers for, e.g. `contactless-refund`.
///
/// The same rule as [`ArtifactName`] (letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit, at most 128 characters): a service name
/// is stored in the ledger and printed by `haifu gate` and the API, so no
/// control characters, spaces or quoting.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

/// A service name that breaks the rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "service name {0:?} must be 1-{MAX_NAME_LEN} letters, digits, '.', '_' or '-', starting with a letter or digit"
)]
pub struct ServiceNameError(pub String);

impl ServiceName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServiceName {
    type Err = ServiceNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<ArtifactName>() {
            Ok(n) => Ok(Self(n.0)),
            Err(_) => Err(ServiceNameError(s.chars().take(200).collect())),
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A semantic version (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`), ordered by semver
/// precedence.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(semver::Version);

/// A version string that is not semver.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("version {value:?} is not semver ({reason}); expected MAJOR.MINOR.PATCH such as 2.4.0")]
pub struct VersionError {
    /// The value at fault.
    pub value: String,
    /// What the semver parser said.
    pub reason: String,
}

impl Version {
    /// The underlying semver value.
    pub fn semver(&self) -> &semver::Version {
        &self.0
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Checked before parsing: the length bounds the parser's work, and a
        // 10,000-character pre-release would be registered but could never be
        // sent to a relay.
        if s.len() > MAX_VERSION_LEN {
            return Err(VersionError {
                value: format!("{}...", s.chars().take(32).collect::<String>()),
                reason: format!("{} bytes long, the limit is {MAX_VERSION_LEN}", s.len()),
            });
        }
        semver::Version::parse(s)
            .map(Self)
            .map_err(|e| VersionError {
                value: s.to_owned(),
                reason: e.to_string(),
            })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.0)
    }
}

/// Versions only move forward: whether `target` may replace `installed`
/// (nothing installed, or an older version of the same artifact). A stale
/// offer — a delta from an older run, a broadcast of an older version —
/// never takes a machine back.
pub fn moves_forward(installed: Option<&Version>, target: &Version) -> bool {
    installed.is_none_or(|i| target > i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["pos-app", "a", "kiosk_ui.2", "X9"] {
            assert_eq!(n.parse::<ArtifactName>().unwrap().as_str(), n);
        }
    }

    #[test]
    fn refuses_bad_names_naming_the_value() {
        assert_eq!("".parse::<ArtifactName>(), Err(NameError::Empty));
        for n in ["-x", "a b", "../etc", "a/b", "é"] {
            let e = n.parse::<ArtifactName>().unwrap_err();
            assert!(e.to_string().contains(&format!("{n:?}")), "{e}");
        }
        assert!(matches!(
            "a".repeat(129).parse::<ArtifactName>(),
            Err(NameError::TooLong(_))
        ));
    }

    #[test]
    fn service_names_follow_the_artifact_name_rule() {
        let n: ServiceName = "contactless-refund".parse().unwrap();
        assert_eq!(n.as_str(), "contactless-refund");
        for bad in ["", "refund\x1b[2J", "a b", "line\nbreak", "-x"] {
            let e = bad.parse::<ServiceName>().unwrap_err().to_string();
            assert!(e.starts_with("service name "), "{e}");
            assert!(!e.contains('\n') && !e.contains('\x1b'), "{e}");
        }
    }

    #[test]
    fn versions_only_move_forward() {
        let v = |s: &str| -> Version { s.parse().unwrap() };
        assert!(moves_forward(None, &v("1.0.0")));
        assert!(moves_forward(Some(&v("1.0.0")), &v("1.0.1")));
        assert!(moves_forward(Some(&v("1.0.0-rc.1")), &v("1.0.0")));
        assert!(!moves_forward(Some(&v("2.4.0")), &v("2.4.0")));
        assert!(!moves_forward(Some(&v("2.4.0")), &v("2.3.9")));
    }

    #[test]
    fn versions_order_by_semver_precedence() {
        let mut v: Vec<Version> = ["1.10.0", "1.2.0", "1.2.0-rc.1", "0.9.9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let shown: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["0.9.9", "1.2.0-rc.1", "1.2.0", "1.10.0"]);
    }

    #[test]
    fn versions_longer_than_the_limit_are_refused() {
        let at_limit = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LEN - 6));
        assert_eq!(at_limit.len(), MAX_VERSION_LEN);
        assert!(at_limit.parse::<Version>().is_ok());
        let over = format!("1.0.0-{}", "a".repeat(10_000));
        let msg = over.parse::<Version>().unwrap_err().to_string();
        assert!(msg.contains("10006 bytes long, the limit is 128"), "{msg}");
        // The value is shortened in the message: one line, not 10 kB.
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn refuses_non_semver_naming_the_value() {
        let e = "1.2".parse::<Version>().unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("version \"1.2\" is not semver"), "{msg}");
    }
}
