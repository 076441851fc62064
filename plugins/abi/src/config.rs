//! Configuration as `key=value` lines, the format the host passes to
//! `init`, `group_open` and `endpoint_open`.
//!
//! One entry per line; blank lines and lines starting with `#` are ignored;
//! whitespace around keys and values is trimmed; a key may appear once. The
//! format needs no parser library, so a C plugin can read it with `strchr`.

use std::str::FromStr;

use crate::Error;

/// Parsed `key=value` configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Parses configuration bytes; errors name the line number.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Error::invalid(format!("configuration is not utf-8: {e}")))?;
        let mut entries: Vec<(String, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(Error::invalid(format!(
                    "configuration line {}: expected key=value, got {line:?}",
                    i + 1
                )));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(Error::invalid(format!(
                    "configuration line {}: empty key",
                    i + 1
                )));
            }
            if entries.iter().any(|(k, _)| k == key) {
                return Err(Error::invalid(format!(
                    "configuration line {}: key {key:?} given twice",
                    i + 1
                )));
            }
            entries.push((key.to_owned(), value.trim().to_owned()));
        }
        Ok(Self { entries })
    }

    /// Builds configuration from pairs (host side), e.g. for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// Renders the configuration back to `key=value` lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.entries {
            out.push_str(k);
            out.push('=');
            out.push_str(v);
            out.push('\n');
        }
        out
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The raw value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::invalid(format!("configuration: missing required key {key:?}")))
    }

    /// `key` parsed with [`FromStr`], if present.
    pub fn parse_opt<T>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|e| {
                Error::invalid(format!("configuration: bad value {v:?} for {key:?}: {e}"))
            }),
        }
    }

    /// `key` parsed with [`FromStr`], or `default` when absent.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, Error>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        Ok(self.parse_opt(key)?.unwrap_or(default))
    }

    /// A boolean (`true/false`, `yes/no`, `on/off`, `1/0`), or `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, Error> {
        match self.get(key) {
            None => Ok(default),
            Some("true" | "yes" | "on" | "1") => Ok(true),
            Some("false" | "no" | "off" | "0") => Ok(false),
            Some(v) => Err(Error::invalid(format!(
                "configuration: bad value {v:?} for {key:?}: expected true or false"
            ))),
        }
    }

    /// Fails on the first key not in `known`, so a typo is an error rather
    /// than a silently ignored setting.
    pub fn check_known(&self, known: &[&str]) -> Result<(), Error> {
        match self
            .entries
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => Err(Error::invalid(format!(
                "configuration: unknown key {k:?} (known: {})",
                known.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_comments_and_blanks() {
        let c = Config::parse(b"# comment\n group = 239.1.2.3:5000 \n\nttl=4\n").unwrap();
        assert_eq!(c.get("group"), Some("239.1.2.3:5000"));
        assert_eq!(c.parse_or::<u32>("ttl", 1).unwrap(), 4);
        assert_eq!(c.parse_or::<u32>("absent", 7).unwrap(), 7);
    }

    #[test]
    fn rejects_duplicates_missing_equals_and_unknown_keys() {
        assert!(
            Config::parse(b"a=1\na=2")
                .unwrap_err()
                .message()
                .contains("twice")
        );
        assert!(
            Config::parse(b"nonsense")
                .unwrap_err()
                .message()
                .contains("line 1")
        );
        let c = Config::parse(b"tll=3").unwrap();
        assert!(
            c.check_known(&["ttl"])
                .unwrap_err()
                .message()
                .contains("tll")
        );
    }

    #[test]
    fn round_trips_through_text() {
        let c = Config::from_pairs([("a", "1"), ("b", "x y")]);
        assert_eq!(Config::parse(c.to_text().as_bytes()).unwrap(), c);
    }
}
