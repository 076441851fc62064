//! Deterministic generators of realistic version pairs for the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

/// splitmix64: tiny, deterministic, good enough to generate and mutate.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// One "function" of a pseudo machine-code binary: opcodes from a small
/// alphabet, immediates, and 4-byte absolute call targets.
fn function(rng: &mut Rng, id: u64, len: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut n = 0;
    while n < len {
        let op = match rng.below(10) {
            0..=5 => Op::Plain(vec![
                [0x48, 0x89, 0x8b, 0x83, 0xe8, 0x0f, 0xc3, 0x55][rng.below(8) as usize],
                (rng.below(16) as u8) << 3 | 0xc0,
            ]),
            6 | 7 => Op::Plain(vec![0xb8, rng.below(256) as u8, 0, 0, 0]),
            _ => Op::Call(rng.below(id.max(1) + 20)),
        };
        n += op.len();
        ops.push(op);
    }
    ops
}

#[derive(Debug, Clone)]
enum Op {
    Plain(Vec<u8>),
    Call(u64),
}

impl Op {
    fn len(&self) -> usize {
        match self {
            Op::Plain(b) => b.len(),
            Op::Call(_) => 5,
        }
    }
}

/// Lays functions out one after another; calls encode the absolute
/// address of their target, so moving a function changes every call to it
/// (what makes real binary deltas hard).
fn link(functions: &[Vec<Op>]) -> Vec<u8> {
    let mut addr = Vec::with_capacity(functions.len());
    let mut at = 0x1000u32;
    for f in functions {
        addr.push(at);
        at += f.iter().map(Op::len).sum::<usize>() as u32 + 16;
    }
    let mut out = b"\x7fELF-pseudo".to_vec();
    for f in functions {
        for op in f {
            match op {
                Op::Plain(b) => out.extend_from_slice(b),
                Op::Call(t) => {
                    out.push(0xe8);
                    let target = addr.get(*t as usize).copied().unwrap_or(0xdead);
                    out.extend_from_slice(&target.to_le_bytes());
                }
            }
        }
        out.extend_from_slice(&[0xcc; 16]);
    }
    out
}

/// A pseudo-binary of about `size` bytes and its next version: a few
/// functions rewritten, a couple inserted and removed, everything after
/// them moved.
pub(crate) fn binary_pair(seed: u64, size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let mut fns = Vec::new();
    let mut total = 0;
    while total < size {
        let len = 40 + rng.below(400) as usize;
        fns.push(function(&mut rng, fns.len() as u64, len));
        total += len + 16;
    }
    let old = link(&fns);
    let n = fns.len() as u64;
    for _ in 0..(n / 40).max(1) {
        let i = rng.below(n) as usize;
        let len = 40 + rng.below(400) as usize;
        fns[i] = function(&mut rng, i as u64, len);
    }
    for _ in 0..2 {
        let i = rng.below(fns.len() as u64) as usize;
        let f = function(&mut rng, i as u64, 200);
        fns.insert(i, f);
        let j = rng.below(fns.len() as u64) as usize;
        fns.remove(j);
    }
    (old, link(&fns))
}

/// Text (a config or a script) and the same text with a few edits.
pub(crate) fn text_pair(seed: u64, lines: usize) -> (Vec<u8>, Vec<u8>) {
    const WORDS: &[&str] = &[
        "let", "value", "config", "terminal", "price", "receipt", "if", "else", "return", "store",
        "=", "{", "}", "(", ")", "0", "1", "true", "false", "total",
    ];
    let mut rng = Rng::new(seed);
    let mut text: Vec<String> = (0..lines)
        .map(|i| {
            let n = 3 + rng.below(9) as usize;
            let words: Vec<&str> = (0..n)
                .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                .collect();
            format!("{i:05}: {}", words.join(" "))
        })
        .collect();
    let old = text.join("\n").into_bytes();
    for _ in 0..(lines / 50).max(1) {
        let i = rng.below(text.len() as u64) as usize;
        match rng.below(3) {
            0 => text[i] = format!("edited line {}", rng.below(1000)),
            1 => text.insert(i, "inserted line".to_owned()),
            _ => {
                text.remove(i);
            }
        }
    }
    (old, text.join("\n").into_bytes())
}

/// The shipped example artifacts (a realistic small update).
pub(crate) fn pos_app_pair() -> (Vec<u8>, Vec<u8>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/artifacts");
    (
        std::fs::read(dir.join("pos-app-2.3.0.tar")).unwrap(),
        std::fs::read(dir.join("pos-app-2.4.0.tar")).unwrap(),
    )
}
