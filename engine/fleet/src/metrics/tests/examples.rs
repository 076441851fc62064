//! The Grafana dashboard and the Prometheus examples use only what the
//! daemons export.

use std::path::Path;

use super::super::*;

/// Every `haifu_…` name in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("haifu_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if before_ok {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

#[test]
fn the_grafana_dashboard_uses_only_metrics_the_daemons_export() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/grafana/haifu.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
    let exported: std::collections::BTreeSet<String> = Daemon::ALL
        .into_iter()
        .flat_map(catalogue)
        .flat_map(|m| m.series())
        .collect();
    // Every query of every panel.
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    if (k == "expr" || k == "query") && v.is_string() {
                        out.push(v.as_str().unwrap_or_default().to_owned());
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert_eq!(
        metric_names("sum(rate(haifu_x_total[5m])) / up{job=\"haifu-relay\"}"),
        ["haifu_x_total".to_owned()].into(),
        "the names are found"
    );
    assert!(exprs.len() >= 10, "{exprs:?}");
    let used: std::collections::BTreeSet<String> =
        exprs.iter().flat_map(|e| metric_names(e)).collect();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported: {unknown:?}");
    // Each daemon has a panel.
    for prefix in ["haifu_master_", "haifu_relay_", "haifu_client_"] {
        assert!(used.iter().any(|u| u.starts_with(prefix)), "{prefix}");
    }
}

#[test]
fn the_prometheus_example_alerts_use_only_exported_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/grafana");
    let exported: std::collections::BTreeSet<String> = Daemon::ALL
        .into_iter()
        .flat_map(catalogue)
        .flat_map(|m| m.series())
        .collect();
    for file in ["prometheus.yml", "alerts.yml"] {
        let text = std::fs::read_to_string(path.join(file)).unwrap();
        let _: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let unknown: Vec<String> = metric_names(&text)
            .into_iter()
            .filter(|n| !exported.contains(n))
            .collect();
        assert!(unknown.is_empty(), "{file}: not exported: {unknown:?}");
    }
}
