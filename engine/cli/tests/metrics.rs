//! `/metrics` on real daemons: a master, two relays and their clients as
//! processes on loopback run a rollout; every daemon's metrics are scraped
//! over a socket, read with a Prometheus text parser, and held to the run's
//! audit (`haifu audit --json`). The master logs in JSON meanwhile, and its
//! lines carry the run, round and peer they are about.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::fleet::{Fleet, Layout, base_port, http_get};
use serde_json::Value;

/// Every sample of a scrape: (name, labels as `k="v",…` sorted) → value;
/// a histogram as its largest bucket (its count).
type Samples = BTreeMap<(String, String), f64>;

fn parse(text: &str) -> Samples {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            ((s.metric, s.labels.to_string()), v)
        })
        .collect()
}

fn get(s: &Samples, name: &str, labels: &str) -> f64 {
    s.get(&(name.to_owned(), labels.to_owned()))
        .copied()
        .unwrap_or(0.0)
}

/// The address a daemon's log says its metrics listener bound (a text
/// or a JSON log).
fn metrics_addr(f: &Fleet, name: &str) -> String {
    let mut addr = None;
    f.wait_for(60, &format!("{name}'s metrics listener"), || {
        addr = f.log(name).lines().find_map(|l| {
            if let Ok(v) = serde_json::from_str::<Value>(l) {
                let fields = &v["fields"];
                return (fields["message"] == "metrics serving")
                    .then(|| fields["listen"].as_str().map(str::to_owned))
                    .flatten();
            }
            let at = l.find("metrics serving listen=")?;
            let rest = &l[at + "metrics serving listen=".len()..];
            Some(rest.split_whitespace().next()?.to_owned())
        });
        addr.is_some()
    });
    addr.unwrap()
}

fn scrape(addr: &str) -> Samples {
    let (status, body) = http_get(addr, "", "/metrics");
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

/// `haifu audit --json`'s clients of `relay`, by the state names the
/// ledger (and the metric) use.
fn audit_states(relay: &Value) -> BTreeMap<&'static str, usize> {
    let len = |v: &Value| v.as_array().map_or(0, Vec::len);
    let delivered: usize = relay["delivered_by_round"]
        .as_array()
        .unwrap()
        .iter()
        .map(len)
        .sum::<usize>()
        + len(&relay["delivered_unknown_round"]);
    BTreeMap::from([
        ("delivered", delivered),
        ("delta", len(&relay["delta"])),
        ("current", len(&relay["current"])),
        ("undelivered", len(&relay["undelivered"])),
        ("pending", len(&relay["pending"])),
        ("disconnected", len(&relay["disconnected"])),
    ])
}

