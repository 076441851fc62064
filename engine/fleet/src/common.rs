//! What the three daemons share: shutdown on a signal, plugin loading, the
//! QUIC endpoint's configuration, and derived session keys.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haifu_plugin_host::{Connection, Endpoint, Plugin};

use crate::FleetError;
use crate::config::TlsFiles;

/// Set once SIGTERM or SIGINT arrives (or a test asks); every loop of a
/// daemon checks it at least every half second.
///
/// It also carries the daemon's readiness to whoever started it: a hook
/// given to [`Shutdown::on_ready`] is called once, when the daemon is up
/// (its endpoint bound, its set-up done): the master as it starts
/// accepting connections, a relay or a client as it first reaches for its
/// master or relay, or starts accepting, whichever comes first. The CLI
/// tells systemd there (`READY=1`).
#[derive(Clone, Default)]
pub struct Shutdown {
    stop: Arc<AtomicBool>,
    ready: Arc<Mutex<Option<ReadyHook>>>,
}

type ReadyHook = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("stop", &self.is_set())
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// A flag nobody has set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag set by SIGTERM or SIGINT.
    pub fn on_signals() -> Result<Self, FleetError> {
        let flag = Self::new();
        let set = flag.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(FleetError::Signals)?;
        // Register the handlers before returning, so a signal sent right
        // after start-up is not missed.
        let (mut term, mut int) = rt
            .block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                Ok::<_, std::io::Error>((
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::interrupt())?,
                ))
            })
            .map_err(FleetError::Signals)?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                rt.block_on(async {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                    }
                });
                set.trigger();
            })
            .map_err(|source| FleetError::Thread {
                name: "signals",
                source,
            })?;
        Ok(flag)
    }

    /// Asks every loop to stop.
    pub fn trigger(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked.
    pub fn is_set(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Calls `hook` once the daemon is ready (see the type's documentation);
    /// a later hook replaces an earlier one not yet called.
    pub fn on_ready(&self, hook: impl FnOnce() + Send + 'static) {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }

    /// Says the daemon is ready: calls the hook, the first time only.
    pub fn ready(&self) {
        let hook = self.ready.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(hook) = hook {
            hook();
        }
    }

    /// Sleeps up to `d`, waking early on shutdown. Returns whether shutdown
    /// was asked.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = std::time::Instant::now() + d;
        while !self.is_set() {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        true
    }
}

/// Why a daemon cannot use the transport plugins its config names.
#[derive(Debug, thiserror::Error)]
pub enum PluginProblem {
    /// The plugins folder cannot be used.
    #[error("plugins")]
    Dir(#[source] haifu_plugin_host::DirError),
    /// The plugin's file is there and failed (the source names the file
    /// and the fault).
    #[error("{what} plugin {name:?}")]
    Failed {
        /// The config key naming it (`transports.broadcast`).
        what: &'static str,
        /// The plugin.
        name: String,
        /// Why it did not load.
        #[source]
        source: haifu_plugin_host::LoadError,
    },
    /// No file for the plugin in the folder.
    #[error(
        "no {name} plugin in {} (looked for {file}; build it with: cargo build --release -p haifu-transport-{name})",
        dir.display()
    )]
    Missing {
        /// The plugin.
        name: String,
        /// The folder.
        dir: PathBuf,
        /// The file name looked for.
        file: String,
    },
    /// The plugin offers another shape than the transport needs.
    #[error("{what} plugin {name:?} offers {offers}, not the {needs} this transport needs")]
    WrongShape {
        /// The config key naming it.
        what: &'static str,
        /// The plugin.
        name: String,
        /// What it offers.
        offers: String,
        /// What the transport needs.
        needs: &'static str,
    },
}

/// The control (stream) and broadcast (datagram) plugins from `dir` (or
/// the default folder), by the names the daemon config's `transports:`
/// gives (`quic` and `multicast` unless it says otherwise), each carrying
/// its operator's section. Only those two files are opened (each probed in a
/// child first), never any other library in the folder, and only if the
/// folder and files pass the loader's ownership and mode checks. A daemon
/// refuses to start when either is missing, bad, or of the wrong shape.
pub fn plugins(
    dir: Option<&Path>,
    transports: &crate::config::TransportsConfig,
) -> Result<(Plugin, Plugin), FleetError> {
    let dir = haifu_plugin_host::plugin_dir(dir);
    let mut set =
        haifu_plugin_host::load_named(&dir, &[&transports.control, &transports.broadcast])
            .map_err(PluginProblem::Dir)?;
    let mut get = |what: &'static str, name: &str, stream: bool| {
        let Some(p) = set.get(name).cloned() else {
            let file = haifu_plugin_host::plugin_file_name(name);
            let failed = set
                .failed
                .iter()
                .position(|e| e.path().file_name().and_then(|n| n.to_str()) == Some(file.as_str()));
            return Err(match failed {
                Some(i) => PluginProblem::Failed {
                    what,
                    name: name.to_owned(),
                    source: set.failed.swap_remove(i),
                },
                None => PluginProblem::Missing {
                    name: name.to_owned(),
                    dir: dir.clone(),
                    file,
                },
            });
        };
        let shapes = p.info().shapes;
        if (stream && !shapes.stream) || (!stream && !shapes.datagram) {
            return Err(PluginProblem::WrongShape {
                what,
                name: name.to_owned(),
                offers: shapes.names().join(" and "),
                needs: if stream {
                    "peer streams"
                } else {
                    "datagram groups"
                },
            });
        }
        Ok(p)
    };
    let control = get("transports.control", &transports.control, true)?
        .with_config(transports.section(&transports.control));
    let broadcast = get("transports.broadcast", &transports.broadcast, false)?
        .with_config(transports.section(&transports.broadcast));
    tracing::info!(control = %control.name(), broadcast = %broadcast.name(), "transport plugins loaded");
    let in_use = [&control, &broadcast].map(|p| haifu_plugin_host::probe::InventoryEntry {
        name: p.name().to_owned(),
        state: Ok(p.info().shapes),
    });
    crate::metrics::watch_plugin_folder(dir, in_use.to_vec());
    Ok((control, broadcast))
}

/// Hands every verified incoming connection to `on_conn` until shutdown.
/// The daemon is ready from here on: [`Shutdown::ready`].
pub fn accept_loop(ep: &Endpoint, shutdown: &Shutdown, mut on_conn: impl FnMut(Connection)) {
    shutdown.ready();
    while !shutdown.is_set() {
        match ep.accept(Some(Duration::from_millis(300))) {
            Ok(c) => on_conn(c),
            Err(e) if e.is_timeout() => {}
            Err(e) => tracing::warn!("accept: {e}"),
        }
    }
}

/// The longest wait between two attempts to reach a peer: a master or
/// relay that comes back is found within this.
pub const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Checks that the certificate files exist and can be named in a plugin's
/// `key=value` configuration (no newline in a path).
pub fn check_tls(tls: &TlsFiles) -> Result<(), FleetError> {
    for (what, p) in [
        ("tls.ca", &tls.ca),
        ("tls.cert", &tls.cert),
        ("tls.key", &tls.key),
    ] {
        let fault = if !p.is_file() {
            Some(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "does not exist or is not a file",
            ))
        } else if p.to_string_lossy().contains('\n') {
            Some(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path contains a newline",
            ))
        } else {
            None
        };
        if let Some(source) = fault {
            return Err(FleetError::File {
                what,
                path: p.clone(),
                source,
            });
        }
    }
    Ok(())
}

