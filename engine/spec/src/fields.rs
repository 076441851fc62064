//! Typed reading of the positioned YAML tree, collecting errors as it goes.

use std::path::PathBuf;

use crate::error::{ErrorKind, SpecError, SpecWarning};
use crate::pos::{Pos, Spanned};
use crate::shape::Key;
use crate::suggest::did_you_mean;
use haifu_yaml::{Node, Value};

/// The errors and warnings of one workflow file, as they are found.
#[derive(Debug)]
pub(crate) struct Cx {
    pub file: PathBuf,
    pub errors: Vec<SpecError>,
    pub warnings: Vec<SpecWarning>,
}

impl Cx {
    pub(crate) fn new(file: PathBuf) -> Self {
        Cx {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, pos: Pos, kind: ErrorKind) {
        self.errors.push(SpecError {
            file: self.file.clone(),
            pos,
            kind,
        });
    }

    pub(crate) fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.warnings.push(SpecWarning {
            file: self.file.clone(),
            pos,
            message: message.into(),
        });
    }

    pub(crate) fn invalid(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.error(
            pos,
            ErrorKind::Invalid {
                key: key.to_string(),
                message: message.into(),
            },
        );
    }

    fn wrong_type(&mut self, node: &Node, key: &str, expected: &'static str) {
        self.error(
            node.pos,
            ErrorKind::WrongType {
                key: key.to_string(),
                expected,
                found: found(node),
            },
        );
    }
}

/// `section.key`, or `key` at the top.
pub(crate) fn join(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// What a node is, for "expected X, found Y".
pub(crate) fn found(node: &Node) -> &'static str {
    match &node.value {
        Value::Map(_) => "a mapping",
        Value::Seq(_) => "a list",
        Value::Scalar { .. } if node.is_null() => "nothing",
        Value::Scalar { quoted: true, .. } => "a string",
        Value::Scalar { text, .. } => {
            if text.parse::<i64>().is_ok() || text.parse::<f64>().is_ok() {
                "a number"
            } else if matches!(text.as_str(), "true" | "false" | "True" | "False") {
                "a boolean"
            } else {
                "a string"
            }
        }
    }
}

/// Reads one mapping: take the keys you know, then [`MapReader::finish`]
/// reports the rest as unknown (with a suggestion from `known`).
#[derive(Debug)]
pub(crate) struct MapReader<'a> {
    pub pos: Pos,
    section: String,
    entries: Vec<(&'a str, &'a Node, &'a Node, bool)>,
}

impl<'a> MapReader<'a> {
    /// `None` (and a wrong-type error) when `node` is not a mapping. Reports
    /// duplicate and non-text keys.
    pub(crate) fn new(node: &'a Node, section: &str, cx: &mut Cx) -> Option<Self> {
        let Value::Map(raw) = &node.value else {
            cx.wrong_type(
                node,
                if section.is_empty() {
                    "workflow"
                } else {
                    section
                },
                "a mapping",
            );
            return None;
        };
        let mut entries: Vec<(&'a str, &'a Node, &'a Node, bool)> = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            let Some(key) = k.scalar() else {
                cx.invalid(k.pos, section, "keys must be plain text");
                continue;
            };
            if let Some(first) = entries.iter().find(|e| e.0 == key) {
                cx.error(
                    k.pos,
                    ErrorKind::DuplicateKey {
                        key: key.to_string(),
                        first: first.1.pos,
                    },
                );
                continue;
            }
            entries.push((key, k, v, false));
        }
        Some(MapReader {
            pos: node.pos,
            section: section.to_string(),
            entries,
        })
    }

    /// The dotted key for `key` in this mapping.
    pub(crate) fn key(&self, key: &str) -> String {
        join(&self.section, key)
    }

    /// The value of `key`, if present (null values count as absent).
    pub(crate) fn take(&mut self, key: &str) -> Option<&'a Node> {
        let entry = self.entries.iter_mut().find(|e| e.0 == key)?;
        entry.3 = true;
        (!entry.2.is_null()).then_some(entry.2)
    }

    /// The value of `key`, or a missing-key error.
    pub(crate) fn require(&mut self, key: &'static str, cx: &mut Cx) -> Option<&'a Node> {
        let present = self.entries.iter().any(|e| e.0 == key);
        let value = self.take(key);
        if value.is_none() {
            let pos = self
                .entries
                .iter()
                .find(|e| e.0 == key)
                .map_or(self.pos, |e| e.1.pos);
            if present {
                cx.error(
                    pos,
                    ErrorKind::WrongType {
                        key: self.key(key),
                        expected: "a value",
                        found: "nothing",
                    },
                );
            } else {
                cx.error(
                    pos,
                    ErrorKind::MissingKey {
                        key,
                        section: self.section.clone(),
                    },
                );
            }
        }
        value
    }

    /// Reports every key not taken as unknown.
    pub(crate) fn finish(self, known: &[Key], cx: &mut Cx) {
        let known = crate::shape::names(known);
        for (key, knode, _, used) in self.entries {
            if !used {
                cx.error(
                    knode.pos,
                    ErrorKind::UnknownKey {
                        key: key.to_string(),
                        section: self.section.clone(),
                        suggestion: did_you_mean(key, &known),
                    },
                );
            }
        }
    }
}

/// Any non-null scalar, as text.
pub(crate) fn string(node: &Node, key: &str, cx: &mut Cx) -> Option<Spanned<String>> {
    match node.scalar() {
        Some(text) if !node.is_null() => Some(Spanned::new(text.to_string(), node.pos)),
        _ => {
            cx.wrong_type(node, key, "a string");
            None
        }
    }
}

/// An unquoted whole number.
pub(crate) fn uint(node: &Node, key: &str, cx: &mut Cx) -> Option<Spanned<u64>> {
    match &node.value {
        Value::Scalar {
            text,
            quoted: false,
        } => match text.parse::<u64>() {
            Ok(n) => Some(Spanned::new(n, node.pos)),
            Err(_) if text.parse::<i64>().is_ok() => {
                cx.invalid(node.pos, key, format!("must not be negative, found {text}"));
                None
            }
            Err(_) => {
                cx.wrong_type(node, key, "a whole number");
                None
            }
        },
        _ => {
            cx.wrong_type(node, key, "a whole number");
            None
        }
    }
}

/// An unquoted `true` or `false`.
pub(crate) fn flag(node: &Node, key: &str, cx: &mut Cx) -> Option<Spanned<bool>> {
    match &node.value {
        Value::Scalar {
            text,
            quoted: false,
        } if text == "true" || text == "false" => Some(Spanned::new(text == "true", node.pos)),
        _ => {
            cx.wrong_type(node, key, "true or false");
            None
        }
    }
}

/// A list of strings.
pub(crate) fn string_list(node: &Node, key: &str, cx: &mut Cx) -> Option<Vec<Spanned<String>>> {
    let Value::Seq(items) = &node.value else {
        cx.wrong_type(node, key, "a list");
        return None;
    };
    Some(
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| string(item, &format!("{key}[{i}]"), cx))
            .collect(),
    )
}
