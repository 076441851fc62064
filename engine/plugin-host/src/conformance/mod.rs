//! Conformance checks that anyone can run against any built plugin: the
//! rules of `plugins/abi/SPEC.md` that can be observed from outside. `haifu
//! plugins check FILE` runs them ([`check`]); a Rust test can call the
//! shape checks directly.
//!
//! ```no_run
//! use haifu_plugin_host::{conformance, load};
//! let plugin = load("libhaifu_transport_mine.so".as_ref())?;
//! let report = conformance::check(&plugin, &conformance::Options::default())?;
//! for c in &report {
//!     println!("{} {}: {}", c.verdict(), c.name, c.detail);
//! }
//! assert!(report.iter().all(|c| c.passed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What the checks cover, per shape: opening with the keys the engine
//! passes (and refusing an unknown key), round trips, timeouts (accuracy,
//! polling, nothing consumed), buffers too small and messages too large,
//! many threads at once, a peer closing while this side waits in `recv`,
//! deny lists, identities and roles (streams), pacing accuracy, the bound
//! address and the batched calls (datagrams). What they do not: loss, load or security beyond the
//! handshake rules; a passing plugin can still be slow or leak.

mod datagram;
mod stream;

use std::time::Duration;

pub use datagram::{check_datagram, check_datagram_pair};
pub use stream::check_stream;

use crate::{ErrorKind, Plugin, TransportError};

/// The outcome of one rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// Short rule name, e.g. `datagram.round_trip`.
    pub name: &'static str,
    /// Whether the plugin followed the rule (a skipped rule passed).
    pub passed: bool,
    /// The rule does not apply: the plugin offers no key or call for it
    /// (an optional `rate`, `max_frame`, `conn_peer_role`).
    pub skipped: bool,
    /// What was observed.
    pub detail: String,
}

impl Check {
    /// `ok`, `FAIL` or `skip`.
    pub fn verdict(&self) -> &'static str {
        match (self.passed, self.skipped) {
            (true, true) => "skip",
            (true, false) => "ok",
            (false, _) => "FAIL",
        }
    }
}

/// A rule's body's outcome: pass with what was seen, fail with why, or not
/// applicable with why.
pub(crate) enum Seen {
    Pass(String),
    Fail(String),
    Skip(String),
}

/// How a rule's body ends: what was seen when the plugin followed it, or
/// the [`Violation`].
pub(crate) type Outcome = Result<String, Violation>;

/// How a plugin broke a rule, in words for the report: the check reports
/// what it observed, so a violation is its description (a plugin's own
/// error becomes part of it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Violation(pub(crate) String);

impl From<String> for Violation {
    fn from(seen: String) -> Self {
        Self(seen)
    }
}

impl From<&str> for Violation {
    fn from(seen: &str) -> Self {
        Self(seen.to_owned())
    }
}

impl From<Outcome> for Seen {
    fn from(r: Outcome) -> Self {
        match r {
            Ok(d) => Self::Pass(d),
            Err(Violation(d)) => Self::Fail(d),
        }
    }
}

/// Runs one rule's body (a closure, so `?` works inside).
pub(crate) fn run(f: impl FnOnce() -> Outcome) -> Outcome {
    f()
}

pub(crate) fn rule(name: &'static str, seen: impl Into<Seen>) -> Check {
    let (passed, skipped, detail) = match seen.into() {
        Seen::Pass(d) => (true, false, d),
        Seen::Fail(d) => (false, false, d),
        Seen::Skip(d) => (true, true, d),
    };
    Check {
        name,
        passed,
        skipped,
        detail,
    }
}

pub(crate) fn expect_kind(
    r: Result<impl std::fmt::Debug, TransportError>,
    kind: ErrorKind,
) -> Outcome {
    match r {
        Err(e) if e.kind == kind => Ok(format!("{kind:?}: {}", e.message)),
        Err(e) => Err(format!("expected {kind:?}, got {:?}: {}", e.kind, e.message).into()),
        Ok(v) => Err(format!("expected {kind:?}, got success ({v:?})").into()),
    }
}

/// The timeout of calls that should succeed at once.
pub(crate) const T: Option<Duration> = Some(Duration::from_secs(5));

/// What [`check`] runs a plugin with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The operator's `KEY=VALUE` pairs, added to the keys the engine
    /// passes (replacing an engine key of the same name). In values,
    /// `{port}` becomes this member's port and `{port_a}` / `{port_b}` the
    /// two members' ports (two free loopback UDP ports the check picks),
    /// so a unicast transport can bind one and send to both.
    pub config: Vec<(String, String)>,
}

