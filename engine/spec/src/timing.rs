//! Date-times, durations and daily windows as workflows write them.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use jiff::fmt::temporal::Pieces;
use jiff::tz::Offset;

/// The longest duration a workflow may name: a year. Longer is a typo.
const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// Parses `72h`, `30m`, `2d`, `1h30m`, `1w`, `45s` (units w, d, h, m, s;
/// a day is 24 h). `None` on anything else, on zero and past a year.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut saw_unit = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        total = total.checked_add(n.checked_mul(unit)?)?;
        saw_unit = true;
    }
    if !digits.is_empty() || !saw_unit || total == 0 {
        return None;
    }
    let d = Duration::from_secs(total);
    (d <= MAX_DURATION).then_some(d)
}

/// Parses an RFC 3339 date-time with an offset (`2026-12-01T02:00:00+09:00`,
/// or `Z`), also accepting an RFC 9557 zone annotation
/// (`…+09:00[Asia/Tokyo]`). Returns the instant and the written offset.
pub(crate) fn parse_datetime(text: &str) -> Result<(Timestamp, Offset), TimeError> {
    let text = text.trim();
    let pieces = Pieces::parse(text).map_err(TimeError::Syntax)?;
    let Some(offset) = pieces.to_numeric_offset() else {
        return Err(TimeError::NoOffset);
    };
    if pieces.time().is_none() {
        return Err(TimeError::NoTimeOfDay);
    }
    let ts: Timestamp = text.parse().map_err(TimeError::Syntax)?;
    Ok((ts, offset))
}

/// Why a date-time or a daily window is refused; the caller names the key
/// and the text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TimeError {
    /// Not RFC 3339 (jiff's message, lower-cased to follow the key).
    #[error("{}", lower(&.0.to_string()))]
    Syntax(#[source] jiff::Error),
    /// A date-time without an offset names no instant.
    #[error("needs an offset, e.g. 2026-12-01T02:00:00+09:00 or …Z")]
    NoOffset,
    /// A date alone.
    #[error("needs a time of day, e.g. 2026-12-01T02:00:00+09:00")]
    NoTimeOfDay,
    /// A window without its `-`.
    #[error("expected HH:MM-HH:MM, e.g. 02:00-05:00")]
    NotAWindow,
    /// A window of no length.
    #[error("opens and closes at the same time")]
    EmptyWindow,
    /// One end of a window is not `HH:MM`.
    #[error("{0:?} is not a time of day HH:MM")]
    NotATimeOfDay(String),
}

fn lower(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A daily window in local time, `02:00-05:00`; it may wrap past midnight
/// (`22:00-04:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes after local midnight when the window opens.
    pub open: u16,
    /// Minutes after local midnight when it closes (may be less than `open`).
    pub close: u16,
}

impl Window {
    /// Parses `HH:MM-HH:MM`.
    pub(crate) fn parse(text: &str) -> Result<Window, TimeError> {
        let (a, b) = text.split_once('-').ok_or(TimeError::NotAWindow)?;
        let open = minutes(a.trim())?;
        let close = minutes(b.trim())?;
        if open == close {
            return Err(TimeError::EmptyWindow);
        }
        Ok(Window { open, close })
    }

    /// Whether `minute_of_day` (0..1440) falls inside the window.
    pub fn contains(&self, minute_of_day: u16) -> bool {
        if self.open < self.close {
            (self.open..self.close).contains(&minute_of_day)
        } else {
            minute_of_day >= self.open || minute_of_day < self.close
        }
    }
}

fn minutes(text: &str) -> Result<u16, TimeError> {
    let bad = || TimeError::NotATimeOfDay(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok((h * 60 + m) % 1440)
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.open / 60,
            self.open % 60,
            self.close / 60,
            self.close % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("72h"), Some(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1w"), Some(Duration::from_secs(7 * 86_400)));
        for bad in [
            "",
            "72",
            "h",
            "0h",
            "72x",
            "-3h",
            "1.5h",
            "400d",
            "99999999999999999999h",
            "3 h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn datetimes_need_an_offset() {
        let (ts, off) = parse_datetime("2026-12-01T02:00:00+09:00").unwrap();
        assert_eq!(ts.to_string(), "2026-11-30T17:00:00Z");
        assert_eq!(off.seconds(), 9 * 3600);
        assert!(parse_datetime("2026-12-01T02:00:00Z").is_ok());
        assert!(parse_datetime("2026-12-01T02:00:00+09:00[Asia/Tokyo]").is_ok());
        assert!(
            parse_datetime("2026-12-01T02:00:00")
                .unwrap_err()
                .to_string()
                .contains("needs an offset")
        );
        assert!(parse_datetime("2026-12-01").is_err());
        assert!(parse_datetime("2026-13-01T02:00:00+09:00").is_err());
        assert!(parse_datetime("tomorrow").is_err());
    }

    #[test]
    fn windows_may_wrap_midnight() {
        let w = Window::parse("02:00-05:00").unwrap();
        assert!(w.contains(2 * 60) && w.contains(4 * 60 + 59) && !w.contains(5 * 60));
        let w = Window::parse("22:00-04:00").unwrap();
        assert!(w.contains(23 * 60) && w.contains(60) && !w.contains(12 * 60));
        assert_eq!(w.to_string(), "22:00-04:00");
        for bad in [
            "02:00",
            "2-5",
            "25:00-26:00",
            "02:00-02:00",
            "02:60-03:00",
            "a:b-c:d",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }
}
