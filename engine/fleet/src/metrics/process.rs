//! What every daemon exports: which haifu it is, since when, and what its
//! control links refused ([`crate::link::Counters`], read at scrape time;
//! claims only on the master and relays, which are the ones claimed to).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::Daemon;
use super::families::{Labels, counters, label};
use crate::link::Counters;

/// Registers `haifu_build_info`, `haifu_start_time_seconds`, the control
/// links' counters and what the plugins folder holds.
pub(super) fn register(registry: &mut Registry, daemon: Daemon, links: Arc<Counters>) {
    registry.register(
        "haifu_build",
        "The haifu that runs: its version and the daemon's role (always 1)",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("role", daemon.as_str().to_owned()),
        ]),
    );
    let start = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    start.set(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    registry.register_with_unit(
        "haifu_start_time",
        "When the daemon started, in seconds since the Unix epoch (a change means a restart)",
        Unit::Seconds,
        start,
    );
    registry.register_collector(Box::new(Links(links, daemon)));
    registry.register_collector(Box::new(PluginFolder));
}

/// The control links' refusal counters.
#[derive(Debug)]
struct Links(Arc<Counters>, Daemon);

impl Collector for Links {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let reasons: Vec<(Labels, u64)> = vec![
            (label("reason", "malformed"), get(&c.malformed)),
            (label("reason", "unknown"), get(&c.unknown)),
            (label("reason", "unexpected"), get(&c.unexpected)),
        ];
        counters(
            &mut enc,
            "haifu_control_frames_refused",
            "Control frames refused on the control links (QUIC or TLS), by reason: malformed (did not decode), \
             unknown (an unknown message tag), unexpected (a valid message not allowed from \
             this peer or now); the peer was kept.",
            None,
            &reasons,
        )?;
        counters(
            &mut enc,
            "haifu_control_peers_dropped",
            "Control peers dropped for what they sent (a frame too large, a bad hello).",
            None,
            &[(Vec::new(), get(&c.dropped))],
        )?;
        if self.1 == Daemon::Client {
            // A client hears only its relay and the master: nobody claims
            // anything to it.
            return Ok(());
        }
        counters(
            &mut enc,
            "haifu_claims_refused",
            "Claims refused: a peer speaking for a client it may not, or naming a run, round or \
             artifact it has no part in (SECURITY.md).",
            None,
            &[(Vec::new(), get(&c.refused))],
        )
    }
}

/// Most plugin files reported: a folder of more is a mistake, and each is
/// a label value.
const MAX_PLUGIN_FILES: usize = 64;

/// What the last check of the daemon's plugins folder found: per file,
/// the plugin's name and why it does not load (`None`: it loads). `None`
/// until the first check ends.
type FolderState = Option<Vec<(String, Option<String>)>>;

fn plugin_folder() -> &'static std::sync::Mutex<FolderState> {
    static STATE: std::sync::OnceLock<std::sync::Mutex<FolderState>> = std::sync::OnceLock::new();
    STATE.get_or_init(Default::default)
}

/// Checks every plugin file of `dir` now and then as the daemon found it
/// at start would (each probed in a child process, never loaded into this
/// one), so a plugin dropped into the folder that would not load shows in
/// `haifu_plugin_load_failures` before a daemon needs it; the two a
/// daemon uses refuse its start instead when they fail. Without a prober
/// (a daemon not started by the `haifu` binary) nothing is checked:
/// loading foreign libraries into a daemon is what the probe avoids.
///
/// The plugins the daemon runs (`in_use`) are reported as loaded, not
/// probed again: it has just probed and loaded them.
pub(crate) fn watch_plugin_folder(
    dir: std::path::PathBuf,
    in_use: Vec<haifu_plugin_host::probe::InventoryEntry>,
) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(600);
    if haifu_plugin_host::probe::prober().is_none() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("plugin-folder".into())
        .spawn(move || {
            loop {
                let others = MAX_PLUGIN_FILES.saturating_sub(in_use.len());
                let found = match haifu_plugin_host::probe::inventory_except(&dir, &in_use, others)
                {
                    Ok(entries) => entries
                        .into_iter()
                        .map(|e| (e.name, e.state.err().map(|why| why.0)))
                        .collect(),
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), "checking the plugins folder: {e}");
                        Vec::new()
                    }
                };
                for (name, why) in &found {
                    if let Some(why) = why {
                        tracing::warn!(plugin = %name, "a plugin in the folder does not load: {why}");
                    }
                }
                *plugin_folder().lock().unwrap_or_else(|p| p.into_inner()) = Some(found);
                std::thread::sleep(EVERY);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the plugins folder check: {e}");
    }
}

/// `haifu_plugin_load_failures` and `haifu_plugins_found` from the last
/// check of the plugins folder.
#[derive(Debug)]
struct PluginFolder;

impl Collector for PluginFolder {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let state = plugin_folder()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let found = state.unwrap_or_default();
        let failures: Vec<(Labels, i64)> = found
            .iter()
            .filter(|(_, why)| why.is_some())
            .map(|(name, _)| (label("plugin", name.clone()), 1))
            .collect();
        super::families::gauges(
            &mut enc,
            "haifu_plugin_load_failures",
            "Plugin files in the daemon's plugins folder that do not load (1 each, by plugin; \
             probed in a child process at start and every 10 minutes; the reason is in the log)",
            None,
            &failures,
        )?;
        super::families::gauges(
            &mut enc,
            "haifu_plugins_found",
            "Plugin files the last check of the plugins folder found",
            None,
            &[(Vec::new(), super::families::gauge_value(found.len() as u64))],
        )
    }
}
