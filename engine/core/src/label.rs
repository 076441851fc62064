//! Client labels: `key: value` pairs an operator gives a client in its
//! config (`site: store-12`, `ring: canary`) so that a rollout's stages and
//! `haifu rollback --label` can name groups of clients.
//!
//! One check for every place a label comes from: a client's config, the
//! wire (the master checks what a relay forwards), a workflow's stage and
//! the command line. Labels end up in SQL parameters, log lines and JSON,
//! so they keep to characters that need no quoting anywhere, and they are
//! bounded in number and length before anything is sized by them.

use std::collections::BTreeMap;

/// A client's labels, sorted by key; a key appears once.
pub type Labels = BTreeMap<String, String>;

/// The most labels one client carries (or one stage matches on).
pub const MAX_LABELS: usize = 16;
/// The longest label key, in bytes.
pub const MAX_LABEL_KEY_LEN: usize = 63;
/// The longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 63;

/// Why a label was refused. Each names the value it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// More labels than [`MAX_LABELS`].
    #[error("{count} labels, at most {MAX_LABELS}")]
    TooMany {
        /// How many there are.
        count: usize,
    },
    /// A key outside the allowed shape.
    #[error(
        "label key {0:?} must be 1 to {MAX_LABEL_KEY_LEN} characters: lowercase letters, digits, \
         '_' and '-', starting with a letter"
    )]
    BadKey(String),
    /// A value outside the allowed shape.
    #[error(
        "label value {0:?} must be 1 to {MAX_LABEL_VALUE_LEN} characters: letters, digits, '.', \
         '_' and '-', starting with a letter or digit"
    )]
    BadValue(String),
}

/// Cuts what a refusal quotes, so a hostile megabyte never reaches a log
/// line whole.
fn quoted(s: &str) -> String {
    s.chars().take(MAX_LABEL_VALUE_LEN + 1).collect()
}

/// Checks one key: `[a-z][a-z0-9_-]*`, at most [`MAX_LABEL_KEY_LEN`] bytes.
/// No '.': a key is one segment of a dotted config path (`labels.site`).
pub fn check_label_key(key: &str) -> Result<(), LabelError> {
    let mut chars = key.chars();
    let ok = key.len() <= MAX_LABEL_KEY_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(LabelError::BadKey(quoted(key)))
    }
}

/// Checks one value: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most
/// [`MAX_LABEL_VALUE_LEN`] bytes.
pub fn check_label_value(value: &str) -> Result<(), LabelError> {
    let mut chars = value.chars();
    let ok = value.len() <= MAX_LABEL_VALUE_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(LabelError::BadValue(quoted(value)))
    }
}

/// Checks a whole set: the count first, then each key and value.
pub fn check_labels<'a>(
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<(), LabelError> {
    if labels.len() > MAX_LABELS {
        return Err(LabelError::TooMany {
            count: labels.len(),
        });
    }
    for (k, v) in labels {
        check_label_key(k)?;
        check_label_value(v)?;
    }
    Ok(())
}

/// Reads `key=value` (the command line's spelling), checked.
pub fn parse_label(text: &str) -> Result<(String, String), LabelError> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| LabelError::BadKey(quoted(text)))?;
    check_label_key(k)?;
    check_label_value(v)?;
    Ok((k.to_owned(), v.to_owned()))
}

/// Whether `labels` holds every pair of `wanted` (an empty `wanted`
/// matches nothing: a stage or order that names no label names nobody).
pub fn matches_all(labels: &Labels, wanted: &Labels) -> bool {
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_keep_to_their_charset_and_length() {
        assert_eq!(check_label_key("site"), Ok(()));
        assert_eq!(check_label_key("ring_2-a"), Ok(()));
        assert_eq!(check_label_value("store-12"), Ok(()));
        assert_eq!(check_label_value("1.2.0_b"), Ok(()));
        for bad in ["", "Site", "2ring", "a.b", "a b", "é", &"k".repeat(64)] {
            assert_eq!(
                check_label_key(bad),
                Err(LabelError::BadKey(quoted(bad))),
                "{bad}"
            );
        }
        for bad in ["", "-x", "a b", "a/b", "a=b", &"v".repeat(64)] {
            assert!(
                matches!(check_label_value(bad), Err(LabelError::BadValue(_))),
                "{bad}"
            );
        }
        let e = check_label_value(&"v".repeat(5000))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 300 && !e.contains('\n'), "{e}");
    }

    #[test]
    fn a_set_is_bounded_before_its_items_are_read() {
        let many: Labels = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        let e = check_labels(many.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err();
        assert_eq!(e, LabelError::TooMany { count: 17 });
        assert_eq!(e.to_string(), "17 labels, at most 16");
        let ok: Labels = [("ring".into(), "canary".into())].into();
        assert_eq!(
            check_labels(ok.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            Ok(())
        );
    }

    #[test]
    fn the_command_line_spelling_and_matching() {
        assert_eq!(
            parse_label("ring=canary"),
            Ok(("ring".into(), "canary".into()))
        );
        assert!(parse_label("ring").is_err());
        assert!(parse_label("ring=").is_err());
        let mine: Labels = [
            ("ring".into(), "canary".into()),
            ("site".into(), "s1".into()),
        ]
        .into();
        let want: Labels = [("ring".into(), "canary".into())].into();
        assert!(matches_all(&mine, &want));
        let other: Labels = [("ring".into(), "stable".into())].into();
        assert!(!matches_all(&mine, &other));
        assert!(!matches_all(&mine, &Labels::new()), "no label names nobody");
    }
}
