#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Golden wire files: one instance of every message, byte for byte.
//!
//! An encoding change that was not meant fails here. One that was meant is a
//! protocol change: bump the version or add a tag, then regenerate with
//! `HAIFU_BLESS=1 cargo test -p haifu-protocol --test golden` and review the
//! diff of `tests/golden/`.

mod support;

use std::path::PathBuf;

use haifu_protocol::Message;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn every_message_matches_its_golden_file() {
    let bless = std::env::var_os("HAIFU_BLESS").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for (name, msg) in support::samples() {
        let path = dir().join(format!("{name}.bin"));
        let bytes = msg.encode().unwrap();
        if bless {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let golden = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with HAIFU_BLESS=1)", path.display()));
        if golden != bytes {
            failures.push(format!(
                "{name}: encoding changed\n  golden {}\n  now    {}",
                hex::encode(&golden),
                hex::encode(&bytes)
            ));
        }
        // The golden bytes also decode to the same value: old frames stay
        // readable.
        assert_eq!(Message::decode(&golden).unwrap(), msg, "{name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn no_golden_file_is_orphaned() {
    let names: Vec<String> = support::samples()
        .iter()
        .map(|(n, _)| format!("{n}.bin"))
        .collect();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        assert!(names.contains(&file), "{file} has no sample");
    }
}

/// The hello layout is frozen across every version: a reader of any
/// version must be able to tell the peer's range. Spelled out here by hand
/// so that even a blessed change to it fails.
#[test]
fn the_hello_layout_is_frozen() {
    let hello = haifu_protocol::Hello {
        protocol_version: 3,
        min_version: 2,
        role: haifu_protocol::Role::Client,
        identity: "c".into(),
        features: vec!["x".into()],
    };
    let bytes = Message::Hello(hello).encode().unwrap();
    assert_eq!(
        bytes,
        [
            0x01, b'H', b'A', b'I', b'F', 0, 3, 0, 2, 3, 0, 1, b'c', 0, 1, 0, 1, b'x'
        ]
    );
}

/// `PROTOCOL.md` lists every tag this crate knows.
#[test]
fn protocol_md_lists_every_tag() {
    let doc =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("PROTOCOL.md"))
            .unwrap();
    for (name, msg) in support::samples() {
        let tag = format!("`0x{:02x}`", msg.tag());
        assert!(doc.contains(&tag), "PROTOCOL.md lacks {tag} ({name})");
    }
}
