//! The demo's daemons: real `haifu master`, `haifu relay` and `haifu client`
//! processes (this same binary), each with its config and log file in the
//! demo's folder; all stopped when the set is dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub(super) struct Procs {
    dir: PathBuf,
    plugins: PathBuf,
    exe: PathBuf,
    running: BTreeMap<String, Child>,
}

impl Procs {
    pub(super) fn new(dir: &Path, plugins: &Path) -> Result<Self> {
        Ok(Self {
            dir: dir.to_owned(),
            plugins: plugins.to_owned(),
            exe: std::env::current_exe().context("cannot find the haifu binary")?,
            running: BTreeMap::new(),
        })
    }

    pub(super) fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    pub(super) fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Starts `haifu ROLE --config NAME.yaml`, appending to NAME.log.
    pub(super) fn start(&mut self, role: &str, name: &str) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .with_context(|| format!("cannot open {}", self.log_path(name).display()))?;
        let child = Command::new(&self.exe)
            .args([role, "--config", &format!("{name}.yaml")])
            .current_dir(&self.dir)
            .env("HAIFU_PLUGINS", &self.plugins)
            .env("RUST_LOG", "info")
            // The demo reads these logs: text, whatever the caller's setting.
            .env("HAIFU_LOG_FORMAT", "text")
            .env_remove("HAIFU_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start haifu {role} for {name}"))?;
        self.running.insert(name.to_owned(), child);
        Ok(())
    }

    /// Fails naming the process and its last log line if `name` exited.
    pub(super) fn check_alive(&mut self, name: &str) -> Result<()> {
        if let Some(c) = self.running.get_mut(name)
            && let Ok(Some(status)) = c.try_wait()
        {
            let log = self.log(name);
            let last = log.lines().last().unwrap_or("(empty log)").to_owned();
            self.running.remove(name);
            bail!("{name} exited ({status}): {last}");
        }
        Ok(())
    }

    /// SIGTERM, then waits (SIGKILL after 10 s).
    pub(super) fn stop(&mut self, name: &str) {
        if let Some(c) = self.running.remove(name) {
            stop_all(vec![c]);
        }
    }

    /// Waits until `name`'s log holds `needle`, failing after `secs`.
    pub(super) fn wait_log(&mut self, name: &str, needle: &str, secs: u64) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.log(name).contains(needle) {
                return Ok(());
            }
            self.check_alive(name)?;
            if Instant::now() > end {
                bail!(
                    "{name} did not log {needle:?} within {secs} s (see {})",
                    self.log_path(name).display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Sends SIGTERM to all, then waits for each (SIGKILL after 10 s).
fn stop_all(children: Vec<Child>) {
    for c in &children {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let end = Instant::now() + Duration::from_secs(10);
    for mut c in children {
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > end => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        // Clients first, then relays, then the master: each closes its
        // links while the other end is still there to answer.
        let mut all = std::mem::take(&mut self.running);
        let mut take = |pick: &dyn Fn(&str) -> bool| -> Vec<Child> {
            let names: Vec<String> = all.keys().filter(|n| pick(n)).cloned().collect();
            names.iter().filter_map(|n| all.remove(n)).collect()
        };
        let clients = take(&|n| n != "master" && !n.starts_with("relay-"));
        let relays = take(&|n| n.starts_with("relay-"));
        stop_all(clients);
        stop_all(relays);
        stop_all(all.into_values().collect());
    }
}
