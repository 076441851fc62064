//! A broadcast round's budget: the answer of `round_budget(ctx)`, its safe
//! default, and the checks a script's answer must pass.
//!
//! A round with feedback repair sends each block's first pass with a
//! proactive share of repair symbols, then repairs what listening clients
//! report missing, until every listener decoded or the budget is spent.
//! This module decides nothing about the wire: the master turns a [`Budget`]
//! into the protocol's per-mille and milliseconds.

use std::time::Duration;

use rhai::{Dynamic, Map};

use crate::decision::FallbackCause;
use crate::facts::{BudgetFacts, one_pass_secs};

/// How one broadcast round spends bytes and time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Repair symbols sent with each block's first pass, as a fraction of
    /// its source symbols (the script's `proactive`), within
    /// [`Budget::PROACTIVE`].
    pub proactive: f64,
    /// Most bytes the round may send, as a multiple of the artifact's size
    /// (the script's `budget`), within [`Budget::BYTES`]; datagram headers
    /// count.
    pub bytes: f64,
    /// Longest the round may last (the script's `time`, in seconds).
    pub time: Duration,
    /// A listener silent this long no longer holds the round (the script's
    /// `silence`, in seconds).
    pub silence: Duration,
}

/// The map keys a script may return.
const KEYS: &str = "proactive, budget, time, silence";

const FORMS: &str =
    "#{ proactive: 0.02, budget: 3.0, time: 120, silence: 1.0 } (each key optional)";

impl Budget {
    /// The proactive share a script may ask, inclusive: up to one repair
    /// symbol per source symbol (past that, a second round is cheaper).
    pub const PROACTIVE: (f64, f64) = (0.0, 1.0);
    /// The byte budget a script may ask, inclusive, in multiples of the
    /// artifact: at least one pass, at most what the carousel can number
    /// in a round (16 × K symbols per block).
    pub const BYTES: (f64, f64) = (1.0, 16.0);
    /// The longest round a script may ask, inclusive, in seconds: 1 s to a
    /// day (a round longer than a day is a mistake, not a plan).
    pub const TIME: (f64, f64) = (1.0, 86_400.0);
    /// The silence a script may ask, inclusive, in seconds: long enough to
    /// outlast a report's delay (clients report every 100 ms), short enough
    /// that a dead listener cannot hold a round for long.
    pub const SILENCE: (f64, f64) = (0.1, 60.0);

    /// The default proactive share: 2 % of each block's source symbols.
    pub const DEFAULT_PROACTIVE: f64 = 0.02;
    /// The default byte budget: 3 × the artifact, enough for every
    /// listener at 50 % loss, or for one that joined late at 20 %.
    pub const DEFAULT_BYTES: f64 = 3.0;
    /// The default silence: a second, ten missed reports.
    pub const DEFAULT_SILENCE: Duration = Duration::from_secs(1);

    /// The safe default for an artifact of `size` bytes broadcast at
    /// `rate` bits per second: [`Budget::DEFAULT_PROACTIVE`],
    /// [`Budget::DEFAULT_BYTES`], [`Budget::DEFAULT_SILENCE`], and the time
    /// from [`Budget::default_time`].
    pub fn safe_default(size: u64, rate: u64) -> Budget {
        Budget {
            proactive: Budget::DEFAULT_PROACTIVE,
            bytes: Budget::DEFAULT_BYTES,
            time: Budget::default_time(size, rate, Budget::DEFAULT_BYTES),
            silence: Budget::DEFAULT_SILENCE,
        }
    }

    /// The time `bytes` × `size` take at `rate`, with half again to spare
    /// (pacing and repair turns are not free) and 10 s more (reports,
    /// installs, a slow start), to the millisecond below. It follows the
    /// byte budget, so a script that raises `budget` alone gets the time to
    /// spend it.
    pub fn default_time(size: u64, rate: u64, bytes: f64) -> Duration {
        let secs = size as f64 * bytes * 8.0 / rate.max(1) as f64 * 1.5 + 10.0;
        // `as` saturates (and the value is finite and positive here).
        Duration::from_millis((secs * 1000.0).min(u64::MAX as f64) as u64)
    }

