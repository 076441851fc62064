//! A receiving client's ear in the simulation: the symbols of each block
//! it holds, as the carousel's receiver counts them (a block decodes at
//! `K`, now and then at one or two more, as RaptorQ does), and when it
//! reports (the real client's [`Listening`]).

use std::time::Duration;
use std::time::Instant;

use haifu_carousel::Report;
use haifu_protocol::SessionKey;

use super::Rng;
use crate::client::listening::Listening;

/// A receiving client's symbols: what the real receiver would hold.
pub(super) struct Ear {
    pub(super) run: u64,
    pub(super) session: SessionKey,
    heard: u64,
    /// Per block: symbols held, symbols it takes, decoded, the highest
    /// symbol id heard.
    held: Vec<u32>,
    needs: Vec<u32>,
    decoded: Vec<bool>,
    newest: Vec<Option<u32>>,
    top_block: Option<u32>,
    pub(super) listening: Listening,
    pub(super) next_report: Instant,
}

impl Ear {
    /// A receiver starting on `session` at `now`, for blocks of `ks`
    /// source symbols.
    pub(super) fn new(session: SessionKey, ks: &[u32], now: Instant, rng: &mut Rng) -> Self {
        Self {
            run: session.run,
            session,
            heard: 0,
            held: vec![0; ks.len()],
            // RaptorQ fails at K about once in a hundred, at K + 1 about
            // once in ten thousand.
            needs: ks
                .iter()
                .map(|&k| {
                    k + match rng.below(100) {
                        0 => 2,
                        1..=2 => 1,
                        _ => 0,
                    }
                })
                .collect(),
            decoded: vec![false; ks.len()],
            newest: vec![None; ks.len()],
            top_block: None,
            listening: Listening::default(),
            next_report: now + Duration::from_millis(rng.below(100) as u64),
        }
    }

    fn done(&self) -> bool {
        self.decoded.iter().all(|d| *d)
    }

    /// What the carousel's receiver reports holding.
    pub(super) fn report(&self) -> Report {
        let done = self.done();
        let blocks = self.decoded.len() as u32;
        let done_below = self.decoded.iter().take_while(|d| **d).count() as u32;
        let mut horizon = self.top_block.map_or(0, |b| b + 1).max(done_below);
        if done {
            horizon = blocks;
        }
        let (mut held, mut newest) = (Vec::new(), Vec::new());
        for b in done_below..horizon {
            if self.decoded[b as usize] {
                continue;
            }
            if held.len() >= haifu_protocol::limits::MAX_FEEDBACK_BLOCKS {
                horizon = b;
                break;
            }
            held.push((b, self.held[b as usize]));
            newest.push(self.newest[b as usize]);
        }
        Report {
            heard: self.heard,
            done,
            done_below: if done { blocks } else { done_below },
            horizon,
            held,
            newest,
        }
    }

    /// Hears symbol `esi` of block `b`; true once every block is decoded.
    pub(super) fn hear(&mut self, b: usize, esi: u32) -> bool {
        self.heard += 1;
        self.newest[b] = self.newest[b].max(Some(esi));
        self.top_block = Some(self.top_block.map_or(b as u32, |t| t.max(b as u32)));
        if !self.decoded[b] {
            self.held[b] += 1;
            self.decoded[b] = self.held[b] >= self.needs[b];
        }
        self.done()
    }
}
