//! Readiness for systemd's `Type=notify` units: the part of sd_notify(3)
//! haifu needs, a datagram naming the new state sent to the unix socket in
//! `$NOTIFY_SOCKET`. Outside systemd (no such variable) it does nothing.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::UnixDatagram;

use haifu_fleet::Shutdown;

/// The variable systemd sets for a `Type=notify` service.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `READY=1` once the daemon behind `shutdown` says it is ready (its
/// endpoint bound and its threads started), so units ordered after this
/// one start only then.
pub(crate) fn notify_when_ready(shutdown: &Shutdown) {
    shutdown.on_ready(|| match notify("READY=1") {
        Ok(true) => tracing::info!("told systemd: ready"),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot tell systemd the daemon is ready: {e}"),
    });
}

/// Sends `STOPPING=1`: the daemon is shutting down.
pub(crate) fn stopping() {
    if let Err(e) = notify("STOPPING=1") {
        tracing::warn!("cannot tell systemd the daemon is stopping: {e}");
    }
}

/// Sends `state` to `$NOTIFY_SOCKET`; `Ok(false)` when it is not set.
fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) if !socket.is_empty() => send(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

/// One datagram to the socket at `path`: a file path, or `@name` for a
/// socket in Linux's abstract namespace.
fn send(path: &OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        abstract_addr(name).and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))?
    } else {
        sock.send_to(state.as_bytes(), path)?
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was cut short",
        ));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_datagram_reaches_a_socket_by_path_and_by_abstract_name() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("haifu-test-{}", std::process::id());
        let addr = abstract_addr(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(send(d.path().join("absent").as_os_str(), "READY=1").is_err());
    }
}
