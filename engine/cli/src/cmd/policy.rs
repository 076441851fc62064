//! `haifu policy test` and `haifu policy eval`: try a policy script on facts
//! before a workflow uses it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use haifu_policy::Role;
use haifu_policy::cases::{Call, CaseFile, CaseReport, PolicyUnderTest};

use crate::output;

/// Bad input: a cases file or a script that cannot be used, or a bad fact.
/// Distinct from 1 (a case failed) so CI can tell a broken test file from a
/// broken policy.
const BAD_INPUT: u8 = 2;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Run a policy's table-driven cases: facts in, expected decision out.
    #[command(after_help = "Each case calls one entry point (next_round, allow, \
disconnect, round_budget or advance) with facts and states the decision it expects (see policies/README.md, \
\"Testing policies\"). A case fails when the decision or the reason differs, or when the \
script did not answer and the safe default was used (unless the case says fallback: true). \
Prints one line per case (ok or FAIL, with FILE:LINE:COLUMN of the case), and for each \
failure what was expected, what came back and where in the script to look. Exit status: \
0 when every case passed, 1 when one failed, 2 when the cases file or the script cannot \
be used (every problem printed as FILE:LINE:COLUMN: message).")]
    Test(TestArgs),
    /// Ask a policy one decision from facts given on the command line.
    #[command(
        after_help = "Facts (unset ones get the defaults of policies/README.md, \
\"Testing policies\"):\n  next_round: round rounds delivered total now time_zone start deadline \
window\n  allow: client.id client.version client.newest client.behind client.state \
client.last_contact service.name service.since now\n  disconnect: the client.* facts and now\n  \
round_budget: round rounds size rate remaining last_loss last_decoded now time_zone start \
deadline window\n  advance: stage stages name targeted delivered failed failures in_stage soaked soak \
min_success max_failures\n\n\
Examples:\n  haifu policy eval policies/retry.rhai next_round --fact round=1 rounds=3 \
delivered=2 total=10 time_zone=Asia/Tokyo now=2026-12-01T02:30:00+09:00\n  haifu policy eval \
policies/disconnect.rhai disconnect --fact client.version=2.3.0 client.newest=2.4.0 \
client.last_contact=-40d\n  haifu policy eval policies/broadcast.rhai round_budget --fact round=3 \
rounds=3 size=64MiB rate=100Mbit/s last_loss=0.05\n  haifu policy eval policies/advance.rhai \
advance --fact targeted=50 failures=post-install=3 max_failures=2%\n\nExit status: 0 when the script answered, 1 when it did not and the \
safe default was used (the reason is printed), 2 on a bad fact or a script that does not \
compile."
    )]
    Eval(EvalArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// The policy script.
    policy: PathBuf,
    /// The cases file (YAML), e.g. policies/tests/retry.yaml.
    cases: PathBuf,
    /// Print one JSON object: the counts and every case's result.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// The policy script.
    policy: PathBuf,
    /// The entry point to call.
    entry: Entry,
    /// Facts as KEY=VALUE (`round=2`, `client.version=2.3.0`,
    /// `client.last_contact=-40d`); an empty value leaves an optional fact
    /// unset.
    #[arg(long = "fact", value_name = "KEY=VALUE", num_args = 1..)]
    facts: Vec<String>,
    /// Print {"entry": …, the decision, "fallback": null or why}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Entry {
    /// next_round(ctx): the retry policy.
    #[value(name = "next_round")]
    NextRound,
    /// allow(client, service): the service gate.
    Allow,
    /// disconnect(client): the cut-off.
    Disconnect,
    /// round_budget(ctx): the broadcast policy, a round's budget.
    #[value(name = "round_budget")]
    RoundBudget,
    /// advance(ctx): after a stage of a phased rollout, proceed, wait, pause or abort.
    Advance,
}

impl Entry {
    fn role(self) -> Role {
        match self {
            Entry::NextRound => Role::Retry,
            Entry::Allow => Role::Restrict,
            Entry::Disconnect => Role::Disconnect,
            Entry::RoundBudget => Role::Broadcast,
            Entry::Advance => Role::Advance,
        }
    }
}

