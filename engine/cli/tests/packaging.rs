//! What the `.deb` ships beside the binary: completions and man pages
//! generated from the clap definitions, the units, and the assets the
//! `cargo deb` metadata names. (CI builds and installs the package itself.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{haifu, repo};

fn stdout(args: &[&str]) -> String {
    let out = haifu(&repo().join(".no-home")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&["completions", shell]);
        for word in ["master", "schema", "completions", "log-format"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let page = stdout(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH haifu"),
        "{page:.200}"
    );
    let d = tempfile::tempdir().unwrap();
    stdout(&["man", "--out", d.path().to_str().unwrap()]);
    for page in [
        "haifu.1",
        "haifu-master.1",
        "haifu-ca-issue.1",
        "haifu-schema.1",
    ] {
        let text = std::fs::read_to_string(d.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

#[test]
fn the_deb_metadata_names_files_that_exist_and_every_unit() {
    let manifest = std::fs::read_to_string(repo().join("engine/cli/Cargo.toml")).unwrap();
    let deb = manifest
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("cargo deb metadata");
    let cli = repo().join("engine/cli");
    let mut sources = 0;
    for line in deb.lines().filter(|l| l.trim_start().starts_with("[\"")) {
        let source = line.trim_start().trim_start_matches("[\"");
        let source = &source[..source.find('"').unwrap()];
        if source.starts_with("target/") {
            continue; // built by engine/cli/debian/build
        }
        sources += 1;
        let path = cli.join(source);
        let parent = path.parent().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let found = match name.split_once('*') {
            Some((pre, post)) => std::fs::read_dir(parent).unwrap().flatten().any(|e| {
                let n = e.file_name().into_string().unwrap();
                n.starts_with(pre) && n.ends_with(post)
            }),
            None => path.is_file(),
        };
        assert!(found, "the .deb names {source}, which does not exist");
    }
    assert!(sources >= 6, "{sources}");
    for role in ["master", "relay", "client"] {
        let unit = format!("haifu-{role}.service");
        assert!(deb.contains(&unit), "the .deb does not ship {unit}");
        let text = std::fs::read_to_string(repo().join("examples/systemd").join(&unit)).unwrap();
        for line in [
            "Type=notify",
            "Restart=on-failure",
            "User=haifu",
            "ProtectSystem=strict",
            &format!("StateDirectory=haifu/{role}"),
            &format!("ExecStart=/usr/bin/haifu {role} --config /etc/haifu/{role}.yaml"),
            &format!("ConditionPathExists=/etc/haifu/{role}.yaml"),
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
        // The config the unit reads ships beside it.
        assert!(
            repo()
                .join(format!("examples/systemd/{role}.yaml"))
                .is_file()
        );
    }
}

#[test]
fn the_packaged_configs_load() {
    use haifu_fleet::config::{ClientConfig, MasterConfig, RelayConfig, load};
    let dir = repo().join("examples/systemd");
    let m = load::<MasterConfig>(&dir.join("master.yaml")).unwrap();
    assert_eq!(m.home, std::path::Path::new("/var/lib/haifu/master"));
    let r = load::<RelayConfig>(&dir.join("relay.yaml")).unwrap();
    assert_eq!(r.data, std::path::Path::new("/var/lib/haifu/relay"));
    let c = load::<ClientConfig>(&dir.join("client.yaml")).unwrap();
    assert!(c.install_root.starts_with("/var/lib/haifu/client"));
}
