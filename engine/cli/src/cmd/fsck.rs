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
interrupted registration) and abandoned temporary files are reported, not errors; --repair removes them (objects only once they are an hour old, so a registration still on its way to the ledger keeps its object)."
)]
pub(crate) struct Args {
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
    /// Remove unreferenced objects older than an hour and temporary files
    /// whose writer is gone.
    #[arg(long)]
    repair: bool,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    versions: usize,
    objects: usize,
    problems: Vec<String>,
    unreferenced_objects: Vec<String>,
    temp_files: Vec<String>,
    removed: Vec<String>,
}

pub(crate) fn run(home: &Home, args: Args) -> Result<ExitCode> {
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
    let temps = store.temp_files()?;
    if args.repair {
        for d in objects.iter().filter(|d| !referenced.contains(d)) {
            if store.remove_object_older_than(d, std::time::Duration::from_secs(3600))? {
                report
                    .removed
                    .push(store.object_path(d).display().to_string());
            }
        }
        for (p, abandoned) in &temps {
            if *abandoned && std::fs::remove_file(p).is_ok() {
                report.removed.push(p.display().to_string());
            }
        }
    }
    let removed: BTreeSet<&String> = report.removed.iter().collect();
    report
        .unreferenced_objects
        .retain(|d| !removed.iter().any(|r| r.contains(d.as_str())));
    report.temp_files = temps
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .filter(|p| !removed.contains(p))
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
        for r in &report.removed {
            println!("removed {r}");
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
