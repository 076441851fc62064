//! Byte sizes and bit rates as workflows write them.

fn split_number(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let end = text
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(text.len(), |(i, _)| i);
    let n = text[..end].parse().ok()?;
    Some((n, text[end..].trim()))
}

/// Parses a size: `500`, `64KiB`, `50MiB`, `2GiB`, `10MB`, `1GB` (bytes;
/// KiB/MiB/GiB are powers of 1024, kB/MB/GB powers of 1000).
pub(crate) fn parse_bytes(text: &str) -> Option<u64> {
    let (n, unit) = split_number(text)?;
    let factor: u64 = match unit {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor).filter(|b| *b > 0)
}

/// Parses a rate in bits per second: `800kbit/s`, `20Mbit/s`, `1Gbit/s`, or
/// the `kbps`/`Mbps`/`Gbps` spellings.
pub(crate) fn parse_rate(text: &str) -> Option<u64> {
    let (n, unit) = split_number(text)?;
    let factor: u64 = match unit {
        "bit/s" | "bps" => 1,
        "kbit/s" | "kbps" | "Kbps" => 1_000,
        "Mbit/s" | "Mbps" => 1_000_000,
        "Gbit/s" | "Gbps" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor).filter(|b| *b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("50MiB"), Some(50 << 20));
        assert_eq!(parse_bytes("10MB"), Some(10_000_000));
        assert_eq!(parse_bytes("512"), Some(512));
        for bad in ["", "0", "MiB", "5 XB", "1.5MiB", "99999999999999999999GiB"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20Mbit/s"), Some(20_000_000));
        assert_eq!(parse_rate("800 kbps"), Some(800_000));
        for bad in ["", "20", "20MB/s", "0Mbit/s", "fast"] {
            assert_eq!(parse_rate(bad), None, "{bad}");
        }
    }
}