/// Why [`check`] could not run the checks at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The scratch folder for the certificates could not be made.
    #[error("cannot make a scratch folder for the check's certificates")]
    Scratch(#[source] std::io::Error),
    /// The certificates for the stream checks could not be made.
    #[error("cannot make the check's fleet CA and certificates")]
    Pki(#[source] crate::pki::PkiError),
    /// No free local port.
    #[error("cannot find a free loopback port")]
    Port(#[source] std::io::Error),
}

/// A free loopback UDP port (free when asked; another process may take it
/// before the plugin binds it).
fn free_port() -> Result<u16, CheckError> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(CheckError::Port)?;
    Ok(s.local_addr().map_err(CheckError::Port)?.port())
}

/// `engine` lines with the operator's pairs applied: a pair replaces the
/// engine line of its key, others are appended; placeholders filled.
fn merge(engine: &[(&str, String)], operator: &[(String, String)], ports: [u16; 3]) -> String {
    let fill = |v: &str| {
        v.replace("{port}", &ports[0].to_string())
            .replace("{port_a}", &ports[1].to_string())
            .replace("{port_b}", &ports[2].to_string())
    };
    let mut out = String::new();
    for (k, v) in engine {
        if !operator.iter().any(|(ok, _)| ok == k) {
            out.push_str(&format!("{k}={}\n", fill(v)));
        }
    }
    for (k, v) in operator {
        out.push_str(&format!("{k}={}\n", fill(v)));
    }
    out
}

/// Runs the checks of every shape the plugin declares, configured as the
/// engine would (the keys of SPEC §5.6 and §6.12) plus the operator's
/// pairs: for datagrams two members of one loopback multicast group; for
/// streams a listening and a connecting endpoint with certificates of a
/// scratch fleet CA (`check-server`, a relay; `check-client`, a client).
pub fn check(plugin: &Plugin, options: &Options) -> Result<Vec<Check>, CheckError> {
    let shapes = plugin.info().shapes;
    let mut out = Vec::new();
    if shapes.datagram {
        let (a, b) = (free_port()?, free_port()?);
        // One group per check run: parallel runs must not hear each other.
        let id = std::process::id();
        let group = format!("239.255.{}.{}:{a}", (id >> 8) % 256, id % 256);
        let engine = [
            ("group", group),
            ("loopback", "true".to_owned()),
            ("join", "true".to_owned()),
            ("ttl", "1".to_owned()),
            ("interface", "127.0.0.1".to_owned()),
        ];
        let ca = merge(&engine, &options.config, [a, a, b]);
        let cb = merge(&engine, &options.config, [b, a, b]);
        out.extend(check_datagram_pair(plugin, &ca, &cb));
    }
    if shapes.stream {
        let home = tempfile::tempdir().map_err(CheckError::Scratch)?;
        let h = home.path();
        crate::pki::init_ca(h, crate::pki::DEFAULT_CA_NAME).map_err(CheckError::Pki)?;
        crate::pki::issue(h, "check-server", crate::pki::CertRole::Relay)
            .map_err(CheckError::Pki)?;
        crate::pki::issue(h, "check-client", crate::pki::CertRole::Client)
            .map_err(CheckError::Pki)?;
        let ca = crate::pki::ca_files(h).cert.display().to_string();
        let files = |name: &str| {
            let f = crate::pki::cert_files(h, name);
            (f.cert.display().to_string(), f.key.display().to_string())
        };
        let (scert, skey) = files("check-server");
        let (ccert, ckey) = files("check-client");
        let port = free_port()?;
        let server = merge(
            &[
                ("ca", ca.clone()),
                ("cert", scert),
                ("key", skey),
                ("listen", "127.0.0.1:{port}".to_owned()),
            ],
            &options.config,
            [port, port, port],
        );
        let client = merge(
            &[("ca", ca), ("cert", ccert), ("key", ckey)],
            &options.config,
            [0, port, port],
        );
        out.extend(check_stream(
            plugin,
            &server,
            &client,
            "check-server",
            "check-client",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_keys_replace_engine_keys_and_fill_ports() {
        let m = merge(
            &[("group", "x:{port}".into()), ("ttl", "1".into())],
            &[
                ("ttl".into(), "4".into()),
                ("peers".into(), "h:{port_a},h:{port_b}".into()),
            ],
            [7, 7, 8],
        );
        assert_eq!(m, "group=x:7\nttl=4\npeers=h:7,h:8\n");
    }
}
