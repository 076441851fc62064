//! `haifu rollback`: the operator's explicit way back. Orders clients to
//! make the version they keep before their current one current again;
//! the order is recorded in the ledger and the running master sends it
//! through each client's relay.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use haifu_core::{ArtifactName, Version};
use haifu_ledger::{RollbackRow, RollbackState};

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  haifu rollback pos-app --client pos-0042
  haifu rollback pos-app --relay store-17 --to 2.3.0 --by alice --wait 60
  haifu rollback pos-app --label ring=canary --wait 60

Each client makes the version it keeps before its current one current again
(haifu install keeps one), and holds back from the version it left: the run
that brought it is not repeated, a later run moves it forward. A client that
keeps no previous version (or not the one --to names) refuses and says why.
`haifu fleet list` and `haifu audit RUN` show the outcome.")]
pub(crate) struct Args {
    /// The artifact to roll back (`pos-app`).
    artifact: String,
    /// A client to roll back (repeatable).
    #[arg(long = "client", value_name = "ID")]
    clients: Vec<String>,
    /// Roll back every client the master has behind this relay.
    #[arg(long, value_name = "RELAY")]
    relay: Option<String>,
    /// Roll back every client whose reported labels hold KEY=VALUE
    /// (repeatable: all must match), one order per client.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// The version to go back to; a client whose kept previous version is
    /// another refuses (default: whatever previous version it keeps).
    #[arg(long, value_name = "VERSION")]
    to: Option<String>,
    /// Who orders it, for the audit (default: $USER).
    #[arg(long, value_name = "WHO")]
    by: Option<String>,
    /// Wait up to this many seconds for every client's report; exit
    /// non-zero if any refused or did not report in time.
    #[arg(long, value_name = "SECS")]
    wait: Option<u64>,
    /// Print JSON: the orders (with their outcomes when waited for).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let artifact: ArtifactName = args
        .artifact
        .parse()
        .map_err(|e| anyhow!("artifact {:?}: {e}", args.artifact))?;
    let to = args
        .to
        .as_deref()
        .map(|v| v.parse::<Version>().map_err(|e| anyhow!("--to {v:?}: {e}")))
        .transpose()?;
    if args.clients.is_empty() && args.relay.is_none() && args.labels.is_empty() {
        bail!(
            "name the clients to roll back: --client ID (repeatable), --relay RELAY or --label KEY=VALUE"
        );
    }
    if args.labels.len() > haifu_core::MAX_LABELS {
        bail!(
            "{} --label options, at most {}",
            args.labels.len(),
            haifu_core::MAX_LABELS
        );
    }
    let wanted = args
        .labels
        .iter()
        .map(|l| haifu_core::parse_label(l).map_err(|e| anyhow!("--label {l:?}: {e}")))
        .collect::<Result<haifu_core::Labels>>()?;
    let by = super::operator::who(args.by.clone())?;
    let mut ledger = home.ledger_existing()?;
    if ledger.versions(Some(artifact.as_str()))?.is_empty() {
        bail!("artifact {artifact} is not registered");
    }
    if let Some(v) = &to
        && ledger
            .manifest(artifact.as_str(), &v.to_string())?
            .is_none()
    {
        bail!("--to {v}: {artifact} {v} is not registered");
    }
    // Every client named must be known: nothing is recorded otherwise.
    let known = ledger.clients()?;
    let mut clients: BTreeSet<String> = BTreeSet::new();
    for c in &args.clients {
        if !known.iter().any(|k| &k.id == c) {
            bail!("client {c:?} is not known to this master; nothing ordered");
        }
        clients.insert(c.clone());
    }
    if let Some(relay) = &args.relay {
        let behind: Vec<&str> = known
            .iter()
            .filter(|k| k.relay.as_deref() == Some(relay.as_str()))
            .map(|k| k.id.as_str())
            .collect();
        if behind.is_empty() {
            bail!("relay {relay:?} has no client known to this master; nothing ordered");
        }
        clients.extend(behind.into_iter().map(str::to_owned));
    }
    if !wanted.is_empty() {
        let labelled: Vec<String> = ledger
            .client_labels()?
            .into_iter()
            .filter(|(_, l)| haifu_core::matches_all(l, &wanted))
            .map(|(c, _)| c)
            .collect();
        if labelled.is_empty() {
            let pairs: Vec<String> = wanted.iter().map(|(k, v)| format!("{k}={v}")).collect();
            bail!(
                "no client known to this master has the labels {}; nothing ordered",
                pairs.join(",")
            );
        }
        clients.extend(labelled);
    }
    let clients: Vec<String> = clients.into_iter().collect();
    let to_text = to.as_ref().map(ToString::to_string);
    let mut orders =
        ledger.order_rollbacks(artifact.as_str(), &clients, to_text.as_deref(), &by)?;
    tracing::info!(orders = orders.len(), artifact = %artifact, "rollback ordered");
    let mut ok = true;
    if let Some(secs) = args.wait {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let mut now = Vec::with_capacity(orders.len());
            for o in &orders {
                now.push(ledger.rollback(o.id)?.unwrap_or_else(|| o.clone()));
            }
            orders = now;
            let waiting = orders.iter().any(|o| o.state == RollbackState::Ordered);
            if !waiting || Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        ok = orders.iter().all(|o| o.state == RollbackState::Done);
    }
    if args.json {
        output::json(&orders)?;
    } else {
        for o in &orders {
            println!("{}", describe(o));
        }
    }
    if ok {
        return Ok(ExitCode::SUCCESS);
    }
    let bad = orders
        .iter()
        .filter(|o| o.state != RollbackState::Done)
        .count();
    eprintln!(
        "haifu: error: {bad} of {} rollback(s) did not happen (refused, or no report within --wait)",
        orders.len()
    );
    Ok(ExitCode::FAILURE)
}

/// One line per order, as `haifu fleet list` and the audit say it.
pub(crate) fn describe(o: &RollbackRow) -> String {
    let to = o.to_version.as_deref().unwrap_or("its previous version");
    let from = o.from_version.as_deref().unwrap_or("?");
    match o.state {
        RollbackState::Ordered => format!(
            "order {}: {} {} {from} -> {to}, ordered by {} at {}: waiting for the client",
            o.id, o.client, o.artifact, o.by, o.ordered_at
        ),
        RollbackState::Done => format!(
            "order {}: {} {} rolled back {from} -> {}, ordered by {}, done at {}",
            o.id,
            o.client,
            o.artifact,
            o.version.as_deref().unwrap_or("?"),
            o.by,
            o.finished_at.as_deref().unwrap_or("?")
        ),
        RollbackState::Refused => format!(
            "order {}: {} {} {from} -> {to}, ordered by {}: refused by the client: {}",
            o.id,
            o.client,
            o.artifact,
            o.by,
            o.reason.as_deref().unwrap_or("no reason given")
        ),
    }
}
