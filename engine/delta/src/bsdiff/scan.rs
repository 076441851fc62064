//! Finding the approximate matches: bsdiff's scan over the target, with a
//! suffix array of the base to find the longest exact match at each
//! position, extended forwards and backwards across mismatches while at
//! least half the bytes still agree.
//!
//! The scan is bsdiff 4's, kept as it is because its output is what the
//! size target is measured against; the suffix array is built by
//! `divsufsort` (4 bytes per base byte, the maker's main memory cost).

use super::body::Streams;
use crate::DeltaError;

/// The streams that turn `old` into `new`.
pub(crate) fn diff(old: &[u8], new: &[u8]) -> Result<Streams, DeltaError> {
    if i32::try_from(old.len()).is_err() {
        return Err(DeltaError::Unsupported {
            detail: format!(
                "a {}-byte base is too large for the bsdiff method's suffix array",
                old.len()
            ),
        });
    }
    let mut sa = vec![0i32; old.len()];
    divsufsort::sort_in_place(old, &mut sa);
    let mut streams = Streams::new();
    scan(old, new, &sa, &mut streams);
    streams.finish();
    Ok(streams)
}

/// bsdiff's scan; see the module comment.
fn scan(old: &[u8], new: &[u8], sa: &[i32], out: &mut Streams) {
    let (mut scan, mut len, mut pos) = (0usize, 0usize, 0usize);
    let (mut lastscan, mut lastpos, mut lastoffset) = (0usize, 0usize, 0isize);
    // The byte of the base at `at + offset`, if there is one.
    let old_at = |at: usize, offset: isize| {
        at.checked_add_signed(offset)
            .and_then(|o| old.get(o).copied())
    };
    while scan < new.len() {
        let mut oldscore = 0isize;
        scan += len;
        let mut scsc = scan;
        while scan < new.len() {
            (pos, len) = search(sa, old, &new[scan..]);
            while scsc < scan + len {
                if old_at(scsc, lastoffset) == Some(new[scsc]) {
                    oldscore += 1;
                }
                scsc += 1;
            }
            // A match as good as carrying on with the last offset, or
            // clearly better than it: take it.
            let l = len as isize;
            if (l == oldscore && len != 0) || l > oldscore + 8 {
                break;
            }
            if old_at(scan, lastoffset) == Some(new[scan]) {
                oldscore -= 1;
            }
            scan += 1;
        }
        if len as isize == oldscore && scan != new.len() {
            continue;
        }
        // Extend the last match forwards while more than half agrees.
        let (mut s, mut best, mut lenf) = (0isize, 0isize, 0usize);
        let mut i = 0;
        while lastscan + i < scan && lastpos + i < old.len() {
            if old[lastpos + i] == new[lastscan + i] {
                s += 1;
            }
            i += 1;
            if s * 2 - i as isize > best * 2 - lenf as isize {
                best = s;
                lenf = i;
            }
        }
        // And the new match backwards.
        let mut lenb = 0usize;
        if scan < new.len() {
            let (mut s, mut best) = (0isize, 0isize);
            let mut i = 1;
            while scan >= lastscan + i && pos >= i {
                if old[pos - i] == new[scan - i] {
                    s += 1;
                }
                if s * 2 - i as isize > best * 2 - lenb as isize {
                    best = s;
                    lenb = i;
                }
                i += 1;
            }
        }
        // Where the two extensions overlap, cut at the best point.
        if lastscan + lenf > scan - lenb {
            let overlap = (lastscan + lenf) - (scan - lenb);
            let (mut s, mut best, mut lens) = (0isize, 0isize, 0usize);
            for i in 0..overlap {
                if new[lastscan + lenf - overlap + i] == old[lastpos + lenf - overlap + i] {
                    s += 1;
                }
                if new[scan - lenb + i] == old[pos - lenb + i] {
                    s -= 1;
                }
                if s > best {
                    best = s;
                    lens = i + 1;
                }
            }
            lenf = lenf + lens - overlap;
            lenb -= lens;
        }
        out.push(
            old,
            lastpos,
            &new[lastscan..lastscan + lenf],
            &new[lastscan + lenf..scan - lenb],
        );
        lastscan = scan - lenb;
        lastpos = pos - lenb;
        lastoffset = pos as isize - scan as isize;
    }
}

/// The longest match of a prefix of `needle` among the base's suffixes:
/// (its position in the base, its length). Binary search over the suffix
/// array, as bsdiff's `search`.
fn search(sa: &[i32], old: &[u8], needle: &[u8]) -> (usize, usize) {
    let suffix = |i: usize| {
        let at = sa.get(i).map_or(0, |&p| p as usize);
        (at, old.get(at..).unwrap_or_default())
    };
    if sa.is_empty() {
        return (0, 0);
    }
    let (mut lo, mut hi) = (0usize, sa.len() - 1);
    while hi - lo >= 2 {
        let mid = lo + (hi - lo) / 2;
        let (_, s) = suffix(mid);
        let n = s.len().min(needle.len());
        if s[..n] < needle[..n] {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (a, sa_) = suffix(lo);
    let (b, sb) = suffix(hi);
    let (x, y) = (common_prefix(sa_, needle), common_prefix(sb, needle));
    if x > y { (a, x) } else { (b, y) }
}

/// Length of the common prefix of two slices.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    // Eight bytes at a time: this runs once per target byte scanned.
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_counts_across_words() {
        let a = b"0123456789abcdefXY";
        for cut in 0..a.len() {
            let mut b = a.to_vec();
            b[cut] ^= 1;
            assert_eq!(common_prefix(a, &b), cut);
        }
        assert_eq!(common_prefix(a, a), a.len());
        assert_eq!(common_prefix(a, &a[..5]), 5);
        assert_eq!(common_prefix(b"", a), 0);
    }

    #[test]
    fn search_finds_the_longest_match() {
        let old = b"the quick brown fox jumps over the lazy dog";
        let mut sa = vec![0i32; old.len()];
        divsufsort::sort_in_place(old, &mut sa);
        assert_eq!(search(&sa, old, b"the lazy cat"), (31, 9));
        assert_eq!(search(&sa, old, b"quick"), (4, 5));
        assert_eq!(search(&sa, old, b"zoo").1, 1, "the z of lazy");
        assert_eq!(search(&sa, old, b"QQQ").1, 0);
        assert_eq!(search(&[], b"", b"abc"), (0, 0));
    }
}
