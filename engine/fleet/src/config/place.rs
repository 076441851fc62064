//! Where in a config file a value serde accepted but [`super::Resolve::check`]
//! refused is: checks name the dotted key they are about first
//! (`multicast.group 10.0.0.1:7500 is not a multicast address`), and the
//! positioned YAML tree finds that key's value, so the error reads
//! `FILE:LINE:COLUMN: …` like a syntax error. A key the file does not
//! write (a default) has no place; the error then names the file alone.

use haifu_yaml::{Node, Pos, Value};

/// The dotted key a check message starts with (`multicast.group`,
/// `transports.config.udp-peer`), without a trailing `:`.
pub(super) fn key_of(message: &str) -> &str {
    let word = message.split(' ').next().unwrap_or("");
    word.strip_suffix(':').unwrap_or(word)
}

/// Where the value of the dotted key `key` starts in `text`.
pub(super) fn find(text: &str, key: &str) -> Option<Pos> {
    if key.is_empty() {
        return None;
    }
    let root = haifu_yaml::parse(text).ok()??;
    let mut node: &Node = &root;
    for part in key.split('.') {
        let Value::Map(entries) = &node.value else {
            return None;
        };
        node = entries
            .iter()
            .find(|(k, _)| k.scalar() == Some(part))
            .map(|(_, v)| v)?;
    }
    Some(node.pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, MasterConfig};

    #[test]
    fn a_dotted_key_is_found_at_its_value() {
        let text =
            "name: r\nmulticast:\n  group: '10.0.0.1:7500'\n  ttl: 1\nmetrics: 0.0.0.0:9464\n";
        assert_eq!(
            key_of("multicast.group 10.0.0.1:7500 is not"),
            "multicast.group"
        );
        assert_eq!(key_of("metrics: 0.0.0.0:9464 is not loopback"), "metrics");
        let at = |k| find(text, k).map(|p| (p.line, p.column));
        assert_eq!(at("multicast.group"), Some((3, 10)));
        assert_eq!(at("metrics"), Some((5, 10)));
        assert_eq!(at("multicast.interface"), None, "not written: no place");
        assert_eq!(at("name.x"), None, "not a mapping");
        assert_eq!(find("{", "name"), None, "not YAML: no place");
    }

    /// A master config of two valid lines and then `extra`, loaded from
    /// a file; the file's path, to be named in an error.
    fn load(extra: &str) -> (Result<MasterConfig, ConfigError>, String) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("master.yaml");
        std::fs::write(&p, format!("home: h\nlisten: 127.0.0.1:7400\n{extra}")).unwrap();
        (super::super::load(&p), p.display().to_string())
    }

    /// The config of `extra`, which must load.
    fn master(extra: &str) -> MasterConfig {
        load(extra).0.unwrap()
    }

    /// Why `extra` is refused: the error's one line, the file as `FILE`.
    fn refusal(extra: &str) -> String {
        let (loaded, path) = load(extra);
        let e = loaded.unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        e.replace(&path, "FILE")
    }

    #[test]
    fn metrics_off_loopback_need_metrics_public_and_the_error_names_the_place() {
        let c = master("metrics: 127.0.0.1:9464\n");
        assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(master("").metrics.is_none(), "off when absent");
        let e = refusal("metrics: 0.0.0.0:9464\n");
        assert!(
            e.starts_with("FILE:3:10: metrics: 0.0.0.0:9464 is not a loopback address"),
            "{e}"
        );
        assert!(
            e.contains("metrics_public: true") && e.contains("read token"),
            "{e}"
        );
        let c = master("metrics: '[::]:9464'\nmetrics_public: true\n");
        assert!(c.metrics_public);
        let e = refusal("\nmetrics_public: true\n");
        assert!(
            e.starts_with("FILE:4:17: metrics_public: true without"),
            "{e}"
        );
        let e = refusal("metrics: nowhere\n");
        assert!(e.starts_with("FILE:3:"), "{e}");
    }

    #[test]
    fn older_checks_name_their_place_too() {
        let e = refusal("poll_ms: 0\n");
        assert!(
            e.starts_with("FILE:3:10: poll_ms must be at least 1"),
            "{e}"
        );
        let e = refusal("name: 'bad name'\n");
        assert!(e.starts_with("FILE:3:7: name \"bad name\""), "{e}");
    }
}
