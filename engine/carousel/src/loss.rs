//! The numbers a loss simulator needs to model the carousel without running
//! RaptorQ: how many symbols a round sends, how many a block needs, and how
//! likely one round is to be enough.
//!
//! The simulator in `haifu-runtime` should take [`SYMBOL_SIZE`](crate::SYMBOL_SIZE),
//! [`DEFAULT_REPAIR_OVERHEAD`](crate::DEFAULT_REPAIR_OVERHEAD),
//! [`symbols_per_round`] and [`symbols_needed`] from here rather than keep its
//! own copies.
//!
//! # Why the defaults are what they are
//!
//! Two targets pull against each other: a round may send at most 1.1 × the
//! artifact's size in datagram bytes, and at 5% independent datagram loss a
//! client should finish after round 1. A block of `K` source symbols sends
//! `S = K × (1 + r)` symbols; the client keeps `Binomial(S, 0.95)` of them
//! and needs about `K`. The mean margin is `(0.95 × (1 + r) − 1) × K` and the
//! spread grows as `√K`, so only large blocks make the margin several
//! standard deviations wide, while the 1.1 budget caps `r` at
//! `1.1 × T / (T + 40) − 1`. [`one_round_failure`] computes the chance that
//! some block of the artifact misses. For 256 MiB at 5% loss (with the
//! defaults, 48 blocks of 3,971 or 3,972 symbols):
//!
//! | layout | round bytes / artifact | P(round 1 not enough) |
//! |---|---|---|
//! | T = 1400, K ≈ 1000, r = 0.065 (before) | 1.0955 | ≈ 1 |
//! | T = 1408, K ≈ 2000, r = 0.069 | 1.0999 | 9.2 × 10⁻² |
//! | T = 1408, K ≈ 3000, r = 0.069 | 1.0995 | 7.1 × 10⁻³ |
//! | **T = 1408, K ≈ 4000, r = 0.069 (default)** | **1.0996** | **4.8 × 10⁻⁴** |
//! | T = 1408, K ≈ 4800, r = 0.069 | 1.0994 | 7.9 × 10⁻⁵ |
//!
//! The cliff is steep all the same: for 256 MiB the default layout misses
//! round 1 with probability 6 × 10⁻¹³ at 4% loss, 0.13 at 5.5% and 0.99 at
//! 6%. Larger blocks cost throughput: in the bench's layout table
//! 4,000-symbol blocks encode and decode at about 0.85 to 1.0 × the speed of
//! 1,000-symbol ones, still above 1 Gbit/s on one core, while raptorq alone
//! decodes them at about 0.6 ×.

use crate::datagram::OVERHEAD_LEN;
use crate::layout::{CarouselConfig, LayoutError, ObjectLayout, SessionShape};

/// Symbols over `K` a block is assumed to need. RaptorQ usually decodes from
/// exactly `K` symbols and from `K + 2` almost always: 500 blocks of `K`
/// from 1,000 to 4,800 at 5% loss decoded from exactly `K` all but once
/// (`K + 1`), and `tests/loss.rs` (`decode_overhead_is_small`) checks `K + 2`.
pub const DECODE_MARGIN: u32 = 2;

/// Symbols a block of `k` source symbols needs before it decodes (a safe
/// upper bound, `k + DECODE_MARGIN`).
pub fn symbols_needed(k: u32) -> u32 {
    k.saturating_add(DECODE_MARGIN)
}

/// Symbols a block of `k` source symbols sends each round.
pub fn symbols_per_round(k: u32, config: &CarouselConfig) -> u32 {
    config.symbols_per_round(k)
}

/// Per-block source symbol counts of a whole artifact, in sending order: what
/// a simulator needs to model each block's binomial draw.
pub fn block_symbols(artifact_len: u64, config: &CarouselConfig) -> Result<Vec<u32>, LayoutError> {
    config.validate()?;
    let shape = SessionShape::new(artifact_len, config.object_shift, config.symbol_size)?;
    let mut out = Vec::new();
    for i in 0..shape.object_count() {
        let layout = ObjectLayout::choose(&shape, i, config.block_symbols)?;
        out.extend(layout.blocks.iter().map(|b| b.symbols));
    }
    Ok(out)
}

/// UDP payload bytes one round sends, divided by the artifact's size.
pub fn round_ratio(artifact_len: u64, config: &CarouselConfig) -> Result<f64, LayoutError> {
    let datagram = (OVERHEAD_LEN + usize::from(config.symbol_size)) as f64;
    let sent: u64 = block_symbols(artifact_len, config)?
        .iter()
        .map(|&k| u64::from(config.symbols_per_round(k)))
        .sum();
    Ok(sent as f64 * datagram / (artifact_len.max(1) as f64))
}

/// The random loss rate at which round 1 still delivers, on average, what a
/// block of `k` symbols needs: `1 - symbols_needed(k) / symbols_per_round(k)`.
/// Above it a client needs a second round; below it, how likely one round
/// is to be enough depends on the spread, which [`block_failure`] computes.
pub fn one_round_loss_budget(k: u32, config: &CarouselConfig) -> f64 {
    let sent = f64::from(config.symbols_per_round(k));
    if sent == 0.0 {
        return 0.0;
    }
    (1.0 - f64::from(symbols_needed(k)) / sent).max(0.0)
}

/// Chance that RaptorQ fails to decode a block from `extra` symbols over
/// `K`: the curve usually quoted for it, about 1 in 100 from exactly `K` and
/// a hundred times less for each symbol more. It is pessimistic for this
/// crate's blocks (see [`DECODE_MARGIN`]).
fn decode_failure(extra: u64) -> f64 {
    // 10^-2 × 10^-2·extra, and zero once below any useful precision.
    if extra > 150 {
        return 0.0;
    }
    10f64.powi(-2 * (extra as i32 + 1))
}

