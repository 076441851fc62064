//! The numbers a loss simulator needs to model the carousel without running
//! RaptorQ: how many symbols a round sends and how many a block needs.
//!
//! The simulator in `haifu-runtime` should take [`SYMBOL_SIZE`](crate::SYMBOL_SIZE),
//! [`DEFAULT_REPAIR_OVERHEAD`](crate::DEFAULT_REPAIR_OVERHEAD),
//! [`symbols_per_round`] and [`symbols_needed`] from here rather than keep its
//! own copies.

use crate::datagram::OVERHEAD_LEN;
use crate::layout::{CarouselConfig, LayoutError, ObjectLayout, SessionShape};

/// Symbols over `K` a block needs, as a fraction of `K`, in the worst case
/// measured here with `K` ≈ 1000 (see `tests/loss.rs`,
/// `decode_overhead_is_small`): RaptorQ usually decodes from exactly `K`
/// symbols, and from `K + 2` almost always.
pub const DECODE_OVERHEAD: f64 = 0.003;

/// Symbols a block of `k` source symbols needs before it decodes (a safe
/// upper bound: `k × (1 + DECODE_OVERHEAD)` rounded up, plus 2).
pub fn symbols_needed(k: u32) -> u32 {
    let extra = (f64::from(k) * DECODE_OVERHEAD).ceil() as u32;
    k.saturating_add(extra).saturating_add(2)
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
/// Above it a client needs a second round.
pub fn one_round_loss_budget(k: u32, config: &CarouselConfig) -> f64 {
    let sent = f64::from(config.symbols_per_round(k));
    if sent == 0.0 {
        return 0.0;
    }
    (1.0 - f64::from(symbols_needed(k)) / sent).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_stays_under_1_1_of_the_artifact() {
        let config = CarouselConfig::default();
        for len in [3 << 20, 64 << 20, (256 << 20) + 12345] {
            let ratio = round_ratio(len, &config).unwrap();
            assert!(ratio <= 1.1, "{len}: {ratio}");
            assert!(ratio > 1.05, "{len}: {ratio}");
        }
    }

    #[test]
    fn needed_is_a_little_over_k() {
        assert_eq!(symbols_needed(1000), 1005);
        let budget = one_round_loss_budget(1000, &CarouselConfig::default());
        assert!((0.05..0.06).contains(&budget), "{budget}");
    }
}
