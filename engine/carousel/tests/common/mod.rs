//! Shared helpers: a tiny deterministic PRNG and a session set-up.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use haifu_carousel::{CarouselConfig, CarouselKey, KEY_LEN, Receiver};

/// SplitMix64: tiny, deterministic, good enough for loss and mutations.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

pub(crate) fn key() -> CarouselKey {
    CarouselKey::new(0xC0FF_EE01, [0x5a; KEY_LEN])
}

/// Small objects and blocks so multi-object cases stay fast in debug builds.
pub(crate) fn small_config() -> CarouselConfig {
    CarouselConfig {
        object_shift: 18, // 256 KiB objects
        block_symbols: 64,
        ..CarouselConfig::default()
    }
}

/// Feeds datagrams, writes decoded blocks into `out`, returns blocks decoded.
pub(crate) fn feed(rx: &mut Receiver, datagrams: &[Vec<u8>], out: &mut Vec<u8>) -> usize {
    let mut blocks = 0;
    for d in datagrams {
        rx.handle_datagram(d).expect("authentic datagram");
        while let Some(block) = rx.poll_block() {
            let start = block.offset as usize;
            let end = start + block.data.len();
            if out.len() < end {
                out.resize(end, 0);
            }
            out[start..end].copy_from_slice(&block.data);
            blocks += 1;
        }
    }
    blocks
}