    /// Seconds one first pass takes at `rate`: the artifact and the
    /// proactive share, datagram headers aside. No round may be shorter.
    pub fn first_pass_secs(size: u64, rate: u64, proactive: f64) -> f64 {
        one_pass_secs(size, rate) * (1.0 + proactive)
    }
}

/// Converts and checks a script's answer. Any problem refuses the whole
/// answer (the caller then uses the safe default): a budget half taken from
/// a script and half from the default is one nobody wrote.
pub(crate) fn budget_from(d: Dynamic, facts: &BudgetFacts) -> Result<Budget, FallbackCause> {
    let Some(map) = d.read_lock::<Map>() else {
        return Err(FallbackCause::WrongType {
            expected: FORMS,
            got: d.type_name().to_string(),
        });
    };
    let (mut proactive, mut bytes, mut time, mut silence) = (None, None, None, None);
    // Rhai maps are bounded by the engine's limits (256 entries).
    for (key, value) in map.iter() {
        let slot = match key.as_str() {
            "proactive" => &mut proactive,
            "budget" => &mut bytes,
            "time" => &mut time,
            "silence" => &mut silence,
            other => {
                return Err(FallbackCause::BadValue(format!(
                    "unknown key {:?}; known: {KEYS}",
                    clip(other)
                )));
            }
        };
        *slot = Some(number(key, value)?);
    }
    let proactive =
        within("proactive", proactive, Budget::PROACTIVE, "")?.unwrap_or(Budget::DEFAULT_PROACTIVE);
    let bytes =
        within("budget", bytes, Budget::BYTES, " × the artifact")?.unwrap_or(Budget::DEFAULT_BYTES);
    // The byte budget also ends a first pass: one that cannot carry the
    // pass would leave the last blocks unsent.
    if bytes < 1.0 + proactive {
        return Err(FallbackCause::BadValue(format!(
            "budget {bytes} cannot carry the first pass: it needs at least 1 + proactive = {}",
            1.0 + proactive
        )));
    }
    let silence = within("silence", silence, Budget::SILENCE, " s")?
        .map_or(Budget::DEFAULT_SILENCE, Duration::from_secs_f64);
    let time = match within("time", time, Budget::TIME, " s")? {
        None => Budget::default_time(facts.size, facts.rate, bytes),
        Some(secs) => {
            // Refused rather than raised: a round cut at one bare pass would
            // leave no time for repairs, so the script's number is no plan
            // either way, and the default is one.
            let pass = Budget::first_pass_secs(facts.size, facts.rate, proactive);
            if secs < pass {
                return Err(FallbackCause::BadValue(format!(
                    "time {secs} s is shorter than one first pass of the artifact at the rate \
                     ({pass:.1} s)"
                )));
            }
            Duration::from_secs_f64(secs)
        }
    };
    Ok(Budget {
        proactive,
        bytes,
        time,
        silence,
    })
}

/// An int or a float, as `f64`.
fn number(key: &str, value: &Dynamic) -> Result<f64, FallbackCause> {
    if let Ok(n) = value.as_int() {
        return Ok(n as f64);
    }
    if let Ok(f) = value.as_float() {
        return Ok(f);
    }
    Err(FallbackCause::BadValue(format!(
        "{key} is {}; expected a number",
        value.type_name()
    )))
}

/// `Some(v)` when `v` is within `(lo, hi)` inclusive (NaN never is).
fn within(
    key: &str,
    value: Option<f64>,
    (lo, hi): (f64, f64),
    unit: &str,
) -> Result<Option<f64>, FallbackCause> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) => Err(FallbackCause::BadValue(format!(
            "{key} {v} is out of range ({lo} to {hi}{unit})"
        ))),
        other => Ok(other),
    }
}

/// At most 32 characters of a script's string, for a one-line message.
fn clip(s: &str) -> String {
    match s.char_indices().nth(32) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;
