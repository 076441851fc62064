//! Where something is in a workflow file.

/// A line and column in a file, both from 1 (the YAML tree's).
pub use haifu_yaml::Pos;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it starts in the workflow file.
    pub pos: Pos,
}

impl<T> Spanned<T> {
    pub(crate) fn new(value: T, pos: Pos) -> Self {
        Spanned { value, pos }
    }
}
