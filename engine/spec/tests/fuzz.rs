//! A few thousand malformed workflows, mutated from the shipped ones: the
//! loader never panics, and every error it reports has a position.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const FRAGMENTS: &[&str] = &[
    ":",
    " ",
    "\n",
    "\t",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "---\n",
    "...",
    "|",
    ">",
    "~",
    "null",
    "0",
    "-1",
    "99999999999999999999",
    "brodcast",
    "rounds: 0",
    "deadline: 72x",
    "é",
    "\u{feff}",
    "? ",
    ",",
    "%YAML 1.2\n",
    "2026-02-30T00:00:00+09:00",
];

fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
    // Sometimes swap two lines or two keys' names: structure-level mutations.
    if rng.below(4) == 0 && lines.len() > 2 {
        let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
        lines.swap(a, b);
    }
    if rng.below(4) == 0 && lines.len() > 2 {
        let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
        let key = |l: &str| l.split(':').next().map(str::to_string);
        if let (Some(ka), Some(kb)) = (key(&lines[a]), key(&lines[b])) {
            lines[a] = lines[a].replacen(&ka, &kb, 1);
            lines[b] = lines[b].replacen(&kb, &ka, 1);
        }
    }
    let mut bytes = lines.join("\n").into_bytes();
    for _ in 0..=rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = (rng.next() & 0xff) as u8;
            }
            1 => bytes.truncate(at),
            2 => {
                let f = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
                bytes.splice(at..at, f.iter().copied());
            }
            _ if !bytes.is_empty() => {
                let end = (at + rng.below(30)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn malformed_workflows_never_panic_and_every_error_has_a_position() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let bases: Vec<String> = ["nightly-store-rollout.yaml", "urgent-security-fix.yaml"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    let file = dir.join("fuzz.yaml");
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (mut ok, mut bad) = (0, 0);
    for i in 0..4000 {
        let text = mutate(&mut rng, &bases[i % bases.len()]);
        match haifu_spec::check_text(&file, &text) {
            Ok(_) => ok += 1,
            Err(errors) => {
                bad += 1;
                assert!(!errors.is_empty(), "an empty error list for {text:?}");
                for e in errors {
                    assert!(e.pos.line >= 1 && e.pos.column >= 1, "{e} in {text:?}");
                    assert!(!e.to_string().contains('\n'), "{e:?}");
                }
            }
        }
    }
    assert!(bad > 1000 && ok > 10, "{ok} ok, {bad} bad");
}
