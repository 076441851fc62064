//! "did you mean …?" for near misses.

/// Edit distance (insertions, deletions, substitutions), by characters.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The closest of `known` to `word`, if within two edits (or equal but for
/// case, or `_`/`-`), and not shorter than the edits it takes.
pub(crate) fn did_you_mean(word: &str, known: &[&str]) -> Option<String> {
    let folded = word.to_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| {
            let d = if k.to_lowercase().replace('-', "_") == folded {
                0
            } else {
                levenshtein(word, k)
            };
            (d, *k)
        })
        .filter(|(d, k)| *d <= 2 && *d < k.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(levenshtein("brodcast", "broadcast"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
    }

    #[test]
    fn near_misses_are_suggested_far_ones_not() {
        let steps = ["register", "broadcast", "audit", "delta", "disconnect"];
        assert_eq!(
            did_you_mean("brodcast", &steps).as_deref(),
            Some("broadcast")
        );
        assert_eq!(did_you_mean("Audit", &steps).as_deref(), Some("audit"));
        assert_eq!(did_you_mean("deltas", &steps).as_deref(), Some("delta"));
        assert_eq!(did_you_mean("upload", &steps), None);
        assert_eq!(
            did_you_mean("time-zone", &["time_zone"]).as_deref(),
            Some("time_zone")
        );
    }
}
