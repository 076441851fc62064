//! `haifu audit`: per relay, who has what (step 106).

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The run.
    run: i64,
    /// Print JSON: per relay, the clients delivered in each round, by delta,
    /// undelivered, pending and disconnected (with reasons), `failed`: the
    /// clients whose installed version failed (client, relay, stage, kind:
    /// post-install, health or rolled-back, reason, at), and `late`: what
    /// was recorded after the run had finished (client, state, round, when),
    /// kept beside the run's final record; `rolled_back`: the clients of
    /// the run an operator rolled back from its version since (`haifu
    /// rollback`); and the run's traffic (bytes multicast per round, relay
    /// fetches, deltas, full copies); `stages`: a staged run's stages
    /// (targeted, delivered, failed, pending, failures by kind, gate, and
    /// the advance policy's decisions).
    #[arg(long)]
    json: bool,
    /// List every client by name (the default shows counts and the first few).
    #[arg(long)]
    full: bool,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let ledger = home.ledger_existing()?;
    let audit = ledger
        .audit(args.run)?
        .with_context(|| format!("run {} does not exist", args.run))?;
    // Operators' orders on the run (pause, resume, abort), oldest first.
    let orders = ledger.orders(args.run)?;
    // A staged run's stages: counts and the advance policy's decisions.
    let stages = super::stage_view::stages(&ledger, args.run)?;
    if args.json {
        let mut v = serde_json::to_value(&audit)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("orders".into(), serde_json::to_value(&orders)?);
            o.insert("stages".into(), serde_json::to_value(&stages)?);
        }
        output::json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let names = |v: &[String]| -> String {
        let shown: Vec<&str> = v
            .iter()
            .take(if args.full { usize::MAX } else { 5 })
            .map(String::as_str)
            .collect();
        let more = v.len().saturating_sub(shown.len());
        let mut s = shown.join(", ");
        if more > 0 {
            s.push_str(&format!(", … {more} more"));
        }
        s
    };
    println!(
        "audit of run {} ({} {} {})",
        audit.run.id, audit.run.name, audit.run.artifact, audit.run.version
    );
    for r in &audit.relays {
        println!("relay {}", r.relay);
        for (i, c) in r.delivered_by_round.iter().enumerate() {
            println!("  round {:<2}      {:>6}  {}", i + 1, c.len(), names(c));
        }
        println!("  by delta      {:>6}  {}", r.delta.len(), names(&r.delta));
        if !r.current.is_empty() {
            println!(
                "  had it        {:>6}  {}",
                r.current.len(),
                names(&r.current)
            );
        }
        println!(
            "  undelivered   {:>6}  {}",
            r.undelivered.len(),
            names(&r.undelivered)
        );
        if !r.pending.is_empty() {
            println!(
                "  pending       {:>6}  {}",
                r.pending.len(),
                names(&r.pending)
            );
        }
        let cut: Vec<String> = r
            .disconnected
            .iter()
            .map(|(c, why)| format!("{c} ({why})"))
            .collect();
        println!("  disconnected  {:>6}  {}", cut.len(), names(&cut));
        // Failed after install: the version did not hold on these clients.
        let failed: Vec<String> = r
            .failed
            .iter()
            .map(|f| format!("{} ({}: {})", f.client, f.kind, f.reason))
            .collect();
        if !failed.is_empty() {
            println!("  failed        {:>6}  {}", failed.len(), names(&failed));
        }
        // After the run had finished: beside its final record, not in it.
        let late: Vec<String> = r
            .late
            .iter()
            .map(|l| match l.round {
                Some(n) => format!("{} ({} in round {n}, recorded {})", l.client, l.state, l.at),
                None => format!("{} ({}, recorded {})", l.client, l.state, l.at),
            })
            .collect();
        if !late.is_empty() {
            println!("  late          {:>6}  {}", late.len(), names(&late));
        }
        let shown = if args.full { usize::MAX } else { 5 };
        for c in r.stragglers.iter().take(shown) {
            let has = match (&c.artifact, &c.version) {
                (Some(a), Some(v)) => format!("{a} {v}"),
                _ => "unknown".to_owned(),
            };
            println!(
                "    {:<24} last contact {:<28} installed {has}",
                c.id,
                c.last_contact.as_deref().unwrap_or("never"),
            );
        }
    }
    // Undone since, by an operator: beside the run's record, not in it.
    if !audit.rolled_back.is_empty() {
        println!("rolled back since ({})", audit.rolled_back.len());
        for o in &audit.rolled_back {
            println!("  {}", super::rollback::describe(o));
        }
    }
    super::stage_view::print(&stages, if args.full { usize::MAX } else { 5 });
    if !orders.is_empty() {
        println!("orders ({})", orders.len());
        for o in &orders {
            let why = o
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            println!("  {} {} by {}{why}", o.at, o.order.as_str(), o.by);
        }
    }
    print_traffic(&audit.traffic);
    Ok(ExitCode::SUCCESS)
}

/// The run's bytes on the wire, when any were recorded (live runs).
fn print_traffic(t: &haifu_ledger::TrafficTotals) {
    if *t == haifu_ledger::TrafficTotals::default() {
        return;
    }
    let rounds: Vec<String> = t
        .multicast_by_round
        .iter()
        .map(|b| output::bytes(*b))
        .collect();
    println!("traffic");
    println!(
        "  multicast     {:>10}  by round: {}",
        output::bytes(t.multicast_bytes),
        rounds.join(", ")
    );
    println!(
        "  unicast       {:>10}  relay fetches {}, {} delta(s) {}, {} full copies {}",
        output::bytes(t.unicast_bytes()),
        output::bytes(t.fetch_bytes),
        t.deltas,
        output::bytes(t.delta_bytes),
        t.fulls,
        output::bytes(t.full_bytes)
    );
    if t.deltas > 0 {
        // Which delta method served the stragglers (the maker keeps the
        // smaller of the two per pair).
        println!(
            "  deltas by method         patch-from {} ({}), bsdiff {} ({})",
            t.deltas - t.bsdiff_deltas.min(t.deltas),
            output::bytes(t.delta_bytes.saturating_sub(t.bsdiff_delta_bytes)),
            t.bsdiff_deltas,
            output::bytes(t.bsdiff_delta_bytes)
        );
    }
}
