//! Broadcast ×n over real loopback multicast, through the multicast plugin
//! loaded from its `.so`: a relay sends fountain-code rounds, a client that
//! loses datagrams gathers symbols across rounds, ignores forged datagrams,
//! verifies the signed manifest and installs atomically.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use haifu_carousel::{
    BlockHasher, CarouselConfig, CarouselKey, Pacer, ReceivePlan, Receiver, Sender,
};
use haifu_core::{
    CarouselLayout, Compression, Digest, MANIFEST_FORMAT, Manifest, ManifestBody, SigningKey,
};
use haifu_fleet::broadcast::{Landing, receive_from, send_round};
use haifu_install::InstallRoot;
use haifu_plugin_host::{DatagramGroup, Plugin};
use haifu_runtime::session::{receive_plan, registration_layout};
use sha3::{Digest as _, Sha3_256};

fn plugin() -> Plugin {
    let file = format!(
        "{}haifu_transport_multicast{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let exe = std::env::current_exe().unwrap();
    let mut dir: PathBuf = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = [dir.join(&file), dir.join("deps").join(&file)]
        .into_iter()
        // The newer of the two: a plugin built on its own beside a newer
        // build as a dev-dependency must not shadow it.
        .filter(|p| p.exists())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("the multicast plugin is built with the tests (a dev-dependency)");
    haifu_plugin_host::load(&path).unwrap()
}

fn group(p: &Plugin, port: u16, join: bool) -> DatagramGroup {
    p.open_group(&format!(
        "group=239.255.91.7:{port}\ninterface=127.0.0.1\nloopback=true\njoin={join}"
    ))
    .unwrap()
}

fn artifact(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half text-like, half noise: roughly what software looks like.
            if i % 2 == 0 {
                b"abcdefgh"[(x % 8) as usize]
            } else {
                x as u8
            }
        })
        .collect()
}

#[test]
fn a_lossy_client_completes_across_rounds_and_installs_what_the_master_signed() {
    let data = artifact(3 << 20);
    let key = SigningKey::from_seed([4; 32]);
    let manifest = Manifest::sign(
        ManifestBody {
            format: MANIFEST_FORMAT,
            name: "pos-app".into(),
            version: "2.4.0".into(),
            size: data.len() as u64,
            sha3_256: Digest::from_bytes(Sha3_256::digest(&data).into()),
            created_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            compression: Compression::Zstd,
            stored_size: 0,
            carousel: Some(CarouselLayout {
                block_hashes: CarouselLayout::encode_block_hashes(&{
                    let plan =
                        ReceivePlan::for_config(data.len() as u64, &CarouselConfig::default())
                            .unwrap();
                    let mut h = BlockHasher::new(&plan).unwrap();
                    h.update(&data);
                    h.finish().unwrap()
                }),
                ..registration_layout()
            }),
        },
        &key,
    );
    let session = CarouselKey::new(7, [9; 32]);
    let port = 24_000 + (std::process::id() % 4000) as u16;
    let p = plugin();
    let client_group = group(&p, port, true);
    let relay_group = group(&p, port, false);

    let dir = tempfile::tempdir().unwrap();
    let root = InstallRoot::open(dir.path().join("client")).unwrap();
    let client_session = session.clone();
    let client_manifest = manifest.clone();
    let len = data.len() as u64;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client_done = std::sync::Arc::clone(&done);
    let client = std::thread::spawn(move || {
        let mut receiver = Receiver::new(client_session, receive_plan(&client_manifest).unwrap());
        let mut landing = Landing::new(root.stage(len).unwrap());
        // The client's network loses 15% of datagrams: more than one
        // round's repair symbols cover, so it needs symbols from round 2.
        let mut n = 0u64;
        let mut recv = |buf: &mut [u8], timeout: Duration| loop {
            let got = match client_group.recv(buf, Some(timeout)) {
                Ok(got) => got,
                Err(e) if e.is_timeout() => return Ok(None),
                Err(e) => return Err(e),
            };
            n += 1;
            if (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % 100 >= 15 {
                return Ok(Some(got));
            }
        };
        let stats = receive_from(
            &mut recv,
            &mut receiver,
            &mut landing,
            Instant::now() + Duration::from_secs(60),
        )
        .unwrap();
        // The completion message, as far as this test needs one.
        client_done.store(true, std::sync::atomic::Ordering::SeqCst);
        (stats, landing, root)
    });
    std::thread::sleep(Duration::from_millis(100));

    // A forger who knows the format and the session id but not the key.
    let forger = Sender::new(CarouselKey::new(7, [1; 32]), len, CarouselConfig::default()).unwrap();
    let mut forged = data.clone();
    forged[1000] ^= 0xff;
    let sender = Sender::new(session, len, CarouselConfig::default()).unwrap();
    let mut pacer = Pacer::new(200_000_000, 64 * 1024).unwrap();
    let read = |bytes: &Vec<u8>| {
        let bytes = bytes.clone();
        move |r: std::ops::Range<u64>| Ok(bytes[r.start as usize..r.end as usize].to_vec())
    };
    send_round(
        &relay_group,
        &forger,
        1,
        &mut read(&forged),
        Some(&mut pacer),
    )
    .unwrap();
    // Rounds go on, a second apart, until the client has it (a slow
    // machine may drop more than the simulated 15% in its socket buffer).
    let mut rounds = Vec::new();
    for round in 1..=6 {
        rounds.push(
            send_round(
                &relay_group,
                &sender,
                round,
                &mut read(&data),
                Some(&mut pacer),
            )
            .unwrap(),
        );
        let wait = Instant::now() + Duration::from_secs(if round == 1 { 1 } else { 3 });
        while Instant::now() < wait && !done.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
    }
    assert!(
        rounds.len() >= 2,
        "15% loss cannot be covered by one round's repair symbols"
    );
    // Bytes sent per round against the artifact (carousel overhead + headers).
    let ratio = rounds[0].bytes as f64 / len as f64;
    assert!(ratio < 1.12, "round 1 sent {ratio:.3}x the artifact");
    assert!(rounds.iter().all(|r| r.datagrams == rounds[0].datagrams));

    let (stats, landing, root) = client.join().unwrap();
    assert!(stats.complete, "{stats:?}");
    assert!(
        stats.rejected.get("bad_tag").copied().unwrap_or(0) > 100,
        "forged datagrams are counted: {stats:?}"
    );
    // Verified with the digest computed as the blocks landed.
    let verified = landing.verify(&manifest, &key.public_key()).unwrap();
    let installed = root.install(verified, None).unwrap();
    assert_eq!(installed.digest, manifest.body.sha3_256);
    assert_eq!(std::fs::read(&installed.path).unwrap(), data);
}
