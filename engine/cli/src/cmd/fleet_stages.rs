//! `haifu fleet stages WORKFLOW`: which of the clients the master knows
//! each of the workflow's stages would target now, so an operator sees the
//! rollout before running it. The same membership a run and `haifu
//! simulate` use (`haifu_runtime::stage::Membership`), over the ledger's
//! fleet: each client's relay and the labels it reported.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use haifu_runtime::stage::{Member, Membership};
use serde::Serialize;

use super::check;
use crate::home::Home;
use crate::output;

#[derive(Serialize)]
struct StageView<'a> {
    name: &'a str,
    clients: &'a [String],
}

#[derive(Serialize)]
struct Unknown<'a> {
    stage: &'a str,
    client: &'a str,
}

#[derive(Serialize)]
struct View<'a> {
    workflow: String,
    stages: Vec<StageView<'a>>,
    outside: &'a [String],
    unknown: Vec<Unknown<'a>>,
}

pub(crate) fn run(home: &Home, workflow: &Path, json: bool) -> Result<ExitCode> {
    let plan = check::load(workflow)?;
    let ledger = home.ledger_existing()?;
    let labels = ledger.client_labels()?;
    let relays = &plan.targets.relays;
    // Groups are resolved to relays when a run starts; with groups every
    // known client is shown as a candidate.
    let by_relay = plan.targets.groups.is_empty() && !relays.is_empty();
    let fleet: Vec<Member> = ledger
        .clients()?
        .into_iter()
        .filter_map(|c| {
            let relay = c.relay?;
            if by_relay && !relays.contains(&relay) {
                return None;
            }
            Some(Member {
                labels: labels.get(&c.id).cloned().unwrap_or_default(),
                client: c.id,
                relay,
            })
        })
        .collect();
    let stages = if plan.stages.is_empty() {
        vec![haifu_spec::Stage::everyone(plan.name.pos)]
    } else {
        plan.stages.clone()
    };
    let m = Membership::assign(&fleet, &stages);
    let view = View {
        workflow: plan.file.display().to_string(),
        stages: stages
            .iter()
            .zip(&m.stages)
            .map(|(s, c)| StageView {
                name: &s.name,
                clients: c,
            })
            .collect(),
        outside: &m.outside,
        unknown: m
            .unknown
            .iter()
            .map(|(i, c)| Unknown {
                stage: stages.get(*i).map_or("?", |s| s.name.as_str()),
                client: c,
            })
            .collect(),
    };
    if json {
        output::json(&view)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} clients known to this master are targeted",
        view.workflow,
        fleet.len()
    );
    for (stage, s) in stages.iter().zip(&view.stages) {
        let mut how = Vec::new();
        if !stage.relays.is_empty() {
            how.push(format!("relays {}", stage.relays.join(",")));
        }
        if !stage.clients.is_empty() {
            how.push(format!("clients {}", stage.clients.join(",")));
        }
        if !stage.labels.is_empty() {
            let pairs: Vec<String> = stage
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            how.push(format!("labels {}", pairs.join(",")));
        }
        if let Some(p) = stage.percent {
            how.push(format!("{p}% of the rest, seed {}", stage.seed));
        }
        println!(
            "stage {} ({}): {} clients",
            s.name,
            how.join("; "),
            s.clients.len()
        );
        for c in s.clients {
            println!("  {c}");
        }
    }
    if !view.outside.is_empty() {
        println!("in no stage: {}", view.outside.join(" "));
    }
    for u in &view.unknown {
        println!(
            "stage {} names client {} that this master does not know",
            u.stage, u.client
        );
    }
    Ok(ExitCode::SUCCESS)
}
