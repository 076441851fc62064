//! Client labels with real processes on loopback: clients tell the master
//! their config's labels through their relay; `haifu fleet list` shows
//! them, `haifu fleet stages` puts them in the stage that names their
//! labels, and `haifu rollback --label` orders back exactly them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::fleet::Fleet;
use serde_json::Value;

fn clients(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn labelled_clients_are_staged_and_rolled_back_by_label() {
    let mut f = Fleet::new(4);
    f.write_master("");
    let port = f.write_relay("relay-a", f.master_port + 10);
    f.write_client("c1", "relay-a", port, "labels: {ring: canary, site: s1}\n");
    f.write_client("c2", "relay-a", port, "labels:\n  ring: canary\n");
    f.write_client("c3", "relay-a", port, "labels: {ring: stable}\n");
    f.write_client("c4", "relay-a", port, "");
    let v1 = std::fs::read(f.artifact("app-1.bin", 256 << 10, 9)).unwrap();
    let mut v2 = v1.clone();
    for b in &mut v2[1000..2000] {
        *b ^= 0x3c;
    }
    std::fs::write(f.path("app-2.bin"), &v2).unwrap();
    f.workflow("v1", "app-1.bin", "1.1.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.workflow("v2", "app-2.bin", "1.2.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.start("master", "master");
    f.start("relay", "relay-a");
    f.wait_log("relay-a", "connected to the master", 1, 60);
    let all = ["c1", "c2", "c3", "c4"];
    for id in all {
        f.start("client", id);
        f.wait_log("relay-a", &format!("client registered client={id}"), 1, 60);
    }
    // The master learns the labels of the three clients that have some.
    f.wait_for(30, "labels in the fleet list", || {
        let list = f.json(&["fleet", "list", "--json"]);
        list.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["labels"].is_object())
            .count()
            == 3
    });
    let list = f.json(&["fleet", "list", "--json"]);
    let c1 = list.as_array().unwrap().iter().find(|c| c["id"] == "c1");
    assert_eq!(c1.unwrap()["labels"]["site"], "s1", "{list:#}");
    let c4 = list.as_array().unwrap().iter().find(|c| c["id"] == "c4");
    assert!(c4.unwrap().get("labels").is_none(), "{list:#}");
    let text = f.haifu_ok(&["fleet", "list"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("c1") && l.contains("labels ring=canary,site=s1")),
        "{text}"
    );

    // The rollout an operator would see before running it.
    let staged = std::fs::read_to_string(f.path("v2.yaml")).unwrap().replace(
        "steps:",
        "stages:\n  - name: canary\n    labels: {ring: canary}\n  - percent: 100\nsteps:",
    );
    std::fs::write(f.path("staged.yaml"), staged).unwrap();
    let stages = f.json(&["fleet", "stages", "staged.yaml", "--json"]);
    assert_eq!(stages["stages"][0]["name"], "canary", "{stages:#}");
    assert_eq!(clients(&stages["stages"][0]["clients"]), ["c1", "c2"]);
    assert_eq!(clients(&stages["stages"][1]["clients"]), ["c3", "c4"]);
    assert!(stages["outside"].as_array().unwrap().is_empty());
    let text = f.haifu_ok(&["fleet", "stages", "staged.yaml"]);
    assert!(
        text.contains("stage canary (labels ring=canary): 2 clients"),
        "{text}"
    );

    for wf in ["v1.yaml", "v2.yaml"] {
        let report = f.json(&["run", wf, "--live", "--json"]);
        assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    }
    let current = |id: &str| std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap();
    for id in all {
        assert_eq!(current(id), v2, "{id}");
    }

    // A label nobody has: one line, non-zero, nothing ordered.
    let bad = f
        .haifu()
        .args(["rollback", "app", "--label", "ring=nobody"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("no client known to this master has the labels ring=nobody"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let bad = f
        .haifu()
        .args(["rollback", "app", "--label", "Ring=canary"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("label key \"Ring\""),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // The canaries, and only they, go back; each order recorded.
    let orders = f.json(&[
        "rollback",
        "app",
        "--label",
        "ring=canary",
        "--by",
        "alice",
        "--wait",
        "60",
        "--json",
    ]);
    let ordered: Vec<&str> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["client"].as_str().unwrap())
        .collect();
    assert_eq!(ordered, ["c1", "c2"], "{orders:#}\n{}", f.dump());
    for o in orders.as_array().unwrap() {
        assert_eq!(o["state"], "done", "{orders:#}");
        assert_eq!(o["version"], "1.1.0");
        assert_eq!(o["by"], "alice");
    }
    assert_eq!(current("c1"), v1);
    assert_eq!(current("c2"), v1);
    assert_eq!(current("c3"), v2, "c3 is not a canary");
    assert_eq!(current("c4"), v2, "c4 has no labels");
}
