//! A few thousand malformed scripts, mutated from the shipped ones: the policy
//! host never panics, every compile error has a position, and every call ends
//! with an answer (the script's or the safe default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use haifu_policy::{
    BudgetFacts, ClientFacts, Limits, PolicyError, PolicySet, Role, RoundFacts, ServiceFacts,
};
use jiff::Timestamp;

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
    "{",
    "}",
    "(",
    ")",
    ";",
    "\"",
    "`",
    "${",
    "fn ",
    "let ",
    "loop {}",
    "return ",
    "#{",
    "**",
    "/ 0",
    "999999999999999999999",
    "-",
    "[",
    "]",
    ".",
    "ctx.",
    "client.",
    "()",
    "eval(\"1\")",
    "import \"x\" as y;",
    "while true {}",
    "\n",
    "\u{0}",
    "é",
    "//",
    "/*",
    "next_round(ctx)",
    "s += s;",
    "throw \"x\";",
    "version_ge(\"a\", \"b\")",
];

fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut bytes = base.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = (rng.next() & 0x7f) as u8;
            }
            1 => bytes.truncate(at),
            2 => {
                let frag = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
                bytes.splice(at..at, frag.iter().copied());
            }
            _ if !bytes.is_empty() => {
                let end = (at + rng.below(20)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

#[test]
fn malformed_scripts_never_panic_and_always_answer() {
    let bases: Vec<String> = [
        "retry.rhai",
        "urgent-retry.rhai",
        "restrict.rhai",
        "disconnect.rhai",
        "broadcast.rhai",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(policies_dir().join(f)).unwrap())
    .collect();
    // Tighter limits keep the run short; the behaviour is the same.
    let limits = Limits {
        max_operations: 20_000,
        max_wall_time: Duration::from_millis(20),
        ..Limits::default()
    };
    let facts = RoundFacts {
        round: 2,
        rounds: 3,
        delivered: 7,
        total: 10,
        now: "2026-12-01T03:00:00+09:00[Asia/Tokyo]".parse().unwrap(),
        start: "2026-12-01T02:00:00+09:00".parse().unwrap(),
        deadline: "2026-12-04T02:00:00+09:00".parse().unwrap(),
        window: Some((120, 300)),
    };
    let client = ClientFacts {
        id: "c".into(),
        version: Some("2.3.0".parse().unwrap()),
        newest: "2.4.0".parse().unwrap(),
        behind: 1,
        last_contact: Some("2026-11-01T00:00:00Z".parse().unwrap()),
        state: "undelivered".into(),
    };
    let service = ServiceFacts {
        name: "s".into(),
        since: "2.4.0".parse().unwrap(),
    };
    let budget = BudgetFacts {
        round: 2,
        rounds: 3,
        size: 64 << 20,
        rate: 100_000_000,
        remaining: 3,
        last_loss: Some(0.2),
        last_decoded: Some(7),
        now: facts.now.clone(),
        start: facts.start,
        deadline: facts.deadline,
        window: facts.window,
    };
    let now = Timestamp::UNIX_EPOCH;
    let path = Path::new("fuzz.rhai");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut compiled, mut rejected) = (0, 0);
    let started = Instant::now();
    for i in 0..3000 {
        let src = mutate(&mut rng, &bases[i % bases.len()]);
        let sources = [
            (Role::Retry, path, src.as_str()),
            (Role::Restrict, path, src.as_str()),
            (Role::Disconnect, path, src.as_str()),
            (Role::Broadcast, path, src.as_str()),
        ];
        match PolicySet::compile_with_limits(&sources, limits.clone()) {
            Ok(set) => {
                compiled += 1;
                let _ = set.next_round(&facts);
                let _ = set.allow(&client, &service, now);
                let _ = set.disconnect(&client, now);
                // Whatever a mangled script returns, the budget is in range.
                let b = set.round_budget(&budget).value;
                assert!((0.0..=1.0).contains(&b.proactive), "{b:?} from {src:?}");
                assert!((1.0..=16.0).contains(&b.bytes), "{b:?} from {src:?}");
            }
            Err(errors) => {
                rejected += 1;
                assert_eq!(errors.len(), 1);
                match &errors[0] {
                    PolicyError::Syntax { line, message, .. } => {
                        assert!(*line > 0, "no position for {message:?} in {src:?}");
                    }
                    other => panic!("unexpected {other}"),
                }
            }
        }
    }
    assert!(
        compiled > 100 && rejected > 100,
        "{compiled} compiled, {rejected} rejected"
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}
