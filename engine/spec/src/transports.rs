//! Resolving a plan's transports against the plugins the daemons would
//! load: a pure function over an inventory the caller gathered (`haifu
//! check` asks a child process per plugin file; nothing is loaded here).

use std::path::Path;

use crate::error::{ErrorKind, SpecError};
use crate::plan::Plan;
use crate::suggest::did_you_mean;

/// What the plugins folder holds under one plugin name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginState {
    /// It loads and offers these shapes.
    Offers {
        /// Datagram groups (a broadcast transport).
        datagram: bool,
        /// Peer streams (a unicast or control transport).
        stream: bool,
    },
    /// Its file is there but does not load (the loader's one-line reason).
    Bad(String),
}

/// The plugins a daemon would find, by name.
#[derive(Debug, Clone, Default)]
pub struct PluginInventory {
    /// Where they were looked for, for messages.
    pub dir: std::path::PathBuf,
    /// Each plugin name with its state.
    pub plugins: Vec<(String, PluginState)>,
}

/// Every transport of `plan` that names no plugin in `inventory`, one of
/// the wrong shape (a broadcast needs datagram groups, a unicast transport
/// peer streams), or one that does not load: one error at the name's
/// position in `file`.
pub fn check_transports(file: &Path, plan: &Plan, inventory: &PluginInventory) -> Vec<SpecError> {
    let t = &plan.transports;
    let mut wanted = vec![("transports.broadcast", &t.broadcast, t.broadcast_at, false)];
    if let (Some(u), Some(at)) = (&t.unicast, t.unicast_at) {
        wanted.push(("transports.unicast", u, at, true));
    }
    let names: Vec<&str> = inventory.plugins.iter().map(|(n, _)| n.as_str()).collect();
    let mut errors = Vec::new();
    for (key, name, pos, stream) in wanted {
        let state = inventory
            .plugins
            .iter()
            .find(|(n, _)| n.replace('-', "_") == name.replace('-', "_"))
            .map(|(_, s)| s);
        let (message, suggestion) = match state {
            None => (
                format!(
                    "no transport plugin {name:?} in {} ({})",
                    inventory.dir.display(),
                    if names.is_empty() {
                        "it holds none".to_owned()
                    } else {
                        format!("it holds {}", names.join(", "))
                    }
                ),
                did_you_mean(name, &names),
            ),
            Some(PluginState::Bad(why)) => (format!("plugin {name:?} does not load: {why}"), None),
            Some(PluginState::Offers {
                datagram,
                stream: s,
            }) => {
                let ok = if stream { *s } else { *datagram };
                if ok {
                    continue;
                }
                let offers = match (datagram, s) {
                    (true, _) => "datagram groups",
                    (_, true) => "peer streams",
                    _ => "nothing",
                };
                (
                    format!(
                        "plugin {name:?} offers {offers}, not the {} this transport needs",
                        if stream {
                            "peer streams"
                        } else {
                            "datagram groups"
                        }
                    ),
                    None,
                )
            }
        };
        errors.push(SpecError {
            file: file.to_path_buf(),
            pos,
            kind: ErrorKind::Transport {
                key,
                message,
                suggestion,
            },
        });
    }
    errors
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_resolve_by_shape_with_positions() {
        let text = "name: w\nartifact: {name: app, version: 1.0.0, path: Cargo.toml}\n\
            targets: {relays: [r]}\nschedule: {start: 2026-01-01T00:00:00Z, deadline: 1h}\n\
            transports: {broadcast: quic, unicast: multicst}\nsteps: [register, {broadcast: {rounds: 1}}]\n";
        let plan = crate::check_text(Path::new("w.yaml"), text).unwrap();
        let inv = PluginInventory {
            dir: "/p".into(),
            plugins: vec![
                (
                    "multicast".into(),
                    PluginState::Offers {
                        datagram: true,
                        stream: false,
                    },
                ),
                (
                    "quic".into(),
                    PluginState::Offers {
                        datagram: false,
                        stream: true,
                    },
                ),
            ],
        };
        let errors: Vec<String> = check_transports(Path::new("w.yaml"), &plan, &inv)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "w.yaml:5:25: transports.broadcast: plugin \"quic\" offers peer streams"
            ),
            "{errors:?}"
        );
        assert!(errors[1].contains("transports.unicast: no transport plugin \"multicst\" in /p (it holds multicast, quic) (did you mean \"multicast\"?)"), "{errors:?}");
    }
}
