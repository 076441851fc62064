//! haifu's positioned YAML: the only crate that knows which YAML library
//! haifu uses, shared by the workflow parser (`haifu-spec`), the daemon
//! configs' shape check and the policy cases (`haifu-policy`).
//!
//! It turns text into a small tree of [`Node`]s, each carrying the line and
//! column where it starts. Everything after this module works on that tree.
//!
//! Why `yaml-rust2` and not `serde_yaml`: semantic errors (an unknown key, a
//! zero round count, steps out of order) must name `FILE:LINE:COLUMN`, and
//! `validate` must collect every error rather than stop at the first.
//! `serde_yaml` 0.9 (deprecated upstream) reports a position only for the
//! first error its deserializer meets and exposes no positions on its values;
//! its event layer, `unsafe-libyaml`, is an `unsafe` C translation that our
//! `#![forbid(unsafe_code)]` rules out calling. `yaml-rust2` is a pure-Rust
//! YAML 1.2 parser whose pull API yields every event with its `Marker`, which
//! is exactly a positioned tree. Typing is done by each reader's own
//! extractors (`haifu-spec`'s `fields.rs`), per expected type, which also avoids YAML 1.1 surprises
//! (`version: 2.10` silently becoming the float 2.1, `no` becoming false).
//! To swap the library, rewrite [`parse`] and keep [`Node`].

#![forbid(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A line and column in a file, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Nesting deeper than this is refused: no workflow needs it, and it bounds
/// the work a hostile file can cause.
const MAX_DEPTH: usize = 64;

/// Nodes in one document, at most (a workflow has a few dozen).
const MAX_NODES: usize = 100_000;

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where it starts.
    pub pos: Pos,
    /// What it is.
    pub value: Value,
}

/// The shape of a node. Scalars stay text: typing happens per expected type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar, as text.
    Scalar {
        /// The text as written (unquoted).
        text: String,
        /// Quoted, block (`|`, `>`) or tagged `!!str`: always a string.
        quoted: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping. Entries in source order (duplicates are kept; the reader reports them).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Whether this is YAML's null (`~`, `null`, or nothing).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, quoted: false }
            if text.is_empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    }

    /// The plain or quoted text of a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// A YAML syntax problem and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    /// Where.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

fn pos(m: &Marker) -> Pos {
    // yaml-rust2 markers: line from 1, column from 0.
    Pos {
        line: m.line().max(1),
        column: m.col() + 1,
    }
}

enum Frame {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Node, Node)>, Option<Node>),
}

/// Parses one YAML document into a tree. `Ok(None)` for a file with no
/// document at all.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    // The parser is not ours; a panic inside it on some odd input must still
    // come back as an error on a line, never take the process down.
    match catch_unwind(AssertUnwindSafe(|| parse_events(text))) {
        Ok(result) => result,
        Err(_) => Err(YamlError {
            pos: Pos { line: 1, column: 1 },
            message: "the YAML parser failed on this file".into(),
        }),
    }
}

fn parse_events(text: &str) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;
    loop {
        let (event, marker) = parser.next_token().map_err(|e| YamlError {
            pos: pos(e.marker()),
            message: e.info().to_string(),
        })?;
        let at = pos(&marker);
        let complete = match event {
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => continue,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        pos: at,
                        message: "a haifu file holds one YAML document; found a second".into(),
                    });
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(YamlError {
                    pos: at,
                    // An alias repeats a whole subtree for a few bytes of
                    // text: a 1 MB file can expand to gigabytes. No haifu
                    // file needs them (workflows, daemon configs).
                    message: "YAML aliases (*name) are not supported in haifu files".into(),
                });
            }
            Event::Scalar(text, style, _anchor, tag) => {
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                Node {
                    pos: at,
                    value: Value::Scalar {
                        text,
                        quoted: style != TScalarStyle::Plain || tagged_str,
                    },
                }
            }
            Event::SequenceStart(_, _) | Event::MappingStart(_, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        pos: at,
                        message: format!("nested deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq(at, Vec::new())
                } else {
                    Frame::Map(at, Vec::new(), None)
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(p, items)) => Node {
                    pos: p,
                    value: Value::Seq(items),
                },
                Some(Frame::Map(p, entries, _)) => Node {
                    // A block mapping's marker sits after its first key;
                    // point at the key instead.
                    pos: entries.first().map_or(p, |(k, _)| k.pos.min(p)),
                    value: Value::Map(entries),
                },
                None => {
                    return Err(YamlError {
                        pos: at,
                        message: "unbalanced YAML collection".into(),
                    });
                }
            },
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(YamlError {
                pos: at,
                message: format!("more than {MAX_NODES} YAML nodes"),
            });
        }
        match stack.last_mut() {
            Some(Frame::Seq(_, items)) => items.push(complete),
            Some(Frame::Map(_, entries, key)) => match key.take() {
                Some(k) => entries.push((k, complete)),
                None => *key = Some(complete),
            },
            None => root = Some(complete),
        }
    }
    Ok(root)
}

/// A YAML problem found by [`check_shape`], with its one-based position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ShapeError {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Checks that `text` is one YAML document within the bounds workflows
/// have (no aliases, nesting up to 64, at most 100,000 nodes), for files
/// another parser reads afterwards: the daemon configs go through
/// `serde_yaml`, which expands aliases. One rule for every haifu file.
///
/// # Errors
/// The first problem, with its line and column.
pub fn check_shape(text: &str) -> Result<(), ShapeError> {
    parse(text).map(|_| ()).map_err(|e| ShapeError {
        line: e.pos.line,
        column: e.pos.column,
        message: e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn nodes_carry_one_based_line_and_column() {
        let root = parse("name: x\nsteps:\n  - audit\n  - broadcast: { rounds: 3 }\n")
            .unwrap()
            .unwrap();
        let Value::Map(entries) = &root.value else {
            panic!()
        };
        assert_eq!(entries[0].0.pos, p(1, 1));
        assert_eq!(entries[0].1.pos, p(1, 7));
        assert_eq!(entries[1].0.pos, p(2, 1));
        let Value::Seq(steps) = &entries[1].1.value else {
            panic!()
        };
        assert_eq!(steps[0].pos, p(3, 5));
        let Value::Map(step) = &steps[1].value else {
            panic!()
        };
        assert_eq!(step[0].0.pos, p(4, 5));
        let Value::Map(args) = &step[0].1.value else {
            panic!()
        };
        assert_eq!(args[0].0.pos, p(4, 18));
        assert_eq!(args[0].1.pos, p(4, 26));
    }

    #[test]
    fn quoted_scalars_are_marked() {
        let root = parse("a: '3'\nb: 3\n").unwrap().unwrap();
        let Value::Map(entries) = &root.value else {
            panic!()
        };
        assert!(matches!(
            entries[0].1.value,
            Value::Scalar { quoted: true, .. }
        ));
        assert!(matches!(
            entries[1].1.value,
            Value::Scalar { quoted: false, .. }
        ));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        let err = parse("a: 1\n  b: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2, "{err:?}");
    }

    #[test]
    fn empty_text_has_no_document() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn aliases_and_second_documents_are_refused() {
        assert!(
            parse("a: &x 1\nb: *x\n")
                .unwrap_err()
                .message
                .contains("aliases")
        );
        assert!(
            parse("a: 1\n---\nb: 2\n")
                .unwrap_err()
                .message
                .contains("one YAML document")
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&text).unwrap_err().message.contains("nested deeper"));
    }
}
