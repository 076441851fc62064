//! What a round on air is held to and what it tells the master, in one
//! place for the broadcaster and the fleet simulation: the master's budget
//! as the carousel's [`RepairParams`], a client's feedback as a
//! [`Report`], and the round's [`Outcome`] as the [`RoundListeners`] of its
//! `RoundDone`.
//!
//! No I/O: the broadcaster sends, the simulation counts.

use std::time::Duration;

use haifu_carousel::EndReason;
use haifu_carousel::Outcome;
use haifu_carousel::RepairParams;
use haifu_carousel::Report;
use haifu_protocol::Feedback;
use haifu_protocol::RoundBudget;
use haifu_protocol::RoundListeners;

/// How long after a block's symbols went out a listener's report is taken
/// as reflecting them: its report interval (100 ms) and a LAN round trip.
const HOLDOFF: Duration = Duration::from_millis(150);
/// How long a round with nobody reporting waits after its first pass for
/// a first report (a client whose receiver starts late).
const LINGER: Duration = Duration::from_millis(300);

/// What a budget from the master means for the carousel; a blind pass of
/// the manifest's layout (`blind_overhead` proactive) without one.
pub(crate) fn repair_params(
    budget: Option<&RoundBudget>,
    size: u64,
    blind_overhead: f64,
) -> RepairParams {
    let Some(b) = budget else {
        return RepairParams::blind(blind_overhead);
    };
    let permille = |v: u32| f64::from(v) / 1000.0;
    RepairParams {
        // Bounded whatever the master sent: at most 16 x K per block.
        proactive: permille(b.proactive_permille).min(15.0),
        budget_bytes: u64::try_from(u128::from(size) * u128::from(b.bytes_permille) / 1000)
            .unwrap_or(u64::MAX),
        budget_time: Duration::from_millis(b.time_ms),
        silence: Duration::from_millis(u64::from(b.silence_ms)),
        holdoff: HOLDOFF,
        linger: LINGER,
        assumed_loss: permille(b.assumed_loss_permille).min(0.5),
        feedback: true,
    }
}

/// A client's feedback as the repair loop reads it.
pub(crate) fn report(feedback: Feedback) -> Report {
    Report {
        heard: feedback.heard,
        done: feedback.done,
        done_below: feedback.done_below,
        horizon: feedback.horizon,
        held: feedback.held,
        newest: feedback.newest,
    }
}

/// What a round with feedback tells the master about its listeners.
pub(crate) fn listeners(o: &Outcome<String>) -> RoundListeners {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    RoundListeners {
        listening: count(o.decoded.len() + o.undecoded.len()),
        decoded: count(o.decoded.len()),
        silent: count(o.silent.len()),
        repair_bytes: o.repairs.1,
        max_loss_permille: (o.max_loss * 1000.0).round() as u32,
        ended: match o.reason {
            EndReason::AllDecoded => 0,
            EndReason::ByteBudget => 1,
            EndReason::TimeBudget => 2,
            EndReason::Blind => 3,
        },
    }
}
