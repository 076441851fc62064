//! The QUIC plugin's default frame limit is the protocol's: a frame the
//! protocol would accept passes, one byte more is refused by its length
//! prefix, before the body is read. The plugin repeats the protocol's
//! constant (it may depend on the ABI crate only); this test is what keeps
//! the two equal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use haifu_plugin_host::{ErrorKind, pki};
use haifu_protocol::Limits;
use haifu_protocol::limits::DEFAULT_MAX_FRAME;

const T: Option<Duration> = Some(Duration::from_secs(10));

fn quic_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let file = format!(
        "{}haifu_transport_quic{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    [dir.join(&file), dir.join("deps").join(&file)]
        .into_iter()
        // The newer of the two: a plugin built on its own beside a newer
        // build as a dev-dependency must not shadow it.
        .filter(|p| p.exists())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("the quic plugin is built with the tests (a dev-dependency)")
}

#[test]
fn quic_default_max_frame_is_the_protocols() {
    assert_eq!(Limits::default().max_frame(), DEFAULT_MAX_FRAME);
    let home = tempfile::tempdir().unwrap();
    pki::init_ca(home.path(), pki::DEFAULT_CA_NAME).unwrap();
    let config = |name: &str, extra: &str| {
        let ca = pki::ca_files(home.path());
        let me = pki::issue(home.path(), name, pki::CertRole::Relay).unwrap();
        format!(
            "ca={}\ncert={}\nkey={}\nclose_timeout_ms=2000\n{extra}",
            ca.cert.display(),
            me.cert.display(),
            me.key.display()
        )
    };
    let quic = haifu_plugin_host::load(&quic_path()).unwrap();
    // The server keeps the plugin's default; the client may send more.
    let srv = quic
        .open_endpoint(&config("server", "listen=127.0.0.1:0\n"))
        .unwrap();
    let addr = srv.local_addr().unwrap();
    let cli = quic
        .open_endpoint(&config("client-a", "max_frame=4194304\n"))
        .unwrap();
    let c = cli.connect(&addr, "server", T).unwrap();
    let s = srv.accept(T).unwrap();

    c.send(&vec![7u8; DEFAULT_MAX_FRAME], T).unwrap();
    assert_eq!(s.recv(T).unwrap().len(), DEFAULT_MAX_FRAME);

    c.send(&vec![8u8; DEFAULT_MAX_FRAME + 1], T).unwrap();
    let e = s.recv(T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert!(
        e.message.contains(&format!(
            "frame of {} bytes, limit {DEFAULT_MAX_FRAME}",
            DEFAULT_MAX_FRAME + 1
        )),
        "{e}"
    );
}
