//! A command-line front to haifu-delta, for the benchmark (`bench/delta.sh`)
//! and for poking at deltas by hand.
//!
//! ```text
//! delta_tool make [--level N] [--method M] OLD NEW DELTA
//!                                             make a delta (default level 19;
//!                                             M: best (default), patch-from, bsdiff)
//! delta_tool apply OLD DELTA OUT              apply it (streamed, verified)
//! delta_tool apply --base-digest HEX OLD DELTA OUT
//!                                             same, OLD's digest known (not re-hashed)
//! delta_tool header DELTA                     print the header
//! delta_tool digest FILE                      print its sha3-256 and the time taken
//! ```
//!
//! Exit codes: 0 ok, 1 delta refused or I/O error, 2 usage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;

use haifu_delta::{BaseCheck, MakeOptions, MethodChoice, PatchReader, make};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["make", rest @ ..] => match make_options(rest) {
            Some((options, [old, new, out])) => run_make(old, new, out, options),
            _ => return usage(),
        },
        ["apply", old, delta, out] => run_apply(old, delta, out, BaseCheck::Hash),
        ["apply", "--base-digest", hex, old, delta, out] => match hex.parse() {
            Ok(d) => run_apply(old, delta, out, BaseCheck::Known(d)),
            Err(_) => return usage(),
        },
        ["header", delta] => run_header(delta),
        ["digest", file] => run_digest(file),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("delta_tool: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `[--level N] [--method M]` then the rest.
fn make_options<'a>(mut args: &'a [&'a str]) -> Option<(MakeOptions, &'a [&'a str])> {
    let mut options = MakeOptions::background();
    loop {
        match args {
            ["--level", n, rest @ ..] => {
                options = options.with_level(n.parse().ok()?);
                args = rest;
            }
            ["--method", m, rest @ ..] => {
                options = options.with_methods(match *m {
                    "best" => MethodChoice::Smaller,
                    "patch-from" => MethodChoice::PatchFrom,
                    "bsdiff" => MethodChoice::Bsdiff,
                    _ => return None,
                });
                args = rest;
            }
            _ => return Some((options, args)),
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn run_make(old: &str, new: &str, out: &str, options: MakeOptions) -> Result<()> {
    let (old, new) = (read(old)?, read(new)?);
    let delta = make(&old, &new, &options)?;
    std::fs::write(out, &delta.bytes).map_err(|e| format!("cannot write {out}: {e}"))?;
    Ok(())
}

fn run_apply(old: &str, delta: &str, out: &str, check: BaseCheck) -> Result<()> {
    let base = read(old)?;
    let patch = File::open(delta).map_err(|e| format!("cannot open {delta}: {e}"))?;
    // The output is written in 1 MiB pieces already: no BufWriter needed.
    let dest = File::create(out).map_err(|e| format!("cannot create {out}: {e}"))?;
    let reader = PatchReader::new(BufReader::with_capacity(1 << 20, patch))?;
    if let Err(e) = reader.apply_checked(&base, check, dest) {
        // Never leave an unverified output behind.
        let _ = std::fs::remove_file(out);
        return Err(e.into());
    }
    Ok(())
}

fn run_header(delta: &str) -> Result<()> {
    let patch = File::open(delta).map_err(|e| format!("cannot open {delta}: {e}"))?;
    let h = *PatchReader::new(BufReader::new(patch))?.header();
    println!(
        "from {} ({} bytes)\nto   {} ({} bytes)\nmethod {}, window log {}, level {}, {} chunk(s)",
        h.from, h.from_size, h.to, h.to_size, h.method, h.window_log, h.level, h.chunks
    );
    Ok(())
}

fn run_digest(file: &str) -> Result<()> {
    let bytes = read(file)?;
    let started = std::time::Instant::now();
    let digest = haifu_delta::digest_of(&bytes);
    let secs = started.elapsed().as_secs_f64();
    let rate = bytes.len() as f64 / secs / 1e6;
    println!("{digest}");
    eprintln!("{file}: {secs:.4} s, {rate:.0} MB/s");
    Ok(())
}

/// Every file, the floor's included, is read as the client reads its base.
fn read(path: &str) -> Result<Vec<u8>> {
    Ok(haifu_delta::read_base(std::path::Path::new(path))
        .map_err(|e| format!("cannot read {path}: {e}"))?)
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: delta_tool make [--level N] [--method best|patch-from|bsdiff] OLD NEW DELTA | apply [--base-digest HEX] OLD DELTA OUT | header DELTA | digest FILE"
    );
    ExitCode::from(2)
}
