//! `haifu run pause|resume|abort RUN`: an operator's order on a running
//! run, written to the ledger with who and why; the master (or the
//! `haifu run` process driving a simulated run) reads it between its steps,
//! within about a second.

use std::process::ExitCode;

use anyhow::Result;
use haifu_ledger::RunOrder;

use super::operator;
use crate::home::Home;

/// An operator's order on a run.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Order {
    /// Pause a running run: no new round starts, no straggler is served a
    /// delta and its deadline cuts nobody off until it is resumed (a round
    /// on air ends as it would; completions go on being recorded).
    Pause(OrderArgs),
    /// Resume a paused run where it was (a deadline that passed while
    /// paused cuts off now).
    Resume(OrderArgs),
    /// End a running or paused run now: it is marked failed with the
    /// reason "aborted by WHO: WHY", its round on air stops within about
    /// a second, relays stop offering its rounds and no straggler is
    /// served a delta for it.
    Abort(OrderArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct OrderArgs {
    /// The run.
    #[arg(value_name = "RUN")]
    run: i64,
    /// Who gives the order, for the audit (default: $USER).
    #[arg(long, value_name = "WHO")]
    by: Option<String>,
    /// Why, for the audit.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

pub(crate) fn run(home: &Home, order: Order) -> Result<ExitCode> {
    let (order, args) = match order {
        Order::Pause(a) => (RunOrder::Pause, a),
        Order::Resume(a) => (RunOrder::Resume, a),
        Order::Abort(a) => (RunOrder::Abort, a),
    };
    let by = operator::who(args.by)?;
    let reason = operator::reason(args.reason)?;
    let mut ledger = home.ledger_existing()?;
    ledger.order_run(args.run, order, &by, reason.as_deref())?;
    let done = match order {
        RunOrder::Pause => "paused",
        RunOrder::Resume => "resumed",
        RunOrder::Abort => "aborted",
    };
    eprintln!("run {} {done} by {by}", args.run);
    Ok(ExitCode::SUCCESS)
}