/// Opens a QUIC endpoint with `tls`, listening on `listen` if given.
pub fn endpoint(
    quic: &Plugin,
    tls: &TlsFiles,
    listen: Option<std::net::SocketAddr>,
) -> Result<Endpoint, FleetError> {
    check_tls(tls)?;
    // The keys every control plugin gets (SPEC.md §6.12).
    let mut cfg = format!(
        "ca={}\ncert={}\nkey={}\n",
        tls.ca.display(),
        tls.cert.display(),
        tls.key.display()
    );
    if let Some(l) = listen {
        cfg.push_str(&format!("listen={l}\n"));
    }
    if quic.name() == "quic" {
        // The QUIC plugin's tuning, unless the operator's section sets it.
        // A closing link waits at most 2 s for the peer to finish its side:
        // a daemon shutting down while its peer is gone (or shutting down
        // too) must not hang for the plugin's default 10 s. Keep-alives go
        // every second (a third of the idle timeout): a restarted peer
        // answers the next one with a stateless reset, so it is noticed
        // within about a second; a vanished one is given up after 3 s (two
        // keep-alives may be lost before that); and either way the link is
        // made again within a second of the peer being back
        // (`RECONNECT_MAX`).
        for (k, v) in [
            ("threads", "2"),
            ("idle_timeout_ms", "3000"),
            ("close_timeout_ms", "2000"),
        ] {
            if !quic.operator_config().iter().any(|(ok, _)| ok == k) {
                cfg.push_str(&format!("{k}={v}\n"));
            }
        }
    }
    quic.open_endpoint(&cfg)
        .map_err(|source| FleetError::Transport {
            what: "QUIC endpoint",
            source,
        })
}

/// The carousel session of a run on one relay: derived from the master's
/// secret key, the run and the relay, so a restarted master hands out the
/// same key without storing it, nobody without the master key can compute
/// it, and a relay's clients share no key with another relay's (a client
/// that leaks its key can forge symbols on its own segment only).
pub fn session_key(
    master_seed: &[u8; 32],
    run: u64,
    digest: &haifu_core::Digest,
    relay: &str,
) -> (u32, [u8; 32]) {
    use sha3::Digest as _;
    let mut h = sha3::Sha3_256::new();
    h.update(b"haifu carousel session key v2\0");
    h.update(master_seed);
    h.update(run.to_be_bytes());
    h.update(digest.as_bytes());
    // Length-prefixed: no two relay names hash alike.
    h.update((relay.len() as u64).to_be_bytes());
    h.update(relay.as_bytes());
    let key: [u8; 32] = h.finalize().into();
    // The id only tells sessions apart; the run id fits and is readable.
    (u32::try_from(run % u64::from(u32::MAX)).unwrap_or(0), key)
}
