//! Artifact names and versions, validated once at the edge.

use std::fmt;
use std::str::FromStr;

/// The longest artifact name accepted.
const MAX_NAME_LEN: usize = 128;

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
    fn refuses_non_semver_naming_the_value() {
        let e = "1.2".parse::<Version>().unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("version \"1.2\" is not semver"), "{msg}");
    }
}
