//! Which algorithm made a delta. The container records it (header byte 11),
//! the apply path dispatches on it, and the master logs and audits it.

use std::fmt;

/// How a delta's body turns the base into the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// One zstd frame per chunk, decoded with the base as its reference
    /// prefix: `zstd --patch-from`. Best on source trees and archives.
    PatchFrom,
    /// bsdiff-style approximate matches against a suffix array of the base:
    /// a control stream, the non-zero byte differences (where, and what)
    /// and a stream of new bytes, each compressed with zstd. Best on native
    /// code, where a small
    /// change shifts addresses everywhere after it (the differences are
    /// mostly zeros and compress to almost nothing).
    Bsdiff,
}

impl Method {
    /// Every method, in the order the maker tries them.
    pub const ALL: [Method; 2] = [Method::PatchFrom, Method::Bsdiff];

    /// The byte the container stores.
    pub const fn code(self) -> u8 {
        match self {
            Self::PatchFrom => 0,
            Self::Bsdiff => 1,
        }
    }

    /// The method a container byte names, if any.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::PatchFrom),
            1 => Some(Self::Bsdiff),
            _ => None,
        }
    }

    /// The name used in logs, the audit and cache file names.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PatchFrom => "patch-from",
            Self::Bsdiff => "bsdiff",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = UnknownMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMethod(s.to_owned()))
    }
}

/// A method name this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delta method {0:?} (known: patch-from, bsdiff)")]
pub struct UnknownMethod(pub String);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(Method::from_code(m.code()), Some(m));
            assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
        }
        assert_eq!(Method::from_code(2), None);
        assert_eq!(
            "xdelta".parse::<Method>().unwrap_err().to_string(),
            "unknown delta method \"xdelta\" (known: patch-from, bsdiff)"
        );
        assert_eq!(
            serde_json::to_string(&Method::PatchFrom).unwrap(),
            "\"patch-from\""
        );
    }
}