#[test]
fn every_daemons_metrics_agree_with_the_audit() {
    const RELAYS: [&str; 2] = ["relay-a", "relay-b"];
    let api = format!("127.0.0.1:{}", base_port(0) + 15);
    let mut f = Fleet::with(
        0,
        &Layout {
            master: &format!("api: {api}\nmetrics: 127.0.0.1:0\n"),
            relays: &[(RELAYS[0], &[]), (RELAYS[1], &[])],
            relay: "metrics: 127.0.0.1:0\n",
            ..Layout::default()
        },
    );
    let mut clients: Vec<String> = Vec::new();
    for (i, relay) in RELAYS.into_iter().enumerate() {
        let port = f.relay_port(relay);
        for j in 0..3 {
            let id = format!("c{i}{j}");
            f.write_client(
                &id,
                relay,
                port,
                &format!(
                    "metrics: 127.0.0.1:0\ntesting: {{drop_datagrams: 0.05, seed: {}}}\n",
                    i * 3 + j
                ),
            );
            clients.push(id);
        }
    }
    let size = 2usize << 20;
    f.artifact("app-1.bin", size, 5);
    f.workflow(
        "rollout",
        "app-1.bin",
        "1.0.0",
        &["relay-a", "relay-b"],
        2,
        2,
        "100Mbit/s",
    );
    f.start_logging("master", "master", "json");
    for relay in RELAYS {
        f.start("relay", relay);
        f.wait_log(relay, "connected to the master", 1, 60);
    }
    f.start_clients(&clients.iter().map(String::as_str).collect::<Vec<_>>());
    // c12 is known to the master but off for the whole run: undelivered.
    assert!(f.stop("c12"));
    f.settle();

    let master = metrics_addr(&f, "master");
    let before = scrape(&master);
    assert_eq!(
        get(&before, "haifu_master_relay_connected", "relay=\"relay-a\""),
        1.0
    );
    assert_eq!(
        get(&before, "haifu_master_peers_connected", "role=\"relay\""),
        2.0
    );

    let id = f.haifu_ok(&["run", "rollout.yaml", "--live", "--detach"]);
    assert_eq!(id.trim(), "1");
    f.wait_for(180, "run 1 to finish", || {
        f.json(&["status", "1", "--json"])["status"] == "done"
    });
    // Every online client has its completion acknowledged.
    let client_addrs: BTreeMap<String, String> = clients
        .iter()
        .filter(|id| *id != "c12")
        .map(|id| (id.clone(), metrics_addr(&f, id)))
        .collect();
    f.wait_for(60, "every completion acknowledged", || {
        client_addrs.values().all(|a| {
            let s = scrape(a);
            get(&s, "haifu_client_completions_acknowledged_total", "") == 1.0
                && get(&s, "haifu_client_completions_pending", "") == 0.0
        })
    });

    let audit = f.json(&["audit", "1", "--json"]);
    let traffic = &audit["traffic"];
    let m = scrape(&master);

    // The master: clients of the run by relay and state, as the audit.
    let mut delivered_total = 0;
    for r in audit["relays"].as_array().unwrap() {
        let relay = r["relay"].as_str().unwrap();
        for (state, n) in audit_states(r) {
            let labels = format!("relay=\"{relay}\",run=\"1\",state=\"{state}\"");
            assert_eq!(
                get(&m, "haifu_master_run_clients", &labels),
                n as f64,
                "{labels}\n{audit:#}"
            );
            if state == "delivered" || state == "delta" {
                delivered_total += n;
            }
        }
    }
    assert_eq!(delivered_total, 5, "{audit:#}\n{}", f.dump());
    // Completions recorded by this master (it ran throughout): one per
    // client delivered, none twice.
    let recorded = get(
        &m,
        "haifu_master_completions_recorded_total",
        "kind=\"broadcast\"",
    ) + get(
        &m,
        "haifu_master_completions_recorded_total",
        "kind=\"delta\"",
    );
    assert_eq!(recorded, delivered_total as f64);
    assert_eq!(get(&m, "haifu_master_runs", "status=\"done\""), 1.0);
    assert!(get(&m, "haifu_master_ledger_commits_total", "outcome=\"ok\"") >= 1.0);
    assert!(get(&m, "haifu_master_ledger_commit_duration_seconds_count", "") >= 1.0);
    let multicast = traffic["multicast_bytes"].as_u64().unwrap() as f64;
    let fetched = traffic["fetch_bytes"].as_u64().unwrap() as f64;
    assert_eq!(
        get(
            &m,
            "haifu_master_run_traffic_bytes",
            "kind=\"multicast\",run=\"1\""
        ),
        multicast
    );
    assert_eq!(
        get(
            &m,
            "haifu_master_run_traffic_bytes",
            "kind=\"fetch\",run=\"1\""
        ),
        fetched
    );
    assert_eq!(
        get(
            &m,
            "haifu_master_unicast_sent_bytes_total",
            "kind=\"fetch\""
        ),
        fetched
    );
    assert_eq!(
        get(
            &m,
            "haifu_master_fleet_version_clients",
            "artifact=\"app\",version=\"1.0.0\""
        ),
        delivered_total as f64
    );
    assert_eq!(
        get(&m, "haifu_build_info", "role=\"master\",version=\"0.1.0\""),
        1.0
    );
    // Completions by kind and round, and the rounds with their bytes, as
    // the audit has them.
    let mut by_round: BTreeMap<usize, usize> = BTreeMap::new();
    let mut deltas = 0;
    for r in audit["relays"].as_array().unwrap() {
        for (i, clients) in r["delivered_by_round"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            *by_round.entry(i + 1).or_default() += clients.as_array().unwrap().len();
        }
        deltas += r["delta"].as_array().unwrap().len();
    }
    for (round, n) in &by_round {
        let labels = format!("kind=\"round\",round=\"{round}\",run=\"1\"");
        assert_eq!(
            get(&m, "haifu_master_run_completions", &labels),
            *n as f64,
            "{labels}\n{audit:#}"
        );
    }
    let by_master = get(
        &m,
        "haifu_master_run_completions",
        "kind=\"delta\",round=\"\",run=\"1\"",
    ) + get(
        &m,
        "haifu_master_run_completions",
        "kind=\"full\",round=\"\",run=\"1\"",
    );
    assert_eq!(by_master, deltas as f64, "{audit:#}");
    let audit_rounds: Vec<u64> = traffic["multicast_by_round"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .collect();
    for (i, bytes) in audit_rounds.iter().enumerate() {
        let labels = format!("round=\"{}\",run=\"1\"", i + 1);
        assert_eq!(
            get(&m, "haifu_master_run_round_bytes", &labels),
            *bytes as f64,
            "{labels}"
        );
    }
    let started = get(&m, "haifu_master_rounds_started_total", "");
    assert_eq!(
        started,
        audit_rounds.iter().filter(|b| **b > 0).count() as f64,
        "the master ran throughout: every round it started went on air"
    );
    // No rollback was ordered: every state is listed, at 0.
    for state in ["ordered", "done", "refused"] {
        let key = (
            "haifu_master_rollbacks".to_owned(),
            format!("state=\"{state}\""),
        );
        assert_eq!(m.get(&key), Some(&0.0), "{state}");
    }

    // The same text on the API, behind a read token only.
    let (status, _) = http_get(&api, "hfu_nope", "/metrics");
    assert_eq!(status, 401);
    let token = f.haifu_ok(&[
        "api", "token", "create", "--name", "prom", "--scope", "read",
    ]);
    let (status, body) = http_get(&api, token.trim(), "/metrics");
    assert_eq!(status, 200, "{body}");
    let via_api = parse(&body);
    assert_eq!(
        get(&via_api, "haifu_master_runs", "status=\"done\""),
        1.0,
        "{body}"
    );
    let (status, _) = http_get(&api, token.trim(), "/v1/gate?client=c00&service=none");
    assert_eq!(status, 200);
    let (_, body) = http_get(&api, token.trim(), "/metrics");
    assert_eq!(
        get(
            &parse(&body),
            "haifu_master_gate_answers_total",
            "outcome=\"deny\""
        ),
        1.0,
        "an unknown service is denied, and counted"
    );

    // The relays: what they multicast adds up to what the audit counts,
    // each sent at least the artifact once, fetched it once, and holds its
    // clients' links.
    let rounds = traffic["multicast_by_round"].as_array().unwrap().len() as f64;
    let mut relay_bytes = 0.0;
    let mut relay_round_bytes: BTreeMap<usize, f64> = BTreeMap::new();
    for relay in RELAYS {
        let s = scrape(&metrics_addr(&f, relay));
        let sent = get(&s, "haifu_relay_multicast_sent_bytes_total", "");
        assert!(sent >= size as f64, "{relay}: {sent}");
        relay_bytes += sent;
        for round in 1..=audit_rounds.len() {
            *relay_round_bytes.entry(round).or_default() += get(
                &s,
                "haifu_relay_round_sent_bytes_total",
                &format!("round=\"{round}\""),
            );
        }
        // Repair symbols are datagrams of the rounds.
        assert!(
            get(&s, "haifu_relay_repair_symbols_sent_total", "")
                <= get(&s, "haifu_relay_datagrams_sent_total", ""),
            "{relay}"
        );
        assert_eq!(
            get(&s, "haifu_relay_rounds_total", "outcome=\"sent\""),
            rounds
        );
        assert_eq!(
            get(&s, "haifu_relay_round_duration_seconds_count", ""),
            rounds
        );
        assert!(get(&s, "haifu_relay_datagrams_sent_total", "") * 1448.0 >= size as f64);
        assert_eq!(get(&s, "haifu_relay_fetches_total", "outcome=\"ok\""), 1.0);
        assert!(get(&s, "haifu_relay_fetched_bytes_total", "") >= size as f64);
        assert_eq!(get(&s, "haifu_relay_master_connected", ""), 1.0);
        let expect = if relay == "relay-b" { 2.0 } else { 3.0 };
        assert_eq!(
            get(&s, "haifu_relay_clients_connected", ""),
            expect,
            "{relay}"
        );
    }
    assert_eq!(relay_bytes, multicast, "the relays' bytes are the audit's");
    for (round, bytes) in &relay_round_bytes {
        assert_eq!(
            *bytes,
            audit_rounds[round - 1] as f64,
            "round {round}: the relays' bytes are the audit's"
        );
    }

    // The clients: each decoded the artifact from the broadcast, installed
    // it once, and runs it.
    let mut installs = 0.0;
    for (id, addr) in &client_addrs {
        let s = scrape(addr);
        assert!(
            get(&s, "haifu_client_blocks_decoded_total", "") > 0.0,
            "{id}"
        );
        assert!(
            get(&s, "haifu_client_decoded_bytes_total", "") >= size as f64,
            "{id}"
        );
        let accepted = get(&s, "haifu_client_datagrams_accepted_total", "");
        assert!(accepted > 0.0, "{id}");
        // Every datagram taken in was read from the group first.
        let rejected: f64 = s
            .iter()
            .filter(|((n, l), _)| {
                n == "haifu_client_datagrams_rejected_total"
                    && l != "reason=\"block_hash_mismatch\""
            })
            .map(|(_, v)| v)
            .sum();
        assert!(
            get(&s, "haifu_client_datagrams_received_total", "")
                >= accepted + get(&s, "haifu_client_datagrams_redundant_total", "") + rejected,
            "{id}"
        );
        installs += get(
            &s,
            "haifu_client_installs_total",
            "outcome=\"ok\",via=\"broadcast\"",
        );
        assert_eq!(
            get(
                &s,
                "haifu_client_installs_total",
                "outcome=\"failed\",via=\"broadcast\""
            ),
            0.0
        );
        assert_eq!(
            get(
                &s,
                "haifu_client_installed_info",
                "artifact=\"app\",version=\"1.0.0\""
            ),
            1.0,
            "{id}"
        );
        assert_eq!(get(&s, "haifu_client_relay_connected", ""), 1.0, "{id}");
        assert_eq!(get(&s, "haifu_client_receiving", ""), 0.0, "{id}");
    }
    assert_eq!(installs, delivered_total as f64);

    for id in client_addrs.keys() {
        assert!(f.stop(id), "{id} exits 0 on SIGTERM");
    }
    assert!(f.stop("relay-a") && f.stop("relay-b") && f.stop("master"));
    json_lines_name_their_run_round_and_peer(&f.log("master"));
}

/// The master's `--log-format json` lines: each one JSON object; the
/// driver's say which run and round they are about, a connection's which
/// peer, in the span fields a log shipper indexes.
fn json_lines_name_their_run_round_and_peer(log: &str) {
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let spans = |v: &Value| v["spans"].as_array().cloned().unwrap_or_default();
    let has = |v: &Value, name: &str, key: &str, want: &Value| {
        spans(v)
            .iter()
            .any(|s| s["name"] == name && &s[key] == want)
    };
    let started = lines
        .iter()
        .find(|v| v["fields"]["message"] == "round started")
        .unwrap_or_else(|| panic!("no round started line:\n{log}"));
    assert!(
        has(started, "run", "run", &Value::from(1))
            && has(started, "round", "round", &Value::from(1)),
        "{started}"
    );
    assert_eq!(started["span"]["name"], "round", "{started}");
    assert!(
        lines
            .iter()
            .any(|v| has(v, "peer", "peer", &Value::from("relay-a"))),
        "a line of relay-a's connection names it:\n{log}"
    );
}

#[test]
fn a_public_metrics_address_must_be_said_and_the_error_names_its_place() {
    let mut f = Fleet::new(1);
    let _ = f.write_relay("relay-a", f.master_port + 10);
    let path = f.path("relay-a.yaml");
    let base = std::fs::read_to_string(&path).unwrap();
    let line = base.lines().count() + 1;
    std::fs::write(&path, format!("{base}metrics: 0.0.0.0:9464\n")).unwrap();
    let out = f
        .haifu()
        .args(["relay", "--config", "relay-a.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "relay-a.yaml:{line}:10: metrics: 0.0.0.0:9464 is not a loopback address"
        )),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // Said explicitly, it starts (and serves /metrics there).
    std::fs::write(
        &path,
        format!("{base}metrics: 0.0.0.0:0\nmetrics_public: true\n"),
    )
    .unwrap();
    f.start("relay", "relay-a");
    let addr = metrics_addr(&f, "relay-a");
    let port = addr.rsplit(':').next().unwrap();
    let s = scrape(&format!("127.0.0.1:{port}"));
    assert_eq!(
        get(&s, "haifu_relay_master_connected", ""),
        0.0,
        "no master runs"
    );
    assert!(f.stop("relay-a"));
}

#[test]
fn haifu_metrics_list_names_what_a_scrape_shows() {
    let f = Fleet::new(2);
    let list: Value = f.json(&["metrics", "list", "--json"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for n in [
        "haifu_master_run_clients",
        "haifu_relay_multicast_sent_bytes_total",
        "haifu_client_datagrams_rejected_total",
    ] {
        assert!(names.contains(&n), "{n}: {names:?}");
    }
    let relay = f.haifu_ok(&["metrics", "list", "--daemon", "relay"]);
    assert!(
        relay.lines().any(|l| l.split_whitespace().take(3).eq([
            "haifu_relay_round_duration_seconds",
            "histogram",
            "relay"
        ])),
        "{relay}"
    );
    assert!(
        relay.lines().skip(1).all(|l| l.contains("  relay  ")),
        "only the relay's: {relay}"
    );
    let help = f.haifu_ok(&["metrics", "list", "--help"]);
    assert!(help.contains("metrics_public"), "{help}");
}