/// Chance that one round leaves a block of `k` source symbols undecoded
/// when each datagram is lost independently with probability `loss`: the
/// binomial draw of symbols kept, weighted by RaptorQ's failure curve.
pub fn block_failure(k: u32, config: &CarouselConfig, loss: f64) -> f64 {
    let n = u64::from(config.symbols_per_round(k));
    let k = u64::from(k);
    let loss = loss.clamp(0.0, 1.0);
    if loss == 0.0 {
        return if n < k { 1.0 } else { decode_failure(n - k) };
    }
    if loss == 1.0 || n < k {
        return 1.0;
    }
    // Walk the binomial's terms outward from its mode in log space, so that
    // neither end underflows for any block size; terms below 1e-30 of the
    // mode's stop each walk.
    let (p, q) = (1.0 - loss, loss);
    let mode = ((n + 1) as f64 * p).floor().min(n as f64) as u64;
    let ln_mode = ln_binomial(n, mode) + mode as f64 * p.ln() + (n - mode) as f64 * q.ln();
    let fail_given = |kept: u64| {
        if kept < k {
            1.0
        } else {
            decode_failure(kept - k)
        }
    };
    let mut total = ln_mode.exp() * fail_given(mode);
    let floor = ln_mode - 69.0; // e^-69 ≈ 1e-30
    let mut ln = ln_mode;
    for j in (mode + 1)..=n {
        // P(j) / P(j - 1) = (n - j + 1) / j × p / q
        ln += ((n - j + 1) as f64 / j as f64).ln() + (p / q).ln();
        if ln < floor {
            break;
        }
        total += ln.exp() * fail_given(j);
    }
    let mut ln = ln_mode;
    for j in (0..mode).rev() {
        // P(j) / P(j + 1) = (j + 1) / (n - j) × q / p
        ln += ((j + 1) as f64 / (n - j) as f64).ln() + (q / p).ln();
        if ln < floor {
            break;
        }
        total += ln.exp() * fail_given(j);
    }
    total.clamp(0.0, 1.0)
}

fn ln_binomial(n: u64, m: u64) -> f64 {
    let m = m.min(n - m);
    (1..=m).map(|i| ((n - m + i) as f64 / i as f64).ln()).sum()
}

/// Chance that a client losing each datagram independently with probability
/// `loss` is not complete after one round of an artifact of `artifact_len`
/// bytes: some block of it missed ([`block_failure`]).
pub fn one_round_failure(
    artifact_len: u64,
    config: &CarouselConfig,
    loss: f64,
) -> Result<f64, LayoutError> {
    let ks = block_symbols(artifact_len, config)?;
    // Blocks come in a handful of sizes: compute each size once.
    let mut sizes: Vec<(u32, u64)> = Vec::new();
    for k in ks {
        match sizes.iter_mut().find(|(size, _)| *size == k) {
            Some((_, count)) => *count += 1,
            None => sizes.push((k, 1)),
        }
    }
    let ln_all_decode: f64 = sizes
        .iter()
        .map(|&(k, count)| count as f64 * (-block_failure(k, config, loss)).ln_1p())
        .sum();
    Ok(-ln_all_decode.exp_m1())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_stays_under_1_1_of_the_artifact() {
        let config = CarouselConfig::default();
        for len in [8 << 20, 64 << 20, 256 << 20, (256 << 20) + 12345, 1 << 32] {
            let ratio = round_ratio(len, &config).unwrap();
            assert!(ratio <= 1.1, "{len}: {ratio}");
            assert!(ratio > 1.09, "{len}: {ratio}");
        }
    }

    #[test]
    fn needed_is_k_plus_the_margin() {
        assert_eq!(symbols_needed(3972), 3974);
        let budget = one_round_loss_budget(3972, &CarouselConfig::default());
        assert!((0.06..0.065).contains(&budget), "{budget}");
    }

    #[test]
    fn block_failure_matches_hand_computed_cases() {
        let config = CarouselConfig {
            repair_overhead: 0.0,
            ..CarouselConfig::default()
        };
        // No repair, no loss: decodes from exactly K, fails 1 in 100.
        assert!((block_failure(10, &config, 0.0) - 0.01).abs() < 1e-12);
        // No repair, any loss: fails unless every symbol arrives.
        let p = 0.9f64.powi(10);
        let want = (1.0 - p) + p * 0.01;
        assert!((block_failure(10, &config, 0.1) - want).abs() < 1e-12);
        assert_eq!(block_failure(10, &config, 1.0), 1.0);
        // One repair symbol, 10% loss: all 11 (1e-4) or 10 of 11 (1e-2).
        let config = CarouselConfig {
            repair_overhead: 0.1,
            ..config
        };
        let all = 0.9f64.powi(11);
        let one_lost = 11.0 * 0.1 * 0.9f64.powi(10);
        let want = 1.0 - all - one_lost + all * 1e-4 + one_lost * 1e-2;
        assert!((block_failure(10, &config, 0.1) - want).abs() < 1e-12);
    }

    #[test]
    fn huge_blocks_do_not_underflow() {
        let config = CarouselConfig {
            repair_overhead: 10.0,
            ..CarouselConfig::default()
        };
        // 620,000 symbols sent, 56,403 needed: a round at 50% loss is plenty.
        let p = block_failure(56_403, &config, 0.5);
        assert!(p < 1e-20, "{p}");
        let q = block_failure(56_403, &config, 0.95);
        // Summing ~30,000 logarithms leaves about 1e-9 of rounding.
        assert!((q - 1.0).abs() < 1e-6, "{q}");
    }
}
