//! SIGKILL a real process at random moments and at every step of an
//! install: the root always reopens to the old version intact or the new one
//! complete, never a partial one, and a later install completes.
//!
//! The child is this test binary re-executed with [`CHILD_ENV`] set, running
//! only [`crash_child`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{content, sha3, stage};
use haifu_install::{InstallRoot, PostInstall, digest_of};

/// Set in the child: `<root>|<version number>|<pause at>` where pause-at is
/// `-` (run through) or a step name at which the child stops and waits for a
/// line on stdin before going on.
const CHILD_ENV: &str = "HAIFU_INSTALL_CRASH_CHILD";
/// Size of each version: large enough that staging takes a while.
const LEN: usize = 24 << 20;
const BLOCK: usize = 64 << 10;
const STEP_PREFIX: &str = "haifu-step ";

fn version(n: u64) -> String {
    format!("1.0.{n}")
}

/// Tells the parent a step was reached and, if it is the one to pause at,
/// waits for the parent to say go (or to kill us).
fn reached(step: &str, pause_at: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{STEP_PREFIX}{step}").unwrap();
    out.flush().unwrap();
    drop(out);
    if step == pause_at {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    }
}

#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (root, n, pause_at) = (
        parts[0],
        parts[1].parse::<u64>().unwrap(),
        parts[2].to_owned(),
    );
    let mut root = InstallRoot::open(root).unwrap();
    let p = pause_at.clone();
    root.on_step(move |s| reached(&format!("{s:?}"), &p));
    let bytes = content(n, LEN);
    let mut s = root.stage(LEN as u64).unwrap();
    // Blocks arrive out of order, as from the carousel.
    let blocks = LEN / BLOCK;
    for i in 0..blocks {
        let b = (i * 7919) % blocks;
        s.write_at((b * BLOCK) as u64, &bytes[b * BLOCK..(b + 1) * BLOCK])
            .unwrap();
        if i == blocks / 2 {
            reached("StagingHalf", &pause_at);
        }
    }
    let verified = s
        .verify(
            &common::manifest(&version(n), &bytes),
            &common::key().public_key(),
        )
        .unwrap();
    let post = PostInstall::new("true");
    root.install(verified, Some(&post)).unwrap();
    reached("Done", &pause_at);
}

fn spawn_child(root: &Path, n: u64, pause_at: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{n}|{pause_at}", root.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Opens the root as a restarted client would and checks it holds `old` or
/// `new`, complete and byte-exact; returns which.
fn check(root: &Path, old: u64, new: u64) -> u64 {
    let r = InstallRoot::open(root).unwrap();
    assert_eq!(
        std::fs::read_dir(root.join("staging")).unwrap().count(),
        0,
        "staging not cleaned"
    );
    let cur = r.installed().unwrap().expect("a version is installed");
    let n = if cur.version == version(new) {
        new
    } else {
        assert_eq!(cur.version, version(old), "unexpected version");
        old
    };
    let (size, digest) = digest_of(&cur.path).unwrap();
    assert_eq!(size, LEN as u64);
    assert_eq!(digest, sha3(&content(n, LEN)), "version {n} is not intact");
    assert_eq!(digest, cur.digest);
    if let Some(prev) = r.previous().unwrap() {
        assert_eq!(digest_of(&prev.path).unwrap().1, prev.digest);
    }
    n
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn sigkill_during_install_leaves_old_intact_or_new_complete() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let r = InstallRoot::open(root).unwrap();
        r.install(stage(&r, &version(0), &content(0, LEN)), None)
            .unwrap();
    }
    let mut installed = 0u64;
    let mut next = 1u64;

    // Kills at exact points: mid-staging and after each durable step.
    for pause in [
        "StagingHalf",
        "VersionWritten",
        "PostInstallDone",
        "PreviousSwitched",
        "CurrentSwitched",
    ] {
        let mut child = spawn_child(root, next, pause);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("child ended before {pause}"))
                .unwrap();
            // libtest may have printed "test crash_child ... " on the same line.
            if line.ends_with(&format!("{STEP_PREFIX}{pause}")) {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = check(root, installed, next);
        if pause == "CurrentSwitched" {
            assert_eq!(
                got, next,
                "killed after the switch, the new version must be current"
            );
        } else {
            assert_eq!(got, installed, "killed at {pause}, before the switch");
        }
        installed = got;
        next += 1;
    }

    // Calibrate a whole run, then kill at random moments within it.
    let started = Instant::now();
    let mut child = spawn_child(root, next, "-");
    assert!(child.wait().unwrap().success());
    let run = started.elapsed();
    installed = check(root, installed, next);
    assert_eq!(installed, next);
    next += 1;

    let seed = std::env::var("HAIFU_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed {seed} (set HAIFU_CRASH_SEED to replay); a run takes {run:?}");
    let mut rng = Rng(seed);
    // From a quarter of a run (content generated, staging under way) to a
    // little past its end, so some kills land after the switch.
    let (from, window) = (run.as_millis() as u64 / 4, run.as_millis() as u64);
    for _ in 0..8 {
        let mut child = spawn_child(root, next, "-");
        std::thread::sleep(Duration::from_millis(from + rng.below(window)));
        let _ = child.kill(); // SIGKILL; it may already have finished
        child.wait().unwrap();
        let got = check(root, installed, next);
        eprintln!("killed installing {next}: {} is current", version(got));
        installed = got;
        next += 1;
    }

    // Finally an install runs to the end.
    let mut child = spawn_child(root, next, "-");
    assert!(child.wait().unwrap().success());
    assert_eq!(check(root, installed, next), next);
    let r = InstallRoot::open(root).unwrap();
    assert_eq!(r.installed().unwrap().unwrap().version, version(next));
    assert!(std::fs::read_dir(root.join("versions")).unwrap().count() <= 2);
}
