//! `haifu rollback` with real processes on loopback: a client that a run
//! took from 1.1.0 to 1.2.0 is ordered back; it runs 1.1.0 again, the
//! audit and the fleet list say so, and the run it undid does not move it
//! forward again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::fleet::{Fleet, Layout};

#[test]
fn a_rollback_moves_a_client_back_is_audited_and_is_not_undone_by_the_old_run() {
    let mut f = Fleet::with(
        3,
        &Layout {
            relays: &[("relay-a", &["c1", "c2"])],
            boot_check: true,
            ..Layout::default()
        },
    );
    let v1 = std::fs::read(f.artifact("app-1.bin", 1 << 20, 7)).unwrap();
    let mut v2 = v1.clone();
    for b in &mut v2[1000..2000] {
        *b ^= 0x3c;
    }
    std::fs::write(f.path("app-2.bin"), &v2).unwrap();
    f.workflow("v1", "app-1.bin", "1.1.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.workflow("v2", "app-2.bin", "1.2.0", &["relay-a"], 2, 1, "200Mbit/s");
    f.start_fleet(&["c1", "c2"]);
    for wf in ["v1.yaml", "v2.yaml"] {
        let report = f.json(&["run", wf, "--live", "--json"]);
        assert_eq!(report["undelivered"], 0, "{report:#}\n{}", f.dump());
    }
    let current = |f: &Fleet, id: &str| {
        std::fs::read(f.path(&format!("{id}-root/current/artifact"))).unwrap()
    };
    assert_eq!(current(&f, "c1"), v2);

    // Bad orders: one line, non-zero, nothing recorded.
    let bad = f
        .haifu()
        .args(["rollback", "app", "--client", "nobody"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("client \"nobody\" is not known"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let bad = f
        .haifu()
        .args(["rollback", "app", "--client", "c1", "--to", "9.9.9"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("9.9.9 is not registered"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // The order, carried out through the relay; waited for.
    let orders = f.json(&[
        "rollback", "app", "--client", "c1", "--to", "1.1.0", "--by", "alice", "--wait", "60",
        "--json",
    ]);
    assert_eq!(orders[0]["state"], "done", "{orders:#}\n{}", f.dump());
    assert_eq!(orders[0]["version"], "1.1.0");
    assert_eq!(orders[0]["from_version"], "1.2.0");
    assert_eq!(orders[0]["by"], "alice");
    assert_eq!(current(&f, "c1"), v1, "current is 1.1.0 on disk");
    assert_eq!(current(&f, "c2"), v2, "c2 was not ordered");

    // The audit of run 2 keeps its record and says c1 was rolled back.
    let audit = f.json(&["audit", "2", "--json"]);
    assert_eq!(audit["rolled_back"][0]["client"], "c1", "{audit:#}");
    let text = f.haifu_ok(&["audit", "2"]);
    assert!(text.contains("rolled back since (1)"), "{text}");
    assert!(text.contains("c1 app rolled back 1.2.0 -> 1.1.0"), "{text}");
    let fleet = f.haifu_ok(&["fleet", "list"]);
    assert!(
        fleet.lines().any(|l| l.contains("c1")
            && l.contains("app 1.1.0")
            && l.contains("rolled back to 1.1.0")),
        "{fleet}"
    );

    // Run 2's session is still offered by the relay, and c1 restarts
    // (its boot check asks the master): it is not moved forward again.
    assert!(f.stop("c1"));
    f.start_clients(&["c1"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(current(&f, "c1"), v1, "c1 stays on 1.1.0\n{}", f.dump());

    // A second order goes nowhere: c1 keeps 1.2.0 as previous, which is
    // newer; it refuses and says why.
    let out = f
        .haifu()
        .args(["rollback", "app", "--client", "c1", "--wait", "60"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("refused by the client"), "{said}");
    assert!(said.contains("never moves forward"), "{said}");
    assert_eq!(current(&f, "c1"), v1);
}
