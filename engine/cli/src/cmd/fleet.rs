//! `haifu fleet`: the clients the master knows (with their labels), the
//! stages a workflow would make of them, and lifting a cut-off.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Every client: relay, installed version, last contact, whether it
    /// is cut off (with the reason), its latest rollback order (`haifu
    /// rollback`) with what became of it, and the labels it reported.
    List {
        /// Print JSON: one object per client (`rollback`: its latest order;
        /// `labels`: its labels, when it has any).
        #[arg(long)]
        json: bool,
    },
    /// Lift a client's cut-off: the master and its relays accept it again
    /// within a poll interval, and the gate stops denying it for that reason.
    /// A client whose installed version failed in a running run (its fix is
    /// in) is made pending in that run again: the master tells it on its
    /// next version report, and the run's next round or delta reaches it.
    Readmit {
        /// The client's id.
        client: String,
        /// Who readmits it, for the audit (default: $USER).
        #[arg(long, value_name = "WHO")]
        by: Option<String>,
    },
    /// Which of the known clients each stage of a workflow would target
    /// now (by relay, name, label and percent), before running it.
    Stages {
        /// The workflow.
        workflow: std::path::PathBuf,
        /// Print JSON: the stages with their clients, the clients in no
        /// stage, and the named clients the master does not know.
        #[arg(long)]
        json: bool,
    },
    /// Register a client behind another relay (it was moved to another
    /// segment): the new relay may speak for it from then on, and the old
    /// one's reports about it are refused. A relay never moves a client by
    /// itself: the first relay to report a client registers it.
    Move {
        /// The client's id.
        client: String,
        /// The relay it is behind now (its certificate name).
        #[arg(long)]
        relay: String,
    },
}

pub(crate) fn run(home: &Home, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List { json } => {
            let ledger = home.ledger_existing()?;
            let clients = ledger.clients()?;
            let labels = ledger.client_labels()?;
            // The latest order per client (ids grow).
            let mut latest = std::collections::BTreeMap::new();
            for o in ledger.rollbacks()? {
                latest.insert(o.client.clone(), o);
            }
            if json {
                #[derive(serde::Serialize)]
                struct Entry<'a> {
                    #[serde(flatten)]
                    client: &'a haifu_ledger::ClientRow,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    rollback: Option<&'a haifu_ledger::RollbackRow>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    labels: Option<&'a haifu_core::Labels>,
                }
                let out: Vec<Entry<'_>> = clients
                    .iter()
                    .map(|c| Entry {
                        client: c,
                        rollback: latest.get(&c.id),
                        labels: labels.get(&c.id),
                    })
                    .collect();
                output::json(&out)?;
                return Ok(ExitCode::SUCCESS);
            }
            if clients.is_empty() {
                eprintln!("no client has reported yet");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<24} {:<16} {:<24} {:<32} STATE",
                "CLIENT", "RELAY", "INSTALLED", "LAST CONTACT"
            );
            for c in clients {
                let installed = match (&c.artifact, &c.version) {
                    (Some(a), Some(v)) => format!("{a} {v}"),
                    _ => "-".into(),
                };
                let mut state = match &c.denied_reason {
                    Some(why) => format!("cut off: {why}"),
                    None => "admitted".into(),
                };
                if let Some(o) = latest.get(&c.id) {
                    state.push_str(&match o.state {
                        haifu_ledger::RollbackState::Done => format!(
                            "; rolled back to {} (order {}, by {})",
                            o.version.as_deref().unwrap_or("?"),
                            o.id,
                            o.by
                        ),
                        haifu_ledger::RollbackState::Ordered => {
                            format!("; rollback ordered (order {})", o.id)
                        }
                        haifu_ledger::RollbackState::Refused => format!(
                            "; rollback refused (order {}): {}",
                            o.id,
                            o.reason.as_deref().unwrap_or("no reason given")
                        ),
                    });
                }
                if let Some(l) = labels.get(&c.id) {
                    let pairs: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    state.push_str(&format!("; labels {}", pairs.join(",")));
                }
                println!(
                    "{:<24} {:<16} {:<24} {:<32} {state}",
                    c.id,
                    c.relay.as_deref().unwrap_or("-"),
                    installed,
                    c.last_contact.as_deref().unwrap_or("never"),
                );
            }
        }
        Command::Stages { workflow, json } => {
            return super::fleet_stages::run(home, &workflow, json);
        }
        Command::Readmit { client, by } => {
            let by = super::operator::who(by)?;
            let mut ledger = home.ledger_existing()?;
            if ledger.client(&client)?.is_none() {
                bail!("client {client:?} is not known to this master");
            }
            let mut changed = false;
            if ledger.readmit(&client)? {
                println!("{client} readmitted");
                changed = true;
            }
            let running = ledger
                .runs()?
                .into_iter()
                .filter(|r| r.status == haifu_ledger::RunStatus::Running);
            for r in running {
                if ledger.readmit_failed(r.id, &client, &by)? {
                    println!(
                        "{client} readmitted to run {}: its failure is cleared",
                        r.id
                    );
                    changed = true;
                }
            }
            if !changed {
                println!(
                    "{client} was neither cut off nor failed in a running run; nothing changed"
                );
            }
        }
        Command::Move { client, relay } => {
            haifu_plugin_host::pki::validate_name(&relay)
                .map_err(|e| anyhow::anyhow!("--relay: {e}"))?;
            let mut ledger = home.ledger_existing()?;
            if !ledger.move_client(&client, &relay)? {
                bail!("client {client:?} is not known to this master");
            }
            println!("{client} is registered behind {relay}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
