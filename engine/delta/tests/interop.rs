//! The frame inside the container is a standard `zstd --patch-from` patch:
//! the zstd CLI decodes it with the base as reference. Skipped (with a note)
//! when the CLI is absent; `apt-get install zstd` provides it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use haifu_delta::container::{CHUNK_RECORD_LEN, HEADER_LEN};
use haifu_delta::{MakeOptions, MethodChoice, make};

fn zstd_cli() -> bool {
    let ok = Command::new("zstd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("note: zstd CLI not installed (apt-get install zstd); interop test skipped");
    }
    ok
}

#[test]
fn zstd_cli_decodes_the_frame_with_patch_from() {
    if !zstd_cli() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pairs = [
        common::pos_app_pair(),
        common::binary_pair(40, 200_000),
        common::text_pair(41, 3000),
    ];
    for (i, (old, new)) in pairs.iter().enumerate() {
        // Patch-from deltas only: a bsdiff body is not one zstd frame.
        let background = MakeOptions::background().with_methods(MethodChoice::PatchFrom);
        for options in [background, MakeOptions::fast()] {
            let delta = make(old, new, &options).unwrap();
            assert_eq!(delta.header.chunks, 1);
            let frame = &delta.bytes[HEADER_LEN + CHUNK_RECORD_LEN..];
            let (old_path, frame_path, out_path) = (
                dir.path().join("old"),
                dir.path().join("frame.zst"),
                dir.path().join("out"),
            );
            std::fs::write(&old_path, old).unwrap();
            std::fs::write(&frame_path, frame).unwrap();
            let status = Command::new("zstd")
                .args(["-q", "-f", "-d", "--long=31", "--patch-from"])
                .arg(&old_path)
                .arg(&frame_path)
                .arg("-o")
                .arg(&out_path)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "pair {i}, level {}: zstd -d failed",
                options.level
            );
            assert!(
                std::fs::read(&out_path).unwrap() == *new,
                "pair {i}: output differs"
            );
        }
    }
}
