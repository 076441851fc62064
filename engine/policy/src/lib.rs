//! haifu policies: the hardened Rhai façade.
//!
//! Operators write the fleet's decisions in Rhai scripts under `policies/`;
//! this crate is the only place haifu touches Rhai. It:
//!
//! - builds the one hardened [`rhai::Engine`] ([`hardened_engine`]): limits on
//!   operations, call depth, expression depth, string/array/map sizes,
//!   variables and functions; no modules; no `eval`; a wall-clock guard;
//! - compiles each script once ([`Script`]) and checks at load which entry
//!   points exist ([`PolicySet::load`], [`LoadWarning`]);
//! - answers the engine's questions through typed methods on [`PolicySet`]:
//!   [`PolicySet::round_budget`], [`PolicySet::next_round`],
//!   [`PolicySet::allow`], [`PolicySet::disconnect`], [`PolicySet::advance`],
//!   each documenting its
//!   safe default;
//! - falls back to that default on any script failure, logs it with `tracing`
//!   (script:line:column where Rhai gives one, the limit's kind otherwise) and
//!   returns it in [`Outcome::fallback`] so callers can show it;
//! - runs table-driven policy tests ([`cases`]): facts in, expected decision
//!   out, for `haifu policy test` and `haifu policy eval`.
//!
//! It also holds [`input::read_text`], the capped, regular-files-only reader
//! that workflows, policies and daemon configs are all read with.
//!
//! It does not read the ledger, know the workflow format, keep time or do
//! any I/O besides reading script files at load: callers pass facts (and
//! `now`) in and act on the typed answers.

#![forbid(unsafe_code)]

mod advance;
mod budget;
pub mod cases;
mod decision;
mod error;
mod facts;
mod hardening;
pub mod input;
mod script;
mod set;
pub mod version;

pub use advance::{
    Advance, DEFAULT_ADVANCE_RECHECK, FailureThreshold, StageFacts, StageSummary, follow_gate,
};
pub use budget::Budget;
pub use decision::{
    CutOff, Decision, Fallback, FallbackCause, LimitKind, NextRound, Outcome, Role,
};
pub use error::{LoadWarning, PolicyError};
pub use facts::{BudgetFacts, ClientFacts, RoundFacts, ServiceFacts};
pub use hardening::{Limits, hardened_engine};
pub use script::Script;
pub use set::{DEFAULT_ROUND_GAP, PolicyPaths, PolicySet};

/// Compiles the script at `path` with the hardened engine and checks that it
/// defines `role`'s entry point — what `haifu check` needs, without building
/// a [`PolicySet`].
///
/// # Errors
/// The script cannot be read or does not compile (with its own
/// `path:line:column`).
pub fn check_script(
    role: Role,
    path: &std::path::Path,
) -> Result<Option<LoadWarning>, PolicyError> {
    let limits = Limits::default();
    let engine = hardened_engine(&limits);
    let script = Script::load(&engine, &limits, path)?;
    Ok(script.check_entry_point(role))
}