pub(crate) fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Test(a) => test(&a),
        Command::Eval(a) => eval(&a),
    }
}

fn test(args: &TestArgs) -> Result<ExitCode> {
    let file = match CaseFile::load(&args.cases) {
        Ok(file) => file,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "haifu: error: {}: {} problem(s); no case was run",
                args.cases.display(),
                errors.len()
            );
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    let roles: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|role| file.cases.iter().any(|c| c.call.role() == *role))
        .collect();
    let Some(policy) = load(&args.policy, &roles) else {
        return Ok(ExitCode::from(BAD_INPUT));
    };
    let reports: Vec<CaseReport> = file.cases.iter().map(|c| policy.run(c)).collect();
    let failed = reports.iter().filter(|r| !r.passed()).count();
    let passed = reports.len() - failed;
    if args.json {
        output::json(&serde_json::json!({
            "policy": args.policy,
            "cases": args.cases,
            "passed": passed,
            "failed": failed,
            "results": reports.iter().map(|r| report_json(&policy, r)).collect::<Vec<_>>(),
        }))?;
    } else {
        for r in &reports {
            print_report(&args.cases, &policy, r);
        }
        println!(
            "{}: {passed} passed, {failed} failed ({})",
            args.policy.display(),
            args.cases.display()
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Compiles the script for `roles`, printing every error and any missing
/// entry point.
fn load(path: &Path, roles: &[Role]) -> Option<PolicyUnderTest> {
    match PolicyUnderTest::load(path, roles) {
        Ok(policy) => {
            for w in policy.set().warnings() {
                eprintln!("warning: {w}");
            }
            Some(policy)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            let n = errors.len();
            eprintln!("haifu: error: {}: {n} policy error(s)", path.display());
            None
        }
    }
}

fn print_report(cases: &Path, policy: &PolicyUnderTest, r: &CaseReport) {
    let at = format!("{}:{}", cases.display(), r.pos);
    if r.passed() {
        println!("ok   {at}: {}", r.name);
        return;
    }
    println!("FAIL {at}: {}", r.name);
    for f in &r.failures {
        println!("     {f}");
    }
    if let Some(p) = r.script_pos {
        let what = if r.fallback.is_some() {
            "script error".to_string()
        } else {
            format!("fn {}", r.entry)
        };
        println!("     at {}:{p} ({what})", policy.path().display());
    }
}

fn report_json(policy: &PolicyUnderTest, r: &CaseReport) -> serde_json::Value {
    serde_json::json!({
        "name": r.name,
        "line": r.pos.line,
        "column": r.pos.column,
        "entry": r.entry,
        "ok": r.passed(),
        "got": r.got,
        "fallback": r.fallback.as_ref().map(ToString::to_string),
        "failures": r.failures,
        "script": r.script_pos.map(|p| serde_json::json!({
            "path": policy.path(),
            "line": p.line,
            "column": p.column,
        })),
    })
}

fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let role = args.entry.role();
    let mut pairs: Vec<(&str, Option<&str>)> = Vec::new();
    for fact in &args.facts {
        let Some((key, value)) = fact.split_once('=') else {
            eprintln!("haifu: error: --fact {fact:?}: expected KEY=VALUE");
            return Ok(ExitCode::from(BAD_INPUT));
        };
        pairs.push((key.trim(), (!value.is_empty()).then_some(value)));
    }
    let call = match Call::from_facts(role, &pairs) {
        Ok(call) => call,
        Err(errors) => {
            for e in &errors {
                eprintln!("haifu: error: {e}");
            }
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    let Some(policy) = load(&args.policy, &[role]) else {
        return Ok(ExitCode::from(BAD_INPUT));
    };
    let (answer, fallback) = policy.decide(&call);
    if args.json {
        let mut value = serde_json::to_value(&answer)?;
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "fallback".into(),
                fallback.as_ref().map(ToString::to_string).into(),
            );
        }
        output::json(&value)?;
    } else {
        println!("{}: {answer}", call.entry());
        if let Some(fb) = &fallback {
            println!("fallback: {fb}");
        }
    }
    Ok(if fallback.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
