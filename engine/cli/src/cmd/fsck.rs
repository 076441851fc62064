//! `haifu fsck`: check the ledger, the store and the signatures together.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Reads every registered object in full. Exits 0 when all is \
consistent, 1 when a problem is found. Objects no version refers to (left by an \
interrupted registration) and abandoned temporary files are reported, not errors."
)]
pub struct Args {
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    versions: usize,
    objects: usize,
    problems: Vec<String>,
    unreferenced_objects: Vec<String>,
    temp_files: Vec<String>,
}

pub fn run(home: &Home, args: Args) -> Result<ExitCode> {
    let ledger = home.ledger()?;
    let store = home.store()?;
    let key = home.master_key()?.public_key();
    let mut report = Report::default();

    if let Err(e) = ledger.integrity_check() {
        report.problems.push(e.to_string());
    }
    let manifests = ledger.all_manifests()?;
    report.versions = manifests.len();
    let mut referenced = BTreeSet::new();
    for m in &manifests {
        let b = &m.body;
        referenced.insert(b.sha3_256);
        if let Err(e) = m.verify(&key) {
            report
                .problems
                .push(format!("{} {}: {e}", b.name, b.version));
        }
        match store.verify(&b.sha3_256) {
            Ok(size) if size == b.size => {}
            Ok(size) => report.problems.push(format!(
                "{} {}: object holds {size} bytes, manifest says {}",
                b.name, b.version, b.size
            )),
            Err(e) => report
                .problems
                .push(format!("{} {}: {e}", b.name, b.version)),
        }
    }
    let objects = store.list_objects()?;
    report.objects = objects.len();
    report.unreferenced_objects = objects
        .iter()
        .filter(|d| !referenced.contains(d))
        .map(ToString::to_string)
        .collect();
    report.temp_files = store
        .temp_files()?
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .collect();

    if args.json {
        output::json(&report)?;
    } else {
        println!(
            "{} versions, {} objects, {} problems",
            report.versions,
            report.objects,
            report.problems.len()
        );
        for p in &report.problems {
            println!("problem: {p}");
        }
        for o in &report.unreferenced_objects {
            println!("note: object {o} is not referenced by any version");
        }
        for t in &report.temp_files {
            println!("note: temporary file {t} (a registration in progress)");
        }
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
